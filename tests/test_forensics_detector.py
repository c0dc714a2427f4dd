"""semlab.forensics.detector: grouped folds, metrics against sklearn, a CNN that finds a
planted sub-noise checkerboard (and nothing without it), ResNet-18 from an official-format
state dict, figures."""

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, roc_auc_score

from semlab.data.simulate import simulate
from semlab.forensics import detector as D
from semlab.forensics.detector import (
    assemble_result,
    build_detector,
    cross_validate_detector,
    detection_metrics,
    grouped_folds,
    predict_logits,
    stack_sets,
)
from semlab.io import read_csv

SIZE = 64
N = 32  # images per class


def _checkerboard(n: int) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    return ((-1.0) ** (yy + xx)).astype(np.float32)


@pytest.fixture(scope="module")
def sims():
    real = [simulate("ic-metal-noisy", SIZE, seed=i, with_contours=False) for i in range(N)]
    other = [simulate("ic-metal-noisy", SIZE, seed=1000 + i, with_contours=False) for i in range(N)]
    return real, other


# --------------------------------------------------------------------------- folds


def test_grouped_folds_keep_every_group_in_one_fold():
    rng = np.random.default_rng(0)
    # 30 masks: each gives one real image and 1-3 generated images (all share the mask id)
    labels, groups = [], []
    for g in range(30):
        labels.append(0)
        groups.append(f"mask{g}")
        for _ in range(rng.integers(1, 4)):
            labels.append(1)
            groups.append(f"mask{g}")
    labels, groups = np.array(labels), np.array(groups)
    folds = grouped_folds(labels, groups, n_splits=5, seed=3)
    assert len(folds) == 5
    tested = np.concatenate([te for _, te in folds])
    assert np.array_equal(np.sort(tested), np.arange(len(labels)))  # each image tested exactly once
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])  # no mask on both sides
        assert set(labels[te]) == {0, 1} and set(labels[tr]) == {0, 1}
    # same seed, same folds; another seed, other folds
    again = grouped_folds(labels, groups, n_splits=5, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    other = grouped_folds(labels, groups, n_splits=5, seed=4)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other))
    with pytest.raises(ValueError, match="number of groups"):
        grouped_folds(labels, groups, n_splits=31)


def test_stack_sets_pairs_by_index_and_validates():
    real = [np.full((8, 8), 0.2, np.float32)] * 3
    fake = [np.full((8, 8), 0.7, np.float32)] * 3
    x, y, g = stack_sets(real, fake)
    assert x.shape == (6, 8, 8) and y.tolist() == [0, 0, 0, 1, 1, 1] and g.tolist() == [0, 1, 2, 0, 1, 2]
    _, _, g = stack_sets(real, fake, groups_real=["a", "b", "c"])
    assert g.tolist() == ["a", "b", "c", "a", "b", "c"]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stack_sets([np.full((8, 8), 1.5)], fake[:1])
    with pytest.raises(ValueError, match="generated images are"):
        stack_sets(real, [np.zeros((9, 8))])
    with pytest.raises(ValueError, match="one \\(H, W\\) array"):
        stack_sets(real[0], fake)
    with pytest.warns(UserWarning, match="own group"):
        _, _, g = stack_sets(real, fake[:2])
    assert len(set(g.tolist())) == 5


# --------------------------------------------------------------------------- metrics


def test_metrics_agree_with_sklearn():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(37, int), np.ones(23, int)]
    s = np.round(rng.normal(size=60) + 0.8 * y, 1)  # rounding makes ties, which AUC must count as 1/2
    m, cm = detection_metrics(y, s, n_boot=500, seed=0)
    pred = (s > 0).astype(int)
    assert m["accuracy"].value == pytest.approx(accuracy_score(y, pred))
    assert m["balanced_accuracy"].value == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["roc_auc"].value == pytest.approx(roc_auc_score(y, s))
    assert np.array_equal(cm, confusion_matrix(y, pred, labels=[0, 1]))
    for k, v in m.items():
        assert v.lo <= v.value <= v.hi, k
    # the vectorised bootstrap AUC equals sklearn's on resampled sets, ties included
    pos, neg = s[y == 1], s[y == 0]
    ip, ineg = rng.integers(0, len(pos), (5, len(pos))), rng.integers(0, len(neg), (5, len(neg)))
    aucs = D._auc_rows(pos[ip], neg[ineg])
    for b in range(5):
        yy = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        assert aucs[b] == pytest.approx(roc_auc_score(yy, np.r_[pos[ip[b]], neg[ineg[b]]]))
    # the accuracy CI has the width the binomial standard errors of both classes give
    se = np.sqrt((23 / 60) ** 2 * m["accuracy"].value * (1 - m["accuracy"].value) / 23
                 + (37 / 60) ** 2 * m["accuracy"].value * (1 - m["accuracy"].value) / 37)
    m2, _ = detection_metrics(y, s, n_boot=4000, seed=1)
    width = m2["accuracy"].hi - m2["accuracy"].lo
    assert width == pytest.approx(2 * 1.96 * se, rel=0.35)


def test_cluster_bootstrap_when_groups_hold_several_images():
    """Four identical sub-tiles per image carry no more information than the image: with
    their groups the CI is as wide as the images' own; without, it is about half as wide.
    The cluster CI agrees with semlab.realism.group_bootstrap (an independent loop)."""
    from semlab.realism import group_bootstrap

    rng = np.random.default_rng(4)
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    s = rng.normal(size=80) + 0.9 * y
    g = np.r_[np.arange(40), np.arange(40)]  # pairs share a group: one image per class per group
    base, _ = detection_metrics(y, s, n_boot=3000, seed=0, groups=g)  # no group has 2 images of a class
    plain, _ = detection_metrics(y, s, n_boot=3000, seed=0)
    assert (base["balanced_accuracy"].lo, base["balanced_accuracy"].hi) == \
        (plain["balanced_accuracy"].lo, plain["balanced_accuracy"].hi)
    y4, s4, g4 = np.repeat(y, 4), np.repeat(s, 4), np.repeat(g, 4)
    clus, _ = detection_metrics(y4, s4, n_boot=3000, seed=0, groups=g4)
    naive, _ = detection_metrics(y4, s4, n_boot=3000, seed=0)
    w = {k: m["balanced_accuracy"].hi - m["balanced_accuracy"].lo for k, m in
         (("base", base), ("clus", clus), ("naive", naive))}
    assert clus["balanced_accuracy"].value == pytest.approx(base["balanced_accuracy"].value)
    assert w["clus"] == pytest.approx(w["base"], rel=0.2)
    assert w["naive"] < 0.7 * w["clus"]
    ref = group_bootstrap(y4, s4, g4, n_boot=3000, seed=1)["balanced_accuracy"]
    assert clus["balanced_accuracy"].lo == pytest.approx(ref[1], abs=0.03)
    assert clus["balanced_accuracy"].hi == pytest.approx(ref[2], abs=0.03)
    with pytest.raises(ValueError, match="one label per image"):
        detection_metrics(y, s, groups=g[:10])


def test_result_rows_table_and_files(tmp_path):
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(10, int), np.ones(10, int)]
    g = np.r_[np.arange(10), np.arange(10)]
    folds = grouped_folds(y, g, n_splits=5, seed=0)
    s = rng.normal(size=20) + 2 * y
    r = assemble_result("toy", y, g, s, folds, n_boot=200)
    rows = r.to_rows()
    assert [row["metric"] for row in rows] == ["accuracy", "balanced_accuracy", "roc_auc"]
    assert rows[2]["value"] == pytest.approx(roc_auc_score(y, s))
    assert rows[0]["n_real"] == 10 and rows[0]["n_splits"] == 5
    assert "| toy | roc_auc |" in r.table()  # names go through md_escape (intraword _ stays literal)
    # each image's fold is the fold in which it was tested
    for k, (_, te) in enumerate(folds):
        assert np.all(r.fold[te] == k)
    assert np.allclose(r.probabilities, 1 / (1 + np.exp(-s)))
    paths = r.write(tmp_path, "toy")
    back = json.loads(paths["metrics"].read_text())
    assert back["metrics"]["roc_auc"]["value"] == pytest.approx(rows[2]["value"])
    assert back["confusion"]["matrix"] == r.confusion.tolist()
    csv = read_csv(paths["predictions"])
    assert len(csv) == 20 and csv[0]["set"] == "real" and csv[-1]["set"] == "generated"
    assert sum(row["correct"] == "True" for row in csv) == round(r.metrics["accuracy"].value * 20)


# --------------------------------------------------------------------------- networks


def test_registry_and_input_convention():
    with pytest.raises(KeyError, match="small_cnn.*resnet18"):
        build_detector("vit")
    net = build_detector("small_cnn", seed=0)
    for size in (64, 96):
        x = torch.rand(3, 1, size, size, requires_grad=True)
        out = net.eval()(x)
        assert out.shape == (3,)
        out.sum().backward()  # attribution methods need input gradients
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # seeded construction does not depend on (or move) torch's global RNG
    state = torch.random.get_rng_state()
    a, b = build_detector("small_cnn", seed=5), build_detector("small_cnn", seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_augmentations_are_symmetries_of_the_square():
    x = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 1, 4, 4).repeat(8, 1, 1, 1)
    out = D._augment(x, np.random.default_rng(0), "flip_rot90")
    syms = []
    for k in range(4):
        r = torch.rot90(x[0], k, dims=(-2, -1))
        syms += [r, r.flip(-1)]
    hits = [[torch.equal(o, s) for s in syms] for o in out[::2]]
    assert all(sum(h) == 1 for h in hits)  # every output is exactly one of the 8 symmetries
    assert len({h.index(True) for h in hits}) > 2  # and they vary
    assert torch.equal(D._augment(x, np.random.default_rng(0), None), x)


@pytest.fixture
def weights_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMLAB_ROOT", str(tmp_path))
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    monkeypatch.delenv("SEMLAB_WEIGHTS", raising=False)
    return tmp_path


def test_resnet18_loads_official_state_dict(weights_env, monkeypatch):
    from torchvision.models import resnet18

    from semlab.weights import KNOWN, WeightsNotFound

    spec = KNOWN["resnet18"]
    assert spec.filename == "resnet18-f37072fd.pth" and spec.url.endswith("/models/resnet18-f37072fd.pth")
    # without the file: "auto" falls back to random init, True refuses
    net = build_detector("resnet18", seed=0)
    assert net.semlab_info["pretrained"] is None and D.describe_detector(net) == "resnet18 (random init)"
    with pytest.raises(WeightsNotFound, match="resnet18-f37072fd.pth"):
        build_detector("resnet18", pretrained=True)

    torch.manual_seed(0)
    sd = resnet18(weights=None).state_dict()
    folder = weights_env / "mine"
    folder.mkdir()
    torch.save(sd, folder / spec.filename)
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(folder))
    net = build_detector("resnet18", pretrained=True).eval()
    assert net.semlab_info["pretrained"] == str(folder / spec.filename)
    assert D.describe_detector(net) == "resnet18 (ImageNet)"
    assert torch.equal(net.net.layer3[1].conv2.weight, sd["layer3.1.conv2.weight"])
    assert torch.allclose(net.net.conv1.weight, sd["conv1.weight"].sum(dim=1, keepdim=True))
    # the summed kernel on a gray image = the RGB kernel on that image replicated to 3 channels
    g = torch.rand(2, 1, 32, 32)
    ref = torch.nn.functional.conv2d(g.repeat(1, 3, 1, 1), sd["conv1.weight"], stride=2, padding=3)
    assert torch.allclose(net.net.conv1(g), ref, atol=1e-5)
    with torch.no_grad():
        out = net(torch.rand(2, 1, SIZE, SIZE))
    assert out.shape == (2,) and torch.isfinite(out).all()
    # a file that is not a state dict is refused with its name
    torch.save({"model": 1}, folder / spec.filename)
    with pytest.raises(ValueError, match="resnet18-f37072fd.pth"):
        build_detector("resnet18", pretrained=True)


# --------------------------------------------------------------------------- training


def test_small_cnn_finds_a_checkerboard_below_the_noise(sims):
    real, other = sims
    noise = np.array([np.std(s.image - s.clean) for s in real + other])
    amp = 0.01
    assert amp < 0.35 * noise.min()  # well below the noise std of every image
    cb = _checkerboard(SIZE)
    fake = [np.clip(s.image + amp * cb, 0, 1) for s in other]
    r = cross_validate_detector([s.image for s in real], fake, n_splits=4, epochs=8, seed=0, n_boot=500,
                                progress=False)
    assert r.metrics["accuracy"].value >= 0.95, r.summary()
    assert r.metrics["roc_auc"].value >= 0.97
    assert r.confusion.sum() == 2 * N
    # groups were respected in every fold (pairs by index: real i and generated i)
    for tr, te in r.folds:
        assert not set(r.groups[tr].tolist()) & set(r.groups[te].tolist())
    # the kept per-fold model reproduces the out-of-fold logits of its test images
    assert len(r.models) == 4
    images = np.stack([s.image for s in real] + fake)
    k = 2
    te = r.folds[k][1]
    assert np.allclose(predict_logits(r.models[k], images[te]), r.scores[te], atol=1e-5)
    assert not r.models[k].training


def test_small_cnn_finds_nothing_without_an_artifact(sims):
    real, other = sims
    r = cross_validate_detector([s.image for s in real], [s.image for s in other], n_splits=4, epochs=8, seed=0,
                                n_boot=500, progress=False, keep_models=False)
    assert r.metrics["accuracy"].value < 0.75, r.summary()
    assert r.metrics["roc_auc"].value < 0.75
    assert r.models == []


def test_training_is_seeded_and_bf16_runs(sims):
    real, other = sims
    a = [s.image for s in real[:8]]
    b = [s.image for s in other[:8]]
    kw = dict(n_splits=2, epochs=1, batch_size=4, n_boot=50, progress=False, detector_kwargs={"width": 4})
    r1 = cross_validate_detector(a, b, seed=1, **kw)
    r2 = cross_validate_detector(a, b, seed=1, **kw)
    r3 = cross_validate_detector(a, b, seed=2, **kw)
    assert np.array_equal(r1.scores, r2.scores)
    assert not np.array_equal(r1.scores, r3.scores)
    rb = cross_validate_detector(a, b, seed=1, precision="bf16", augment="flip", **kw)
    assert np.isfinite(rb.scores).all() and rb.config["precision"] == "bf16"
    with pytest.raises(ValueError, match="precision"):
        cross_validate_detector(a, b, precision="fp16", **kw)


# --------------------------------------------------------------------------- figures


def test_detector_figures():
    from matplotlib import pyplot as plt
    from matplotlib.figure import Figure

    from semlab.viz.forensics import confusion_matrices_figure, detector_metrics_figure, roc_curves_figure

    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(12, int), np.ones(12, int)]
    g = np.r_[np.arange(12), np.arange(12)]
    folds = grouped_folds(y, g, n_splits=3)
    res = {name: assemble_result(name, y, g, rng.normal(size=24) + sep * y, folds, n_boot=100)
           for name, sep in (("cnn", 3.0), ("spectrum", 0.5))}
    before = plt.get_fignums()
    figs = [confusion_matrices_figure(res), roc_curves_figure(res), detector_metrics_figure(list(res.values()))]
    assert all(isinstance(f, Figure) for f in figs)
    assert len(figs[0].axes) == 2 and len(figs[2].axes) == 3
    assert len(figs[1].axes[0].lines) == 3  # two ROC curves and the chance diagonal
    assert plt.get_fignums() == before  # nothing registered with pyplot
