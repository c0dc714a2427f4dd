"""Tests for semlab.forensics.saliency and semlab.viz.saliency.

Tiny fixed-weight networks at 16-64 px; every number is checked against an
independent reference (the model's own forward pass, closed forms, direct numpy loops,
scikit-image)."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F

from semlab import labels
from semlab.forensics import saliency as S
from semlab.viz import saliency as V

SIZE = 32


# --------------------------------------------------------------------------- tiny detectors


class SmoothNet(nn.Module):
    """A small, clearly nonlinear CNN (tanh, softplus, a square) with smooth activations,
    so the integrated-gradients quadrature converges and completeness can be tight."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.c1 = nn.Conv2d(1, 8, 5, padding=2)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, stride=2)
        self.head = nn.Linear(8, 1)
        with torch.no_grad():
            for c in (self.c1, self.c2):
                c.weight.copy_(torch.randn(c.weight.shape, generator=g) * 0.6)
                c.bias.copy_(torch.randn(c.bias.shape, generator=g) * 0.5)
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=g))

    def forward(self, x):
        h = torch.tanh(self.c1(x))
        h = F.softplus(self.c2(h))
        return self.head((h ** 2).mean((2, 3)))  # (B, 1)


class QuadrantNet(nn.Module):
    """Sees only the top-left quadrant: the input is multiplied by a fixed quadrant mask
    (after centring, so the mask border is not a step edge), then bias-free convs, a
    2x pool (so Grad-CAM's last conv is coarse, as in real detectors), global mean."""

    def __init__(self, size: int = SIZE, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        m = torch.zeros(1, 1, size, size)
        m[..., : size // 2, : size // 2] = 1
        self.register_buffer("mask", m)
        self.c1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        h = torch.relu(self.c1((x - 0.5) * self.mask))
        h = torch.relu(self.c2(self.pool(h)))
        return self.head(h.mean((2, 3))).squeeze(1)  # (B,)


class FilterEnergy(nn.Module):
    """logit = mean squared response of fixed filters: a checkerboard filter responds
    only near 0.5 cycles/px (high-pass), a box filter only near DC (low-pass), Sobel x
    and y filters to edges."""

    def __init__(self, *kernels):
        super().__init__()
        self.register_buffer("k", torch.as_tensor(np.stack(kernels), dtype=torch.float32)[:, None])

    def forward(self, x):
        return (F.conv2d(x - 0.5, self.k) ** 2).mean((1, 2, 3))


def _noise_images(n=4, size=SIZE, seed=0):
    return np.random.default_rng(seed).random((n, size, size)).astype(np.float32)


def _forward(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x[:, None], dtype=np.float32))).reshape(-1).double().numpy()


# --------------------------------------------------------------------------- integrated gradients


@pytest.mark.parametrize("baseline", ["black", "mean", "blur", "array"])
def test_integrated_gradients_completeness(baseline):
    """sum(IG map) == f(x) - f(baseline), f and the baseline computed here directly."""
    net = SmoothNet()
    imgs = _noise_images(3)
    if baseline == "black":
        ref = np.zeros_like(imgs)
    elif baseline == "mean":
        ref = np.broadcast_to(imgs.mean(axis=(1, 2), keepdims=True), imgs.shape).copy()
    elif baseline == "blur":
        from skimage.filters import gaussian

        ref = np.stack([gaussian(im.astype(np.float64), sigma=3.0, mode="reflect", truncate=4.0,
                                 preserve_range=True) for im in imgs]).astype(np.float32)
    else:
        ref = np.full(imgs.shape[1:], 0.3, np.float32)[None].repeat(3, 0)
    given = ref[0] if baseline == "array" else baseline
    attr, delta = S.attribute(net, imgs, "integrated_gradients", baseline=given, n_steps=64, return_delta=True)
    diff = _forward(net, imgs) - _forward(net, ref)
    assert np.all(np.abs(diff) > 0.5)  # the test is not vacuous
    np.testing.assert_allclose(attr.sum(axis=(1, 2)), diff, rtol=1e-4, atol=1e-4)
    # captum's delta is the same residual
    np.testing.assert_allclose(delta, attr.sum(axis=(1, 2), dtype=np.float64) - diff, atol=2e-4)
    # ... and it is a real check: two quadrature steps miss by far more
    coarse = S.attribute(net, imgs, "integrated_gradients", baseline=given, n_steps=2)
    assert np.abs(coarse.sum(axis=(1, 2)) - diff).max() > 100 * np.abs(attr.sum(axis=(1, 2)) - diff).max()


def test_integrated_gradients_target_real_flips_sign_and_batches_agree():
    net = SmoothNet(seed=1)
    imgs = _noise_images(3, seed=2)
    gen = S.attribute(net, imgs, "integrated_gradients", baseline="black", n_steps=16, batch_size=3)
    real = S.attribute(net, imgs, "integrated_gradients", baseline="black", n_steps=16, batch_size=1,
                       target="real", internal_batch_size=1)
    np.testing.assert_allclose(real, -gen, rtol=1e-4, atol=1e-6)
    mixed = S.attribute(net, imgs, "integrated_gradients", baseline="black", n_steps=16, target=[1, 0, 1])
    np.testing.assert_allclose(mixed, gen * np.array([1, -1, 1])[:, None, None], rtol=1e-4, atol=1e-6)


def test_make_baseline_against_direct_computation():
    imgs = _noise_images(2)
    np.testing.assert_array_equal(S.make_baseline(imgs, "black"), 0)
    np.testing.assert_allclose(S.make_baseline(imgs, "mean")[:, 5, 7], imgs.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(S.make_baseline(imgs, 0.25), 0.25)
    with pytest.raises(KeyError, match="blur"):
        S.make_baseline(imgs, "white")
    with pytest.raises(ValueError, match="baseline array"):
        S.make_baseline(imgs, np.zeros((5, 5)))


# --------------------------------------------------------------------------- localisation


def _share(a, margin=0):
    a = np.abs(a)
    h = SIZE // 2 + margin
    return a[:, :h, :h].sum() / a.sum()


@pytest.mark.parametrize("method,kw", [
    ("saliency", {}),
    ("integrated_gradients", {"n_steps": 16}),
    ("smoothgrad", {"nt_samples": 4}),
    ("occlusion", {"window": 2, "stride": 1}),
])
def test_region_only_model_attribution_concentrates_there(method, kw):
    net = QuadrantNet()
    imgs = _noise_images(4)
    attr = S.attribute(net, imgs, method, baseline="mean", **kw)
    # the quadrant is 25% of the pixels; >90% of |attribution| must fall in it
    # (gradients are exactly zero outside; occlusion windows straddling the border
    # leak a little: a window is credited to all its pixels)
    assert _share(attr) > 0.9


def test_region_only_model_gradcam_is_coarse_but_localised():
    """Grad-CAM lives on the last conv layer (16x16 here, after a 2x pool, 3x3 kernel):
    its features reach up to 2 layer pixels (4 input px, plus bilinear upsampling)
    beyond the quadrant, where they still only depend on quadrant pixels. So the bar
    is >95% within the quadrant grown by 4 px, and >50% in the quadrant itself
    (twice its 25% area share)."""
    net = QuadrantNet()
    imgs = _noise_images(4)
    cam = S.attribute(net, imgs, "layer_gradcam", target="predicted")
    assert cam.shape == imgs.shape and np.abs(cam).sum() > 0
    assert _share(cam, margin=4) > 0.95
    assert _share(cam) > 0.5
    # the automatically found layer is the last conv; naming it gives the same maps
    assert S.find_last_conv(net) == ("c2", net.c2)
    np.testing.assert_allclose(S.attribute(net, imgs, "layer_gradcam", target="predicted", layer="c2"), cam)
    np.testing.assert_allclose(S.attribute(net, imgs, "layer_gradcam", target="predicted", layer=net.c2), cam)


# --------------------------------------------------------------------------- other method properties


def test_saliency_matches_autograd_and_smoothgrad_limits():
    net = SmoothNet(seed=3)
    imgs = _noise_images(2, seed=4)
    x = torch.from_numpy(imgs[:, None]).requires_grad_()
    (g,) = torch.autograd.grad(net(x).sum(), x)
    sal = S.attribute(net, imgs, "saliency")
    np.testing.assert_allclose(sal, g[:, 0].numpy(), rtol=1e-5, atol=1e-7)
    # SmoothGrad with (almost) no noise is saliency; with noise it is seeded
    sg0 = S.attribute(net, imgs, "smoothgrad", stdev=1e-7, nt_samples=2)
    np.testing.assert_allclose(sg0, sal, rtol=1e-3, atol=1e-6)
    a = S.attribute(net, imgs, "smoothgrad", stdev=0.2, nt_samples=4, seed=1)
    b = S.attribute(net, imgs, "smoothgrad", stdev=0.2, nt_samples=4, seed=1)
    c = S.attribute(net, imgs, "smoothgrad", stdev=0.2, nt_samples=4, seed=2)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4
    sgig = S.attribute(net, imgs, "smoothgrad", base="integrated_gradients", stdev=1e-7, nt_samples=2,
                       n_steps=16, baseline="black")
    ig = S.attribute(net, imgs, "integrated_gradients", n_steps=16, baseline="black")
    np.testing.assert_allclose(sgig, ig, rtol=1e-3, atol=1e-5)


def test_occlusion_equals_direct_window_replacement():
    """window = stride: each pixel's value is f(x) - f(x with its window set to the
    baseline), computed here with the model directly."""
    net = SmoothNet(seed=5)
    imgs = _noise_images(1, size=16)
    attr = S.attribute(net, imgs, "occlusion", window=8, stride=8, baseline="black")
    fx = _forward(net, imgs)[0]
    for r, c in itertools.product((0, 8), (0, 8)):
        occ = imgs.copy()
        occ[0, r:r + 8, c:c + 8] = 0
        np.testing.assert_allclose(attr[0, r:r + 8, c:c + 8], fx - _forward(net, occ)[0], rtol=1e-4, atol=1e-6)


def test_shapes_dtypes_inputs_and_model_state_restored():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))
    net.train()
    net[0].bias.requires_grad_(False)
    bn_mean = net[1].running_mean.clone()
    img = _noise_images(1, size=16)[0]
    for method in S.method_names():
        kw = {"nt_samples": 2} if method == "smoothgrad" else {"n_steps": 4} if method == "integrated_gradients" \
            else {"window": 4} if method == "occlusion" else {}
        one = S.attribute(net, img, method, **kw)  # (H, W) -> (1, H, W)
        assert one.shape == (1, 16, 16) and one.dtype == np.float32
        batch = S.attribute(net, torch.from_numpy(np.stack([img, img])[:, None]), method, **kw)  # (N, 1, H, W)
        assert batch.shape == (2, 16, 16) and batch.dtype == np.float32
        if method != "smoothgrad":  # eval mode: dropout off, so the maps are deterministic
            np.testing.assert_allclose(batch[1], one[0], rtol=1e-5, atol=1e-7)
    assert net.training and all(m.training for m in net.modules())
    torch.testing.assert_close(net[1].running_mean, bn_mean)  # eval mode: statistics untouched
    assert all(p.grad is None for p in net.parameters())
    assert [p.requires_grad for p in net.parameters()] == [True, False, True, True, True, True]
    with_bar = S.attribute(net, np.stack([img, img]), "saliency", batch_size=1, progress=True)
    np.testing.assert_allclose(with_bar, S.attribute(net, np.stack([img, img]), "saliency"), rtol=1e-6)
    logits = S.predict_logits(net, np.stack([img, img]))
    assert logits.shape == (2,) and net.training


def test_clear_errors():
    net = SmoothNet()
    imgs = _noise_images(2, size=16)
    with pytest.raises(KeyError, match="saliency.*integrated_gradients.*smoothgrad.*layer_gradcam.*occlusion"):
        S.attribute(net, imgs, "gradcam++")
    with pytest.raises(TypeError, match="n_stepz.*valid options"):
        S.attribute(net, imgs, "integrated_gradients", n_stepz=3)
    with pytest.raises(ValueError, match="3 channels"):
        S.attribute(net, np.zeros((2, 3, 16, 16), np.float32), "saliency")
    with pytest.raises(ValueError, match=r"\(H, W\), \(N, H, W\)"):
        S.attribute(net, np.zeros(16, np.float32), "saliency")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        S.attribute(net, imgs * 255, "saliency")
    with pytest.raises(ValueError, match="no convergence delta"):
        S.attribute(net, imgs, "saliency", return_delta=True)
    with pytest.raises(ValueError, match="stride"):
        S.attribute(net, imgs, "occlusion", window=2, stride=4)
    with pytest.raises(ValueError, match="baseline array"):
        S.attribute(net, imgs, "integrated_gradients", baseline=np.zeros((8, 8)))
    with pytest.raises(ValueError, match="one 0/1 label per image"):
        S.attribute(net, imgs, "saliency", target=[1, 0, 1])
    with pytest.raises(KeyError, match="c1, c2"):
        S.attribute(net, imgs, "layer_gradcam", layer="conv9")
    two = nn.Sequential(nn.Flatten(), nn.Linear(256, 2))
    with pytest.raises(ValueError, match="one logit per image"):
        S.attribute(two, imgs, "saliency")
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        S.attribute(nn.Sequential(nn.Flatten(), nn.Linear(256, 1)), imgs, "layer_gradcam")
    attr = np.ones((2, 16, 16))
    with pytest.raises(ValueError, match="masks must match"):
        S.attribution_by_region(attr, np.zeros((2, 16, 15), np.uint8))
    with pytest.raises(labels.MaskError, match="outside 0..3"):
        S.attribution_by_region(attr, np.full((2, 16, 16), 7))
    with pytest.raises(ValueError, match="images must match"):
        S.attribution_spectrum(attr, imgs[:1])
    with pytest.raises(ValueError, match="labels must have one entry per map"):
        S.class_average_maps(attr, [0, 1, 1])


# --------------------------------------------------------------------------- regions


def _hand_mask():
    m = np.zeros((20, 24), np.uint8)
    m[3:15, 3:19] = labels.PATTERN
    m[7:10, 8:12] = labels.HOLE
    m[18, 22] = labels.DEFECT
    return m


def _direct_regions(mask, w):
    """Region name per pixel by brute force: edge if a pixel of another class lies
    within w in x and y (inside the image)."""
    h, wd = mask.shape
    names = {0: "background", 1: "pattern", 2: "hole", 3: "defect"}
    out = np.empty(mask.shape, object)
    for i in range(h):
        for j in range(wd):
            win = mask[max(0, i - w):i + w + 1, max(0, j - w):j + w + 1]
            out[i, j] = "edge" if (win != mask[i, j]).any() else names[int(mask[i, j])]
    return out


@pytest.mark.parametrize("w", [0, 1, 2])
def test_region_shares_match_a_direct_count(w):
    rng = np.random.default_rng(w)
    masks = np.stack([_hand_mask(), np.rot90(_hand_mask(), 2).copy()])
    attr = rng.normal(size=masks.shape)
    res = S.attribution_by_region(attr, masks, edge_width_px=w, n_boot=200)
    regs = np.stack([_direct_regions(m, w) for m in masks])
    total = np.abs(attr).sum()
    for r in S.REGIONS:
        sel = regs == r
        np.testing.assert_allclose(res["attribution_share"][r], np.abs(attr[sel]).sum() / total, rtol=1e-12)
        np.testing.assert_allclose(res["area_share"][r], sel.sum() / regs.size, rtol=1e-12)
        if sel.any():
            np.testing.assert_allclose(res["enrichment"][r],
                                       (np.abs(attr[sel]).sum() / total) / (sel.sum() / regs.size), rtol=1e-12)
            lo, hi = res["enrichment_ci"][r]
            assert lo <= res["enrichment"][r] + 1e-12 and res["enrichment"][r] <= hi + 1e-12
        else:
            assert np.isnan(res["enrichment"][r])
    assert sum(res["attribution_share"].values()) == pytest.approx(1.0, abs=1e-12)
    assert sum(res["area_share"].values()) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(np.nansum(res["per_image"]["attribution_share"], axis=1), 1.0)
    assert (res["area_share"]["edge"] == 0) == (w == 0)
    # the single defect pixel is all edge for w >= 1
    assert (res["area_share"]["defect"] > 0) == (w == 0)
    assert [row["region"] for row in res["rows"]] == list(S.REGIONS)


def test_uniform_attribution_has_no_preference_and_wide_edges_warn():
    masks = np.stack([_hand_mask()] * 3)
    res = S.attribution_by_region(np.full(masks.shape, -2.0), masks, edge_width_px=1)
    for r in S.REGIONS:
        if res["area_share"][r] > 0:
            assert res["enrichment"][r] == pytest.approx(1.0)
    with pytest.warns(UserWarning, match="edge zone covers"):
        S.attribution_by_region(np.ones(masks.shape), masks, edge_width_px=8)


def test_edge_model_on_simulated_sem_prefers_edges():
    """A detector that measures gradient energy (Sobel) must put its saliency on the
    pattern edges of a simulated SEM image (enrichment > 1.5) and not in the flat
    interiors (< 1)."""
    from semlab.data.simulate import simulate

    sims = [simulate("ic-metal-noisy", 128, seed=s, with_contours=False) for s in range(2)]
    imgs = np.stack([s.image for s in sims]).astype(np.float32)
    masks = np.stack([s.mask for s in sims])
    sobel = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]]) / 8
    net = FilterEnergy(sobel, sobel.T)
    res = S.attribution_by_region(S.attribute(net, imgs, "saliency"), masks, edge_width_px=2, n_boot=100)
    assert 0.2 < res["area_share"]["edge"] < 0.5  # the edge zone is a minority of the pixels
    assert res["enrichment"]["edge"] > 1.5
    assert res["enrichment"]["pattern"] < 1 and res["enrichment"]["background"] < 1


# --------------------------------------------------------------------------- spectra


def test_high_frequency_share_closed_form():
    n = 32
    yy, xx = np.mgrid[0:n, 0:n]
    high = np.cos(2 * np.pi * 13 * xx / n)  # 0.406 cycles/px
    low = np.cos(2 * np.pi * 2 * yy / n)  # 0.0625 cycles/px
    assert S.high_frequency_share(high, 0.25, window=None) == pytest.approx(1.0, abs=1e-12)
    assert S.high_frequency_share(low, 0.25, window=None) == pytest.approx(0.0, abs=1e-12)
    assert S.high_frequency_share(0.3 * high + low, 0.25, window=None) == pytest.approx(0.09 / 1.09, rel=1e-9)
    # white noise: the share of frequencies beyond the cutoff (counted on the FFT grid)
    noise = np.random.default_rng(0).normal(size=(40, 64, 64))
    r = np.hypot(np.fft.fftfreq(64)[:, None], np.fft.fftfreq(64)[None, :])
    expected = (r > 0.25).sum() / (r.size - 1)
    got = np.mean([S.high_frequency_share(x, 0.25, window=None) for x in noise])
    assert got == pytest.approx(expected, abs=0.01)


def test_attribution_spectrum_separates_high_and_low_pass_detectors():
    imgs = _noise_images(4)
    hp = FilterEnergy(np.array([[1.0, -1.0], [-1.0, 1.0]]))
    lp = FilterEnergy(np.ones((7, 7)) / 49)
    s_hp = S.attribution_spectrum(S.attribute(hp, imgs, "saliency"), imgs)
    s_lp = S.attribution_spectrum(S.attribute(lp, imgs, "saliency"), imgs)
    assert s_hp["image_high_share"] == pytest.approx(s_lp["image_high_share"])
    assert s_hp["high_share"] > 0.9 > s_hp["image_high_share"] > 0.5 > 0.1 > s_lp["high_share"]
    p_hp = S.attribution_spectrum(S.attribute(hp, imgs, "saliency"), imgs, of="product")
    p_lp = S.attribution_spectrum(S.attribute(lp, imgs, "saliency"), imgs, of="product")
    assert p_hp["high_share"] > p_hp["image_high_share"] > p_lp["high_share"]
    f = s_hp["freq"]
    assert f.shape == s_hp["attribution_power"].shape == s_hp["image_power"].shape
    np.testing.assert_allclose(s_hp["attribution_power"].sum(), 1.0)
    assert s_hp["attribution_power"][f > 0.25].sum() > s_lp["attribution_power"][f > 0.25].sum()


# --------------------------------------------------------------------------- class averages


def test_class_average_maps_against_numpy():
    rng = np.random.default_rng(0)
    attr = rng.normal(size=(6, 8, 8))
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0, 1, 1, 1, 0, 0])
    out = S.class_average_maps(attr, y, p)
    norm = np.abs(attr) / np.abs(attr).mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out["real"].map, norm[y == 0].mean(0), rtol=1e-6)
    np.testing.assert_allclose(out["generated/wrong"].map, norm[4], rtol=1e-6)
    assert out["real/correct"].n == 2 and out["real/wrong"].n == 1 and out["generated"].n == 3
    raw = S.class_average_maps(attr, y, absolute=False, normalize=False)
    np.testing.assert_allclose(raw["generated"].map, attr[y == 1].mean(0), rtol=1e-6)
    assert set(raw) == {"real", "generated"}
    only_real = S.class_average_maps(attr[:2], [0, 0], [0, 0])
    assert set(only_real) == {"real", "real/correct"}  # empty groups are left out


# --------------------------------------------------------------------------- figures


def _renders(fig):
    assert isinstance(fig, Figure)
    fig.savefig(io.BytesIO(), format="png", dpi=40)


def test_figures_render():
    net = QuadrantNet()
    imgs = _noise_images(3)
    maps = {m: S.attribute(net, imgs, m, **({"window": 4} if m == "occlusion" else {}))
            for m in ("saliency", "occlusion")}
    probs = 1 / (1 + np.exp(-S.predict_logits(net, imgs)))
    fig = V.saliency_gallery(imgs, maps, labels=[0, 1, 1], probabilities=probs, max_rows=2)
    _renders(fig)
    assert len(fig.axes) == 2 * 3
    assert "true: real" in fig.axes[0].get_title() and "p_gen=" in fig.axes[0].get_title()
    _renders(V.saliency_gallery(imgs, maps, signed=True))

    cm = {m: S.class_average_maps(a, [0, 1, 1], [0, 1, 0]) for m, a in maps.items()}
    _renders(V.class_average_figure(cm))
    _renders(V.class_average_figure(cm["saliency"]))

    masks = np.zeros(imgs.shape, np.uint8)
    masks[:, 4:20, 4:12] = labels.PATTERN
    regs = {m: S.attribution_by_region(a, masks, n_boot=50) for m, a in maps.items()}
    fig = V.region_enrichment_figure(regs)
    _renders(fig)
    assert len(fig.axes[0].patches) == 2 * 3  # 2 methods x 3 regions with pixels (edge, pattern, background)
    _renders(V.region_enrichment_figure(regs["saliency"], log=False))

    specs = {m: S.attribution_spectrum(a, imgs) for m, a in maps.items()}
    fig = V.attribution_spectrum_figure(specs)
    _renders(fig)
    assert len(fig.axes[0].lines) == 1 + 2 + 1  # images, 2 methods, the cutoff line
    with pytest.raises(ValueError, match="result dict"):
        V.region_enrichment_figure({"x": {"y": 1}})
