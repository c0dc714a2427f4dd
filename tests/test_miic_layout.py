"""A MIIC-shaped user folder works as is (issue 16 item 7): a small stand-in in the MIIC
layout (`Anomaly_train/*.jpg`, 512x512 gray JPEGs, no pixel size) runs the real-domain
chain of `semlab run --profile smoke --domain real --real DIR`; its anomaly masks import
as a labelled test set with `--mask-class defect` (issue 21 item 6); and the bad input of
issue 16: a folder whose images are all smaller than one tile, and frames whose pixel
sizes differ by more than 2%."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from semlab import io, labels
from semlab.cli import main
from semlab.data.datasets import DatasetError, import_images, load_dataset

MIIC_SIZE = 512


def _miic_standin(root: Path, n: int = 6) -> tuple[Path, dict[str, np.ndarray]]:
    """`root/Anomaly_train/NNNN.jpg`: `n` simulated ic-metal frames (512x512, 8-bit gray
    JPEG, no pixel size), and their binary anomaly masks (0/255): the simulator's own
    defects where it drew some, else a bright particle painted into the frame."""
    from semlab.data.simulate import simulate

    folder = root / "Anomaly_train"
    folder.mkdir(parents=True)
    masks = {}
    for i in range(n):
        r = simulate("ic-metal", MIIC_SIZE, seed=i)
        img = np.round(np.clip(r.image, 0, 1) * 255).astype(np.uint8)
        anomaly = r.mask == labels.DEFECT
        if not anomaly.any():
            yy, xx = np.mgrid[:MIIC_SIZE, :MIIC_SIZE]
            cy, cx = 60 + 70 * i, 400 - 50 * i
            anomaly = (yy - cy) ** 2 + (xx - cx) ** 2 <= (6 + i) ** 2
            img[anomaly] = 235
        Image.fromarray(img).save(folder / f"{i:04d}.jpg", quality=90)
        masks[f"{i:04d}"] = (anomaly * 255).astype(np.uint8)
    return folder, masks


# --------------------------------------------------------------------------- the chain, end to end


@pytest.mark.slow
def test_a_miic_folder_runs_the_real_domain_chain_in_the_smoke_profile(tmp_path, monkeypatch, capsys):
    """`semlab run --profile smoke --domain real --real <stand-in>`: every real-domain
    notebook runs (import, segment, Pix2Pix, CycleGAN, metric tables, detector) on a
    folder of JPEGs with no pixel size, names its set, n tiles and n frames, and never
    scores on a frame it trained on."""
    for var, sub in (("SEMLAB_DATA", "data"), ("SEMLAB_WEIGHTS", "no-weights"), ("TORCH_HOME", "torch")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    _miic_standin(tmp_path / "miic")
    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    t0 = time.perf_counter()
    rc = main(["run", "--profile", "smoke", "--domain", "real", "--real", str(tmp_path / "miic"),
               "--only", "10,20,21,30,40", "--notebooks", str(notebooks), "--out", str(tmp_path / "reports")])
    seconds = time.perf_counter() - t0
    printed = capsys.readouterr().out
    run_dir = next(p for p in (tmp_path / "reports").iterdir() if p.is_dir() and (p / "run.json").is_file())
    failed = [f"{s['name']}: {s['error']['ename']}: {s['error']['evalue']}"
              for s in json.loads((run_dir / "run.json").read_text())["steps"] if s["status"] != "ok"]
    assert rc == 0 and not failed, printed + "\n".join(failed)
    steps = ["10_make_dataset[real]", "20_train_pix2pix[real]", "21_train_cyclegan[real]",
             "30_metric_tables[real]", "40_real_vs_fake[real]"]
    for step in steps:
        assert any(line.startswith(step) and " ok " in line for line in printed.splitlines()), (step, printed)
    docs = {s: json.loads((run_dir / s / "metrics.json").read_text()) for s in steps}
    ds_doc = docs["10_make_dataset[real]"]
    assert ds_doc["domain"] == "real" and ds_doc["n"] == 6 * 16  # 512 px frames, 128-px tiles, no data bar
    for step in steps[1:]:
        doc = docs[step]
        assert doc["domain"] == "real" and doc["set"].startswith("Anomaly_train (real)"), (step, doc["set"])
        assert doc["extra"]["real_set"] == "Anomaly_train" and doc["extra"]["n_tiles"] == doc["n"] > 0
        assert not set(doc["extra"]["frames"]) & set(doc["extra"]["train_frames"])  # no test frame trained on
    assert docs["30_metric_tables[real]"]["extra"]["physics_pixel_nm"] is None  # JPEGs state no pixel size
    print(f"MIIC-layout smoke run: {seconds:.0f} s")


# --------------------------------------------------------------------------- anomaly masks as a test set


def test_miic_anomaly_masks_become_a_defect_test_set(tmp_path, capsys):
    """Binary anomaly masks (0/255) beside a MIIC-layout folder, imported with
    `--mask-class defect --splits 0,0,1`: every tile is in the test split, its mask is
    defect exactly where the anomaly mask is white, background elsewhere; the dataset
    declares background and defect only."""
    folder, masks = _miic_standin(tmp_path / "miic", n=3)
    (tmp_path / "miic" / "Anomaly_mask").mkdir()
    for stem, m in masks.items():
        Image.fromarray(m).save(tmp_path / "miic" / "Anomaly_mask" / f"{stem}_mask.png")
    rc = main(["import-images", str(folder), "--masks", str(tmp_path / "miic" / "Anomaly_mask"), "--mask-pattern",
               "{stem}_mask", "--mask-class", "defect", "--tile", "128", "--splits", "0,0,1",
               "--out", str(tmp_path / "ds"), "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 0 and "48 ok, 0 failed" in printed, printed
    ds = load_dataset(tmp_path / "ds")
    assert ds.split("test") == ds.ids and len(ds) == 3 * 16
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert [c["name"] for c in meta["classes"]] == ["background", "defect"]
    n_defect = 0
    for i in ds.ids:
        p, m = ds.params(i), ds.mask(i)
        want = masks[ds.row(i)["group"].split("__")[-1]][p["row"]:p["row"] + 128, p["col"]:p["col"] + 128]
        np.testing.assert_array_equal(m, np.where(want == 255, labels.DEFECT, labels.BACKGROUND))
        n_defect += int((m == labels.DEFECT).sum())
    assert n_defect == sum(int((m == 255).sum()) for m in masks.values()) > 0
    _, test_masks = ds.arrays("test")
    assert test_masks.shape == (48, 128, 128) and set(np.unique(test_masks)) == {0, 3}


# --------------------------------------------------------------------------- bad input (issue 16)


def test_a_folder_of_images_all_smaller_than_one_tile_is_refused_naming_them(tmp_path):
    folder = tmp_path / "small" / "Anomaly_train"
    folder.mkdir(parents=True)
    sizes = {"a.jpg": (100, 120), "b.jpg": (64, 300), "c.png": (127, 127)}
    for name, shape in sizes.items():
        Image.fromarray(np.full(shape, 128, np.uint8)).save(folder / name)
    with pytest.raises(DatasetError) as e:
        import_images(tmp_path / "small", tmp_path / "ds", tile=128, progress=False)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'small'}: every image is smaller than one 128x128 tile")
    for name, (h, w) in sizes.items():
        assert f"{name} {h}x{w} px" in msg
    assert "nothing written" in msg and "\n" not in msg and not (tmp_path / "ds").exists()


def test_only_the_images_smaller_than_one_tile_fail_the_rest_are_imported(tmp_path, capsys):
    folder = tmp_path / "mixed" / "Anomaly_train"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.uniform(0.2, 0.8, (256, 256)) * 255).astype(np.uint8)).save(folder / "big.jpg")
    Image.fromarray(np.full((100, 90), 128, np.uint8)).save(folder / "tiny.jpg")
    rc = main(["import-images", str(tmp_path / "mixed"), "--out", str(tmp_path / "ds"), "--tile", "128", "--quiet"])
    assert rc == 1 and "4 ok, 1 failed" in capsys.readouterr().out
    rows = io.read_manifest(tmp_path / "ds" / "manifest.csv")
    bad = [r for r in rows if r["status"] == "error"]
    assert len(bad) == 1 and str(folder / "tiny.jpg") in bad[0]["reason"]
    assert "100x90 px (frame 100x90 px) is smaller than one 128x128 tile" in bad[0]["reason"]
    assert {Path(r["source"]).name for r in rows if r["status"] == "ok"} == {"big.jpg"}


def _hitachi(path: Path, pixel_nm: float, img: np.ndarray) -> None:
    raw = f"PixelSize={pixel_nm}\r\n".encode("utf-16-le")
    tifffile.imwrite(path, img, extratags=[(40092, 1, len(raw), raw, True)])


def test_frames_more_than_2pc_apart_are_refused_with_the_sizes_unless_resampled(tmp_path, capsys):
    folder = tmp_path / "tool" / "Anomaly_train"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, nm in (("a.tif", 1.0), ("b.tif", 1.01), ("c.tif", 1.2)):  # a, b within 2%; c 20% apart
        _hitachi(folder / name, nm, (rng.uniform(0.2, 0.8, (96, 96)) * 255).astype(np.uint8))
    args = ["import-images", str(tmp_path / "tool"), "--tile", "32", "--crop-databar", "none", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert "differ in pixel size by more than 2%" in err and "nothing written" in err and err.count("\n") == 1
    for listed in ("a.tif 1 nm", "b.tif 1.01 nm", "c.tif 1.2 nm", "--pixel-nm"):
        assert listed in err, (listed, err)
    assert not (tmp_path / "ds").exists()
    assert main(args + ["--out", str(tmp_path / "ds"), "--pixel-nm", "1.0"]) == 0
    ds = load_dataset(tmp_path / "ds")
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["pixel_size_nm"] == 1.0
    tiles = {}
    for i in ds.ids:
        tiles.setdefault(Path(ds.row(i)["source"]).name, []).append(ds.params(i))
    # 96 px at 1.2 nm -> 115 px at 1 nm: 4 x 4 tiles of 32 px; 96 px at 1.01 nm -> 97 px: 4 x 4; a: 3 x 3
    assert {k: len(v) for k, v in tiles.items()} == {"a.tif": 9, "b.tif": 16, "c.tif": 16}
    assert tiles["c.tif"][0]["resample_factor"] == pytest.approx(1.2)


def test_a_declared_pixel_size_reaches_the_physics_baseline(tmp_path):
    """JPEGs state no pixel size: `semlab run --real` then renders the physics baseline at
    its preset's own size; imported with `--native-pixel-nm` (and given to notebook 10 as
    SOURCE), the declared size is the real set's size."""
    from semlab.train import realsets

    folder, _ = _miic_standin(tmp_path / "miic", n=3)
    plain = load_dataset(import_images(tmp_path / "miic", tmp_path / "plain", tile=128, progress=False))
    assert realsets.set_pixel_nm(plain, "Anomaly_train") is None
    assert "declare it with --native-pixel-nm" in plain.info["pixel_size_note"]
    declared = load_dataset(import_images(tmp_path / "miic", tmp_path / "declared", tile=128, native_pixel_nm=2.5,
                                          progress=False))
    assert realsets.set_pixel_nm(declared, "Anomaly_train") == 2.5 and declared.info["pixel_size_nm"] == 2.5
    assert {declared.params(i)["pixel_size_source"] for i in declared.ids} == {"declared"}
