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
