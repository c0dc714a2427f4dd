"""`semlab --help` and the help of every subcommand and sub-subcommand work.

The commands are discovered from the argparse parser itself (a new subcommand is covered
without editing this file). Runs in-process through `semlab.cli.main`, which argparse
leaves with SystemExit(0) after printing the help; a `%` in a help text that is not
written `%%` makes argparse raise instead.
"""

from __future__ import annotations

import argparse

import pytest

from semlab import cli


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-parsers of `parser` by name (aliases collapse onto one parser)."""
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if all(sub is not seen for seen in out.values()):
                    out[name] = sub
    return out


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path below `parser`: ("simulate",), ("contours", "extract"), ..."""
    paths = []
    for name, sub in _subparsers(parser).items():
        paths.append(prefix + (name,))
        paths += _command_paths(sub, prefix + (name,))
    return paths


COMMANDS = _command_paths(cli.build_parser())


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    out = capsys.readouterr()
    assert exc.value.code == 0, f"semlab {' '.join(argv)} exited {exc.value.code}: {out.err[-2000:]}"
    return out.out


def test_the_parser_has_subcommands_and_sub_subcommands():
    assert len([p for p in COMMANDS if len(p) == 1]) >= 10, COMMANDS
    assert any(len(p) == 2 for p in COMMANDS), "expected nested commands (e.g. contours ...)"


def test_top_level_help_lists_every_subcommand(capsys):
    text = _help(["--help"], capsys)
    assert text.startswith("usage: semlab")
    for path in COMMANDS:
        if len(path) == 1:
            assert path[0] in text, f"{path[0]} missing from semlab --help"


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_subcommand_help(path, capsys):
    text = _help([*path, "--help"], capsys)
    usage = text.splitlines()[0]
    assert usage.startswith("usage: semlab " + " ".join(path)), usage
    assert "-h, --help" in text
    for name, sub in _subparsers(cli.build_parser()).items():  # its own sub-commands are listed
        if (name,) == path:
            for child in _subparsers(sub):
                assert child in text, f"{child} missing from semlab {name} --help"


BENCH_CASES = [
    (["bench", "simulate", "--size", "32", "--n", "5", "--write"], "simulate",
     {"preset": "ic-metal", "size": 32, "n": 5, "write": True}),
    (["bench", "simulate"], "simulate", {"preset": "ic-metal", "size": 256, "n": 500}),
    (["bench", "train", "--model", "cyclegan", "--precision", "bf16", "--channels-last", "off"], "train",
     {"model": "cyclegan", "size": 256, "batch_size": 1, "precision": "bf16", "steps": 10, "channels_last": False}),
    (["bench", "segment", "--backend", "sam2", "--points-per-side", "16,32"], "segment",
     {"backend": "sam2", "size": 512, "points_per_side": (16, 32)}),
    (["bench", "metrics"], "metrics", {"n": 1000, "size": 256, "precision": "fp32"}),
    (["bench", "segsem", "--size", "512", "--precision", "bf16"], "segsem",
     {"sizes": (512,), "precisions": ("bf16",), "steps": 3}),
    (["bench", "segsem"], "segsem", {"steps": 3}),
]


@pytest.mark.parametrize("argv,name,expected", BENCH_CASES, ids=[" ".join(c[0]) for c in BENCH_CASES])
def test_bench_subcommand_passes_its_own_flags_and_defaults(argv, name, expected, monkeypatch, capsys):
    """`semlab bench NAME` is a real subcommand: its flags (and only its flags, with its own
    defaults) reach the benchmark function, and every option is a keyword of that function."""
    import inspect

    from semlab import bench

    seen = {}

    def fake_run(bench_name, /, **opts):
        seen["name"], seen["opts"] = bench_name, opts
        return [{"name": bench_name, "images_per_s": 1.0}]

    monkeypatch.setattr(bench, "run", fake_run)
    assert cli.main(argv) == 0
    assert seen == {"name": name, "opts": expected}
    from semlab.contours import bench as contours_bench

    fn = contours_bench.bench_segsem if name == "segsem" else getattr(bench, f"bench_{name}")
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        assert set(expected) <= set(params), f"{sorted(set(expected) - set(params))} not keywords of {fn.__name__}"


def test_bench_flag_of_another_benchmark_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "simulate", "--model", "cyclegan"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --model" in capsys.readouterr().err


def test_building_the_cli_does_not_import_torch():
    """`semlab --help`, `semlab bench simulate` and the like must not load torch: its
    import costs seconds and slowed the simulator benchmark by 13% (issue 15 perf check)."""
    import subprocess
    import sys

    code = ("import sys; from semlab import cli; cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'torchvision', 'pandas', 'seaborn') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout
