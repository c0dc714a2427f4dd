"""semlab.downstream.experiment: the seeds x tiles CI, the run log (partial results), references
and `semlab downstream experiment|summary`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semlab import labels
from semlab.cli import main
from semlab.downstream import data as D
from semlab.downstream.score import bootstrap_miou, confusion
from semlab.downstream.train import TrainSettings

TINY = dict(batch=4, width=16, depth=2, val_every=1, lr=5e-3)


def _confs(miou_per_tile_pattern_errors: int, n_tiles: int = 6):
    """Per-tile confusions where every tile is the same: background/pattern halves with
    `k` pattern pixels predicted as background (tiles identical: no tile-to-tile spread)."""
    true = np.zeros((n_tiles, 8, 8), np.uint8)
    true[:, :, 4:] = labels.PATTERN
    pred = true.copy()
    pred[:, :miou_per_tile_pattern_errors, 4] = labels.BACKGROUND
    return confusion(pred, true)


def test_two_level_bootstrap_holds_the_seed_spread():
    a, b = _confs(0), _confs(4)
    va = bootstrap_miou([a], (0, 1), n_boot=200)[0]
    vb = bootstrap_miou([b], (0, 1), n_boot=200)[0]
    assert va == 1.0 and vb < 1.0
    # identical tiles: resampling tiles alone gives no spread at all
    v, lo, hi = bootstrap_miou([a, b], (0, 1), n_boot=400)
    assert v == pytest.approx((va + vb) / 2) and lo == pytest.approx(v) and hi == pytest.approx(v)
    # two runs drawn with replacement: the mean is va (p 1/4), (va+vb)/2 (p 1/2) or vb (p 1/4),
    # so the 2.5% and 97.5% quantiles are the two runs' values
    v2, lo2, hi2 = bootstrap_miou([a, b], (0, 1), n_boot=4000, resample_runs=True)
    assert v2 == pytest.approx(v) and lo2 == pytest.approx(vb) and hi2 == pytest.approx(va)
    # identical runs: the two-level CI is the tile CI
    rng = np.random.default_rng(1)
    t = rng.integers(0, 2, size=(10, 8, 8))
    p = np.where(rng.random(t.shape) < 0.8, t, 1 - t)
    c = confusion(p, t)
    assert bootstrap_miou([c, c], (0, 1), n_boot=300, resample_runs=True) == pytest.approx(
        bootstrap_miou([c, c], (0, 1), n_boot=300))


def _experiment(tmp_path, **kw):
    from semlab.downstream.experiment import run_experiment

    dom = D.sim_domain("line-space", size=32, n_train=6, n_val=2, n_test=4)
    log = tmp_path / "runs.jsonl"
    res = run_experiment(dom, ["preset:line-space", "render:line-space:pitch_nm=20..30"], ns=(3, None), seeds=(0, 1),
                         settings=TrainSettings(steps=2, **TINY), n_synthetic=4, n_boot=100, progress=False, log=log,
                         references=["preset:line-space:dose=100..150"], **kw)
    return res, log


def test_run_log_gives_the_same_table_and_partial_results(tmp_path):
    from semlab.downstream.experiment import summarize_log

    res, log = _experiment(tmp_path)
    lines = log.read_text().splitlines()
    head = json.loads(lines[0])
    assert head["record"] == "header" and head["references"] == ["preset:line-space:dose=100..150"]
    n_sets = 2 + 2 + 1 + 2  # real:3, real, two sources, the reference, two mixes with the best source
    assert len(lines) == 1 + 2 * n_sets
    live = {r["train"]: r for r in res.rows}
    again = summarize_log(log)
    assert again.summary["best_synthetic"] == res.summary["best_synthetic"]
    assert again.summary["text"] == res.summary["text"]
    for r in again.rows:
        for k in ("miou", "miou_ci_low", "miou_ci_high", "val_miou", "n_seeds", "val_gain_2nd_half"):
            assert r[k] == pytest.approx(live[r["train"]][k]), (r["train"], k)
    ref = live["preset:line-space:dose=100..150"]
    assert ref["reference"] and not ref["best_synthetic"]
    assert res.summary["best_synthetic"] in ("preset:line-space", "render:line-space:pitch_nm=20..30")
    assert "reference" in res.summary and "never a candidate" in res.summary["text"]
    # every run records its budget and checkpoint; the rows count checkpoints at the end
    assert all(r.row["steps"] == 2 and 1 <= r.best_step <= 2 for r in res.runs)
    assert all(0 <= r["n_best_at_end"] <= 2 for r in res.rows)
    # the notebook's conclusion is generated from these numbers
    from semlab.downstream.experiment import conclusion

    text = conclusion(res)
    best = res.summary["best_synthetic"]
    assert f"{live[best]['miou']:.3f}" in text and f"{100 * res.summary['synthetic_over_real_all']:.0f}%" in text
    assert "Real + synthetic" in text and "two-level percentile bootstrap" in text
    assert f"2 steps x 4 tiles per run; {sum(r.best_step == 2 for r in res.runs)} of {len(res.runs)} runs" in text
    if not res.summary["mix_beats_real_up_to_n"]:
        assert "Why: real-only with N = 3 tiles" in text and "held-out test ranges" in text
    assert conclusion(again) == text
    from semlab.downstream.experiment import experiment_metrics_doc
    from semlab.metrics.keys import doc_problems

    doc = experiment_metrics_doc(res)
    assert doc_problems(doc) == [] and len([k for k in doc["metrics"] if k.endswith(".miou")]) == len(res.rows)
    # a killed run: the log up to the first seed of the second source still gives a table
    cut = log.with_name("cut.jsonl")
    cut.write_text("\n".join(lines[:1 + 2 + 2 + 2 + 1]) + "\n")
    part = summarize_log(cut)
    rows = {r["train"]: r for r in part.rows}
    assert set(rows) == {"real:3", "real", "preset:line-space", "render:line-space:pitch_nm=20..30"}
    assert rows["render:line-space:pitch_nm=20..30"]["n_seeds"] == 1 and rows["real"]["n_seeds"] == 2
    assert rows["real"]["miou"] == pytest.approx(live["real"]["miou"])
    assert "synthetic-only" in part.summary["text"] and "beats" not in part.summary["text"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"record": "run"}\n')
    with pytest.raises(ValueError, match="not a downstream run log"):
        summarize_log(bad)


def test_cli_experiment_and_summary(tmp_path, capsys):
    out = tmp_path / "exp"
    args = ["downstream", "experiment", "--profile", "smoke", "--out", str(out), "--quiet", "--set", "steps=2",
            "--set", "n_synthetic=4", "--set", "sim_n_train=6", "--set", "sim_n_test=4"]
    assert main(args + ["--json"]) == 0
    recs = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert {r["train"] for r in recs} >= {"real", "preset:line-space"}
    assert all(r["n_test_tiles"] == 4 for r in recs)
    for f in ("runs.jsonl", "summary.json", "table.csv", "efficiency.png"):
        assert (out / f).is_file(), f
    summ = json.loads((out / "summary.json").read_text())
    assert summ["settings"]["steps"] == 2 and summ["settings"]["preset"] == "line-space"
    assert "pitch_nm" in summ["settings"]["preset_params"]
    before = (out / "runs.jsonl").read_bytes()
    assert main(args) != 0  # never overwrites
    assert "already exists" in capsys.readouterr().err and (out / "runs.jsonl").read_bytes() == before
    assert main(["downstream", "summary", str(out)]) == 0
    text = capsys.readouterr().out
    assert "preset:line-space" in text and "synthetic-only" in text
    assert main(["downstream", "experiment", "--profile", "smoke", "--out", str(tmp_path / "x"), "--set", "steps"]) != 0
    assert "NAME=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "x" / "runs.jsonl").exists()


def test_test_range_spec_spans_the_held_out_ranges():
    from semlab.data.simulate import get_preset

    p = get_preset("line-space").params
    spec = D.test_range_spec("line-space")
    (kind, name, arg), = D.parse_spec(spec)
    assert (kind, name) == ("preset", "line-space")
    assert arg["dose"] == pytest.approx((p["dose"][0] * 0.5, p["dose"][1] * 0.5), rel=1e-3)
    assert arg["psf_sigma_nm"] == pytest.approx((p["psf_sigma_nm"][0] * 1.5, p["psf_sigma_nm"][1] * 1.5), rel=1e-3)
    assert arg["pitch_nm"] == pytest.approx((p["pitch_nm"][0] * 0.8, p["pitch_nm"][1] * 1.2), rel=1e-3)
    # every test image's parameters fall inside it
    dom = D.sim_domain("line-space", size=32, n_train=2, n_val=1, n_test=1)
    rng = np.random.default_rng(3)
    for _ in range(20):
        for k, v in D._shifted("line-space", rng, D.SHIFT).items():
            assert arg[k][0] - 1e-6 <= v <= arg[k][1] + 1e-6
    assert dom.shift.keys() == arg.keys()


def test_paired_difference_of_two_training_sets():
    from semlab.downstream.score import bootstrap_miou_difference

    rng = np.random.default_rng(5)
    t = rng.integers(0, 2, size=(12, 8, 8))
    runs_b = [confusion(np.where(rng.random(t.shape) < 0.75, t, 1 - t), t) for _ in range(3)]
    runs_a = [confusion(np.where(rng.random(t.shape) < 0.9, t, 1 - t), t) for _ in range(3)]
    d, lo, hi = bootstrap_miou_difference(runs_a, runs_b, (0, 1), n_boot=500)
    assert d == pytest.approx(bootstrap_miou(runs_a, (0, 1))[0] - bootstrap_miou(runs_b, (0, 1))[0])
    assert 0 < lo <= d <= hi  # 90% vs 75% pixels right: a clear gain
    assert bootstrap_miou_difference(runs_b, runs_b, (0, 1), n_boot=200) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same seeds"):
        bootstrap_miou_difference(runs_a, runs_b[:2], (0, 1))
