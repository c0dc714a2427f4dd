"""`semlab import-images SRC --masks DIR` (issue 21 item 6): a labelled dataset from a folder
of images and a folder of masks matched by name. Image and mask tiles stay aligned (data-bar
crop, resampling, tiling); binary, gray, palette and RGB masks; refused masks; missing and
extra masks reported by name; a mask folder matching no image refused before anything is
written; tiles of a frame share its split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from semlab import io, labels
from semlab.cli import main
from semlab.data import samples
from semlab.data.datasets import DatasetError, import_images, load_dataset
from semlab.data.masks_import import MaskFolder, check_pattern, import_labelled, read_user_mask
from semlab.data.sources import detect_databar


def _gray(seed: int, shape=(90, 120)) -> np.ndarray:
    """Mid-gray noise, uint8 (no pixel near black or white, so no data bar is found)."""
    return (np.random.default_rng(seed).uniform(0.2, 0.8, shape) * 255).astype(np.uint8)


def _with_bar(seed: int, h: int = 200, w: int = 168, bar: int = 36) -> np.ndarray:
    """A frame with a burned-in data bar at row h - bar: black ground, white text and scale bar."""
    img = _gray(seed, (h, w))
    img[h - bar:] = 0
    img[h - bar + 10:h - bar + 18, 20:60] = 255
    img[h - bar + 25:h - bar + 27, 80:150] = 255
    return img


def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _rows(out) -> dict[str, dict]:
    return {r["id"]: r for r in io.read_manifest(Path(out) / "manifest.csv")}


def _meta(out) -> dict:
    return json.loads((Path(out) / "dataset.json").read_text())


# --------------------------------------------------------------------------- alignment


def test_a_threshold_mask_survives_crop_and_tiling_exactly(tmp_path):
    """The mask is a function of its image (threshold at 128): after the data-bar crop and
    overlapping tiles, every mask tile equals the threshold of its image tile, pixel for
    pixel, and the tiles cover the frame above the bar."""
    frames = {f"f{i}": _with_bar(i) for i in range(3)}
    for name, img in frames.items():
        _png(tmp_path / "img" / f"{name}.png", img)
        _png(tmp_path / "masks" / f"{name}_m.png", ((img > 128) * 255).astype(np.uint8))
    bar = detect_databar(frames["f0"])
    assert bar == 200 - 36  # the independent detector finds the bar the import must crop at
    out = import_labelled(tmp_path / "img", tmp_path / "masks", tmp_path / "ds", mask_pattern="{stem}_m",
                          tile=64, overlap=16, progress=False)
    ds = load_dataset(out)
    assert ds.labeled and len(ds) == 3 * 4 * 4  # rows 0,48,96,100 x cols 0,48,96,104 per frame (stride 48)
    covered = {g: np.zeros((bar, 168), bool) for g in frames}
    for i in ds.ids:
        img, m = io.to_uint8(ds.image(i)), ds.mask(i)
        assert m.shape == img.shape == (64, 64)
        np.testing.assert_array_equal(m, (img > 128).astype(np.uint8))  # 0/255 -> background/pattern
        p = ds.params(i)
        assert p["databar_row"] == bar and p["row"] + 64 <= bar
        src = frames[ds.row(i)["group"]]
        np.testing.assert_array_equal(img, src[p["row"]:p["row"] + 64, p["col"]:p["col"] + 64])
        covered[ds.row(i)["group"]][p["row"]:p["row"] + 64, p["col"]:p["col"] + 64] = True
        assert p["mask_source"] == str(tmp_path / "masks" / f"{ds.row(i)['group']}_m.png")
    assert all(c.all() for c in covered.values())  # every pixel above the bar, nothing of the bar
    assert [c["name"] for c in _meta(out)["classes"]] == ["background", "pattern"]


def test_resampled_masks_use_nearest_neighbour(tmp_path):
    """Upsampled 2x (1 nm -> 0.5 nm per pixel), a label map becomes each label repeated in a
    2x2 block (the closed form of nearest-neighbour upsampling): no blended label appears."""
    rng = np.random.default_rng(3)
    lab = rng.integers(0, 4, (40, 48)).astype(np.uint8)
    (tmp_path / "img").mkdir()
    (tmp_path / "masks").mkdir()
    tifffile.imwrite(tmp_path / "img" / "a.tif", _gray(3, (40, 48)))
    io.write_mask(tmp_path / "masks" / "a.png", lab)
    out = import_labelled(tmp_path / "img", tmp_path / "masks", tmp_path / "ds", tile=32, crop_databar="none",
                          native_pixel_nm=1.0, pixel_nm=0.5, progress=False)
    ds = load_dataset(out)
    want = np.kron(lab, np.ones((2, 2), np.uint8))  # 80 x 96
    assert len(ds) == 3 * 3
    for i in ds.ids:
        p = ds.params(i)
        assert p["resample_factor"] == 2.0 and ds.image(i).shape == (32, 32)
        np.testing.assert_array_equal(ds.mask(i), want[p["row"]:p["row"] + 32, p["col"]:p["col"] + 32])
    assert [c["id"] for c in _meta(out)["classes"]] == [0, 1, 2, 3]


# --------------------------------------------------------------------------- kinds of masks


def _one(tmp_path, mask_file_writer, **kw) -> np.ndarray:
    """Import one 30x40 frame with the mask written by `mask_file_writer(path)`; its label map."""
    _png(tmp_path / "img" / "x.png", _gray(1, (30, 40)))
    (tmp_path / "masks").mkdir(exist_ok=True)
    mask_file_writer(tmp_path / "masks")
    out = import_labelled(tmp_path / "img", tmp_path / "masks", tmp_path / "ds", crop_databar="none",
                          progress=False, **kw)
    ds = load_dataset(out)
    return ds.mask(ds.ids[0])


_LAB = np.zeros((30, 40), np.uint8)
_LAB[5:12, 3:30] = 1
_LAB[15:20, 8:14] = 2
_LAB[22:27, 30:36] = 3
_FG = (_LAB > 0).astype(np.uint8)


@pytest.mark.parametrize("kind, mask_class, want", [
    ("0/255", "pattern", _FG),
    ("0/255", "defect", _FG * 3),
    ("0/1", "hole", _FG * 2),
    ("bool", "defect", _FG * 3),
    ("gray ids", "defect", _LAB),  # canonical ids 0..3: kept as they are, never remapped
    ("palette", "pattern", _LAB),
    ("rgb", "defect", _LAB),  # red = defect, blue = hole, white = pattern
    ("rgb black/white", "defect", _FG * 3),  # binary in any mode: white is the mask class
])
def test_binary_gray_palette_and_rgb_masks(tmp_path, kind, mask_class, want):
    rgb = np.array([c.rgb for c in labels.CLASSES], np.uint8)

    def write(folder: Path) -> None:
        if kind == "0/255":
            _png(folder / "x.png", _FG * 255)
        elif kind == "0/1":
            _png(folder / "x.png", _FG)
        elif kind == "bool":
            Image.fromarray(_FG.astype(bool)).save(folder / "x.png")  # mode "1"
        elif kind == "gray ids":
            tifffile.imwrite(folder / "x.tif", _LAB)
        elif kind == "palette":
            io.write_mask(folder / "x.png", _LAB)
        elif kind == "rgb":
            _png(folder / "x.png", rgb[_LAB])
        else:
            _png(folder / "x.png", rgb[_FG])
    got = _one(tmp_path, write, mask_class=mask_class)
    np.testing.assert_array_equal(got, want)


def test_read_user_mask_maps_only_binary_masks(tmp_path):
    _png(tmp_path / "bin.png", _FG * 255)
    _png(tmp_path / "ids.png", _LAB)
    np.testing.assert_array_equal(read_user_mask(tmp_path / "bin.png", labels.DEFECT), _FG * 3)
    np.testing.assert_array_equal(read_user_mask(tmp_path / "bin.png"), _FG)
    np.testing.assert_array_equal(read_user_mask(tmp_path / "ids.png", labels.DEFECT), _LAB)  # ids kept
    assert check_pattern("{stem}_m") == "{stem}_m"
    for bad in ("{name}", "{stem}_{stem}", "m", "sub/{stem}", "{stem"):
        with pytest.raises(ValueError, match="--mask-pattern"):
            check_pattern(bad)
    with pytest.raises(ValueError, match="foreground class"):
        MaskFolder(".", ".", [], mask_class="background")
    with pytest.raises(KeyError, match="valid names"):
        MaskFolder(".", ".", [], mask_class="blob")


# --------------------------------------------------------------------------- refused masks


def test_refused_masks_fail_their_image_and_the_rest_go_on(tmp_path, capsys):
    for name in ("ok", "seven", "green", "lossy", "small"):
        _png(tmp_path / "img" / f"{name}.png", _gray(len(name), (40, 40)))
    fg = np.pad(_FG, ((0, 10), (0, 0)))  # 40 x 40
    _png(tmp_path / "masks" / "ok.png", fg * 255)
    bad = np.zeros((40, 40), np.uint8)
    bad[3:9, 4:8] = 7
    _png(tmp_path / "masks" / "seven.png", bad)
    green = np.zeros((40, 40, 3), np.uint8)
    green[10:20, 10:20] = (0, 200, 0)
    _png(tmp_path / "masks" / "green.png", green)
    Image.fromarray(fg * 255).save(tmp_path / "masks" / "lossy.jpg", quality=70)
    _png(tmp_path / "masks" / "small.png", np.zeros((20, 40), np.uint8))
    rc = main(["import-images", str(tmp_path / "img"), "--masks", str(tmp_path / "masks"), "--out",
               str(tmp_path / "ds"), "--crop-databar", "none", "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 1 and "1 ok, 4 failed" in printed
    rows = {Path(r["source"]).stem: r for r in _rows(tmp_path / "ds").values()}
    assert rows["ok"]["status"] == "ok" and rows["ok"]["mask_sha256"]
    reasons = {k: r["reason"] for k, r in rows.items() if k != "ok"}
    assert all(r["status"] == "error" for k, r in rows.items() if k != "ok")
    assert all("\n" not in r for r in reasons.values())
    assert str(tmp_path / "masks" / "seven.png") in reasons["seven"] and "unexpected values" in reasons["seven"]
    assert "value 7: 24 px in bbox (row0, col0, row1, col1) = (3, 4, 8, 7)" in reasons["seven"]  # count, where
    assert str(tmp_path / "masks" / "green.png") in reasons["green"] and "(0, 200, 0)" in reasons["green"]
    assert "lossy.jpg" in reasons["lossy"] and "save masks as PNG" in reasons["lossy"]
    assert "its mask is 40x20 px but the image is 40x40 px" in reasons["small"]
    ds = load_dataset(tmp_path / "ds")
    assert ds.ids == [rows["ok"]["id"]] and ds.mask(ds.ids[0]).sum() == fg.sum()


# --------------------------------------------------------------------------- missing, extra, no match


def test_missing_and_extra_masks_are_reported_by_name(tmp_path, capsys):
    for name in ("a", "b", "c"):
        _png(tmp_path / "img" / f"{name}.png", _gray(ord(name), (32, 32)))
    for name in ("a", "b", "zz"):
        _png(tmp_path / "masks" / f"{name}_m.png", np.zeros((32, 32), np.uint8))
    args = ["import-images", str(tmp_path / "img"), "--masks", str(tmp_path / "masks"), "--mask-pattern",
            "{stem}_m", "--crop-databar", "none", "--quiet"]
    rc = main(args + ["--out", str(tmp_path / "ds")])
    printed = capsys.readouterr().out
    assert rc == 1 and "2 ok, 1 failed" in printed
    assert "1 image(s) without a mask (recorded as failed): c.png" in printed
    assert "1 mask(s) in " in printed and "match no image (ignored): zz_m.png" in printed
    m = _meta(tmp_path / "ds")["masks"]
    assert m["missing"] == ["c.png"] and m["extra"] == ["zz_m.png"] and m["n_matched"] == 2
    reason = [r for r in _rows(tmp_path / "ds").values() if r["status"] == "error"][0]["reason"]
    assert reason == (f"{tmp_path / 'img' / 'c.png'}: no mask: looked for c_m.png (or .tif, .bmp ...) in "
                      f"{tmp_path / 'masks'}")
    # --missing-mask skip: left out (and named), the batch succeeds
    rc = main(args + ["--out", str(tmp_path / "ds2"), "--missing-mask", "skip"])
    printed = capsys.readouterr().out
    assert rc == 0 and "2 ok, 0 failed" in printed and "(left out): c.png" in printed
    assert {Path(r["source"]).name for r in _rows(tmp_path / "ds2").values()} == {"a.png", "b.png"}
    # the python API warns with the same lines
    with pytest.warns(io.SemlabWarning) as caught:
        import_labelled(tmp_path / "img", tmp_path / "masks", tmp_path / "ds3", mask_pattern="{stem}_m",
                        missing="skip", progress=False)
    said = [str(w.message) for w in caught]
    assert "1 image(s) without a mask (left out): c.png" in said
    assert any(m.endswith("match no image (ignored): zz_m.png") for m in said)


def test_a_mask_folder_matching_no_image_is_refused_before_anything_is_written(tmp_path, capsys):
    for name in ("a", "b"):
        _png(tmp_path / "img" / f"{name}.png", _gray(1, (32, 32)))
        _png(tmp_path / "masks" / f"{name}_mask.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(DatasetError) as e:
        import_labelled(tmp_path / "img", tmp_path / "masks", tmp_path / "ds", mask_pattern="{stem}_m")
    msg = str(e.value)
    assert "none of its 2 mask(s) matches an image" in msg and "a_mask.png" in msg and "a_m.png" in msg
    assert "nothing written" in msg and "\n" not in msg
    assert not (tmp_path / "ds").exists()
    rc = main(["import-images", str(tmp_path / "img"), "--masks", str(tmp_path / "masks"), "--out",
               str(tmp_path / "ds"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "none of its 2 mask(s) matches" in err and err.count("\n") == 1
    assert not (tmp_path / "ds").exists()
    # options that need --masks, and a missing mask folder
    assert main(["import-images", str(tmp_path / "img"), "--out", str(tmp_path / "ds"), "--mask-class", "defect"]) == 2
    assert "need --masks" in capsys.readouterr().err
    assert main(["import-images", str(tmp_path / "img"), "--out", str(tmp_path / "ds"), "--masks",
                 str(tmp_path / "nope")]) == 2
    assert "mask folder not found" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_masks_beside_their_images_and_in_subfolders(tmp_path):
    """Masks in the image folder (`x.png` beside `x_m.png`) are not imported as images; a
    mask folder mirroring the image subfolders matches by relative path."""
    for sub in ("lot1", "lot2"):
        _png(tmp_path / "mixed" / sub / "x.png", _gray(len(sub), (32, 32)))
        _png(tmp_path / "mixed" / sub / "x_m.png", np.full((32, 32), 255, np.uint8) if sub == "lot1"
             else np.zeros((32, 32), np.uint8))
    out = import_labelled(tmp_path / "mixed", tmp_path / "mixed", tmp_path / "ds", mask_pattern="{stem}_m",
                          crop_databar="none", progress=False)
    ds = load_dataset(out)
    got = {Path(ds.row(i)["source"]).parent.name: int(ds.mask(i).max()) for i in ds.ids}
    assert got == {"lot1": 1, "lot2": 0} and len(ds) == 2
    with pytest.raises(ValueError, match="its own mask"):
        import_labelled(tmp_path / "mixed", tmp_path / "mixed", tmp_path / "ds2", progress=False)


# --------------------------------------------------------------------------- splits, resume


def test_splits_keep_every_frames_tiles_together(tmp_path):
    names = [f"frame{i}" for i in range(6)]
    for i, name in enumerate(names):
        img = _gray(10 + i, (64, 96))
        _png(tmp_path / "img" / f"{name}.png", img)
        _png(tmp_path / "masks" / f"{name}.png", ((img > 128) * 255).astype(np.uint8))
    out = import_labelled(tmp_path / "img", tmp_path / "masks", tmp_path / "ds", tile=32, crop_databar="none",
                          progress=False)
    rows = list(_rows(out).values())
    assert len(rows) == 6 * 2 * 3
    split_of: dict[str, set] = {}
    for r in rows:
        split_of.setdefault(r["group"], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of.values())  # one split per frame
    want = samples.frame_split(names, seed=0)  # the small-set rule: every split holds a frame
    assert {g: s.pop() for g, s in split_of.items()} == want
    assert set(want.values()) == {"train", "val", "test"}


def test_resume_skips_done_and_another_mask_class_is_refused(tmp_path):
    for name in ("a", "b"):
        img = _gray(ord(name), (32, 64))
        _png(tmp_path / "img" / f"{name}.png", img)
        _png(tmp_path / "masks" / f"{name}.png", ((img > 128) * 255).astype(np.uint8))
    kw = dict(tile=32, crop_databar="none", mask_class="defect", progress=False)
    out = import_labelled(tmp_path / "img", tmp_path / "masks", tmp_path / "ds", **kw)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "masks").iterdir()}
    import_labelled(tmp_path / "img", tmp_path / "masks", tmp_path / "ds", **kw)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "masks").iterdir()} == before  # nothing redone
    assert [c["name"] for c in _meta(out)["classes"]] == ["background", "defect"]
    with pytest.raises(DatasetError, match="holds another dataset"):
        import_labelled(tmp_path / "img", tmp_path / "masks", tmp_path / "ds", **{**kw, "mask_class": "pattern"})
    with pytest.raises(DatasetError, match="holds another dataset"):  # nor mixed with an unlabeled import
        import_images(tmp_path / "img", tmp_path / "ds", tile=32, crop_databar="none", progress=False)
    assert len(load_dataset(out)) == 4
