"""Figures: right number of axes and images, no pyplot figures left open, 64-px inputs."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from semlab.viz import (  # noqa: E402
    effect_ladder_figure,
    label_legend_figure,
    real_vs_sim_figure,
    sample_grid,
)

# The canonical label scheme as design.md section 3 states it: the independent reference
# the figures are checked against. (id, name, meaning, RGB)
LABEL_CLASSES = (
    (0, "background", "substrate / dielectric / space between patterns", (0, 0, 0)),
    (1, "pattern", "line, metal, resist top: the main structure", (255, 255, 255)),
    (2, "hole", "via, contact, cut or hole inside a pattern", (0, 0, 255)),
    (3, "defect", "particle, bridge, break, residue", (255, 0, 0)),
)


def _sample(seed, n=64):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n]
    mask = ((xx // 8) % 2).astype(np.uint8)
    mask[20:26, 20:26] = 2
    mask[40:43, 5:8] = 3
    img = np.clip(0.3 + 0.4 * (mask == 1) + rng.normal(0, 0.05, (n, n)), 0, 1).astype(np.float32)
    contour = np.array([[10.5, 10.5], [10.5, 30.5], [30.5, 30.5], [30.5, 10.5]])
    return img, mask, [contour, contour + 5]


def _n_images(fig):
    return sum(len(ax.images) for ax in fig.axes)


@pytest.fixture(autouse=True)
def _no_open_pyplot_figures():
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before


@pytest.mark.parametrize("n,ncols,with_masks,with_contours", [
    (3, 4, True, True), (6, 4, True, True), (5, 2, True, False), (2, 4, False, False), (1, 4, False, True),
])
def test_sample_grid_counts(n, ncols, with_masks, with_contours):
    samples = [_sample(i) for i in range(n)]
    fig = sample_grid(
        [s[0] for s in samples],
        masks=[s[1] for s in samples] if with_masks else None,
        contours=[s[2] for s in samples] if with_contours else None,
        titles=[f"s{i}" for i in range(n)],
        ncols=ncols,
    )
    assert isinstance(fig, Figure)
    views = 1 + with_masks + with_contours
    assert len(fig.axes) == n * views
    assert _n_images(fig) == n * views
    if with_contours:
        assert sum(len(ax.lines) for ax in fig.axes) == 2 * n
    fig.savefig(__import__("io").BytesIO(), format="png")


def test_sample_grid_mask_uses_canonical_palette():
    img, mask, _ = _sample(0)
    fig = sample_grid([img], masks=[mask])
    rgb = fig.axes[1].images[0].get_array()
    assert rgb.shape == (64, 64, 3)
    for cid, _, _, colour in LABEL_CLASSES:
        assert tuple(np.asarray(rgb)[mask == cid][0]) == colour


def test_sample_grid_rejects_mismatch():
    img, mask, _ = _sample(0)
    with pytest.raises(ValueError):
        sample_grid([img, img], masks=[mask])
    with pytest.raises(ValueError):
        sample_grid([])


def test_effect_ladder_figure():
    ladder = [(f"effect{i}", f"what effect {i} does, in a longish sentence to wrap", _sample(i)[0]) for i in range(6)]
    fig = effect_ladder_figure(ladder)
    assert len(fig.axes) == 6 and _n_images(fig) == 6
    assert fig.axes[2].get_title() == "2. effect2"
    assert "effect 2" in fig.axes[2].get_xlabel()


def test_real_vs_sim_figure():
    real = {"litho": [_sample(i)[0] for i in range(3)], "empty": []}
    sim = {"line-space": [_sample(10 + i)[0] for i in range(4)], "ic-metal": [_sample(20)[0]]}
    fig = real_vs_sim_figure(real, sim, n_examples=2, n_boot=50)
    groups = 3  # the empty group is left out
    assert len(fig.axes) == 2 * groups + 2
    assert _n_images(fig) == 2 + 2 + 1  # ic-metal has only one crop
    ax_h, ax_s = fig.axes[-2], fig.axes[-1]
    assert ax_s.get_xscale() == "log" and ax_s.get_yscale() == "log"
    assert len(ax_s.lines) == groups and len(ax_s.collections) == groups  # mean + band per group
    assert len(ax_h.patches) == groups
    fig.savefig(__import__("io").BytesIO(), format="png")


def test_real_vs_sim_figure_without_real():
    fig = real_vs_sim_figure({}, {"line-space": [_sample(0)[0], _sample(1)[0]]}, n_boot=20)
    assert len(fig.axes) == 2 + 2


def test_label_legend_figure():
    fig = label_legend_figure()
    assert len(fig.axes) == 1 and _n_images(fig) == 1
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    for _, name, meaning, _ in LABEL_CLASSES:
        assert name in texts and meaning in texts
    fig.savefig(__import__("io").BytesIO(), format="png")


# --------------------------------------------------------------------------- seaborn figures
# The statistical figures drawn with seaborn's axes-level functions on a Figure's axes:
# each is a Figure, registers nothing with pyplot, draws what it is given and names the
# domain ("simulated (target)", never "real" for simulated images) and n.

from types import SimpleNamespace  # noqa: E402

from matplotlib.collections import LineCollection, PathCollection, PolyCollection, QuadMesh  # noqa: E402


def _pyplot_free(make):
    """Build a figure and check that it is a Figure and pyplot's registry did not change."""
    before = plt.get_fignums()
    fig = make()
    assert isinstance(fig, Figure)
    assert plt.get_fignums() == before
    fig.savefig(__import__("io").BytesIO(), format="png")
    assert plt.get_fignums() == before
    return fig


def _texts(fig):
    """Every string drawn on a figure: titles, labels, tick labels, texts, legends."""
    out = [fig.get_suptitle()]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        out += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels() + ax.texts]
        if ax.get_legend() is not None:
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    for leg in fig.legends:
        out += [t.get_text() for t in leg.get_texts()]
    return out


def _bodies(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def _points(ax):
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def test_metric_distributions_violins_points_and_n():
    from semlab.viz.metrics import metric_distributions_figure

    rng = np.random.default_rng(1)
    ssim = {"Pix2Pix": rng.uniform(0.3, 0.9, 10), "CycleGAN": rng.uniform(0.2, 0.8, 7),
            "physics": np.r_[rng.uniform(0.1, 0.5, 5), np.nan]}  # the NaN is not an image's value
    per_image = {name: {"ssim": v, **({"lpips": rng.uniform(0, 1, 4)} if name != "physics" else {})}
                 for name, v in ssim.items()}
    fig = _pyplot_free(lambda: metric_distributions_figure(per_image, domain="sim"))
    ax_ssim, ax_lpips = fig.axes
    assert len(_bodies(ax_ssim)) == 3 and len(_bodies(ax_lpips)) == 2  # one violin per model with values
    strips = _points(ax_ssim)
    assert [len(s.get_offsets()) for s in strips] == [10, 7, 5]
    for s, v in zip(strips, ssim.values()):  # every image is a dot at its value
        np.testing.assert_allclose(np.sort(s.get_offsets()[:, 0]), np.sort(v[np.isfinite(v)]))
    ticks = [t.get_text() for t in ax_ssim.get_yticklabels()]
    assert ticks == ["Pix2Pix (n=10)", "CycleGAN (n=7)", "physics (n=5)"]
    assert ax_ssim.get_xlabel().startswith("SSIM")
    title = fig.get_suptitle()
    assert "simulated (target)" in title and "n=10" in title
    assert not any("real" in t for t in _texts(fig))


def test_sample_size_figure_bars_are_mean_and_sd_of_repeats():
    from semlab.viz.metrics import sample_size_figure

    rng = np.random.default_rng(2)
    curves = {label: [{"n": n, "fd": float(rng.normal(10 / n + off, 0.3)), "kid": float(rng.normal(off, 0.1))}
                      for n in (4, 8, 16) for _ in range(4)] for label, off in (("same", 0.0), ("other", 2.0))}
    fig = _pyplot_free(lambda: sample_size_figure(curves, domain="sim"))
    for ax, key in zip(fig.axes, ("fd", "kid")):
        want = []  # (n, mean - sd, mean + sd) per pair and n, sd with ddof=1, in drawing order
        for rows in curves.values():
            for n in (4, 8, 16):
                v = np.array([r[key] for r in rows if r["n"] == n])
                want.append((n, v.mean() - v.std(ddof=1), v.mean() + v.std(ddof=1)))
        bars = [seg for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()]
        got = [(s[0, 0], min(s[:, 1]), max(s[:, 1])) for s in bars]
        np.testing.assert_allclose(np.array(got, float), np.array(want, float), rtol=1e-9)
        means = [y for ln in ax.lines if ln.get_marker() == "o" for y in ln.get_ydata()]
        np.testing.assert_allclose(means, [(lo + hi) / 2 for _, lo, hi in want], rtol=1e-9)
        assert "images per set (n)" in ax.get_xlabel()
        assert [t.get_text() for t in ax.get_xticklabels()] == ["4", "8", "16"]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["same (4 repeats)", "other (4 repeats)"]
    assert "simulated (target)" in fig.get_suptitle()


def _detection(confusion, acc=(0.8, 0.7, 0.9), auc=(0.9, 0.8, 1.0)):
    cm = np.asarray(confusion)
    metric = lambda v: SimpleNamespace(value=v[0], lo=v[1], hi=v[2])  # noqa: E731
    return SimpleNamespace(confusion=cm, metrics={"accuracy": metric(acc), "balanced_accuracy": metric(acc),
                                                  "roc_auc": metric(auc)},
                           n_real=int(cm[0].sum()), n_generated=int(cm[1].sum()))


def test_confusion_heatmaps_annotate_the_counts():
    from semlab.viz.forensics import confusion_matrices_figure

    res = {"cnn": _detection([[8, 4], [1, 11]]), "spectrum": _detection([[5, 7], [6, 6]])}
    fig = _pyplot_free(lambda: confusion_matrices_figure(res, normalize=False, domain="sim"))
    assert len(fig.axes) == 2
    for ax, r in zip(fig.axes, res.values()):
        assert [t.get_text() for t in ax.texts] == [str(int(v)) for v in r.confusion.ravel()]
        mesh = [c for c in ax.collections if isinstance(c, QuadMesh)]
        assert len(mesh) == 1 and not ax.images  # a seaborn heatmap, not imshow
        np.testing.assert_array_equal(np.asarray(mesh[0].get_array()).reshape(2, 2), r.confusion)
        assert [t.get_text() for t in ax.get_yticklabels()] == ["simulated (target)\nn=12", "generated\nn=12"]
    fig = _pyplot_free(lambda: confusion_matrices_figure(res))  # fractions of each true class, counts below
    want = [f"{8 / 12:.2f}\n(8)", f"{4 / 12:.2f}\n(4)", f"{1 / 12:.2f}\n(1)", f"{11 / 12:.2f}\n(11)"]
    assert [t.get_text() for t in fig.axes[0].texts] == want
    assert not any("real" in t for t in _texts(fig))  # no domain given: the reference is "target"
    real = confusion_matrices_figure(res, domain="real")
    assert real.axes[0].get_yticklabels()[0].get_text() == "real\nn=12"
    with pytest.raises(ValueError, match="domain"):
        confusion_matrices_figure(res, domain="simulated")


def test_detector_metrics_grid_heatmap():
    from semlab.viz.forensics import detector_metrics_figure

    res = {"cnn": _detection([[8, 4], [1, 11]], acc=(0.79, 0.62, 0.91)),
           "spectrum": _detection([[5, 7], [6, 6]], acc=(0.46, 0.3, 0.6), auc=(0.52, 0.35, 0.7))}
    fig = _pyplot_free(lambda: detector_metrics_figure(res, kind="grid", domain="sim"))
    ax = fig.axes[0]  # the heatmap; fig.axes[1] is its colour bar
    metrics = ("accuracy", "balanced_accuracy", "roc_auc")
    want = [f"{r.metrics[k].value:.3f}\n[{r.metrics[k].lo:.3f}, {r.metrics[k].hi:.3f}]"
            for r in res.values() for k in metrics]
    assert [t.get_text() for t in ax.texts] == want
    mesh = [c for c in ax.collections if isinstance(c, QuadMesh)][0]
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(2, 3),
                               [[r.metrics[k].value for k in metrics] for r in res.values()])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cnn (n=12+12)", "spectrum (n=12+12)"]
    assert ax.get_title().startswith("simulated (target) vs generated")
    bars = _pyplot_free(lambda: detector_metrics_figure(res))
    assert len(bars.axes) == 3 and bars.axes[0].get_yticklabels()[0].get_text() == "cnn (n=12+12)"
    with pytest.raises(ValueError, match="kind"):
        detector_metrics_figure(res, kind="pie")


def test_radial_spectra_band_vertices_are_the_given_ci():
    from semlab.forensics.spectrum import SpectrumComparison
    from semlab.viz.forensics import radial_spectra_figure

    freq = np.linspace(0.02, 0.7, 12)
    m_ref, m_gen = 1 / freq, 2 / freq
    power = {"real": (m_ref, 0.8 * m_ref, 1.3 * m_ref), "gen": (m_gen, 0.5 * m_gen, 1.1 * m_gen)}
    ratio = {"real": (np.zeros(12), np.zeros(12), np.zeros(12)),
             "gen": (np.full(12, 3.0), np.linspace(1, 2, 12), np.linspace(4, 5, 12))}
    c = SpectrumComparison(freq=freq, power=power, ratio_db=ratio, reference="real", n_images={"real": 8, "gen": 7})
    fig = _pyplot_free(lambda: radial_spectra_figure(c, domain="sim"))
    ax, bx = fig.axes
    for a, bands, skip in ((ax, power, None), (bx, ratio, "real")):
        polys = _bodies(a)
        items = [(k, v) for k, v in bands.items() if k != skip]
        assert len(polys) == len(items)
        for poly, (_, (m, lo, hi)) in zip(polys, items):
            v = poly.get_paths()[0].vertices
            for f, want_lo, want_hi in zip(freq, lo, hi):
                ys = v[np.isclose(v[:, 0], f), 1]
                assert ys.min() == pytest.approx(want_lo) and ys.max() == pytest.approx(want_hi)
        curves = [ln for ln in a.lines if len(ln.get_xdata()) == len(freq)]
        for ln, (_, (m, _, _)) in zip(curves, items):
            np.testing.assert_allclose(ln.get_ydata(), m)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["simulated (target) (n=8)", "gen (n=7)"]
    assert "simulated (target)" in bx.get_ylabel() and "n=8" in bx.get_title()
    assert not any("real" in t for t in _texts(fig))


def test_class_balance_boxes_points_and_status_counts():
    from semlab.viz.segmentation import class_balance_figure

    rng = np.random.default_rng(3)
    classes = ["background", "pattern", "hole"]
    rows = [{"status": "ok", **{f"coverage_{c}": float(rng.uniform(0, 1)) for c in classes}} for _ in range(9)]
    rows += [{"status": "flagged", "coverage_background": 0.95, "coverage_pattern": 0.05}, {"status": "error"}]
    fig = _pyplot_free(lambda: class_balance_figure(rows, classes, domain="real"))
    ax1, ax2 = fig.axes
    good = rows[:-1]
    data = {c: np.array([float(r.get(f"coverage_{c}") or 0) for r in good]) for c in classes}
    assert len(ax1.patches) == len(classes)  # one box per class
    for box, c in zip(ax1.patches, classes):  # each box spans the quartiles of its class
        y = box.get_path().vertices[:, 1]
        np.testing.assert_allclose([y.min(), y.max()], np.percentile(data[c], [25, 75]))
    strips = _points(ax1)
    assert len(strips) == len(classes)
    for s, c in zip(strips, classes):
        np.testing.assert_allclose(np.sort(s.get_offsets()[:, 1]), np.sort(data[c]))
    assert [p.get_height() for p in ax2.patches] == [9, 1, 1]
    assert [t.get_text() for t in ax2.get_xticklabels()] == ["ok", "flagged", "error"]
    assert ax1.get_title() == "class coverage per image: real, n=10" and ax2.get_title() == "mask QA: real, n=11"


def test_epe_violins_name_methods_with_n():
    from semlab.viz.contours import epe_distribution_figure

    rng = np.random.default_rng(4)
    epes = {"classical": rng.normal(0, 1, 300), "sam2": np.r_[rng.normal(0.3, 0.5, 200), np.nan]}
    fig = _pyplot_free(lambda: epe_distribution_figure(epes, unit="nm", domain="sim", clip=10))
    ax = fig.axes[0]
    assert len(_bodies(ax)) == 2
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[0].startswith("classical (n=300)") and ticks[1].startswith("sam2 (n=200)")
    medians = [ln.get_ydata()[0] for ln in ax.lines if ln.get_marker() == "o"]
    np.testing.assert_allclose(medians, [np.median(epes["classical"]), np.nanmedian(epes["sam2"])])
    ranges = [sorted(ln.get_ydata()) for ln in ax.lines if len(ln.get_ydata()) == 2 and ln.get_xdata()[0] == 0]
    np.testing.assert_allclose(ranges[0], np.percentile(epes["classical"], [5, 95]))
    assert ax.get_ylabel() == "EPE (nm); + outside" and "simulated (target)" in ax.get_title()
    hist = _pyplot_free(lambda: epe_distribution_figure(epes, kind="hist"))
    assert "classical (n=300," in hist.axes[0].get_legend().get_texts()[0].get_text()


def test_line_statistics_strips_and_medians():
    from semlab.viz.contours import line_statistics_figure

    lines = [{"image": "a", "cd": cd, "ler_left": 2.0 + k, "ler_right": np.nan if k == 0 else 3.0}
             for k, cd in enumerate((10.0, 12.0, 17.0))] + [{"image": "b", "cd": 20.0, "ler_left": 1.0,
                                                               "ler_right": 1.5}]
    fig = _pyplot_free(lambda: line_statistics_figure(lines, unit="nm", domain="real"))
    ax1, ax2 = fig.axes
    cd = [np.sort(s.get_offsets()[:, 1]) for s in _points(ax1)]
    np.testing.assert_allclose(cd[0], [10, 12, 17])
    np.testing.assert_allclose(cd[1], [20])
    medians = [ln.get_ydata()[0] for ln in ax1.lines]
    assert medians == [12.0, 20.0]
    assert [t.get_text() for t in ax2.get_xticklabels()] == ["a\nn=5 edges", "b\nn=2 edges"]  # the NaN edge dropped
    assert "CD (nm)" in ax1.get_ylabel() and fig.get_suptitle().endswith(": real")


def test_parameter_pairs_figure_is_a_pyplot_free_pair_grid():
    from semlab.viz.figures import parameter_pairs_figure

    rng = np.random.default_rng(5)
    params = {"noise": rng.uniform(0, 1, 12), "blur": rng.uniform(1, 3, 12), "gain": rng.uniform(0, 2, 12),
              "domain": ["sim"] * 7 + ["real"] * 5}
    fig = _pyplot_free(lambda: parameter_pairs_figure(params, hue="domain"))
    assert len(fig.axes) == 9
    grid = np.array(fig.axes).reshape(3, 3)
    assert [a.axison for a in grid[np.triu_indices(3, 1)]] == [False] * 3  # upper triangle empty without kde
    pts = np.concatenate([s.get_offsets() for s in _points(grid[2, 1])])  # gain against blur
    want = np.c_[params["blur"], params["gain"]]
    np.testing.assert_allclose(pts[np.lexsort(pts.T)], want[np.lexsort(want.T)])
    assert grid[2, 0].get_xlabel() == "noise" and grid[1, 0].get_ylabel() == "blur"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["sim (n=7)", "real (n=5)"]
    assert fig.get_suptitle() == "fitted parameters: n=12"
    kde = _pyplot_free(lambda: parameter_pairs_figure(params, vars=["noise", "blur"], kde=True, domain="sim"))
    assert all(a.axison for a in kde.axes) and kde.get_suptitle().endswith("simulated (target), n=12")
    with pytest.raises(ValueError, match="not among"):
        parameter_pairs_figure(params, vars=["noise", "tilt"])


def test_reference_images_are_named_after_their_domain():
    from semlab.viz.figures import domain_name
    from semlab.viz.metrics import model_gallery_figure, worst_pairs_figure

    img, mask, _ = _sample(0)
    masks, reals, fakes = np.stack([mask] * 2), np.stack([img] * 2), {"Pix2Pix": np.stack([img] * 2)}
    assert [domain_name(d) for d in ("sim", "real", None)] == ["simulated (target)", "real", "target"]
    fig = model_gallery_figure(masks, fakes, reals, k=2, domain="sim")
    assert [a.get_title() for a in fig.axes[:3]] == ["mask", "Pix2Pix", "simulated (target)"]
    fig = worst_pairs_figure(masks, fakes["Pix2Pix"], reals, [1], model="Pix2Pix")
    assert fig.axes[2].get_title() == "target"
    from semlab.viz.forensics import fake_sets_figure

    fig = fake_sets_figure(masks, reals, fakes, n=1, zoom=None, domain="sim")
    assert [a.get_title() for a in fig.axes] == ["mask", "simulated (target)", "Pix2Pix"]
