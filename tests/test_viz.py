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
