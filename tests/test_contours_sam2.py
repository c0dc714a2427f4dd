"""SegSEM's SAM2 side: prompts, the batched predictor at 512 px, stability, confidence
calibration and fine-tuning (encoder / decoder / LoRA, checkpoint resume).

A randomly initialised sam2.1 hiera-tiny checkpoint is written once, in the official
`{"model": state_dict}` format, to a temporary weights folder found through
$SEMLAB_WEIGHTS: the real loading code runs, offline. Random weights give meaningless
masks; the tests check plumbing, shapes, which weights move, and numbers against
independent references.
"""

import copy

import numpy as np
import pytest

pytest.importorskip("sam2")
torch = pytest.importorskip("torch")

from semlab.contours import confidence as conf  # noqa: E402
from semlab.contours.finetune import (FinetuneConfig, LoRALinear, Sam2Finetuner, augment_example,  # noqa: E402
                                      finetune, load_finetune_checkpoint, make_examples, merged_state_dict)
from semlab.contours.predictor import Sam2Predictor, stability_score  # noqa: E402
from semlab.contours.prompts import (GEOMETRIC_OPS, label_structures, prompt_arrays,  # noqa: E402
                                     prompts_from_mask, transform_array, transform_prompts)
from semlab.data.simulate import simulate  # noqa: E402
from semlab.weights import WeightsNotFound  # noqa: E402

MODEL = "sam2.1_hiera_tiny"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def predictor(sam2_weights_folder):
    with pytest.MonkeyPatch.context() as mp:  # found through $SEMLAB_WEIGHTS, never downloaded
        mp.setenv("SEMLAB_WEIGHTS", str(sam2_weights_folder))
        mp.setenv("SEMLAB_OFFLINE", "1")
        return Sam2Predictor(MODEL, image_size=512)


@pytest.fixture(scope="module")
def base_model(predictor):
    """The loaded random model; tests that train take a deep copy."""
    return predictor.model


@pytest.fixture(scope="module")
def examples():
    sims = [simulate("ic-metal", 64, i) for i in range(3)]
    ex = make_examples([s.image for s in sims], [s.mask for s in sims], classes=[1], n_negative=1, min_area=8)
    assert len(ex) == 3 and all(len(e.prompts) >= 1 for e in ex)
    return ex


def hand_mask():
    """40 x 50: a speck (dropped by min_area), an 11 x 15 pattern rectangle, a 5 x 5 hole
    and a 9 x 7 pattern cut by the bottom-left corner of the frame."""
    m = np.zeros((40, 50), np.uint8)
    m[0, 45:47] = 1  # speck, area 2
    m[5:16, 10:25] = 1  # rows 5..15, cols 10..24
    m[25:30, 30:35] = 2  # rows 25..29, cols 30..34
    m[31:40, 0:7] = 1  # rows 31..39, cols 0..6
    return m


# --------------------------------------------------------------------------- prompts


def test_prompts_from_a_hand_built_mask():
    m = hand_mask()
    ps = prompts_from_mask(m, margin_px=2, n_negative=0, min_area=4)
    assert [p.structure_id for p in ps] == [1, 2, 3]
    assert [p.label for p in ps] == [1, 2, 1]
    assert [p.area for p in ps] == [165, 25, 63]
    # boxes: bounding box (first/last pixel) grown by 2 and clipped to the frame
    assert ps[0].box == (8.0, 3.0, 26.0, 17.0)
    assert ps[1].box == (28.0, 23.0, 36.0, 31.0)
    assert ps[2].box == (0.0, 29.0, 8.0, 39.0)
    # positive points: the deepest pixel (the centre for odd-sized rectangles), as (x, y)
    assert ps[0].points.tolist() == [[17.0, 10.0]] and ps[0].point_labels.tolist() == [1]
    assert ps[1].points.tolist() == [[32.0, 27.0]]
    # the cut structure: the frame counts as a boundary, so the point is 4 px from the
    # left edge of the image (column 3), not on it
    assert ps[2].points.tolist() == [[3.0, 35.0]]
    assert ps[2].cut == ("bottom", "left") and ps[0].cut == () and ps[2].is_cut
    assert [p.structure_id for p in prompts_from_mask(m, margin_px=2, include_cut=False, min_area=4)] == [1, 2]
    # negative point: the box pixel farthest from the hole (corners tie; row-major first)
    neg = prompts_from_mask(m, classes=[2], margin_px=2, n_negative=1, min_area=4)[0]
    assert neg.points.tolist() == [[32.0, 27.0], [28.0, 23.0]] and neg.point_labels.tolist() == [1, 0]
    # the speck is a structure only when min_area allows it
    assert len(prompts_from_mask(m, min_area=1)) == 4


def test_label_structures_matches_scipy_label():
    from scipy import ndimage

    m = simulate("contacts", 96, 3).mask
    inst, class_of = label_structures(m, min_area=1)
    n_ref = sum(ndimage.label(m == c)[1] for c in np.unique(m) if c)
    assert inst.max() == n_ref == len(class_of)
    for sid, c in class_of.items():  # each instance lies in one class and is one component
        region = inst == sid
        assert np.all(m[region] == c) and ndimage.label(region)[1] == 1


@pytest.mark.parametrize("op", GEOMETRIC_OPS)
def test_transformed_prompts_equal_prompts_of_the_transformed_mask(op):
    m = hand_mask()
    moved = transform_prompts(prompts_from_mask(m, margin_px=2, min_area=4), op)
    direct = prompts_from_mask(np.ascontiguousarray(transform_array(m, op)), margin_px=2, min_area=4)
    key = lambda p: p.box  # noqa: E731 - structure ids follow row-major order, which ops change
    assert len(moved) == len(direct)
    for a, b in zip(sorted(moved, key=key), sorted(direct, key=key)):
        assert a.box == b.box and a.shape == b.shape and a.cut == b.cut and a.label == b.label
        assert np.array_equal(a.points, b.points)


def test_prompt_arrays_pad_points_with_minus_one():
    m = hand_mask()
    ps = [prompts_from_mask(m, classes=[2], n_negative=2, min_area=4)[0], prompts_from_mask(m, min_area=4)[0]]
    boxes, coords, labels = prompt_arrays(ps)
    assert boxes.shape == (2, 4) and coords.shape == (2, 3, 2)
    assert labels.tolist() == [[1, 0, 0], [1, -1, -1]]
    assert prompt_arrays(ps, use_points=False)[1] is None


def test_augmentation_keeps_prompts_on_their_structures(examples):
    cfg = FinetuneConfig()
    for seed in range(6):
        ex = augment_example(examples[0], np.random.default_rng(seed), cfg)
        assert ex.image.dtype == np.float32 and 0 <= ex.image.min() and ex.image.max() <= 1
        for p in ex.prompts:
            rows, cols = np.nonzero(ex.instances == p.structure_id)
            h, w = ex.instances.shape
            assert p.box == (max(0.0, cols.min() - 4.0), max(0.0, rows.min() - 4.0),
                             min(w - 1.0, cols.max() + 4.0), min(h - 1.0, rows.max() + 4.0))
            x, y = p.points[0].astype(int)
            assert ex.instances[y, x] == p.structure_id  # the positive point stays inside


# --------------------------------------------------------------------------- stability


def test_stability_score_against_a_direct_numpy_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=(4, 20, 30)).astype(np.float32)
    logits[3] = -5.0  # nothing predicted: defined as 0
    got = stability_score(logits, threshold=0.5, offset=1.0)
    for k in range(4):
        hi, lo = logits[k] > 1.5, logits[k] > -0.5
        union = np.logical_or(hi, lo).sum()
        ref = np.logical_and(hi, lo).sum() / union if union else 0.0
        assert got[k] == pytest.approx(ref, abs=1e-12)
    assert stability_score(torch.from_numpy(logits[0]), 0.5, 1.0) == pytest.approx(got[0])
    assert isinstance(stability_score(logits[0]), float)


# --------------------------------------------------------------------------- predictor


def test_predictor_runs_at_512_with_all_boxes_in_one_call(predictor, monkeypatch):
    sim = simulate("ic-metal", (96, 128), 0)  # not square: catches transposed masks
    prompts = prompts_from_mask(sim.mask, n_negative=1)
    assert len(prompts) >= 3
    calls = []
    real = predictor._predictor.predict

    def spy(**kw):
        calls.append(kw["box"].shape)
        return real(**kw)

    monkeypatch.setattr(predictor._predictor, "predict", spy)
    predictor.set_image(sim.image)
    out = predictor.predict(prompts)
    assert calls == [(len(prompts), 4)]  # one batched decoder call for all structures
    assert [r.structure_id for r in out] == [p.structure_id for p in prompts]
    for r in out:
        assert r.logits.shape == sim.image.shape and r.logits.dtype == np.float32
        assert r.mask.shape == sim.image.shape and r.probability.max() <= 1.0
        assert 0.0 <= r.predicted_iou <= 1.0 and 0.0 <= r.stability <= 1.0
        assert r.stability == stability_score(r.logits)
    # batching does not mix structures: one prompt alone gives the same logits
    alone = predictor.predict([prompts[1]])[0]
    np.testing.assert_allclose(alone.logits, out[1].logits, atol=1e-4)
    assert alone.predicted_iou == pytest.approx(out[1].predicted_iou, abs=1e-5)
    # best of three: the candidate with the highest predicted IoU
    predictor.multimask = "best"
    try:
        best = predictor.predict(prompts[:2])
        boxes, coords, labels = prompt_arrays(prompts[:2])
        masks, ious, _ = real(point_coords=coords, point_labels=labels, box=boxes, multimask_output=True,
                              return_logits=True)
        assert ious.shape == (2, 3)
        for i, b in enumerate(best):
            assert b.predicted_iou == pytest.approx(float(ious[i].max()), abs=1e-6)
            np.testing.assert_array_equal(b.logits, masks[i, int(np.argmax(ious[i]))])
    finally:
        predictor.multimask = "single"
    with pytest.raises(ValueError, match="shape"):
        predictor.predict(prompts_from_mask(simulate("ic-metal", 64, 1).mask))


def test_missing_weights_name_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    with pytest.raises(WeightsNotFound, match=r"SAM2 predictor.*sam2\.1_hiera_small\.pt"):
        Sam2Predictor("sam2.1_hiera_small", image_size=512)
    with pytest.raises(KeyError, match="sam2.1_hiera_tiny"):
        Sam2Predictor("sam3_hiera_tiny")
    with pytest.raises(ValueError, match="image_size"):
        Sam2Predictor(MODEL, image_size=640)
    with pytest.raises(KeyError, match="encoder, decoder, full, lora"):
        FinetuneConfig(mode="adapter")


# --------------------------------------------------------------------------- fine-tuning


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before, model):
    after = model.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.slow
def test_encoder_mode_step_changes_encoder_and_leaves_decoder_bit_identical(base_model, examples):
    """MUST-SHOW (SegSEM): after a fine-tuning step the image encoder's weights changed
    and the mask decoder's (and prompt encoder's) are bit-identical."""
    tuner = Sam2Finetuner(FinetuneConfig(mode="encoder", bf16=True, max_prompts=2), sam_model=copy.deepcopy(base_model))
    before = _snapshot(tuner.model)
    parts = tuner.train_step([augment_example(examples[0], np.random.default_rng(0), tuner.config)])
    assert np.isfinite(parts["loss"]) and parts["loss"] > 0
    changed = _changed(before, tuner.model)
    enc = [k for k in before if k.startswith("image_encoder.")]
    dec = [k for k in before if k.startswith("sam_mask_decoder.")]
    assert dec and enc
    assert not changed & set(dec)  # frozen decoder: bit-identical
    assert not {k for k in changed if not k.startswith("image_encoder.")}  # nothing else moved either
    assert "image_encoder.trunk.patch_embed.proj.weight" in changed
    assert len(changed & set(enc)) >= 0.8 * len(enc)


@pytest.mark.slow
def test_decoder_mode_step_changes_decoder_only(base_model, examples):
    tuner = Sam2Finetuner(FinetuneConfig(mode="decoder", max_prompts=2), sam_model=copy.deepcopy(base_model))
    before = _snapshot(tuner.model)
    tuner.train_step([examples[1]])
    changed = _changed(before, tuner.model)
    assert changed and all(k.startswith("sam_mask_decoder.") for k in changed)
    assert "sam_mask_decoder.conv_s0.weight" in changed  # the high-res projections train with it


@pytest.mark.slow
def test_lora_mode_changes_only_adapters_and_merges_exactly(base_model, examples):
    tuner = Sam2Finetuner(FinetuneConfig(mode="lora", bf16=True, max_prompts=2, lora_rank=2),
                          sam_model=copy.deepcopy(base_model))
    assert tuner.lora_modules and all(n.endswith((".qkv", ".proj")) for n in tuner.lora_modules)
    before = _snapshot(tuner.model)
    tuner.train_step([examples[2]])
    changed = _changed(before, tuner.model)
    assert changed and all(k.endswith((".lora_a", ".lora_b")) for k in changed)
    assert any(k.endswith(".lora_b") for k in changed)
    # the official state dict: the original key set, adapters folded into the weights
    sd = merged_state_dict(tuner.model)
    assert set(sd) == set(base_model.state_dict())
    name = tuner.lora_modules[0]
    layer = tuner.model.get_submodule(name)
    assert isinstance(layer, LoRALinear) and layer.lora_b.abs().max() > 0
    x = torch.randn(5, layer.base.in_features)
    with torch.no_grad():
        np.testing.assert_allclose(layer(x).numpy(),
                                   torch.nn.functional.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"]).numpy(),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(base_model, examples, tmp_path):
    """2 steps, stop, resume for 1 more == 3 steps in one go (model and optimizer state,
    bit for bit); the exported model loads like any SAM2 checkpoint."""
    train, val = examples[:2], examples[2:]
    cfg = dict(mode="decoder", max_prompts=2, epochs=5, seed=3)
    a = finetune(train, val, FinetuneConfig(**cfg, max_steps=3), tmp_path / "a", progress=False,
                 sam_model=copy.deepcopy(base_model))
    b1 = finetune(train, val, FinetuneConfig(**cfg, max_steps=2), tmp_path / "b", progress=False,
                  sam_model=copy.deepcopy(base_model))
    b2 = finetune(train, val, FinetuneConfig(**cfg, max_steps=3), tmp_path / "b", progress=False,
                  sam_model=copy.deepcopy(base_model))
    assert (a.steps, b1.steps, b2.steps) == (3, 2, 3)
    assert b1.resumed_from is None and b2.resumed_from is not None and b2.resumed_from.name == "ckpt-000000002.pt"
    ca = load_finetune_checkpoint(a.checkpoint)  # torch.load(weights_only=True) inside
    cb = load_finetune_checkpoint(b2.checkpoint)
    assert ca["step"] == cb["step"] == 3 and ca["epoch"] == cb["epoch"] == 1
    assert ca["config"]["mode"] == "decoder" and "torch" in ca["rng"]
    assert set(ca["model"]) == set(cb["model"])
    for k in ca["model"]:
        assert torch.equal(ca["model"][k], cb["model"][k]), k
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert set(sa) == set(sb) and all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    assert [(h["train_loss"], h["val_loss"]) for h in a.history] == [(h["train_loss"], h["val_loss"]) for h in b2.history]
    # the exported best model is an official checkpoint: sam2's strict loader takes it
    assert a.exported.name == f"{MODEL}.pt"
    sd = torch.load(a.exported, map_location="cpu", weights_only=True)
    assert list(sd) == ["model"] and set(sd["model"]) == set(base_model.state_dict())
    pred = Sam2Predictor(MODEL, checkpoint=a.exported, image_size=512)
    assert torch.equal(pred.model.sam_mask_decoder.conv_s0.weight, sd["model"]["sam_mask_decoder.conv_s0.weight"])
    with pytest.raises(ValueError, match="config differs in lr"):
        finetune(train, val, FinetuneConfig(**cfg, max_steps=4, lr=1.0), tmp_path / "b", progress=False,
                 sam_model=copy.deepcopy(base_model))


# --------------------------------------------------------------------------- confidence


def _brute_threshold(c, s, fb, sign):
    cands = list(np.unique(c)) + [np.inf]
    vals = [np.mean(np.where(c >= t, s, fb)) for t in cands]
    best = min(range(len(cands)), key=lambda i: (sign * vals[i], i))
    return cands[best], vals[best]


@pytest.mark.parametrize("objective", ["min_error", "max_score"])
def test_threshold_calibration_against_brute_force(objective):
    rng = np.random.default_rng(1)
    n = 300
    c = rng.uniform(0, 1, n).round(2)  # repeated confidences exercise the grouping
    s = np.abs(rng.normal(0, 1, n)) * (1.5 - c)  # SAM2 better when confident
    fb = np.abs(rng.normal(0.6, 0.3, n))
    sign = 1.0 if objective == "min_error" else -1.0
    cal = conf.calibrate_threshold(c, s, fb, objective=objective)
    t_ref, v_ref = _brute_threshold(c, s, fb, sign)
    assert cal.threshold == t_ref and cal.value == pytest.approx(v_ref, rel=1e-12)
    for t, v, f in zip(cal.thresholds, cal.values, cal.fractions):  # the whole curve
        assert v == pytest.approx(np.mean(np.where(c >= t, s, fb)), rel=1e-12)
        assert f == np.mean(c >= t)
    assert cal.all_sam2 == pytest.approx(s.mean()) and cal.all_fallback == pytest.approx(fb.mean())
    better = np.minimum if sign > 0 else np.maximum
    assert cal.oracle == pytest.approx(better(s, fb).mean())


def test_threshold_ties_go_to_the_lowest_and_edge_cases():
    c = np.array([0.1, 0.2, 0.3, 0.4])
    s = np.array([5.0, 1.0, 1.0, 1.0])
    fb = np.array([1.0, 1.0, 1.0, 1.0])  # SAM2 as good as the fallback above 0.1
    cal = conf.calibrate_threshold(c, s, fb)
    assert cal.threshold == 0.2 and cal.value == 1.0 and cal.sam2_fraction == 0.75
    always_fb = conf.calibrate_threshold(c, s + 10, fb)
    assert always_fb.threshold == np.inf and always_fb.sam2_fraction == 0.0
    with pytest.raises(ValueError, match="non-finite"):
        conf.calibrate_threshold(c, [1, np.nan, 1, 1], fb)
    with pytest.raises(KeyError, match="min_error"):
        conf.calibrate_threshold(c, s, fb, objective="median")


def test_threshold_for_precision_against_brute_force():
    rng = np.random.default_rng(2)
    c = rng.uniform(0, 1, 200).round(2)
    good = rng.uniform(0, 1, 200) < c  # more often good when confident
    for target in (0.6, 0.8, 0.95):
        t, prec, cov = conf.threshold_for_precision(c, good, target)
        ref = [u for u in np.unique(c) if good[c >= u].mean() >= target]
        assert t == ref[0] and prec == good[c >= t].mean() and cov == np.mean(c >= t)
    assert conf.threshold_for_precision(c, np.zeros(200, bool), 0.5)[0] == np.inf


def test_confidence_score_and_reliability_table():
    assert conf.confidence_score(0.81, 1.0) == pytest.approx(0.9)
    np.testing.assert_allclose(conf.confidence_score([0.25, 1.2, 0.5], [1.0, 0.64, 0.0]), [0.5, 0.8, 0.0])
    rng = np.random.default_rng(3)
    c = rng.uniform(0, 1, 500)
    obs = np.clip(c + rng.normal(0, 0.1, 500), 0, 1)
    tab = conf.reliability_table(c, obs, n_bins=5)
    for k in range(5):  # direct binning
        lo, hi = k / 5, (k + 1) / 5
        sel = (c >= lo) & ((c < hi) if k < 4 else (c <= hi))
        assert tab["count"][k] == sel.sum()
        assert tab["mean_confidence"][k] == pytest.approx(c[sel].mean())
        assert tab["mean_observed"][k] == pytest.approx(obs[sel].mean())
    ece = sum(sel_n * abs(mc - mo) for sel_n, mc, mo in zip(tab["count"], tab["mean_confidence"],
                                                             tab["mean_observed"])) / 500
    assert tab["ece"] == pytest.approx(ece)
    assert conf.reliability_table(c, obs, n_bins=4, strategy="quantile")["count"].tolist() == [125] * 4


def test_logistic_confidence_learns_which_signal_matters():
    rng = np.random.default_rng(4)
    iou = rng.uniform(0.3, 1.0, 400)
    stab = rng.uniform(0.3, 1.0, 400)
    true_iou = np.clip(iou + rng.normal(0, 0.05, 400), 0, 1)  # only the IoU head is informative
    model = conf.fit_logistic_confidence(iou, stab, true_iou, good_iou=0.8)
    assert model.coef_iou > 5 * abs(model.coef_stability)
    p = model(iou, stab)
    assert p.shape == (400,) and np.all((p >= 0) & (p <= 1))
    with pytest.raises(ValueError, match="cannot fit"):
        conf.fit_logistic_confidence(iou, stab, np.ones(400), good_iou=0.8)


def test_segsem_figures():
    from matplotlib.figure import Figure

    from semlab.viz.segsem import prompts_figure, reliability_figure, threshold_curve_figure

    rng = np.random.default_rng(5)
    c = rng.uniform(0, 1, 50)
    cal = conf.calibrate_threshold(c, rng.uniform(0, 1, 50), rng.uniform(0, 1, 50))
    m = hand_mask()
    figs = [reliability_figure(conf.reliability_table(c, c)), threshold_curve_figure(cal),
            prompts_figure(m.astype(np.float32), prompts_from_mask(m, n_negative=1, min_area=4))]
    assert all(isinstance(f, Figure) and f.axes for f in figs)
