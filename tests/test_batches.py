"""Batches that finish (issue 15 item 10, and 6b for generate): one bad image does not
sink a batch, every batch ends with "N ok, M failed: see <file>" and exit code 1 when
something failed, and a re-run resumes (skips finished items, retries failed ones).

Probes: a corrupt file, a blank image and a 1x1 image among good ones. On the old code
`import-images` aborted and deleted everything, `contours predict` stopped after
writing earlier outputs, never wrote structures.csv and refused the re-run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semlab import cli, io
from semlab.data import datasets as D
from semlab.data.simulate import simulate


def _run(capsys, argv):
    code = cli.main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _mixed(folder: Path, size: int = 64) -> dict[str, str]:
    """Two good simulated images, a corrupt PNG, a blank image and a 1x1 image."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(2):
        io.write_image(folder / f"good{k}.png", simulate("line-space", size, k).image)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    Image.fromarray(np.zeros((size, size), np.uint8)).save(folder / "blank.png")
    Image.fromarray(np.full((1, 1), 128, np.uint8)).save(folder / "tiny.png")
    return {"corrupt": "corrupt", "blank": "blank", "tiny": "1x1"}


# ------------------------------------------------------------------- import-images


def test_import_records_a_corrupt_file_and_goes_on(tmp_path, capsys):
    src = tmp_path / "src"
    _mixed(src)
    out = tmp_path / "ds"
    code, text, _ = _run(capsys, ["import-images", str(src), "--out", str(out), "--quiet"])
    assert code == 1
    assert f"4 ok, 1 failed: see {out / 'manifest.csv'}" in text
    ds = D.load_dataset(out)
    assert sorted(ds.ids) == ["blank", "good0", "good1", "tiny"]  # importing keeps blank and tiny frames
    (bad,) = ds.excluded
    assert bad["id"] == "corrupt" and bad["status"] == "error" and str(src / "corrupt.png") in bad["reason"]
    before = (out / "images" / "good0.png").stat().st_mtime_ns
    # repaired, the re-run retries only the failed file
    io.write_image(src / "corrupt.png", simulate("line-space", 64, 9).image)
    code, text, _ = _run(capsys, ["import-images", str(src), "--out", str(out), "--quiet"])
    assert code == 0 and "5 ok, 0 failed" in text
    assert (out / "images" / "good0.png").stat().st_mtime_ns == before
    assert sorted(D.load_dataset(out).ids) == ["blank", "corrupt", "good0", "good1", "tiny"]


def test_import_with_tiles_replaces_a_frame_failure_by_its_tiles(tmp_path, capsys):
    src = tmp_path / "src"
    io.write_image(src / "a.png", simulate("line-space", 64, 0).image)
    (src / "b.png").write_bytes(b"not an image at all")
    out = tmp_path / "ds"
    assert _run(capsys, ["import-images", str(src), "--out", str(out), "--tile", "32", "--quiet"])[0] == 1
    assert [r["id"] for r in D.load_dataset(out).excluded] == ["b"]
    io.write_image(src / "b.png", simulate("line-space", 64, 1).image)
    code, text, _ = _run(capsys, ["import-images", str(src), "--out", str(out), "--tile", "32", "--quiet"])
    ds = D.load_dataset(out)
    assert code == 0 and "8 ok, 0 failed" in text and len(ds) == 8 and not ds.excluded


# ------------------------------------------------------------------------- segment


def test_segment_summary_and_exit_code(tmp_path, capsys):
    src = tmp_path / "src"
    _mixed(src)
    out = tmp_path / "seg"
    code, text, _ = _run(capsys, ["segment", str(src), "--out", str(out), "--quiet"])
    assert code == 1
    rows = {r["id"]: r for r in io.read_manifest(out / "manifest.csv")}
    failed = sorted(i for i, r in rows.items() if r["status"] == "error")
    assert failed == ["blank", "corrupt", "tiny"]
    ok = sum(r["status"] == "ok" for r in rows.values())
    flagged = len(rows) - ok - 3
    assert f"{ok} ok, " in text and "3 failed: see " in text and str(out / "manifest.csv") in text
    assert ok + flagged == 2


# ------------------------------------------------------------------ contours predict


def _predict(capsys, src, out, *extra):
    return _run(capsys, ["contours", "predict", str(src), "--out", str(out), "--no-sam2", "--quiet", *extra])


def test_predict_finishes_a_mixed_batch_and_resumes(tmp_path, capsys):
    src = tmp_path / "imgs"
    _mixed(src)
    out = tmp_path / "pred"
    code, text, _ = _predict(capsys, src, out)
    assert code == 1
    assert f"2 ok, 3 failed: see {out / 'failures.csv'}" in text
    fails = {r["id"]: r for r in io.read_csv(out / "failures.csv")}
    assert sorted(fails) == ["blank", "corrupt", "tiny"]
    assert "blank" in fails["blank"]["error"] and "1x1" in fails["tiny"]["error"]
    assert str(src / "corrupt.png") in fails["corrupt"]["error"] and fails["corrupt"]["source"] == "corrupt.png"
    rows = io.read_csv(out / "structures.csv")  # written although images failed
    assert rows and {r["item"] for r in rows} == {"good0", "good1"}
    assert {p.name for p in out.glob("good*.*")} == {"good0.csv", "good0.json", "good1.csv", "good1.json"}
    assert not list(out.glob("blank.*")) and not list(out.glob("tiny.*"))
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("good*.*")}

    # the re-run resumes: finished images are skipped, failed ones retried
    Image.fromarray(io.to_uint8(simulate("line-space", 64, 7).image)).save(src / "blank.png")
    code, text, _ = _predict(capsys, src, out)
    assert code == 1 and "3 ok, 2 failed" in text and "(2 done before)" in text
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("good*.*")} == mtimes
    assert sorted(r["id"] for r in io.read_csv(out / "failures.csv")) == ["corrupt", "tiny"]
    rows2 = io.read_csv(out / "structures.csv")
    assert [r for r in rows2 if r["item"] != "blank"] == rows and any(r["item"] == "blank" for r in rows2)
    state = json.loads((out / "predict.json").read_text())
    assert state["items"]["blank"]["status"] == "ok" and state["items"]["tiny"]["status"] == "error"

    (src / "corrupt.png").unlink()
    (src / "tiny.png").unlink()
    code, text, _ = _predict(capsys, src, out)
    assert code == 0 and "3 ok, 0 failed" in text


def test_predict_resumes_an_interrupted_run_and_refuses_other_settings(tmp_path, capsys, monkeypatch):
    from semlab.contours import hybrid

    src = tmp_path / "imgs"
    for k in range(3):
        io.write_image(src / f"im{k}.png", simulate("line-space", 64, k).image)
    out = tmp_path / "pred"
    real = hybrid.HybridExtractor.extract
    calls = []

    def dies_on_the_third(self, img, **kw):
        calls.append(kw["source"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, img, **kw)

    monkeypatch.setattr(hybrid.HybridExtractor, "extract", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        _predict(capsys, src, out)
    state = json.loads((out / "predict.json").read_text())
    assert sorted(state["items"]) == ["im0", "im1"]  # saved on the way out
    monkeypatch.setattr(hybrid.HybridExtractor, "extract", real)
    code, text, _ = _predict(capsys, src, out)
    assert code == 0 and "3 ok, 0 failed (2 done before)" in text
    assert {r["item"] for r in io.read_csv(out / "structures.csv")} == {"im0", "im1", "im2"}
    before = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    code, _, err = _predict(capsys, src, out, "--threshold", "0.5")
    assert code == 2 and "other settings" in err and "never overwrites" in err
    assert before == {p: p.stat().st_mtime_ns for p in out.iterdir()}


def test_predict_never_writes_into_a_folder_of_foreign_files(tmp_path, capsys):
    src = tmp_path / "imgs"
    io.write_image(src / "a.png", simulate("line-space", 64, 0).image)
    out = tmp_path / "pred"
    out.mkdir()
    (out / "a.csv").write_text("a user's file")
    code, _, err = _predict(capsys, src, out)
    assert code == 2 and "never overwrites" in err and (out / "a.csv").read_text() == "a user's file"
    assert not (out / "predict.json").exists()


# ------------------------------------------------------------------------ generate


def _masks(folder: Path, n: int) -> None:
    for k in range(n):
        io.write_mask(folder / f"m{k}.png", simulate("line-space", 32, k).mask)


def test_generate_records_the_checkpoint_and_regenerates_when_it_changes(tiny_generator, tmp_path, capsys):
    from semlab.train.generate import Generator

    masks, out = tmp_path / "masks", tmp_path / "out"
    _masks(masks, 3)
    g1, g2 = tiny_generator(tmp_path / "g1.pt", 1), tiny_generator(tmp_path / "g2.pt", 2)
    argv = ["generate", "--masks", str(masks), "--out", str(out), "--quiet", "--checkpoint"]
    code, text, _ = _run(capsys, argv + [str(g1)])
    assert code == 0 and "3 generated, 0 kept" in text
    state = json.loads((out / "generate.json").read_text())
    assert state["identity"]["checkpoint_sha256"] == io.sha256_file(g1)
    assert all(r["sha256"] == io.sha256_file(out / f"{i}.png") for i, r in state["items"].items())
    _masks(masks, 4)  # one more mask: only it is generated
    code, text, _ = _run(capsys, argv + [str(g1)])
    assert code == 0 and "1 generated, 3 kept" in text
    # another checkpoint: every image is regenerated, none is stale
    code, text, _ = _run(capsys, argv + [str(g2)])
    assert code == 0 and "4 generated, 0 kept" in text
    gen = Generator(g2)
    for k in range(4):
        want = io.to_uint8(gen(io.read_mask(masks / f"m{k}.png"), seed=0))
        assert np.array_equal(io.to_uint8(io.read_image(out / f"m{k}.png")), want)
    (masks / "m3.png").unlink()  # its output goes too
    code, text, _ = _run(capsys, argv + [str(g2)])
    assert "0 generated, 3 kept, 1 removed" in text and not (out / "m3.png").exists()
    code, text, _ = _run(capsys, argv + [str(g2), "--overwrite"])
    assert "3 generated, 0 kept" in text


def test_generate_refuses_a_folder_of_foreign_files(tiny_generator, tmp_path, capsys):
    masks, out = tmp_path / "masks", tmp_path / "out"
    _masks(masks, 2)
    g = tiny_generator(tmp_path / "g.pt", 0)
    out.mkdir()
    (out / "m0.png").write_bytes(b"a user's picture")
    argv = ["generate", "--checkpoint", str(g), "--masks", str(masks), "--out", str(out), "--quiet"]
    code, _, err = _run(capsys, argv)
    assert code == 2 and "did not write" in err and "--overwrite" in err
    assert (out / "m0.png").read_bytes() == b"a user's picture" and not (out / "generate.json").exists()
    # a target that generate.json does not list is a user's file too
    (out / "m0.png").unlink()
    (out / "notes.txt").write_text("mine")
    assert _run(capsys, argv)[0] == 2
    (out / "notes.txt").unlink()
    assert _run(capsys, argv)[0] == 0
    (masks / "m2.png").write_bytes((masks / "m0.png").read_bytes())
    (out / "m2.png").write_bytes(b"a user's picture")
    code, _, err = _run(capsys, argv)
    assert code == 2 and "m2.png" in err and (out / "m2.png").read_bytes() == b"a user's picture"
    code, text, _ = _run(capsys, argv + ["--overwrite"])
    assert code == 0 and "3 generated" in text and (out / "notes.txt").exists() is False


# ------------------------------------------ contours CLI consistency (issue 14 section 5)


def test_contours_take_precision_and_a_positional_dataset(capsys):
    from semlab.contours import cli as ccli

    p = cli.build_parser()
    for argv in (["contours", "train", "DS", "--out", "o", "--precision", "bf16"],
                 ["contours", "predict", "imgs", "--out", "o", "--precision", "bf16"],
                 ["contours", "evaluate", "DS", "--precision", "bf16"]):
        a = p.parse_args(argv)
        assert a.precision == "bf16" and ccli._bf16(a)
    a = p.parse_args(["contours", "train", "DS", "--out", "o"])
    assert a.dataset == "DS" and not ccli._bf16(a)
    with pytest.raises(SystemExit):
        p.parse_args(["contours", "predict", "imgs", "--out", "o", "--precision", "fp16"])
    with pytest.raises(SystemExit):  # the dataset is positional now
        p.parse_args(["contours", "train", "--data", "DS", "--out", "o"])
    capsys.readouterr()
    a = p.parse_args(["contours", "evaluate", "DS", "--bf16"])  # deprecated alias, hidden from --help
    assert ccli._bf16(a) and "--bf16 is deprecated; use --precision bf16" in capsys.readouterr().err
    with pytest.raises(ValueError, match="contradicts"):
        ccli._bf16(p.parse_args(["contours", "evaluate", "DS", "--bf16", "--precision", "fp32"]))
    for sub in ("train", "predict", "evaluate"):
        text = p._subparsers._group_actions[0].choices["contours"]._subparsers._group_actions[0] \
            .choices[sub].format_help()
        assert "--precision {fp32,bf16}" in text and "--bf16" not in text
