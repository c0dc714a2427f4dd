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
