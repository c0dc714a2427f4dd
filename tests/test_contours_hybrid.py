"""SegSEM's hybrid (SAM2 where confident, the classical fallback elsewhere), the
experiment, the `semlab contours` CLI and notebook 50.

The hybrid's choice is checked with a stub predictor whose masks come from the
simulator's true mask (a signed distance as logits) and whose confidences we choose;
SAM2's real predictor runs once on a randomly initialised hiera-tiny (slow tests).
Numbers are compared with independent references: matplotlib's point-in-polygon for
SAM2 contours, `calibrate_edge_offset` for the experiment's per-fold offsets, direct
`score_contours` calls for table rows, brute-force loops for threshold sweeps.
"""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from semlab import labels as L
from semlab.contours.classical import calibrate_edge_offset, extract_classical_contours
from semlab.contours.hybrid import HybridExtractor, sam2_unavailable_reason, structure_contours_from_logits
from semlab.contours.metrics import measure_cd, nearest_distances, score_contours
from semlab.contours.predictor import StructureMask
from semlab.data.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
MODEL = "sam2.1_hiera_tiny"


class StubPredictor:
    """Answers each prompt with the true connected structure under its positive point,
    as a signed-distance logit map (+ inside, - outside, |value| >= 0.5 at pixel centres),
    and the predicted IoU given per structure id (default 0.9), stability 1."""

    def __init__(self, truth: np.ndarray, ious: dict | None = None, empty: tuple = ()):
        self.lab, _ = ndi.label(truth)
        self.ious = ious or {}
        self.empty = set(empty)
        self.calls = []

    def set_image(self, image):
        self.image = image

    def predict(self, prompts):
        self.calls.append(len(prompts))
        out = []
        for p in prompts:
            x, y = p.points[0].astype(int)
            comp = self.lab == self.lab[y, x] if self.lab[y, x] else np.zeros(self.lab.shape, bool)
            logits = (ndi.distance_transform_edt(comp) - ndi.distance_transform_edt(~comp)).astype(np.float32)
            logits -= 0.5 * np.sign(logits)  # the zero crossing half-way between pixel centres
            if p.structure_id in self.empty:
                logits = np.full(self.lab.shape, -5.0, np.float32)
            out.append(StructureMask(p.structure_id, p.label, logits, self.ious.get(p.structure_id, 0.9), 1.0,
                                     prompt=p))
        return out


@pytest.fixture(scope="module")
def lines():
    r = simulate("line-space", 128, 3)
    assert r.params["vertical"]  # simple polygons: one contour per structure
    return r


# ---------------------------------------------------------------------------- hybrid


def test_hybrid_picks_sam2_or_fallback_per_structure_by_confidence(lines):
    cl = extract_classical_contours(lines.image)
    ids = [s.id for s in cl.structures]
    assert len(ids) >= 5 and all(s.label == L.PATTERN for s in cl.structures)
    ious = {ids[0]: 0.25, ids[1]: 0.49, ids[2]: 0.64, ids[3]: 0.81}  # confidences 0.5, 0.7, 0.8, 0.9
    stub = StubPredictor(lines.mask == L.PATTERN, ious, empty=(ids[4],))
    res = HybridExtractor(stub, threshold=0.8).extract(lines.image)
    assert stub.calls == [len(ids)]  # one batched call for all structures
    by_id = {s.id: s for s in res.structures}
    for sid in ids:
        s = by_id[sid]
        expect = math.sqrt(ious.get(sid, 0.9))  # confidence = sqrt(predicted IoU x stability)
        assert s.confidence == pytest.approx(expect)
        if sid == ids[4]:  # confident, but no mask: the fallback, and why
            assert s.source == "fallback" and s.reason == "SAM2 mask empty" and s.sam2_contours is None
        elif expect >= 0.8 - 1e-12:
            assert s.source == "sam2" and s.reason == f"confidence {expect:.2f} >= 0.80"
        else:
            assert s.source == "fallback" and s.reason == f"confidence {expect:.2f} < 0.80"
    assert by_id[ids[0]].reason == "confidence 0.50 < 0.80"
    assert res.n_fallback == 3 and res.fallback_rate == pytest.approx(3 / len(ids))
    # the fallback's contours are the classical extractor's, untouched
    cl_by = {s.id: s for s in cl.structures}
    for s in res.structures:
        if s.source == "fallback":
            assert all(np.array_equal(a, b) for a, b in zip(s.contours, cl_by[s.id].contours))
    # SAM2's contour encloses exactly the stub's mask: matplotlib's point-in-polygon on pixel centres
    from matplotlib.path import Path as MplPath

    rr, cc = np.mgrid[0:128, 0:128]
    centres = np.column_stack([cc.ravel(), rr.ravel()])
    lab, _ = ndi.label(lines.mask == L.PATTERN)
    for s in res.structures:
        if s.source != "sam2":
            continue
        assert len(s.contours) == 1
        c = s.contours[0]
        inside = MplPath(np.column_stack([c[:, 1], c[:, 0]])).contains_points(centres).reshape(128, 128)
        r0, c0 = np.argwhere(s.mask)[0]
        true_component = lab == lab[r0, c0]  # the whole true structure, nothing else
        np.testing.assert_array_equal(inside, true_component)
        np.testing.assert_array_equal(s.mask, true_component)
    # the chosen pattern edges are the union of the chosen structures' contours
    assert sum(len(s.contours) for s in res.structures) == len(res.contours)
    # the same candidates at other thresholds, without calling SAM2 again
    assert res.rechoose(0.0).n_sam2 == len(ids) - 1  # the empty one still falls back
    always_fb = res.rechoose(float("inf"))
    assert always_fb.n_sam2 == 0 and always_fb.structures[0].reason == "confidence 0.50 < inf"
    assert all(np.array_equal(a, b) for a, b in zip(always_fb.contours, cl.contours))
    assert stub.calls == [len(ids)]


def test_sam2_contours_from_a_stub_lie_on_the_true_edges(lines):
    """Signed-distance logits of the true pixel mask put the edge half-way between pixel
    centres: within about half a pixel of the exact (sub-pixel, rough) edges."""
    res = HybridExtractor(StubPredictor(lines.mask == L.PATTERN), threshold=0.0).extract(lines.image)
    sc = score_contours(res.contours_of("sam2"), lines.contours, lines.image.shape)
    assert res.n_sam2 == len(res.structures)
    assert sc["epe_mean_abs"] < 0.45 and abs(sc["epe_mean"]) < 0.2 and sc["iou"] > 0.97


def test_gradient_refinement_moves_sam2_edges_onto_the_fallback_edges(lines):
    """sam2_refine="gradient" re-locates SAM2's edges on the image's intensity drop, with
    the fallback's settings: where both see the same edge they then agree closely."""
    stub = StubPredictor(lines.mask == L.PATTERN)
    raw = HybridExtractor(stub, threshold=0.0).extract(lines.image)
    ref = HybridExtractor(stub, threshold=0.0, sam2_refine="gradient").extract(lines.image)
    fb = raw.contours_of("fallback")
    d_raw = nearest_distances(raw.contours_of("sam2"), fb, shape=lines.image.shape)
    d_ref = nearest_distances(ref.contours_of("sam2"), fb, shape=lines.image.shape)
    assert np.median(d_ref) < 0.1 < np.median(d_raw)
    with pytest.raises(KeyError, match="none, gradient"):
        HybridExtractor(stub, sam2_refine="spline")


def test_structure_contours_keep_only_the_overlapping_component():
    logits = np.full((40, 40), -3.0, np.float32)
    logits[5:15, 5:15] = 3.0  # the structure
    logits[25:35, 25:35] = 3.0  # another blob SAM2 added
    logits[9, 9] = -3.0  # a one-pixel pinhole: too small for a contour
    mine = np.zeros((40, 40), bool)
    mine[6:14, 6:14] = True
    cs, m, problem = structure_contours_from_logits(logits, mine)
    assert problem is None and len(cs) == 1 and m.sum() == 100  # the pinhole is filled (min_hole_px)
    assert cs[0][:, 0].max() < 15 and cs[0][:, 1].max() < 15
    cs, m, _ = structure_contours_from_logits(logits, mine, min_hole_px=0)
    assert len(cs) == 1 and m.sum() == 99  # kept in the mask, too small for a contour (min_area_px)
    wide = np.full((40, 40), -3.0, np.float32)
    wide[5:15, :] = 3.0  # SAM2 paints far beyond the prompt box (x 4..16): cut 2 px outside it
    cs, m, _ = structure_contours_from_logits(wide, mine, box=(4.0, 4.0, 16.0, 16.0), box_margin_px=2.0)
    assert m.any(0).nonzero()[0].tolist() == list(range(2, 19)) and m.sum() == 10 * 17
    assert structure_contours_from_logits(logits, ~(logits > 0))[2] == \
        "SAM2 mask does not overlap the pre-segmented structure"
    assert structure_contours_from_logits(np.full((40, 40), -1.0), mine)[2] == "SAM2 mask empty"


def test_without_predictor_every_structure_falls_back_with_the_reason(no_weights, lines):
    reason = sam2_unavailable_reason(MODEL)
    assert reason.startswith("SAM2 weights unavailable: sam2.1_hiera_tiny.pt not found")
    hy = HybridExtractor.from_weights(MODEL, image_size=512)
    assert hy.predictor is None and hy.unavailable_reason == reason
    res = hy.extract(lines.image, pixel_nm=1.5)
    cl = extract_classical_contours(lines.image)
    assert res.fallback_rate == 1.0 and res.n_sam2 == 0 and not res.sam2_available
    assert {s.reason for s in res.structures} == {reason}
    assert all(r["source"] == "fallback" and r["confidence"] is None for r in res.records())
    assert len(res.contours) == len(cl.contours)
    assert all(np.array_equal(a, b) for a, b in zip(res.contours, cl.contours))
    np.testing.assert_array_equal(res.mask, cl.mask)
    np.testing.assert_allclose(res.contours_nm()[0], res.contours[0] * 1.5)
    assert res.summary()["fallback_reasons"] == {reason: len(res.structures)}
    assert HybridExtractor(None).extract(lines.image).structures[0].reason == "no SAM2 predictor given"
    missing = HybridExtractor.from_weights(MODEL, checkpoint=no_weights / "nope.pt")
    assert "does not exist" in missing.unavailable_reason and missing.predictor is None
    no_class = HybridExtractor(StubPredictor(lines.mask == 1), sam2_classes=()).extract(lines.image)
    assert {s.reason for s in no_class.structures} == {"class pattern is not prompted (sam2_classes)"}


# ------------------------------------------------------------------------ experiment


def test_sweep_and_calibration_records_against_brute_force():
    from semlab.contours.experiment import structure_errors, sweep_curve

    rng = np.random.default_rng(0)
    recs = []
    for i in range(60):
        has = bool(rng.uniform() > 0.1)
        recs.append({"confidence": float(rng.uniform()) if i % 13 else None, "has_sam2": has,
                     "fb_sum": float(rng.uniform(0, 50)), "fb_n": int(rng.integers(0, 60)),
                     "sam2_sum": float(rng.uniform(0, 80)) if has else 0.0,
                     "sam2_n": int(rng.integers(1, 60)) if has else 0, "px_nm": 1.5})
    ts = [0.0, 0.3, 0.5, 0.9]
    cur = sweep_curve(recs, ts)
    for t, rate, err in zip(ts + [math.inf], cur["fallback_rate"], cur["mean_abs_epe_nm"]):
        use = [r["has_sam2"] and r["confidence"] is not None and r["confidence"] >= t for r in recs]
        s = sum(r["sam2_sum"] if u else r["fb_sum"] for r, u in zip(recs, use))
        n = sum(r["sam2_n"] if u else r["fb_n"] for r, u in zip(recs, use))
        assert rate == pytest.approx(1 - np.mean(use)) and err == pytest.approx(s / n)
    assert cur["fallback_rate"][-1] == 1.0
    c, se, fe = structure_errors(recs)
    kept = [r for r in recs if r["fb_n"] > 0 and r["confidence"] is not None]
    assert len(c) == len(kept)
    for r, s_, f_ in zip(kept, se, fe):
        assert f_ == pytest.approx(r["fb_sum"] / r["fb_n"])
        assert s_ == pytest.approx(r["sam2_sum"] / r["sam2_n"] if r["has_sam2"] else f_)


@pytest.fixture(scope="module")
def smoke_experiment(tmp_path_factory):
    from semlab.contours.experiment import experiment_config, run_experiment

    tmp = tmp_path_factory.mktemp("exp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMLAB_WEIGHTS", str(tmp / "no-weights"))
        mp.setenv("SEMLAB_DATA", str(tmp / "data"))
        mp.setenv("SEMLAB_OFFLINE", "1")
        cfg = experiment_config("smoke", ood_variants=("blur",), ood_n=2, n_boot=200)
        res = run_experiment(cfg, tmp / "out", progress=False)
        again = run_experiment(cfg, tmp / "out", progress=False)
    return cfg, res, again


def test_experiment_without_sam2_reports_classical_and_hybrid_honestly(smoke_experiment):
    from semlab.contours.experiment import build_items

    cfg, res, again = smoke_experiment
    assert not res.sam2_available and "sam2.1_hiera_tiny.pt not found" in res.sam2_reason
    cls = res.method_rows("classical")
    assert len(cls) == 8 and sorted(r["image"] for r in cls) == sorted(it.id for it in build_items(cfg))
    # folds are stratified by preset: 2 ic-metal and 2 line-space test images each
    for k in range(cfg.folds):
        assert sorted(r["preset"] for r in cls if r["fold"] == k) == ["ic-metal"] * 2 + ["line-space"] * 2
    # without SAM2 the hybrid is the fallback on every structure: same numbers, rate 1
    hyb = {r["image"]: r for r in res.method_rows("hybrid")}
    for r in cls:
        assert hyb[r["image"]]["epe_mean_abs"] == r["epe_mean_abs"] and hyb[r["image"]]["fallback_rate"] == 1.0
    for m in ("sam2_zero_shot", "sam2_decoder", "sam2_full", "sam2_encoder"):
        assert res.unavailable(m) == res.sam2_reason and not res.method_rows(m)
    md = res.markdown("cv")
    from semlab.textfmt import md_escape  # reasons in Markdown are escaped (issue 15 item 3)

    assert "unavailable (a)" in md and f"(a) {md_escape(res.sam2_reason)}" in md and "fallback rate 1" in md
    tab = res.table("cv")
    assert tab["sam2_encoder"] is None
    assert tab["classical"]["epe_mean_abs"]["mean"] == pytest.approx(np.mean([r["epe_mean_abs"] for r in cls]))
    sw = res.sweep()
    assert not sw["available"] and set(sw["fallback_rate"]) == {1.0}
    # OOD: the blur variant's images draw their blur outside the training range
    assert [r["image"] for r in res.method_rows("classical", "blur")] == ["blur-ic-metal-000", "blur-line-space-000"]
    assert all(4.0 <= p["psf_sigma_nm"] <= 6.0 for p in res.ood["blur"]["params"].values())
    # a re-run reuses every stage and gives the same rows
    assert again.reused == ["fold-0", "fold-1", "ood-blur"]
    assert [r["epe_mean_abs"] for r in again.method_rows("classical")] == [r["epe_mean_abs"] for r in cls]


def test_experiment_fold_offsets_and_scores_match_direct_computation(smoke_experiment):
    """The per-fold edge offset equals `calibrate_edge_offset` on the fold's training
    images, and a test image's row equals `score_contours` of a direct extraction."""
    from dataclasses import replace

    from semlab.contours.experiment import build_items

    cfg, res, _ = smoke_experiment
    items = build_items(cfg)
    fold = res.folds[0]
    train = [it for it in items if it.fold != 0]
    settings, info = calibrate_edge_offset([(it.image, it.contours) for it in train], cfg.fallback_settings())
    assert fold["offset_px"] == pytest.approx(info["edge_offset_px"], rel=1e-9, abs=1e-12)
    it = next(x for x in items if x.fold == 0)
    direct = extract_classical_contours(it.image, replace(settings, edge_offset_px=fold["offset_px"]))
    ref = score_contours(direct.contours, it.contours, it.image.shape, pixel_nm=it.pixel_nm)
    row = next(r for r in res.method_rows("classical") if r["image"] == it.id)
    for k in ("epe_mean_abs", "epe_mean", "hausdorff95", "iou"):
        assert row[k] == pytest.approx(ref[k], rel=1e-9)
    got, preds = res.predict(it.id, ["classical"])
    assert all(np.array_equal(a, b) for a, b in zip(preds["classical"], direct.contours))
    epe = res.epe_values("cv")["classical"]
    assert len(epe) == sum(r["n_points"] for r in res.method_rows("classical"))
    assert np.mean(np.abs(epe)) == pytest.approx(
        sum(r["epe_mean_abs"] * r["n_points"] for r in res.method_rows("classical")) / len(epe), rel=1e-5)


def test_experiment_config_validation():
    from semlab.contours.experiment import experiment_config

    with pytest.raises(KeyError, match="smoke, cpu, full"):
        experiment_config("huge")
    with pytest.raises(KeyError, match="sam2_encoder"):
        experiment_config("smoke", methods=("classical", "sam3"))
    with pytest.raises(KeyError, match="low_dose"):
        experiment_config("smoke", ood_variants=("fog",))
    with pytest.raises(ValueError, match="n_val"):
        experiment_config("smoke", n_val=10)
    assert experiment_config("cpu", sam2_steps=None).sam2_steps == 10  # None keeps the profile's value


# ------------------------------------------------------------------------ real lines


def test_measure_real_lines_recovers_the_simulated_line_width(tmp_path):
    """A simulated grating saved as an image file: the measured CD matches the CD of
    the simulator's exact contours on the same cuts to a fraction of a pixel."""
    from semlab.contours.experiment import measure_real_lines
    from semlab.io import write_image

    kw = dict(vertical=True, line_end_prob=0.0, defect_prob=0.0)
    r = simulate("line-space", 160, 5, **kw)
    write_image(tmp_path / "lines" / "grating.png", r.image)
    calib = [simulate("line-space", 160, (9, i), **kw) for i in range(4)]  # other seeds: the edge bias
    settings, _ = calibrate_edge_offset([(c.image, c.contours) for c in calib])
    got = measure_real_lines(tmp_path / "lines", tile=160, tiles=1, extractor=HybridExtractor(None, settings))
    assert got.available and len(got.rows) == 1 and got.rows[0]["unit"] == "px"
    true = measure_cd(r.contours, r.image.shape).summary()
    assert got.rows[0]["cd"] == pytest.approx(true["cd"], abs=0.3)
    assert abs(got.rows[0]["n_lines"] - true["n_lines"]) <= 1 and got.rows[0]["fallback_rate"] == 1.0
    per = got.per_image()[0]
    assert per["n_lines"] == len(got.lines) and per["cd_mean"] == pytest.approx(np.mean([x["cd"] for x in got.lines]))
    assert "| grating.png |" in got.markdown()  # names go through semlab.textfmt.md_escape
    missing = measure_real_lines(tmp_path / "nowhere")
    assert not missing.available and "folder not found" in missing.reason and "No real" in missing.markdown()


def test_per_line_statistics_average_to_the_summary():
    r = simulate("line-space", 128, 2, vertical=True)
    m = measure_cd(r.contours, r.image.shape)
    per, s = m.per_line(), m.summary()
    assert len(per) == s["n_lines"] and sum(p["n_cuts"] for p in per) == s["n_cuts"]
    assert np.mean([p["lwr"] for p in per if np.isfinite(p["lwr"])]) == pytest.approx(s["lwr"])
    ler = [v for p in per for v in (p["ler_left"], p["ler_right"]) if np.isfinite(v)]
    assert np.mean(ler) == pytest.approx(s["ler"])
    w = np.concatenate([ln["width"] for ln in m.lines])
    assert np.average([p["cd"] for p in per], weights=[p["n_cuts"] for p in per]) == pytest.approx(w.mean())


def test_new_figures_draw_what_they_are_given():
    from matplotlib.figure import Figure

    from semlab.viz.contours import contour_gallery_figure, line_statistics_figure
    from semlab.viz.segsem import fallback_sweep_figure, method_ci_figure

    tables = {"cv": {"classical": {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6}, "sam2": None},
              "blur": {"classical": {"mean": 1.0, "ci_low": 0.8, "ci_high": 1.3}, "sam2": None}}
    f1 = method_ci_figure(tables, notes={"sam2": "SAM2 weights unavailable"})
    ax = f1.axes[0]
    assert len(ax.lines) >= 2 and "SAM2 weights unavailable" in ax.get_title()
    assert any(t.get_text() == "unavailable (a)" for t in ax.texts)
    sweep = {"thresholds": [0.0, 0.5, 1.0, math.inf], "fallback_rate": [1.0] * 4, "mean_abs_epe_nm": [0.5] * 4,
             "available": False, "reason": "no weights", "all_sam2": math.nan, "all_fallback": 0.5, "calibrated": []}
    f2 = fallback_sweep_figure(sweep)
    assert "no weights" in f2.axes[0].texts[0].get_text()
    img = np.zeros((20, 20), np.float32)
    sq = np.array([[2.0, 2], [2, 8], [8, 8], [8, 2], [2, 2]])
    f3 = contour_gallery_figure([{"image": img, "true": [sq], "pred": {"a": [sq + 1]}, "title": "t"}] * 3, ncols=2)
    assert len([a for a in f3.axes if a.axison]) == 3
    f4 = line_statistics_figure([{"image": "x", "cd": 10.0, "ler_left": 2.0, "ler_right": 3.0}])
    assert all(isinstance(f, Figure) for f in (f1, f2, f3, f4)) and len(f4.axes) == 2


# ------------------------------------------------------------------------------- CLI


@pytest.fixture
def tiny_dataset(tmp_path):
    from semlab.data.datasets import simulate_dataset

    return simulate_dataset(tmp_path / "ds", preset="line-space", n=4, size=64, seed=1,
                            splits={"train": 0.5, "test": 0.5}, progress=False)


def _cli(argv):
    from semlab.cli import main

    return main(argv)


def test_cli_parser_registers_with_a_parent_parser():
    import argparse

    from semlab.contours import cli
    from semlab.contours.finetune import MODES

    p = argparse.ArgumentParser(prog="semlab")
    cli.add_parser(p.add_subparsers(dest="command", required=True))
    a = p.parse_args(["contours", "predict", "imgs", "--out", "o", "--threshold", "0.5"])
    assert a.fn is cli.cmd_predict and a.threshold == 0.5 and a.format == "csv,json"
    a = p.parse_args(["contours", "train", "d", "--out", "o", "--mode", "decoder", "--steps", "3", "--precision", "bf16"])
    assert a.fn is cli.cmd_train and a.mode == "decoder" and a.steps == 3 and a.image_size == 512
    assert a.dataset == "d" and cli._bf16(a)
    assert cli.MODES == MODES
    with pytest.raises(SystemExit):
        p.parse_args(["contours", "train", "d", "--out", "o", "--mode", "adapter"])


def test_cli_predict_writes_contours_and_sources_and_never_overwrites(no_weights, tiny_dataset, capsys):
    from semlab.contours.export import read_contours_json
    from semlab.io import read_csv, read_image

    out = no_weights / "pred"
    assert _cli(["contours", "predict", str(tiny_dataset / "images"), "--out", str(out), "--format", "csv,json,gds",
                 "--pixel-nm", "6", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "fallback rate 1.00" in text
    images = sorted((tiny_dataset / "images").glob("*.png"))
    rows = read_csv(out / "structures.csv")
    n = 0
    for p in images:
        assert {f.suffix for f in out.glob(f"{p.stem}.*")} == {".csv", ".json", ".gds"}
        cl = extract_classical_contours(read_image(p))
        back = read_contours_json(out / f"{p.stem}.json")
        assert back.unit == "nm" and back.pixel_nm == 6.0
        got = [c for cs in back.contours_px().values() for c in cs]
        assert len(got) == len(cl.contours)
        for a, b in zip(got, cl.contours):  # open polygon, x/y swapped back: the classical contour
            np.testing.assert_allclose(a, b[:-1], atol=1e-9)
        assert back.meta["parameters"]["hybrid"]["sam2_available"] is False
        mine = [r for r in rows if r["image"] == str(p)]
        assert len(mine) == len(cl.structures)
        n += len(mine)
    assert n == len(rows) and {r["source"] for r in rows} == {"fallback"}
    assert all(r["reason"].startswith("SAM2 weights unavailable: sam2.1_hiera_tiny.pt not found") for r in rows)
    before = {f: f.stat().st_mtime_ns for f in out.iterdir()}
    assert _cli(["contours", "predict", str(tiny_dataset / "images"), "--out", str(out), "--quiet"]) == 2
    assert "never overwrites" in capsys.readouterr().err
    assert before == {f: f.stat().st_mtime_ns for f in out.iterdir()}
    assert _cli(["contours", "predict", str(tiny_dataset / "images"), "--out", str(no_weights / "g"),
                 "--format", "gds", "--quiet"]) == 2
    assert "needs the pixel size" in capsys.readouterr().err
    assert _cli(["contours", "predict", str(tiny_dataset / "images"), "--out", str(no_weights / "h"),
                 "--format", "svg"]) == 2
    assert "valid: csv, json, gds" in capsys.readouterr().err
    assert _cli(["contours", "predict", str(no_weights / "nothing"), "--out", str(no_weights / "i")]) == 2
    assert "not found" in capsys.readouterr().err
    assert _cli(["contours", "predict", str(tiny_dataset / "images"), "--out", str(no_weights / "j"),
                 "--checkpoint", str(no_weights / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_evaluate_table_matches_direct_scores(no_weights, tiny_dataset, capsys):
    from semlab.data.datasets import load_dataset
    from semlab.io import read_csv

    md, csv = no_weights / "t.md", no_weights / "t.csv"
    assert _cli(["contours", "evaluate", str(tiny_dataset), "--split", "all", "--calibrate", "0", "--n-boot", "200",
                 "--out", f"{md},{csv}", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "SAM2 only: unavailable: SAM2 weights unavailable" in out and md.read_text().startswith("Contours of 4")
    ds = load_dataset(tiny_dataset)
    px = ds.info["pixel_size_nm"]
    ref = [score_contours(extract_classical_contours(ds.image(i)).contours, ds.contours(i), (64, 64), pixel_nm=px)
           for i in ds.ids]
    rows = {(r["method"], r["metric"]): r for r in read_csv(csv)}
    for m in ("classical fallback only", "hybrid"):
        assert float(rows[(m, "epe_mean_abs")]["mean"]) == pytest.approx(np.mean([r["epe_mean_abs"] for r in ref]))
        assert rows[(m, "epe_mean_abs")]["unit"] == "nm" and rows[(m, "iou")]["unit"] == ""
    assert not any(k[0] == "SAM2 only" for k in rows)
    assert _cli(["contours", "evaluate", str(tiny_dataset), "--split", "all", "--out", str(md)]) == 2
    assert "never overwrites" in capsys.readouterr().err
    assert _cli(["contours", "evaluate", str(tiny_dataset), "--split", "val"]) == 2
    assert "no images in split 'val'" in capsys.readouterr().err
    assert _cli(["contours", "evaluate", str(no_weights / "nope")]) == 2
    assert "not a semlab dataset" in capsys.readouterr().err
    assert _cli(["contours", "train", str(tiny_dataset), "--out", str(no_weights / "ft")]) == 2
    assert "sam2.1_hiera_tiny.pt not found" in capsys.readouterr().err


def test_cli_evaluate_refuses_data_without_contours(no_weights, capsys):
    from semlab.data.datasets import import_images
    from semlab.io import write_image

    write_image(no_weights / "raw" / "a.png", simulate("ic-metal", 64, 0).image)
    ds = import_images(no_weights / "raw", no_weights / "imported", splits={"test": 1.0}, progress=False)
    assert _cli(["contours", "evaluate", str(ds)]) == 2
    assert "no ground-truth contours" in capsys.readouterr().err
    assert _cli(["contours", "train", str(ds), "--out", str(no_weights / "ft")]) == 2
    assert "has no masks" in capsys.readouterr().err


# ----------------------------------------------------------------- with SAM2 (random)


@pytest.fixture(scope="module")
def random_sam2(tmp_path_factory):
    pytest.importorskip("sam2")
    from semlab.segment.sam2_backend import make_random_checkpoint

    folder = tmp_path_factory.mktemp("weights")
    make_random_checkpoint(MODEL, folder, image_size=512, seed=0)
    return folder


@pytest.mark.slow
def test_hybrid_with_the_real_sam2_predictor_on_random_weights(random_sam2, tmp_path, monkeypatch, capsys):
    """Random weights give meaningless masks: this checks the plumbing -- one embedding,
    confidences from SAM2's own IoU head and stability, sources that follow the
    threshold -- and the CLI's predict with a checkpoint."""
    from semlab.contours.confidence import confidence_score
    from semlab.contours.predictor import Sam2Predictor
    from semlab.contours.prompts import prompts_from_structures
    from semlab.io import read_csv

    monkeypatch.setenv("SEMLAB_WEIGHTS", str(random_sam2))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    r = simulate("ic-metal", 96, 2)
    hy = HybridExtractor.from_weights(MODEL, image_size=512)
    assert isinstance(hy.predictor, Sam2Predictor) and hy.unavailable_reason is None
    res = hy.extract(r.image)
    conf = np.array([s.confidence for s in res.structures])
    assert np.all((conf >= 0) & (conf <= 1))
    # the same prompts straight through the predictor give the same IoU and stability
    cl = res.classical
    direct = hy.predictor.predict_image(r.image, prompts_from_structures(
        cl.structure_map, {s.id: s.label for s in cl.structures}))
    for s, d in zip(res.structures, direct):
        assert s.predicted_iou == pytest.approx(d.predicted_iou, abs=1e-6)
        assert s.confidence == pytest.approx(confidence_score(d.predicted_iou, d.stability))
    t = float(np.median(conf))
    mid = res.rechoose(t)
    for s in mid.structures:
        assert (s.source == "sam2") == (s.sam2_contours is not None and s.confidence >= t)
    from semlab.io import write_image

    write_image(tmp_path / "img.png", r.image)
    out = tmp_path / "pred"
    assert _cli(["contours", "predict", str(tmp_path / "img.png"), "--out", str(out), "--threshold", "0",
                 "--quiet"]) == 0
    rows = read_csv(out / "structures.csv")
    assert rows and all(row["confidence"] != "" for row in rows)
    assert {row["source"] for row in rows} <= {"sam2", "fallback"} and any(row["source"] == "sam2" for row in rows)


@pytest.mark.slow
def test_experiment_with_sam2_arms_on_random_weights(random_sam2, tmp_path, monkeypatch):
    """The SAM2 arms end to end on a tiny configuration: fine-tuning per fold, the
    threshold calibrated on validation structures, the sweep, OOD with fold 0's model
    loaded from disk, and resuming."""
    from semlab.contours.experiment import experiment_config, run_experiment

    monkeypatch.setenv("SEMLAB_WEIGHTS", str(random_sam2))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    cfg = experiment_config("smoke", n_per_preset=2, n_val=1, ood_variants=("blur",), ood_n=1, n_boot=100,
                            methods=("classical", "sam2_encoder", "hybrid"))
    res = run_experiment(cfg, tmp_path / "exp", progress=False)
    assert res.sam2_available
    assert len(res.method_rows("sam2_encoder")) == 4 and len(res.method_rows("sam2_encoder", "blur")) == 1
    for f in res.folds:
        assert f["finetune"]["encoder"]["steps"] == 1
        assert (tmp_path / "exp" / f"fold-{f['fold']}" / "sam2-encoder" / f"{MODEL}.pt").is_file()
        assert f["calibration"]["encoder"]["calibrated"] and f["calibration"]["encoder"]["n"] > 0
    sw = res.sweep("encoder")
    assert sw["available"] and sw["fallback_rate"][-1] == 1.0 and sw["n_structures"] > 0
    assert sw["mean_abs_epe_nm"][-1] == pytest.approx(sw["all_fallback"])
    cls = {r["image"]: r for r in res.method_rows("classical")}
    for r in res.method_rows("hybrid"):
        if r["fallback_rate"] == 1.0:  # every structure fell back: exactly the classical contours
            assert r["epe_mean_abs"] == pytest.approx(cls[r["image"]]["epe_mean_abs"])
    assert "unavailable" not in res.markdown("cv")
    again = run_experiment(cfg, tmp_path / "exp", progress=False)
    assert again.reused == ["fold-0", "fold-1", "ood-blur"]


# --------------------------------------------------------------------------- notebook


@pytest.mark.slow
def test_segsem_notebook_runs_in_smoke_profile_without_weights(tmp_path, monkeypatch, run_notebook):
    """Notebook 50 without SAM2 weights: it runs, says why SAM2 is unavailable, reports
    the classical and hybrid (all fallback) results and writes its metrics."""
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    run_dir = tmp_path / "run"
    nb = run_notebook("50_segsem_contours.ipynb", {"PROFILE": "smoke", "RUN_DIR": str(run_dir)})
    assert nb.images >= 8
    assert "SAM2 unavailable: SAM2 weights unavailable: sam2.1_hiera_tiny.pt not found" in nb.text
    assert "unavailable (a)" in nb.markdown and "fallback rate 1" in nb.markdown
    folder = run_dir / "50_segsem_contours"
    from semlab.metrics import keys as K

    doc = json.loads((folder / "metrics.json").read_text())
    assert K.doc_problems(doc) == [] and (folder / doc["figure"]).is_file()
    m, extra = doc["metrics"], doc["extra"]
    assert extra["profile"] == "smoke" and doc["n"] == 8 and extra["sam2_available"] is False
    assert m[K.key("hybrid", K.FALLBACK_RATE)]["value"] == 1.0
    assert m[K.key("hybrid", K.EPE_MEAN_ABS)] == m[K.key("classical", K.EPE_MEAN_ABS)]
    assert 0 < m[K.key("classical", K.EPE_MEAN_ABS)]["value"] < 5
    assert extra[K.UNAVAILABLE][K.key("sam2_encoder", K.EPE_MEAN_ABS)].startswith("SAM2 weights unavailable")
    assert (folder / "fallback_sweep.png").is_file() and (folder / "results.csv").is_file()
    assert json.loads((folder / "outputs.json").read_text())["experiment"] == str(folder / "experiment")
    real = Path(os.environ.get("SEMLAB_REAL_SEM", ROOT.parent / "shared" / "data" / "real_sem")) / "dsa_lines"
    assert extra["real_available"] == real.is_dir()
    if real.is_dir():
        cds = {k: v for k, v in m.items() if k.startswith("real/") and k.endswith("." + K.CD_MEAN)}
        assert len(cds) == 3 and all(v["unit"] == "nm" and v["value"] > 0 for v in cds.values())
    else:
        assert "No real DSA folder found" in nb.text
