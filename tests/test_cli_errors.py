"""Clear one-line errors instead of tracebacks (issue 15 item 13): each probe names the
file and exits 2."""

import errno

import pytest

from semlab import cli


def _run(capsys, argv):
    code = cli.main(argv)
    err = capsys.readouterr().err
    return code, err


def test_params_file_that_is_a_list_or_not_yaml(tmp_path, capsys):
    lst = tmp_path / "list.yaml"
    lst.write_text("- SEED: 1\n")
    code, err = _run(capsys, ["run", "--profile", "smoke", "--params", str(lst), "--out", str(tmp_path / "r")])
    assert code == 2 and str(lst) in err and "must be a mapping" in err and "Traceback" not in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("SEED: [1,\n")
    code, err = _run(capsys, ["run", "--profile", "smoke", "--params", str(bad), "--out", str(tmp_path / "r")])
    assert code == 2 and str(bad) in err and "not valid YAML" in err
    assert not (tmp_path / "r").exists()


def test_out_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "taken"
    f.write_text("a user's file")
    code, err = _run(capsys, ["simulate", "--preset", "line-space", "--n", "2", "--size", "32", "--out", str(f / "ds")])
    assert code == 2 and "taken" in err and err.count("\n") == 1
    assert f.read_text() == "a user's file"


@pytest.mark.parametrize("exc, needle", [
    (OSError(errno.ENOSPC, "No space left on device", "/data/x.png"), "/data/x.png: No space left on device"),
    (MemoryError(), "out of memory"),
    (__import__("pickle").UnpicklingError("invalid load key"), "could not be read as a checkpoint"),
])
def test_os_memory_and_unpickling_errors_become_one_line(monkeypatch, capsys, exc, needle):
    def boom(a):
        raise exc

    monkeypatch.setattr(cli, "cmd_simulate", boom)
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    for action in parser._subparsers._group_actions:  # point the subcommand at the failing function
        action.choices["simulate"].set_defaults(fn=boom)
    code, err = _run(capsys, ["simulate", "--preset", "line-space", "--n", "1", "--out", "/tmp/never"])
    assert code == 2 and needle in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, needle", [
    (["simulate", "--n", "-5", "--out", "X"], "--n: -5 is out of range"),
    (["simulate", "--size", "0", "--out", "X"], "--size: 0 is out of range"),
    (["simulate", "--size", "100000", "--out", "X"], "at most 8192"),
    (["train", "DS", "--out", "X", "--batch-size", "0"], "--batch-size: 0 is out of range"),
    (["segment", "DS", "--limit", "-1"], "--limit: -1 is out of range"),
])
def test_numbers_are_checked_when_parsed(tmp_path, capsys, argv, needle):
    """Argument validation (issue 15 item 14): refused by argparse (exit 2, one error
    line) before anything is written."""
    argv = [str(tmp_path / a) if a in ("X", "DS") else a for a in argv]
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and needle in err and "Traceback" not in err
    assert not (tmp_path / "X").exists()


def test_splits_set_and_metrics_are_validated(tmp_path, capsys):
    code, err = _run(capsys, ["simulate", "--preset", "line-space", "--n", "2", "--size", "32", "--splits", "1,0",
                              "--out", str(tmp_path / "ds")])
    assert code == 2 and "--splits takes three" in err and not (tmp_path / "ds").exists()
    code, err = _run(capsys, ["train", str(tmp_path / "nods"), "--out", str(tmp_path / "t"), "--set", "lr=abc"])
    assert code == 2 and "--set lr='abc': lr must be float" in err
    real = tmp_path / "real"
    real.mkdir()
    code, err = _run(capsys, ["evaluate", "--real", str(real), "--fake", str(real), "--metrics", "psnr,fidd"])
    assert code == 2 and "unknown metric(s) ['fidd']" in err and "valid: fid" in err


# ------------------------------------------------- issue 15 item 15: name the item

import numpy as np  # noqa: E402

def _labelled(tmp_path, n=4, size=32):
    from semlab.data.datasets import simulate_dataset

    return simulate_dataset(tmp_path / "ds", preset="line-space", n=n, size=size, splits={"train": 1.0},
                            progress=False)


def test_train_names_the_item_whose_mask_has_another_size(tmp_path, capsys):
    """Was "all input arrays must have the same shape" from np.stack."""
    from semlab import io
    from semlab.data.datasets import load_dataset

    ds = _labelled(tmp_path)
    item = load_dataset(ds).ids[1]
    io.write_mask(ds / "masks" / f"{item}.png", np.zeros((16, 24), np.uint8))
    code, err = _run(capsys, ["train", str(ds), "--out", str(tmp_path / "run"), "--max-steps", "1", "--quiet"])
    assert code == 2 and err.count("\n") == 1
    assert f"{item}.png" in err and f"item {item}" in err and "24x16 px" in err and "32x32 px" in err


def test_train_names_a_missing_mask_file(tmp_path, capsys):
    from semlab.data.datasets import load_dataset

    ds = _labelled(tmp_path)
    item = load_dataset(ds).ids[2]
    (ds / "masks" / f"{item}.png").unlink()
    code, err = _run(capsys, ["train", str(ds), "--out", str(tmp_path / "run"), "--max-steps", "1", "--quiet"])
    assert code == 2 and err.count("\n") == 1
    assert str(ds / "masks" / f"{item}.png") in err and "is missing" in err


def test_generate_names_a_mask_of_the_wrong_size(tmp_path, capsys):
    import torch

    from semlab import io
    from semlab.train import nets
    from semlab.train.checkpoint import atomic_torch_save
    from semlab.train.config import TrainConfig

    cfg = TrainConfig(ngf=8, ndf=8, threads=1)
    torch.manual_seed(0)
    net = nets.generator(cfg, nets.mask_channels(cfg), 1, 32)
    ckpt = atomic_torch_save({"format": "semlab-generator-1", "config": cfg.to_dict(), "size": 32,
                              "model": net.state_dict()}, tmp_path / "g.pt")
    io.write_mask(tmp_path / "masks" / "a.png", np.zeros((32, 32), np.uint8))
    io.write_mask(tmp_path / "masks" / "odd.png", np.zeros((48, 48), np.uint8))
    code, err = _run(capsys, ["generate", "--checkpoint", str(ckpt), "--masks", str(tmp_path / "masks"),
                              "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2 and err.count("\n") == 1
    assert str(tmp_path / "masks" / "odd.png") in err and "48x48 px" in err and "32x32 px" in err
    assert (tmp_path / "out" / "a.png").is_file()  # what was done is kept and recorded
    assert "a" in __import__("json").loads((tmp_path / "out" / "generate.json").read_text())["items"]


def test_evaluate_names_a_pair_of_different_sizes(tmp_path, capsys):
    from semlab import io
    from semlab.metrics.evaluate import evaluate

    real, fake = tmp_path / "real", tmp_path / "fake"
    for name, (rs, fs) in {"a": (32, 32), "b": (64, 48)}.items():
        io.write_image(real / f"{name}.png", np.full((rs, rs), 0.5, np.float32))
        io.write_image(fake / f"{name}.png", np.full((fs, fs), 0.5, np.float32))
    code, err = _run(capsys, ["evaluate", "--real", str(real), "--fake", str(fake), "--paired", "--metrics", "psnr"])
    assert code == 2 and err.count("\n") == 1 and "48x48 px" in err and "64x64 px" in err and "pair 'b" in err
    with pytest.raises(ValueError, match=r"pair 'b\.png': the fake image is 48x48 px but the real one is 64x64 px"):
        evaluate([np.zeros((32, 32)), np.zeros((64, 64))], [np.zeros((32, 32)), np.zeros((48, 48))], paired=True,
                 metrics=["psnr"], names=["a.png", "b.png"])


@pytest.mark.parametrize("argv", [
    ["inject", "--model", "spectral", "--in", "x", "--out", "y", "--pixel-nm", "0"],
    ["fit-sim", "x", "--kind", "line-space", "--out", "y", "--pixel-nm", "nan"],
    ["contours", "predict", "x", "--out", "y", "--pixel-nm", "-1"],
    ["import-images", "x", "--out", "y", "--pixel-nm", "abc"],
    ["simulate", "--out", "y", "--pixel-nm", "inf"],
])
def test_every_pixel_size_flag_is_checked_at_parse_time(argv, capsys):
    """One argparse type (`semlab.argtypes.pixel_size_nm`) for every --pixel-nm: a bad value
    stops with one line naming the flag before anything runs."""
    from semlab.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument --pixel-nm" in err and "nm" in err.splitlines()[-1]
