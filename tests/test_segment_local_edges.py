"""Issue 19: edges of each direction at their own mid-level (`local_mid_edges`, the
classical default), and debris of the `particles` preset found as `defect` objects."""

import numpy as np
import pytest
from scipy import ndimage

from semlab import labels
from semlab.data.simulate import simulate
from semlab.metrics.objects import detection_scores, label_objects, match_objects
from semlab.segment.canonical import CanonicalRules
from semlab.segment.classical import ClassicalSegmenter, ClassicalSettings, local_mid_edges, particles_settings
from semlab.segment.pipeline import make_segmenter, segment_image

PITCH, WIDTH, X0 = 16, 8.0, 4.0  # in row r, line k spans X0 + r / n + k PITCH + [0, WIDTH)


def _lines(rim_left: float, rim_right: float, n: int = 96, blur: float = 1.2) -> np.ndarray:
    """Vertical bright lines (0.2 -> 0.5) with a Gaussian rim 1 px inside each edge,
    `rim_left` on the rising (left) edges and `rim_right` on the falling ones, then a
    Gaussian beam blur; each row is shifted by r / n px, so that the rows sample every
    sub-pixel phase. The physical edges are known exactly. Built 8x oversampled."""
    k = 8
    x = (np.arange(n * k) + 0.5) / k - 0.5  # sub-pixel positions (pixel j spans [j-0.5, j+0.5))
    img = np.empty((n, n), np.float32)
    for r in range(n):
        prof = np.full(x.shape, 0.2)
        for i in range(n // PITCH + 1):
            a = X0 + r / n + i * PITCH
            b = a + WIDTH
            prof[(x >= a) & (x < b)] = 0.5
            prof += rim_left * np.exp(-0.5 * ((x - a - 1.0) / 1.0) ** 2) * ((x > a - 2) & (x < b))
            prof += rim_right * np.exp(-0.5 * ((x - b + 1.0) / 1.0) ** 2) * ((x > a) & (x < b + 2))
        img[r] = ndimage.gaussian_filter1d(prof, blur * k).reshape(n, k).mean(1)
    return img


def _centre_shift(bright: np.ndarray) -> tuple[float, float]:
    """(mean sideways shift, mean width error) of the lines in px against the truth,
    over all rows and the lines away from the frame edge."""
    n = bright.shape[1]
    shifts, widths = [], []
    for r in range(bright.shape[0]):
        for i in range(1, n // PITCH - 1):
            c = X0 + r / n + i * PITCH + WIDTH / 2
            lo = int(round(c - PITCH / 2))
            seg = bright[r, lo:lo + PITCH].astype(float)
            w = seg.sum()
            shifts.append(float((seg * np.arange(lo, lo + PITCH)).sum() / w) - c)
            widths.append(float(w) - WIDTH)
    return float(np.mean(shifts)), float(np.mean(widths))


def _bright(img, method):
    seg = ClassicalSegmenter(denoise="none", flatten_degree=0, blobs=False, edge_method=method)
    segs = seg.segment_prepared(seg.prepare(img))
    return np.any([s.mask for s in segs if s.source == "classical:bright"], axis=0)


def test_local_edges_undo_the_sideways_shift_of_asymmetric_rims():
    """Rims 5x brighter on the rising edges: the global threshold shifts every line
    towards them (-0.23 px); the per-direction mid-level takes a good part of that
    shift away (-0.13 px) and does not widen the lines."""
    img = _lines(0.15, 0.03)
    thr = _centre_shift(_bright(img, "threshold"))
    loc = _centre_shift(_bright(img, "local"))
    assert thr[0] < -0.15  # lines shifted left, towards the brighter rims
    assert abs(loc[0]) < 0.7 * abs(thr[0]), (thr, loc)
    assert abs(loc[1]) <= abs(thr[1]) + 0.1, (thr, loc)


def test_local_edges_leave_symmetric_edges_alone():
    """Equal rims: no sideways shift with either method, widths within 0.1 px."""
    img = _lines(0.08, 0.08)
    thr = _centre_shift(_bright(img, "threshold"))
    loc = _centre_shift(_bright(img, "local"))
    assert abs(thr[0]) < 0.05 and abs(loc[0]) < 0.05, (thr, loc)
    assert abs(loc[1] - thr[1]) < 0.1, (thr, loc)


def test_local_mid_edges_only_changes_the_uncertain_band():
    img = _lines(0.15, 0.03)
    t = 0.35
    bright = img > t
    out = local_mid_edges(img, bright, t, frac=0.25)
    gap = 0.3
    far = np.abs(img - t) >= 0.25 * gap * 0.99
    assert (out[far] == bright[far]).all()
    assert (out != bright).any()
    # a local (Sauvola) threshold image is left as it is
    assert (local_mid_edges(img, bright, np.full(img.shape, t)) == bright).all()


def test_local_edge_settings_are_validated():
    assert ClassicalSettings().edge_method == "local"
    with pytest.raises(ValueError, match="edge_local_sectors"):
        ClassicalSettings(edge_local_sectors=0)
    with pytest.raises(ValueError, match="edge_local_px"):
        ClassicalSettings(edge_local_px=-1)


def test_particles_debris_found_as_defects():
    """The `particles` preset's debris (much brighter than the particles, radius 2-5 px):
    the classical pipeline with the particles settings finds those of radius >= 3 px as
    `defect` objects with F1 >= 0.8 (issue 19), matched one to one with the truth."""
    seg = make_segmenter("classical", **particles_settings(1.0))
    rules = CanonicalRules(polarity="auto", defect_above_pattern=0.3)
    matches = []
    for i in range(8):
        s = simulate("particles", 256, (3000, i))
        p = segment_image(s.image, seg, rules).mask
        matches.append(match_objects(label_objects(s.mask == labels.DEFECT), label_objects(p == labels.DEFECT)))
    d = detection_scores(matches, min_radius_px=3.0, n_boot=50)
    assert d["n_true"] >= 6
    assert d["f1"]["value"] >= 0.8, d
