"""semlab.downstream: the segmenter, its data, scores, CLI and the bad-input errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from semlab import io, labels
from semlab.cli import main
from semlab.data.datasets import DatasetWriter
from semlab.downstream import data as D
from semlab.downstream.model import build_segmenter, load_segmenter, predict, save_segmenter
from semlab.downstream.score import bootstrap_miou, confusion, metrology_differences, score_masks
from semlab.downstream.train import TrainSettings, train_segmenter
from semlab.train.realsets import check_frames_disjoint

TINY = dict(batch=4, width=16, depth=2, val_every=10, lr=5e-3)


def _tile(rng, size=32, holes=False):
    """A stripe pattern (and optionally holes in it) with its mask; the image is a noisy
    function of the mask, so a segmenter can learn it exactly."""
    period = int(rng.integers(8, 13))
    phase = int(rng.integers(0, period))
    width = period // 2
    cols = (np.arange(size) + phase) % period < width
    mask = np.zeros((size, size), np.uint8)
    mask[:, cols] = labels.PATTERN
    if rng.random() < 0.5:
        mask = mask.T.copy()
    if holes:
        r, c = (int(x) for x in rng.integers(6, size - 6, 2))
        yy, xx = np.mgrid[:size, :size]
        mask[((yy - r) ** 2 + (xx - c) ** 2 <= 9)] = labels.HOLE
    level = np.array([0.2, 0.7, 0.05, 0.9], np.float32)[mask]
    img = np.clip(level + rng.normal(0, 0.04, mask.shape), 0, 1).astype(np.float32)
    return img, mask


def _dataset(root, frames=None, *, per_frame=4, size=32, masks=True, holes_in=(), seed=0):
    """A small labelled dataset of tiled frames: {frame: split}; tiles <frame>_r.._c.."""
    frames = frames or {"fa": "train", "fb": "train", "fc": "val", "fd": "test"}
    rng = np.random.default_rng(seed)
    used = [0, 1] + ([2] if holes_in else [])
    info = {"classes": [{"id": c.id, "name": c.name} for c in labels.CLASSES if c.id in used], "pixel_size_nm": 1.0}
    w = DatasetWriter(root, kind="test", identity={"test": str(root), "seed": seed}, info=info)
    for f, split in frames.items():
        for k in range(per_frame):
            img, m = _tile(rng, size, holes=f in holes_in)
            w.add(f"{f}_r{0:05d}_c{k * size:05d}", img, split=split, group=f, source=f"/x/testset/{f}.png",
                  mask=m if masks else None)
    return w.close()


# ------------------------------------------------------------------------- model


def test_segmenter_overfits_a_tiny_set():
    rng = np.random.default_rng(1)
    pairs = [_tile(rng) for _ in range(4)]
    imgs = np.stack([io.to_uint8(p[0]) for p in pairs])
    masks = np.stack([p[1] for p in pairs])
    ids = [f"t{i}" for i in range(4)]
    items = D.Items(imgs, masks, ids, ids)
    ts = D.TrainingSet("tiny", [D.Component("tiny", "real", items, 4, (0, 1))])
    tr = train_segmenter(ts, items, TrainSettings(steps=80, **TINY), progress=False)
    pred = predict(tr.model, imgs)
    inter = np.logical_and(pred == 1, masks == 1).sum()
    union = np.logical_or(pred == 1, masks == 1).sum()
    assert inter / union > 0.95
    assert tr.val_miou > 0.95 and tr.best_step <= 80


def test_training_is_reproducible_per_seed():
    rng = np.random.default_rng(2)
    pairs = [_tile(rng) for _ in range(4)]
    items = D.Items(np.stack([io.to_uint8(p[0]) for p in pairs]), np.stack([p[1] for p in pairs]),
                    list("abcd"), list("abcd"))
    ts = D.TrainingSet("t", [D.Component("t", "real", items, 4, (0, 1))])

    def weights(seed):
        tr = train_segmenter(ts, None, TrainSettings(steps=6, seed=seed, **TINY), progress=False)
        return torch.cat([p.detach().flatten() for p in tr.model.state_dict().values() if p.is_floating_point()])

    a, b, c = weights(0), weights(0), weights(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_save_load_round_trip_and_bad_files(tmp_path):
    net = build_segmenter(width=4, depth=2, seed=3)
    for p in net.parameters():  # non-trivial BatchNorm statistics too
        p.data.add_(0.01)
    x = (np.random.default_rng(0).random((2, 24, 20)) * 255).astype(np.uint8)  # padded to multiples of 4
    before = predict(net, x)
    assert before.shape == (2, 24, 20)
    save_segmenter(net, tmp_path / "m", {"note": "test"})
    net2, meta = load_segmenter(tmp_path / "m")
    assert np.array_equal(predict(net2, x), before)
    assert meta["note"] == "test" and meta["config"]["width"] == 4 and meta["model_sha256"] == io.sha256_file(
        tmp_path / "m" / "model.pt")
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({"format": "other", "x": torch.zeros(1)}, bad / "model.pt")
    with pytest.raises(ValueError, match="not a semlab segmenter"):
        load_segmenter(bad)
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="refusing to write"):
        save_segmenter(net, tmp_path / "user")
    assert (tmp_path / "user" / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------- scores


def test_iou_and_dice_equal_sklearn():
    from sklearn.metrics import f1_score, jaccard_score

    rng = np.random.default_rng(4)
    true = rng.integers(0, 3, size=(6, 16, 16))
    pred = np.where(rng.random(true.shape) < 0.7, true, rng.integers(0, 3, size=true.shape))
    sc = score_masks(pred, true, n_boot=200)
    assert sc.classes == (0, 1, 2)
    j = jaccard_score(true.ravel(), pred.ravel(), labels=[0, 1, 2], average=None)
    f = f1_score(true.ravel(), pred.ravel(), labels=[0, 1, 2], average=None)
    assert np.allclose([sc.iou[n] for n in ("background", "pattern", "hole")], j)
    assert np.allclose([sc.dice[n] for n in ("background", "pattern", "hole")], f)
    assert sc.miou == pytest.approx(j.mean())
    assert sc.miou_ci[0] <= sc.miou <= sc.miou_ci[1] and sc.miou_ci[1] - sc.miou_ci[0] > 0
    # the bootstrap of several runs: the mean of their mIoUs
    pred2 = true.copy()
    v, lo, hi = bootstrap_miou([confusion(pred, true), confusion(pred2, true)], (0, 1, 2), n_boot=50)
    assert v == pytest.approx((j.mean() + 1.0) / 2)


def test_defects_are_scored_as_objects():
    true = np.zeros((2, 32, 32), np.uint8)
    true[:, 4:8, 4:8] = labels.DEFECT
    true[:, 20:24, 20:24] = labels.DEFECT
    pred = np.zeros_like(true)
    pred[:, 4:8, 4:8] = labels.DEFECT  # one of two found per tile, no false positive
    sc = score_masks(pred, true, n_boot=50)
    assert sc.defect["precision"]["value"] == 1.0 and sc.defect["recall"]["value"] == 0.5


def test_metrology_difference_is_zero_for_a_perfect_binary_image():
    masks = np.zeros((3, 64, 64), np.uint8)
    for k, (period, width) in enumerate(((12, 6), (11, 5), (10, 4))):
        for start in range(6, 64 - 6 - width, period):  # whole lines, none touching the border
            masks[k, :, start:start + width] = labels.PATTERN
    imgs = (masks * 255).astype(np.uint8)  # the image is the mask: every difference is ~0
    d = metrology_differences(imgs, masks, ["a", "b", "c"], layout="lines", pixel_nm=2.0, n_boot=50)
    assert d["cd"]["n_frames"] == 3 and abs(d["cd"]["value"]) < 0.5 and d["unit"] == "nm"
    assert d["pitch_check"]["share_within_5pct"] == 1.0
    wider = masks.copy()
    wider[:, :, 1:] = np.maximum(masks[:, :, 1:], masks[:, :, :-1])  # every line 1 px wider: CD + 2 nm
    d2 = metrology_differences(imgs, wider, ["a", "b", "c"], layout="lines", pixel_nm=2.0, n_boot=50)
    assert d2["cd"]["value"] - d["cd"]["value"] == pytest.approx(2.0, abs=0.1)
    assert d2["cd"]["ci_low"] <= d2["cd"]["value"] <= d2["cd"]["ci_high"]


# ------------------------------------------------------------------------- data


def test_sampler_never_puts_a_test_frame_in_training(tmp_path):
    ds = _dataset(tmp_path / "ds", {"fa": "train", "fb": "train", "fe": "train", "fc": "val", "fd": "test"},
                  per_frame=5)
    dom = D.real_domain(ds)
    train, test = dom.split("train"), dom.split("test")
    assert set(train.frames) == {"fa", "fb", "fe"} and set(test.frames) == {"fd"}
    index = dom.index
    for seed in range(5):
        small, big = D.sample_tiles(train, 4, seed), D.sample_tiles(train, 10, seed)
        assert set(small) <= set(big) and len(small) == 4 and len(big) == 10
        ts = D.build_training_set("real:4", dom, seed=seed)
        ids = ts.components[0].items.ids
        assert set(ids) <= set(train.ids)
        check_frames_disjoint(index, ids, test.ids)  # raises if a test frame is in training
    with pytest.raises(ValueError, match="fd"):  # the check itself works
        check_frames_disjoint(index, ids + test.ids[:1], test.ids)


def test_augmentation_keeps_image_and_mask_aligned():
    rng = np.random.default_rng(6)
    pairs = [_tile(rng) for _ in range(8)]
    masks = np.stack([p[1] for p in pairs])
    imgs = np.where(masks == 1, 200, 40).astype(np.uint8)
    x, m = D.augment(imgs, masks, np.random.default_rng(0), jitter=0.0, offset=0.0)
    assert np.array_equal(x > 0.5, m == 1)
    assert not np.array_equal(m, masks)  # something was rotated or flipped


def test_specs_parse_and_bad_specs_are_refused():
    assert D.parse_spec("real:10+preset:line-space:dose=30..400,psf_sigma_nm=2") == [
        ("real", "", 10), ("preset", "line-space", {"dose": (30.0, 400.0), "psf_sigma_nm": 2.0})]
    for bad, msg in (("real:0", "positive"), ("real+", "empty part"), ("preset:nope", "unknown preset"),
                     ("preset:line-space:dose=x", "not a number")):
        with pytest.raises(D.SpecError, match=msg):
            D.parse_spec(bad)


def test_sim_domain_test_split_uses_held_out_ranges():
    dom = D.sim_domain("line-space", size=32, n_train=3, n_val=2, n_test=4)
    assert {len(dom.split(s)) for s in ("train", "val", "test")} == {3, 2, 4}
    assert set(dom.shift) == {"dose", "psf_sigma_nm", "pitch_nm"}
    rng = np.random.default_rng(0)
    pre = D.describe_shift("line-space")
    lo, hi = (float(x) for x in pre["dose"].split("-> test ")[1].split(" ")[0].split(".."))
    draws = [D._shifted("line-space", rng, D.SHIFT)["dose"] for _ in range(50)]
    assert lo <= min(draws) and max(draws) <= hi
    assert not set(dom.split("test").ids) & set(dom.split("train").ids)


# ------------------------------------------------------------------------- CLI and bad input


def _run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_json_output_keys(tmp_path, capsys):
    ds = _dataset(tmp_path / "ds")
    code, out, err = _run(["downstream", "--train", "real", "--train", "real:3", "--test", str(ds), "--out",
                           str(tmp_path / "o"), "--steps", "3", "--profile", "smoke", "--json"], capsys)
    assert code == 0, err
    recs = [json.loads(line) for line in out.splitlines()]
    assert [r["train"] for r in recs] == ["real", "real:3"]
    for r in recs:
        assert set(("train", "test", "n_train", "miou", "miou_ci_low", "miou_ci_high")) <= set(r)
        assert r["miou_ci_low"] <= r["miou"] <= r["miou_ci_high"]
    assert recs[0]["n_train"] == 8 and recs[1]["n_train"] == 3
    assert (tmp_path / "o" / "downstream.json").is_file()
    code, _, err = _run(["downstream", "--train", "real", "--test", str(ds), "--out", str(tmp_path / "o"),
                         "--steps", "3", "--profile", "smoke"], capsys)
    assert code == 2 and "never overwrites" in err


def test_cli_train_and_predict(tmp_path, capsys):
    ds = _dataset(tmp_path / "ds")
    code, out, err = _run(["downstream", "train", str(ds), "--out", str(tmp_path / "m"), "--steps", "4",
                           "--profile", "smoke", "--quiet"], capsys)
    assert code == 0, err
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    io.write_image(imgs / "a.png", _tile(np.random.default_rng(0))[0])
    code, out, err = _run(["downstream", "predict", "--model", str(tmp_path / "m"), "--in", str(imgs), "--out",
                           str(tmp_path / "p")], capsys)
    assert code == 0, err
    assert io.read_mask(tmp_path / "p" / "a.png").shape == (32, 32)
    code, _, err = _run(["downstream", "predict", "--model", str(tmp_path / "m"), "--in", str(imgs), "--out",
                         str(tmp_path / "p")], capsys)
    assert code == 2 and "never overwrites" in err


def test_bad_input_is_refused_before_training(tmp_path, capsys, monkeypatch):
    from semlab.downstream import experiment

    def no_training(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(experiment, "_run_one", no_training)
    ds = _dataset(tmp_path / "ds", holes_in=("fd",))  # the test frame holds holes, the train frames none
    # a training folder with masks but no holes
    fold = tmp_path / "fold"
    (fold / "images").mkdir(parents=True)
    (fold / "masks").mkdir()
    rng = np.random.default_rng(9)
    for i in range(3):
        img, m = _tile(rng)
        io.write_image(fold / "images" / f"x{i}.png", img)
        io.write_mask(fold / "masks" / f"x{i}.png", m)
    out = tmp_path / "o"
    code, _, err = _run(["downstream", "--train", str(fold), "--test", str(ds), "--out", str(out)], capsys)
    assert code == 2 and "hole" in err and "lacks" in err and not out.exists()
    # train/test overlap: the test images (and masks) copied into a training folder
    dom = D.real_domain(ds)
    over = tmp_path / "over"
    (over / "images").mkdir(parents=True)
    (over / "masks").mkdir()
    for i in dom.split("test").ids:
        shutil.copy(ds / "images" / f"{i}.png", over / "images" / f"{i}.png")
        shutil.copy(ds / "masks" / f"{i}.png", over / "masks" / f"{i}.png")
    code, _, err = _run(["downstream", "--train", f"real+{over}", "--test", str(ds), "--out", str(out)], capsys)
    assert code == 2 and "overlap" in err and "sha256" in err and not out.exists()
    # datasets without masks: as test set and as training folder
    bare = _dataset(tmp_path / "bare", masks=False)
    code, _, err = _run(["downstream", "--train", "real", "--test", str(bare), "--out", str(out)], capsys)
    assert code == 2 and "no masks" in err
    shutil.rmtree(fold / "masks")
    code, _, err = _run(["downstream", "--train", str(fold), "--test", str(ds), "--out", str(out)], capsys)
    assert code == 2 and "masks" in err and not out.exists()


def test_synthetic_sources_render_new_layouts():
    dom = D.sim_domain("line-space", size=32, n_train=4, n_val=2, n_test=3)
    ts = D.build_training_set("real:2+preset:line-space+render:line-space:pitch_nm=20..30", dom, n_synthetic=3)
    assert [c.kind for c in ts.components] == ["real", "synthetic", "synthetic"]
    assert (ts.n_real, ts.n_synthetic, ts.kind) == (2, 6, "real+synthetic")
    D.check_no_overlap(ts, dom.split("test"), "test")  # new layouts: no test image or mask among them
    rendered = ts.components[2].items
    assert not np.array_equal(rendered.masks, ts.components[1].items.masks)
    rng = np.random.default_rng(0)
    counts = [ts.sample(rng, 4) for _ in range(50)]
    real_ids = set(D.pixel_hashes(ts.components[0].items.images))
    share = np.mean([h in real_ids for imgs, _ in counts for h in D.pixel_hashes(imgs)])
    assert 0.2 < share < 0.5  # balanced sampling: each of 3 components about a third


def test_experiment_table_summary_and_metrics_doc():
    from semlab.downstream.experiment import experiment_metrics_doc, run_experiment
    from semlab.metrics.keys import doc_problems

    dom = D.sim_domain("line-space", size=32, n_train=6, n_val=2, n_test=4)
    res = run_experiment(dom, ["preset:line-space"], ns=(3, None), seeds=(0,),
                         settings=TrainSettings(steps=2, **TINY), n_synthetic=4, n_boot=50, progress=False)
    trains = [r["train"] for r in res.rows]
    assert trains == ["real:3", "real", "preset:line-space", "real:3+preset:line-space", "real+preset:line-space"]
    for r in res.rows:
        assert r["miou_ci_low"] <= r["miou"] <= r["miou_ci_high"] and r["n_test_tiles"] == 4
    assert res.summary["best_synthetic"] == "preset:line-space"
    real_all = next(r for r in res.rows if r["train"] == "real")
    synth = next(r for r in res.rows if r["train"] == "preset:line-space")
    assert res.summary["synthetic_over_real_all"] == pytest.approx(synth["miou"] / real_all["miou"])
    assert "synthetic-only" in res.summary["text"] and "test split: 4 tiles" in res.summary["text"]
    assert set(res.shift) == {"dose", "psf_sigma_nm", "pitch_nm"}
    doc = experiment_metrics_doc(res)
    assert doc_problems(doc) == [] and "real.miou" in doc["metrics"]
    from semlab.viz.downstream import efficiency_figure, predictions_figure, worst_cases_figure

    fig = efficiency_figure(res)
    assert "4 tiles of 4 frames" in fig.axes[0].get_title() and fig.axes[0].get_ylabel() == "mIoU"
    assert len(predictions_figure(res, n=2).axes) == 2 * 4  # image, truth, real, best synthetic
    assert len(worst_cases_figure(res, n=2).axes) == 2 * 3
