"""No silent data loss (issue 15 items 6a, 6c, 7, 8): train and evaluate refuse to
overwrite, writers lock their output and an interrupted one removes only its own files,
killed writers leave no orphans after a resume, every file's hash is checked on resume and
on read, and `semlab verify` reports (or accepts) damage."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semlab import cli, integrity, io
from semlab.data import datasets as D
from semlab.locks import LockedError

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def _run(capsys, argv):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return D.simulate_dataset(tmp_path_factory.mktemp("d") / "ds", preset="line-space", n=6, size=32,
                              splits={"train": 1.0}, progress=False)


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if integrity.is_temp_file(p.name)]


def _tiny_train(ds, out, *extra):
    return ["train", str(ds), "--out", str(out), "--max-steps", "1", "--ngf", "8", "--ndf", "8", "--threads", "1",
            "--quiet", *extra]


# --------------------------------------------------------------------------- 6a, 6c: overwrite refusals


def test_train_refuses_a_users_folder_and_overwrite_means_it(labelled, tmp_path, capsys):
    """The probe: `train --out` into a folder holding a user's log.csv and generator.pt overwrote both."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "log.csv").write_text("my log\n")
    (out / "generator.pt").write_bytes(b"my weights")
    code, _, err = _run(capsys, _tiny_train(labelled, out))
    assert code == 2 and err.count("\n") == 1
    assert str(out) in err and "not a semlab training run" in err and "--overwrite" in err and "log.csv" in err
    assert (out / "log.csv").read_text() == "my log\n" and (out / "generator.pt").read_bytes() == b"my weights"
    assert sorted(p.name for p in out.iterdir()) == ["generator.pt", "log.csv"]  # no lock or config left
    from semlab.train import TrainConfig, train

    with pytest.raises(ValueError, match="not a semlab training run"):
        train(TrainConfig(dataset=str(labelled), out=str(out), max_steps=1, ngf=8, ndf=8))
    code, _, err = _run(capsys, _tiny_train(labelled, out, "--overwrite"))
    assert code == 0, err
    assert (out / "log.csv").read_text() != "my log\n" and (out / "config.json").is_file()


def test_train_resumes_a_run_folder_and_overwrite_starts_fresh(labelled, tmp_path, capsys):
    from semlab.train import TrainConfig, train
    from semlab.train.checkpoint import list_checkpoints

    cfg = TrainConfig(dataset=str(labelled), out=str(tmp_path / "run"), max_steps=2, ngf=8, ndf=8, threads=1,
                      checkpoint_every=1)
    first = train(cfg, progress=False)
    assert first.steps == 2 and [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")][-1].endswith("2.pt")
    again = train(dataclasses.replace(cfg, max_steps=3), progress=False)  # a run folder: resumed, not refused
    assert again.resumed_from and again.steps == 3
    fresh = train(dataclasses.replace(cfg, max_steps=1), progress=False, overwrite=True)
    assert fresh.resumed_from is None and fresh.steps == 1
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["ckpt-000000001.pt"]
    assert len(io.read_csv(tmp_path / "run" / "log.csv")) == 1


def _image_folder(root: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def test_evaluate_refuses_existing_tables_unless_overwrite(tmp_path, capsys):
    real, fake = _image_folder(tmp_path / "real", 0), _image_folder(tmp_path / "fake", 1)
    table = tmp_path / "t.csv"
    table.write_text("a user's table\n")
    argv = ["evaluate", "--real", str(real), "--fake", str(fake), "--paired", "--metrics", "psnr",
            "--out", f"{tmp_path / 'new.md'},{table}"]
    code, out, err = _run(capsys, argv)
    assert code == 2 and err.count("\n") == 1 and str(table) in err and "--overwrite" in err
    assert table.read_text() == "a user's table\n" and not (tmp_path / "new.md").exists()  # refused before computing
    code, out, err = _run(capsys, argv + ["--overwrite"])
    assert code == 0, err
    assert [r["metric"] for r in io.read_csv(table)] == ["psnr"] and (tmp_path / "new.md").is_file()
    from semlab.metrics.evaluate import write_table

    with pytest.raises(FileExistsError, match="never overwrites"):
        write_table([], table)


# --------------------------------------------------------------------------- 7: writer locks


def test_a_second_writer_on_the_same_folder_is_refused(tmp_path, capsys):
    w = D.DatasetWriter(tmp_path / "ds", kind="test", identity={"t": 1})
    w.add("a", np.zeros((8, 8), np.float32), split="train", group="a")
    with pytest.raises(LockedError, match=r"is being written by another process \(lock file .*\.semlab-write\.lock"):
        D.DatasetWriter(tmp_path / "ds", kind="test", identity={"t": 1})
    code, _, err = _run(capsys, ["simulate", "--preset", "line-space", "--n", "2", "--size", "32", "--quiet",
                                 "--out", str(tmp_path / "ds")])
    assert code == 2 and err.count("\n") == 1 and "being written by another process" in err
    assert (tmp_path / "ds" / "images" / "a.png").is_file()
    w.close()
    assert not (tmp_path / "ds" / ".semlab-write.lock").exists()  # removed once free
    D.DatasetWriter(tmp_path / "ds", kind="test", identity={"t": 1}).close()  # free again


def test_shard_writers_share_a_folder_but_not_a_part_nor_a_whole_folder_writer(tmp_path):
    part = {"manifest_name": "shards/manifest-0-of-2.csv", "meta_name": "shards/dataset-0-of-2.json"}
    part1 = {"manifest_name": "shards/manifest-1-of-2.csv", "meta_name": "shards/dataset-1-of-2.json"}
    a = D.DatasetWriter(tmp_path / "o", kind="t", identity={"t": 1}, **part)
    b = D.DatasetWriter(tmp_path / "o", kind="t", identity={"t": 1}, **part1)
    with pytest.raises(LockedError, match="manifest-0-of-2.csv"):
        D.DatasetWriter(tmp_path / "o", kind="t", identity={"t": 1}, **part)
    with pytest.raises(LockedError):
        D.DatasetWriter(tmp_path / "o", kind="t", identity={"t": 1})
    a.close()
    b.close()


def test_segment_shards_share_one_folder_and_verify_clean(labelled, tmp_path, capsys):
    out = tmp_path / "seg"
    for shard in ("0/2", "1/2"):
        code, _, err = _run(capsys, ["segment", str(labelled), "--out", str(out), "--shard", shard, "--quiet"])
        assert code in (0, 1), err  # 1: some tiny images may fail QA; the batch still finishes
    rows = io.read_manifest(out / "manifest.csv")
    assert sorted(r["id"] for r in rows) == D.load_dataset(labelled).ids
    assert any("segments/" in (r["files_sha256"] or "") for r in rows)  # raw regions are hashed too
    code, text, _ = _run(capsys, ["verify", str(out)])
    assert code == 0 and " 0 damaged, 0 missing, 0 extra" in text
    assert not list(out.rglob("*.lock"))


_WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from semlab.data.datasets import DatasetWriter
    root, i, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    w = DatasetWriter(root, kind="t", identity={"t": 1}, manifest_name=f"shards/manifest-{i}-of-2.csv",
                      meta_name=f"shards/dataset-{i}-of-2.json", remove_on_abort=True, flush_every=1)
    try:
        for k in range(n):
            w.add(f"s{i}_{k:03d}", np.full((16, 16), k / n, np.float32), split="train", group="g",
                  mask=np.zeros((16, 16), np.uint8), clean=np.zeros((16, 16), np.float32))
            time.sleep(0.05)
    except BaseException:
        w.abort()
        raise
    w.close()
""")


def _wait_for(cond, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_sigint_of_one_of_two_writers_leaves_the_others_files(tmp_path):
    """The probe: abort() of an interrupted writer removed a folder a second process was
    writing (143 images became 9). Writer 0 creates the folder and would remove it on abort."""
    root, script = tmp_path / "shared", tmp_path / "writer.py"
    script.write_text(_WRITER)
    n = 40
    a = subprocess.Popen([sys.executable, str(script), str(root), "0", "1000"], env=ENV, stderr=subprocess.PIPE)
    _wait_for(lambda: len(list((root / "images").glob("s0_*.png"))) >= 3 if (root / "images").is_dir() else False)
    b = subprocess.Popen([sys.executable, str(script), str(root), "1", str(n)], env=ENV, stderr=subprocess.PIPE)
    _wait_for(lambda: len(list((root / "images").glob("s1_*.png"))) >= 5)
    a.send_signal(signal.SIGINT)
    _, err_a = a.communicate(timeout=60)
    assert a.returncode != 0 and b"KeyboardInterrupt" in err_a
    _, err_b = b.communicate(timeout=120)
    assert b.returncode == 0, err_b.decode()[-2000:]
    rows = io.read_manifest(root / "shards" / "manifest-1-of-2.csv")
    assert len(rows) == n
    for r in rows:  # every file of writer 1 is there, intact
        assert not integrity.item_problems(root, r), r["id"]
    assert not list(root.rglob("s0_*")) and not (root / "shards" / "manifest-0-of-2.csv").exists()  # its journal
    assert not _temp_files(root) and not list(root.rglob("*.lock"))


def test_abort_removes_only_this_writers_journal(tmp_path):
    root = tmp_path / "ds"
    w = D.DatasetWriter(root, kind="t", identity={"t": 1})
    w.add("mine", np.zeros((8, 8), np.float32), split="train", group="g")
    (root / "images" / "theirs.png").write_bytes(b"another process's file")
    w.abort()
    assert sorted(p.name for p in root.rglob("*")) == ["images", "theirs.png"]
    w = D.DatasetWriter(tmp_path / "new", kind="t", identity={"t": 1})
    w.add("x", np.zeros((8, 8), np.float32), split="train", group="g")
    w.abort()
    assert not (tmp_path / "new").exists()  # a failed run on a new folder still leaves nothing


# --------------------------------------------------------------------------- 8: orphans, repair, verification


_KILLED_WRITE = textwrap.dedent("""
    import sys, time
    from semlab.io import atomic_write
    with atomic_write(sys.argv[1], "wb") as f:
        f.write(b"x" * (4 << 20))
        f.flush()
        print("writing", flush=True)
        time.sleep(120)
""")


def _killed_write(tmp_path: Path, target: Path) -> list[Path]:
    """kill -9 a process in the middle of `atomic_write(target)`: its temp file stays behind."""
    script = tmp_path / "killed_write.py"
    script.write_text(_KILLED_WRITE)
    before = target.read_bytes() if target.exists() else None
    proc = subprocess.Popen([sys.executable, str(script), str(target)], env=ENV, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"writing"
    proc.kill()
    proc.wait()
    orphans = [p for p in target.parent.iterdir() if integrity.is_temp_file(p.name)]
    assert len(orphans) == 1 and orphans[0].stat().st_size == 4 << 20
    assert (target.read_bytes() if target.exists() else None) == before  # the target itself is untouched
    return orphans


def test_a_killed_checkpoint_write_leaves_no_orphan_after_resume(labelled, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run(capsys, _tiny_train(labelled, run))[0] == 0
    _killed_write(tmp_path, run / "checkpoints" / "ckpt-000000002.pt")  # the partial checkpoint of a killed run
    _killed_write(tmp_path, run / "log.csv")
    code, _, err = _run(capsys, _tiny_train(labelled, run)[:-1] + ["--max-steps", "2", "--quiet"])
    assert code == 0, err
    assert not _temp_files(run)
    assert sorted(p.name for p in (run / "checkpoints").iterdir())[-1] == "ckpt-000000002.pt"


def test_a_killed_dataset_write_leaves_no_orphan_after_resume(tmp_path):
    out = D.simulate_dataset(tmp_path / "ds", preset="line-space", n=3, size=32, progress=False)
    _killed_write(tmp_path, out / "images" / "000003.png")
    (out / "masks" / ".000001.png.ab_cd012.tmp").write_bytes(b"partial")
    D.simulate_dataset(out, preset="line-space", n=4, size=32, progress=False)
    assert not _temp_files(out)
    assert integrity.verify_dataset(out).ok


def test_resume_repairs_every_damaged_or_missing_file(tmp_path):
    """Resume used to check only the image hash: a damaged mask, clean image or contour file
    was never repaired."""
    kw = {"preset": "contacts", "n": 5, "size": 32, "seed": 2, "progress": False}
    ref = D.simulate_dataset(tmp_path / "ref", **kw)
    out = D.simulate_dataset(tmp_path / "ds", **kw)
    (out / "masks" / "000001.png").write_bytes((out / "masks" / "000000.png").read_bytes())  # a valid, wrong mask
    (out / "clean" / "000002.png").write_bytes(b"damaged")
    (out / "contours" / "000003.json").write_text('{"contours": []}')
    (out / "clean" / "000004.png").unlink()
    untouched = (out / "images" / "000000.png").stat().st_mtime_ns
    D.simulate_dataset(out, **kw)
    for sub in ("images", "masks", "clean", "contours"):
        for p in sorted((ref / sub).iterdir()):
            assert (out / sub / p.name).read_bytes() == p.read_bytes(), f"{sub}/{p.name}"
    assert (out / "images" / "000000.png").stat().st_mtime_ns == untouched
    rows = io.read_manifest(out / "manifest.csv")
    assert all(json.loads(r["files_sha256"]).keys() == {f"clean/{r['id']}.png", f"contours/{r['id']}.json"}
               for r in rows)


def _tamper(path: Path) -> None:
    """A valid PNG of the same size with other pixels."""
    img = np.asarray(Image.open(path))
    Image.fromarray((255 - img).astype(np.uint8)).save(path)


def test_a_tampered_file_fails_loading_unless_verification_is_skipped(labelled, tmp_path, capsys):
    import shutil

    ds_root = tmp_path / "ds"
    shutil.copytree(labelled, ds_root)
    ds = D.load_dataset(ds_root)
    item = ds.ids[1]
    _tamper(ds_root / "images" / f"{item}.png")
    (ds_root / "contours" / f"{item}.json").write_text('{"contours": [[[0, 0], [1, 1]]]}')
    ds = D.load_dataset(ds_root)
    with pytest.raises(integrity.IntegrityError, match=rf"images/{item}\.png: the file of item {item} is damaged"):
        ds.image(item)
    with pytest.raises(integrity.IntegrityError, match=rf"contours/{item}\.json"):
        ds.contours(item)
    assert ds.image(ds.ids[0]).shape == (32, 32)
    unchecked = D.load_dataset(ds_root, verify=False)
    assert np.array_equal(io.to_uint8(unchecked.image(item)), np.asarray(Image.open(ds_root / "images" / f"{item}.png")))
    # the probe: train accepted a tampered image
    code, _, err = _run(capsys, _tiny_train(ds_root, tmp_path / "run"))
    assert code == 2 and err.count("\n") == 1 and f"images/{item}.png" in err and "semlab verify" in err


def test_hashes_are_checked_once_per_file_per_process(labelled, monkeypatch):
    calls = []
    real = io.sha256_file
    monkeypatch.setattr(io, "sha256_file", lambda p, *a: calls.append(str(p)) or real(p, *a))
    monkeypatch.setattr(integrity, "_HASHES", {})
    ds = D.load_dataset(labelled)
    ds.arrays()
    n = len(calls)
    assert n == 2 * len(ds)  # image and mask, once each
    ds.arrays()
    D.load_dataset(labelled).arrays()
    assert len(calls) == n


def test_verify_reports_damage_and_rehash_accepts_edits(labelled, tmp_path, capsys):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(labelled, root)
    code, out, _ = _run(capsys, ["verify", str(root)])
    n_files = 4 * 6  # image, mask, clean, contours
    assert code == 0 and f"{n_files} files ok, 0 damaged, 0 missing, 0 extra" in out
    ids = D.load_dataset(root).ids
    _tamper(root / "images" / f"{ids[0]}.png")  # a deliberate edit
    (root / "masks" / f"{ids[1]}.png").write_bytes(b"bit rot")
    (root / "clean" / f"{ids[2]}.png").unlink()
    (root / "images" / "stray.png").write_bytes(b"")
    code, out, _ = _run(capsys, ["verify", str(root)])
    assert code == 1
    assert f"damaged: {root / 'images' / (ids[0] + '.png')}" in out and f"damaged: {root / 'masks' / (ids[1] + '.png')}" in out
    assert f"missing: {root / 'clean' / (ids[2] + '.png')}" in out and "extra:   " in out and "stray.png" in out
    assert f"{n_files - 3} files ok, 2 damaged, 1 missing, 1 extra" in out
    shutil.copy(labelled / "clean" / f"{ids[2]}.png", root / "clean" / f"{ids[2]}.png")
    shutil.copy(labelled / "masks" / f"{ids[1]}.png", root / "masks" / f"{ids[1]}.png")
    header = (root / "manifest.csv").read_text().splitlines()[0]
    code, out, _ = _run(capsys, ["verify", str(root), "--rehash"])
    assert code == 0 and "1 hashes rewritten" in out
    assert (root / "manifest.csv").read_text().splitlines()[0] == header
    assert _run(capsys, ["verify", str(root)])[0] == 0
    edited = D.load_dataset(root).image(ids[0])  # accepted: loads without verify=False
    assert np.array_equal(io.to_uint8(edited), np.asarray(Image.open(root / "images" / f"{ids[0]}.png")))
    code, _, err = _run(capsys, ["verify", str(tmp_path)])
    assert code == 2 and "not a semlab dataset" in err


# --------------------------------------------------------------------------- cmd_train from TrainConfig


def test_train_flags_come_from_the_trainconfig_fields(monkeypatch, capsys):
    from semlab.train import TrainConfig
    from semlab.train import ddp

    seen = {}
    monkeypatch.setattr(ddp, "train_maybe_distributed",
                        lambda cfg, progress, overwrite: seen.update(cfg=cfg, overwrite=overwrite))
    p = cli.build_parser()
    train_parser = next(a for a in p._subparsers._group_actions)._name_parser_map["train"]
    dests = {a.dest for a in train_parser._actions}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert fields - {"extra"} <= dests  # every field has a flag
    argv = ["train", "DS", "--out", "O", "--epochs", "3", "--epochs-decay", "2", "--batch-size", "4",
            "--channels-last", "--netG", "resnet_6blocks", "--gan-mode", "hinge", "--lambda-l1", "50",
            "--lambda-cycle", "5", "--pool-size", "7", "--no-deterministic", "--ngf", "16", "--init-gain", "0.01",
            "--precision", "bf16", "--seed", "3", "--set", "lr=0.001", "--overwrite", "--quiet"]
    assert cli.main(argv) == 0
    cfg = seen["cfg"]
    assert (cfg.n_epochs, cfg.n_epochs_decay, cfg.batch_size, cfg.channels_last, cfg.netG, cfg.gan_mode) == \
        (3, 2, 4, True, "resnet_6blocks", "hinge")
    assert (cfg.lambda_l1, cfg.lambda_cycle, cfg.pool_size, cfg.deterministic, cfg.ngf, cfg.init_gain) == \
        (50.0, 5.0, 7, False, 16, 0.01)
    assert (cfg.precision, cfg.seed, cfg.lr, cfg.dataset, cfg.out, seen["overwrite"]) == ("bf16", 3, 0.001, "DS", "O", True)
    cli.main(["train", "DS", "--out", "O", "--quiet"])  # nothing given: TrainConfig's own defaults
    assert seen["cfg"] == TrainConfig(dataset="DS", out="O") and seen["overwrite"] is False
    for bad, needle in ((["--model", "stylegan"], "invalid choice"), (["--ngf", "0"], "--ngf: 0 is out of range")):
        with pytest.raises(SystemExit):
            cli.main(["train", "DS", "--out", "O", *bad])
        assert needle in capsys.readouterr().err
