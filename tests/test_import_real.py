"""Import of real SEM tools' files (issue 16 item 2): Hitachi, Zeiss and declared pixel
sizes, the 2% rule (count as one / refuse / resample), mixed 8- and 16-bit frames, and a
folder whose frames are all smaller than one tile."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from semlab import io, tiffmeta
from semlab.cli import main
from semlab.data import samples
from semlab.data.datasets import DatasetError, import_images, load_dataset


def _catalogue(name: str) -> dict:
    return json.loads((samples.path(name).parent / "samples.json").read_text())["sets"][name]


def _frame(seed: int, shape=(90, 120), dtype=np.uint8) -> np.ndarray:
    """Mid-gray noise (no pixel near black or white, so no data bar is found in it)."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    return (rng.uniform(0.2, 0.8, shape) * top).astype(dtype)


def _hitachi(path: Path, pixel_nm, img=None, *, encoding="utf-16-le") -> Path:
    text = f"SerialNumber=8200-0000-00\r\nDataNumber=x 0001\r\nPixelSize={pixel_nm}\r\nSignalName=SE\r\n"
    raw = text.encode(encoding)
    tifffile.imwrite(path, _frame(1) if img is None else img, extratags=[(40092, 1, len(raw), raw, True)])
    return path


def _zeiss(path: Path, pixel_pm: float, img=None) -> Path:
    cz = f"AP_IMAGE_PIXEL_SIZE\nImage Pixel Size = {pixel_pm} pm\nDP_DETECTOR_CHANNEL\nSignal A = InLens\n"
    tifffile.imwrite(path, _frame(2) if img is None else img, extratags=[(34118, 2, 0, cz, True)])
    return path


def _rows(out: Path) -> list[dict]:
    return io.read_manifest(Path(out) / "manifest.csv")


def _meta(out: Path) -> dict:
    return json.loads((Path(out) / "dataset.json").read_text())


# --------------------------------------------------------------------------- pixel size from the tags


def test_hitachi_pixel_size_of_every_packaged_line_frame():
    expected = _catalogue("cdsem-lines")["frame_pixel_nm"]
    frames = samples.frames("cdsem-lines")
    assert len(frames) == 3
    for f in frames:
        meta = io.read_image_meta(f)
        assert meta["pixel_size_nm"] == pytest.approx(expected[f.name], abs=1e-6), f.name
        assert meta["pixel_size_source"] == "hitachi XPComment"
        assert meta["bit_depth"] == 8


def test_zeiss_pixel_size_of_every_packaged_contact_frame():
    expected = _catalogue("cdsem-contacts")["frame_pixel_nm"]
    for f in samples.frames("cdsem-contacts"):
        meta = io.read_image_meta(f)
        assert meta["pixel_size_nm"] == pytest.approx(expected[f.name], abs=1e-6), f.name
        assert meta["pixel_size_source"] == "zeiss CZ_SEM"
        assert meta["bit_depth"] == 8


@pytest.mark.parametrize("text,expected", [
    ("A=1\r\nPixelSize=0.827009\r\nB=2".encode("utf-16-le"), 0.827009),  # the tool's own form
    (b"A=1\nPixelSize=0.5\n", 0.5),  # written as plain ASCII
    (tuple(b"PixelSize = 2.5e-1\n"), 0.25),  # a BYTE tuple, spaces, exponent
    ("PixelSize=1.2 um\n".encode("utf-16-le"), 1200.0),  # a unit after the number
    ("\ufeffpixelsize=3\r\n".encode("utf-16-le"), 3.0),  # BOM, lower case
    (b"A=1\nPixelSize=abc\n", None),
    (b"PixelSize=0\n", None),
    (b"PixelSize=-1\n", None),
    (b"PixelSize=1 furlong\n", None),
    (b"MaxPixelSize=3\n", None),
    (b"", None),
])
def test_hitachi_comment_text_is_parsed_robustly(text, expected):
    got = tiffmeta.hitachi_pixel_size_nm(text)
    assert got == (None if expected is None else pytest.approx(expected, rel=1e-12))


def test_synthetic_hitachi_and_zeiss_tiffs(tmp_path):
    h = io.read_image_meta(_hitachi(tmp_path / "h.tif", 1.25))
    z = io.read_image_meta(_zeiss(tmp_path / "z.tif", 1015))
    tifffile.imwrite(tmp_path / "plain.tif", _frame(3))
    p = io.read_image_meta(tmp_path / "plain.tif")
    assert (h["pixel_size_nm"], h["pixel_size_source"]) == (1.25, "hitachi XPComment")
    assert (z["pixel_size_source"], z["pixel_size_nm"]) == ("zeiss CZ_SEM", pytest.approx(1.015))
    assert (p["pixel_size_nm"], p["pixel_size_source"]) == (None, None)


def test_the_2pc_rule():
    assert tiffmeta.same_pixel_size(1.0, 1.02) and tiffmeta.same_pixel_size(1.02, 1.0)
    assert not tiffmeta.same_pixel_size(1.0, 1.0201)
    assert tiffmeta.spread([1.0, 1.1, 1.05]) == pytest.approx(0.1)


# --------------------------------------------------------------------------- declared pixel size


def test_declared_pixel_size_of_a_litho_jpeg_through_the_cli(tmp_path, capsys):
    jpg = next(f for f in samples.frames("litho-lines") if f.name == "test_analysis_lines.jpg")
    declared = _catalogue("litho-lines")["frame_pixel_nm"][jpg.name]  # 71.777 nm, from the printed field of view
    assert io.read_image_meta(jpg)["pixel_size_nm"] is None  # a JPEG states none
    meta = io.read_image_meta(jpg, native_pixel_nm=declared)
    assert (meta["pixel_size_nm"], meta["pixel_size_source"]) == (declared, "declared")
    out = tmp_path / "litho"
    rc = main(["import-images", str(jpg), "--out", str(out), "--tile", "256", "--native-pixel-nm", str(declared),
               "--quiet"])
    assert rc == 0
    assert f"pixel size: {declared:.6g} nm" in capsys.readouterr().out
    assert _meta(out)["pixel_size_nm"] == pytest.approx(declared)
    rows = _rows(out)
    assert len(rows) == 5 * 4  # 1036x956 px in 256-px tiles (the last row and column aligned to the edge)
    for r in rows:
        p = json.loads(r["params"])
        assert (p["pixel_size_nm"], p["pixel_size_source"], r["bit_depth"]) == (declared, "declared", "8")


def test_declared_value_wins_over_a_tag_and_says_so(tmp_path):
    hit = samples.frames("cdsem-lines")[0]
    with pytest.warns(io.SemlabWarning, match=r"hitachi XPComment tag says 0\.827009 nm.*declared.*1 nm.*using the declared"):
        meta = io.read_image_meta(hit, native_pixel_nm=1.0)
    assert (meta["pixel_size_nm"], meta["pixel_size_source"]) == (1.0, "declared")
    assert (meta["tag_pixel_size_nm"], meta["tag_pixel_size_source"]) == (0.827009, "hitachi XPComment")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within 2% of the tag: no warning
        assert io.read_image_meta(hit, native_pixel_nm=0.83)["pixel_size_nm"] == 0.83
    src = tmp_path / "src"
    src.mkdir()
    _hitachi(src / "a.tif", 0.8)
    with pytest.warns(io.SemlabWarning, match="a.tif: its hitachi XPComment tag says 0.8 nm"):
        out = import_images(src, tmp_path / "ds", crop_databar="none", native_pixel_nm=1.0, progress=False)
    p = json.loads(_rows(out)[0]["params"])
    assert (p["pixel_size_nm"], p["native_pixel_size_nm"], p["pixel_size_source"]) == (1.0, 1.0, "declared")
    with pytest.raises(ValueError, match="positive"):
        io.read_image_meta(hit, native_pixel_nm=-1)


# --------------------------------------------------------------------------- mixed pixel sizes


def test_the_packaged_line_frames_count_as_one_size(tmp_path):
    cat = _catalogue("cdsem-lines")
    out = import_images(samples.path("cdsem-lines"), tmp_path / "ds", tile=256, progress=False)
    meta = _meta(out)
    assert meta["pixel_size_nm"] == pytest.approx(float(np.median(list(cat["frame_pixel_nm"].values()))), abs=1e-9)
    assert meta["pixel_size_nm"] == pytest.approx(cat["pixel_nm"], abs=1e-6)
    assert "within 2%" in meta["pixel_size_note"] and "median" in meta["pixel_size_note"]
    for r in _rows(out):
        p = json.loads(r["params"])
        frame = Path(r["source"]).name
        assert p["native_pixel_size_nm"] == pytest.approx(cat["frame_pixel_nm"][frame], abs=1e-6)
        assert p["pixel_size_nm"] == meta["pixel_size_nm"]


def test_sizes_2pc_apart_are_accepted_with_a_note(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    _hitachi(src / "a.tif", 1.0)
    _zeiss(src / "b.tif", 1019)  # 1.9% larger
    rc = main(["import-images", str(src), "--out", str(tmp_path / "ds"), "--tile", "32", "--crop-databar", "none",
               "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    meta = _meta(tmp_path / "ds")
    assert meta["pixel_size_nm"] == pytest.approx((1.0 + 1.019) / 2)
    assert "1.90% apart, within 2%" in meta["pixel_size_note"] and "median 1.0095 nm" in meta["pixel_size_note"]
    assert "pixel size: 1.0095 nm" in printed and "within 2%" in printed
    sources = {Path(r["source"]).name: json.loads(r["params"]) for r in _rows(tmp_path / "ds")}
    assert sources["a.tif"]["native_pixel_size_nm"] == 1.0 and sources["b.tif"]["native_pixel_size_nm"] == pytest.approx(1.019)
    assert {p["pixel_size_source"] for p in sources.values()} == {"hitachi XPComment", "zeiss CZ_SEM"}


def test_sizes_10pc_apart_are_refused_listing_both_files(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    _hitachi(src / "a.tif", 1.0)
    _zeiss(src / "b.tif", 1100)
    with pytest.raises(DatasetError) as e:
        import_images(src, tmp_path / "ds", tile=32, progress=False)
    msg = str(e.value)
    assert "a.tif 1 nm (hitachi XPComment)" in msg and "b.tif 1.1 nm (zeiss CZ_SEM)" in msg
    assert "10.0% apart" in msg and "--pixel-nm" in msg and "\n" not in msg
    assert not (tmp_path / "ds").exists()  # refused before anything was written
    rc = main(["import-images", str(src), "--out", str(tmp_path / "ds2"), "--tile", "32", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "a.tif" in err and "b.tif" in err
    assert not (tmp_path / "ds2").exists()


def test_sizes_10pc_apart_are_resampled_to_pixel_nm(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _hitachi(src / "a.tif", 1.0, _frame(4, (90, 120)))
    _zeiss(src / "b.tif", 1100, _frame(5, (70, 130)))
    target = 1.05
    out = import_images(src, tmp_path / "ds", crop_databar="none", pixel_nm=target, progress=False)
    ds = load_dataset(out)
    assert _meta(out)["pixel_size_nm"] == target
    native = {"a.tif": (1.0, (90, 120)), "b.tif": (1.1, (70, 130))}
    for r in _rows(out):
        nm, (h, w) = native[Path(r["source"]).name]
        assert ds.image(r["id"]).shape == (round(h * nm / target), round(w * nm / target))
        p = json.loads(r["params"])
        assert p["pixel_size_nm"] == target and p["resample_factor"] == pytest.approx(nm / target)


def test_resampling_is_anti_aliased(tmp_path):
    """1-px stripes shrunk 3x: anti-aliased they blur to mid-gray; point sampling would
    keep full-contrast stripes (every output pixel lands on one input column)."""
    img = np.tile(np.array([0, 255], np.uint8), (96, 48))  # 96 x 96, alternating columns
    src = tmp_path / "src"
    src.mkdir()
    _hitachi(src / "s.tif", 1.0, img)
    out = import_images(src, tmp_path / "ds", crop_databar="none", pixel_nm=3.0, progress=False)
    got = load_dataset(out).image(_rows(out)[0]["id"])
    assert got.shape == (32, 32)
    assert abs(float(got.mean()) - 0.5) < 0.03 and float(got[4:-4, 4:-4].std()) < 0.1


def test_sets_of_different_sizes_keep_their_own_size(tmp_path):
    """The 2% rule holds within a set (folder): sets of different tools import together,
    each at its own size (the packaged samples: Hitachi lines, Zeiss contacts, litho)."""
    src = tmp_path / "src"
    (src / "lines").mkdir(parents=True)
    (src / "contacts").mkdir()
    _hitachi(src / "lines" / "a.tif", 0.82)
    _hitachi(src / "lines" / "b.tif", 0.83)
    _zeiss(src / "contacts" / "c.tif", 900)
    out = import_images(src, tmp_path / "ds", crop_databar="none", progress=False)
    meta = _meta(out)
    assert meta["pixel_size_nm"] is None and "different pixel sizes" in meta["pixel_size_note"]
    assert meta["pixel_sizes"]["lines"]["pixel_size_nm"] == pytest.approx(0.825)
    assert meta["pixel_sizes"]["contacts"]["pixel_size_nm"] == pytest.approx(0.9)
    got = {Path(r["source"]).name: json.loads(r["params"])["pixel_size_nm"] for r in _rows(out)}
    assert got == {"a.tif": pytest.approx(0.825), "b.tif": pytest.approx(0.825), "c.tif": pytest.approx(0.9)}


def test_a_long_refusal_lists_the_extremes():
    frames = [(f"f{i:02d}.tif", 1.0 + 0.01 * i, "fei") for i in range(30)]
    with pytest.raises(tiffmeta.PixelSizeError) as e:
        tiffmeta.plan_pixel_sizes({"s": frames}, [], where="folder")
    msg = str(e.value)
    assert msg.startswith("folder: ") and "f00.tif 1 nm (fei)" in msg and "f29.tif 1.29 nm (fei)" in msg
    assert "... (20 more)" in msg and "f15.tif" not in msg and "29.0% apart" in msg
    used, info = tiffmeta.plan_pixel_sizes({"s": frames}, [], target=1.1)
    assert set(used.values()) == {1.1} and info["pixel_size_nm"] == 1.1


def test_resampling_needs_every_frames_native_size(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _hitachi(src / "a.tif", 1.0)
    io.write_image(src / "b.png", _frame(6) / 255.0)
    with pytest.raises(DatasetError, match=r"1 of 2 frames have no pixel size.*b\.png.*--native-pixel-nm"):
        import_images(src, tmp_path / "ds", pixel_nm=2.0, progress=False)
    assert not (tmp_path / "ds").exists()


# --------------------------------------------------------------------------- bit depth


def test_8_and_16_bit_frames_mix_and_the_manifest_records_the_depth(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    v16 = np.linspace(10000, 60000, 64 * 80).reshape(64, 80).astype(np.uint16)  # above 255: scaled, not clipped
    v8 = _frame(7, (64, 80))
    tifffile.imwrite(src / "deep.tif", v16)
    tifffile.imwrite(src / "flat.tif", v8)
    out = import_images(src, tmp_path / "ds", crop_databar="none", progress=False)
    ds = load_dataset(out)
    rows = {Path(r["source"]).name: r for r in _rows(out)}
    assert rows["deep.tif"]["bit_depth"] == "16" and rows["flat.tif"]["bit_depth"] == "8"
    stored16 = io.to_uint8(ds.image(rows["deep.tif"]["id"]))
    np.testing.assert_array_less(np.abs(stored16.astype(int) - np.round(v16 / 65535.0 * 255.0)), 1.01)
    np.testing.assert_array_equal(io.to_uint8(ds.image(rows["flat.tif"]["id"])), v8)


# --------------------------------------------------------------------------- frames smaller than one tile


def test_a_folder_of_frames_all_smaller_than_one_tile(tmp_path, capsys):
    src = tmp_path / "small"
    src.mkdir()
    io.write_image(src / "a.png", _frame(8, (20, 30)) / 255.0)
    tifffile.imwrite(src / "b.tif", _frame(9, (40, 50)))
    from PIL import Image

    Image.fromarray(_frame(10, (30, 70))).save(src / "c.jpg")
    rc = main(["import-images", str(src), "--out", str(tmp_path / "ds"), "--tile", "64", "--quiet"])
    err = capsys.readouterr().err
    # nothing importable: one clear error naming every file and its size, nothing written
    assert rc == 2 and err.count("\n") == 1 and "every image is smaller than one 64x64 tile" in err
    assert "a.png 20x30 px" in err and "b.tif 40x50 px" in err and "c.jpg 30x70 px" in err
    assert "nothing written" in err and not (tmp_path / "ds").exists()


def test_a_frame_too_small_after_resampling_fails_alone(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    _hitachi(src / "big.tif", 1.0, _frame(11, (96, 96)))
    _hitachi(src / "shrinks.tif", 0.5, _frame(12, (96, 96)))  # 48 x 48 px at 1 nm per pixel
    rc = main(["import-images", str(src), "--out", str(tmp_path / "ds"), "--tile", "64", "--pixel-nm", "1",
               "--crop-databar", "none", "--quiet"])
    assert rc == 1 and "4 ok, 1 failed" in capsys.readouterr().out
    rows = {Path(r["source"]).name: r for r in _rows(tmp_path / "ds")}
    assert rows["big.tif"]["status"] == "ok"
    reason = rows["shrinks.tif"]["reason"]
    assert "shrinks.tif: 48x48 px (frame 96x96 px, resampled from 0.5 to 1 nm per pixel)" in reason
