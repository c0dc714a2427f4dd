"""Dataset folders: contract, resumability, refusals, imports, CLI."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from semlab import io
from semlab.cli import main
from semlab.data import datasets as D
from semlab.data.simulate import simulate


def test_simulated_dataset_contract(tmp_path):
    out = D.simulate_dataset(tmp_path / "ds", preset="contacts", n=8, size=48, seed=3, progress=False)
    ds = D.load_dataset(out)
    assert ds.info["complete"] and ds.info["kind"] == "simulated"
    assert {c["name"] for c in ds.info["classes"]} == {"background", "pattern", "hole", "defect"}
    assert len(ds) == 8 and sorted(ds.ids) == ds.ids
    assert set(r["split"] for r in ds.rows) <= {"train", "val", "test"}
    i = ds.ids[2]
    ref = simulate("contacts", 48, (3, 2), pixel_nm=ds.info["pixel_size_nm"])
    assert np.array_equal(io.to_uint8(ds.image(i)), io.to_uint8(ref.image))
    assert np.array_equal(ds.mask(i), ref.mask)
    assert len(ds.contours(i)) == len(ref.contours)
    assert ds.row(i)["sha256"] == io.sha256_file(out / "images" / f"{i}.png")
    imgs, masks = ds.arrays("train")
    assert imgs.dtype == np.uint8 and imgs.shape[1:] == (48, 48) and masks.shape == imgs.shape


def test_same_seed_same_files(tmp_path):
    a = D.simulate_dataset(tmp_path / "a", n=4, size=32, seed=1, progress=False)
    b = D.simulate_dataset(tmp_path / "b", n=4, size=32, seed=1, progress=False)
    ra, rb = io.read_csv(a / "manifest.csv"), io.read_csv(b / "manifest.csv")
    assert [(r["sha256"], r["mask_sha256"], r["split"]) for r in ra] == [(r["sha256"], r["mask_sha256"], r["split"]) for r in rb]


def test_resume_skips_done_and_repairs_damaged(tmp_path):
    out = D.simulate_dataset(tmp_path / "ds", n=6, size=32, seed=0, progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    good_hash = io.read_csv(out / "manifest.csv")[1]["sha256"]
    (out / "images" / "000000.png").unlink()
    (out / "images" / "000001.png").write_bytes(b"damaged")
    D.simulate_dataset(out, n=8, size=32, seed=0, progress=False)  # resume and grow
    rows = {r["id"]: r for r in io.read_csv(out / "manifest.csv")}
    assert len(rows) == 8 and rows["000001"]["sha256"] == good_hash
    assert io.sha256_file(out / "images" / "000001.png") == good_hash
    after = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    assert all(after[k] == before[k] for k in ("000002.png", "000003.png", "000004.png", "000005.png"))


def test_growing_keeps_splits(tmp_path):
    a = D.simulate_dataset(tmp_path / "a", n=10, size=32, progress=False)
    s1 = {r["id"]: r["split"] for r in io.read_csv(a / "manifest.csv")}
    D.simulate_dataset(a, n=30, size=32, progress=False)
    s2 = {r["id"]: r["split"] for r in io.read_csv(a / "manifest.csv")}
    assert all(s2[k] == v for k, v in s1.items())
    assert 0.5 < list(s2.values()).count("train") / 30 < 0.98


def test_refuses_foreign_and_other_datasets(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(D.DatasetError, match="not a semlab dataset"):
        D.simulate_dataset(user, n=2, size=32, progress=False)
    assert [p.name for p in user.iterdir()] == ["notes.txt"]
    out = D.simulate_dataset(tmp_path / "ds", n=2, size=32, seed=0, progress=False)
    before = (out / "manifest.csv").read_bytes()
    with pytest.raises(D.DatasetError, match="another dataset"):
        D.simulate_dataset(out, n=2, size=32, seed=1, progress=False)
    assert (out / "manifest.csv").read_bytes() == before


def test_failure_on_fresh_folder_leaves_nothing(tmp_path, monkeypatch):
    import semlab.data.simulate as S
    real = S.simulate
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real(*a, **k)

    monkeypatch.setattr(S, "simulate", flaky)
    with pytest.raises(RuntimeError):
        D.simulate_dataset(tmp_path / "ds", n=5, size=32, progress=False)
    assert not (tmp_path / "ds").exists()


def _frames(folder, n=2, size=(70, 90)):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(folder / f"f{i}.png")


def test_import_tiles_and_groups(tmp_path):
    src = tmp_path / "src" / "Anomaly_train"
    _frames(src, n=3)
    out = D.import_images(tmp_path / "src", tmp_path / "ds", tile=32, overlap=8, progress=False)
    ds = D.load_dataset(out)
    assert not ds.labeled and ds.info["kind"] == "imported"
    # 70x90 with tile 32 and stride 24: rows 0,24,38 and cols 0,24,48,58 -> 12 tiles a frame
    assert len(ds) == 36
    for g in {r["group"] for r in ds.rows}:
        assert len({r["split"] for r in ds.rows if r["group"] == g}) == 1
    r0 = ds.rows[0]
    p = json.loads(r0["params"])
    frame = io.read_image(r0["source"])
    assert np.array_equal(io.to_uint8(ds.image(r0["id"])), io.to_uint8(frame[p["row"]:p["row"] + 32, p["col"]:p["col"] + 32]))


def test_import_bad_inputs_leave_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        D.import_images(empty, tmp_path / "o1", progress=False)
    assert not (tmp_path / "o1").exists()
    src = tmp_path / "src"
    _frames(src)
    (src / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    # one corrupt file is a failed item, not the end of the batch (issue 15 item 10)
    ds = D.load_dataset(D.import_images(src, tmp_path / "o2", progress=False))
    assert len(ds) == len(list(src.glob("f*.png"))) and [r["id"] for r in ds.excluded] == ["zz_broken"]
    assert "zz_broken.png" in ds.excluded[0]["reason"]


def test_import_real_frames_crops_databar(tmp_path):
    from semlab.paths import shared_real_dir

    real = shared_real_dir()
    if real is None:
        pytest.skip("../shared/data/real_sem not present")
    src = tmp_path / "litho"
    src.mkdir()
    os.symlink(real / "litho_lines" / "test1.jpg", src / "test1.jpg")
    out = D.import_images(src, tmp_path / "ds", tile=512, progress=False)
    ds = D.load_dataset(out)
    p = json.loads(ds.rows[0]["params"])
    assert p["databar_row"] == 2048
    assert max(json.loads(r["params"])["row"] for r in ds.rows) + 512 <= 2048


def test_cli_simulate_and_bench(tmp_path, capsys):
    assert main(["simulate", "--preset", "line-space", "--n", "3", "--size", "32", "--out",
                 str(tmp_path / "ds"), "--quiet", "--set", "ler_sigma_nm=0"]) == 0
    ds = D.load_dataset(tmp_path / "ds")
    assert ds.params(ds.ids[0])["ler_sigma_nm"] == 0
    assert main(["simulate", "--preset", "nope", "--n", "1", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "valid: ic-metal" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["bench", "simulate", "--size", "32", "--n", "5", "--json"]) == 0
    recs = [json.loads(l) for l in capsys.readouterr().out.strip().splitlines()]
    assert recs[0]["name"] == "simulate" and recs[0]["images_per_s"] > 0


def test_make_default_dataset_moves_a_stale_folder_aside(tmp_path, monkeypatch):
    import json as _json

    from semlab.data.datasets import default_sim_dir, load_dataset, make_default_dataset

    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path))
    out = make_default_dataset("line-space", "smoke", progress=False)
    assert out == default_sim_dir("line-space", "smoke") and len(load_dataset(out).ids) == 24
    # re-running is a no-op that keeps the same files
    before = (out / "manifest.csv").read_bytes()
    assert make_default_dataset("line-space", "smoke", progress=False) == out
    assert (out / "manifest.csv").read_bytes() == before
    # a folder from an older simulator version is kept, renamed, and rebuilt
    meta = _json.loads((out / "dataset.json").read_text())
    meta["identity"]["simulator_version"] = 1
    (out / "dataset.json").write_text(_json.dumps(meta))
    make_default_dataset("line-space", "smoke", progress=False)
    aside = tmp_path / "sim-line-space-smoke.old-1"
    assert aside.is_dir() and _json.loads((aside / "dataset.json").read_text())["identity"]["simulator_version"] == 1
    assert len(load_dataset(out).ids) == 24


def test_import_images_takes_a_single_file_as_its_source(tmp_path):
    """Issue 15 item 11: `semlab import-images one.png` used to fail with
    "PosixPath('.') has an empty name"."""
    from PIL import Image

    from semlab import cli
    from semlab.data.datasets import load_dataset

    frame = (np.random.default_rng(1).random((64, 64)) * 255).astype(np.uint8)
    Image.fromarray(frame).save(tmp_path / "one frame.png")
    assert cli.main(["import-images", str(tmp_path / "one frame.png"), "--out", str(tmp_path / "ds"), "--quiet"]) == 0
    ds = load_dataset(tmp_path / "ds")
    assert ds.ids == ["one_frame"]
    np.testing.assert_allclose(ds.image("one_frame"), frame / 255.0, atol=1e-6)
