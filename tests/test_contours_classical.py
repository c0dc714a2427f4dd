"""The classical contour fallback: sub-pixel refinement, structures, calibration and
the issue's MUST-SHOW (mean |EPE| <= 0.5 px on simulated line/space images)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from semlab import labels
from semlab.contours import classical as C
from semlab.contours import extract as X
from semlab.contours import metrics as M


def band_image(h, w, edges, *, blur=1.3, lo=0.2, hi=0.7, noise=0.0, seed=0):
    """Bright vertical bands [(c0, c1), ...] with exact pixel area coverage (pixel j
    spans [j - 0.5, j + 0.5]), blurred by a Gaussian of `blur` px, optional noise."""
    j = np.arange(w, dtype=np.float64)
    cov = np.zeros(w)
    for c0, c1 in edges:
        cov += np.clip(np.minimum(j + 0.5, c1) - np.maximum(j - 0.5, c0), 0.0, 1.0)
    img = np.tile(lo + (hi - lo) * cov, (h, 1))
    img = ndi.gaussian_filter(img, blur, mode="nearest")
    if noise:
        img = img + np.random.default_rng(seed).normal(0, noise, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def band_truth(h, edges):
    """True contours of the bands, closed along the frame (rows -0.5 and h - 0.5)."""
    return [np.array([[-0.5, c0], [h - 0.5, c0], [h - 0.5, c1], [-0.5, c1], [-0.5, c0]]) for c0, c1 in edges]


EDGES = [(12.3, 30.8), (44.55, 58.1), (71.9, 90.35)]


@pytest.mark.parametrize("refine", ["gradient", "threshold"])
def test_refinement_finds_straight_edges_to_a_few_hundredths_of_a_pixel(refine):
    img = band_image(64, 104, EDGES)
    res = C.extract_classical_contours(img, refine=refine, edge_scale=1.0)
    assert len(res.by_label(labels.PATTERN)) == 3
    ee = M.edge_placement_error(res.contours, band_truth(64, EDGES), shape=img.shape)
    assert np.abs(ee.epe).max() < 0.05
    # the coarse (threshold) contour alone is off by up to half a pixel
    coarse = [c for s in res.structures for c in s.coarse]
    ee0 = M.edge_placement_error(coarse, band_truth(64, EDGES), shape=img.shape)
    assert np.abs(ee0.epe).max() > 0.1


def test_refinement_of_a_blurred_disc_and_of_a_foreign_coarse_contour():
    k = 24  # supersampling: the disc's coverage to ~1/k^2 of a pixel, averaged along the rim
    off = (np.arange(k) + 0.5) / k - 0.5
    yy = np.arange(80)[:, None, None, None] + off[None, None, :, None]
    xx = np.arange(80)[None, :, None, None] + off[None, None, None, :]
    cy, cx, r = 40.2, 39.7, 24.6
    cov = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).mean(axis=(2, 3))
    img = (0.15 + 0.5 * ndi.gaussian_filter(cov, 1.0)).astype(np.float32)
    res = C.extract_classical_contours(img, edge_scale=1.0)
    (st,) = res.structures
    rad = np.hypot(*(X.open_contour(st.contours[0]) - [cy, cx]).T)
    # the steepest slope of a blurred convex edge sits slightly inside (~ sigma^2 / 2r)
    assert abs(rad.mean() - r) < 0.1 and rad.std() < 0.03
    # refining a coarse contour from elsewhere (a mask 1.5 px too large, as a
    # segmentation network might give) lands on the same edge
    big = X.extract_contours(((yy.mean(axis=(2, 3)) - cy) ** 2 + (xx.mean(axis=(2, 3)) - cx) ** 2 < (r + 1.5) ** 2)
                             .astype(np.float32))[0]
    prof = ndi.gaussian_filter(ndi.gaussian_filter(img, 1.0), 1.0)
    ref, strength = C.refine_contour(prof, big, C.ContourSettings(edge_scale=1.0), shape=img.shape)
    rad2 = np.hypot(*(X.open_contour(ref) - [cy, cx]).T)
    assert abs(rad2.mean() - rad.mean()) < 0.05
    assert np.all(np.isfinite(strength)) and strength.min() > 0


def test_structures_masks_ids_and_holes():
    h, w = 72, 72
    yy, xx = np.mgrid[:h, :w]
    film = np.ones((h, w))
    holes = [(20.3, 22.1, 6.2), (48.7, 50.2, 7.4)]
    for cy, cx, r in holes:
        film[np.hypot(yy - cy, xx - cx) < r] = 0
    film[:, 64:] = 0  # background strip on the right, so the film does not fill the frame
    img = (0.2 + 0.5 * ndi.gaussian_filter(film, 1.0)).astype(np.float32)
    res = C.extract_classical_contours(img, edge_scale=1.0)
    pats, hls = res.by_label(labels.PATTERN), res.by_label(labels.HOLE)
    assert len(pats) == 1 and len(hls) == 2
    assert len(pats[0].contours) == 3  # outer boundary + two holes
    assert pats[0].touches_frame and not any(s.touches_frame for s in hls)
    for s in res.structures:
        np.testing.assert_array_equal(s.mask, X.rasterize_contours(s.contours, (h, w)))
        assert np.all(res.structure_map[s.mask] == s.id)
    assert sorted(s.id for s in res.structures) == list(range(1, 4))
    for s in hls:  # each hole structure is a hole of the canonical mask, radius recovered
        assert np.all(res.mask[s.mask] == labels.HOLE)
        c = X.open_contour(s.contours[0])
        cy, cx, r = min(holes, key=lambda q: np.hypot(q[0] - c[:, 0].mean(), q[1] - c[:, 1].mean()))
        assert abs(np.hypot(c[:, 0] - cy, c[:, 1] - cx).mean() - r) < 0.25
        assert X.signed_area(s.contours[0]) > 0  # counter-clockwise around the hole
    # the pattern's own hole contours run clockwise
    assert sum(X.signed_area(c) < 0 for c in pats[0].contours) == 2


def test_dark_polarity_gives_the_same_contours():
    img = band_image(48, 104, EDGES)
    a = C.extract_classical_contours(img, edge_scale=1.0, hole_structures=False)
    b = C.extract_classical_contours(1.0 - img, edge_scale=1.0, polarity="dark", hole_structures=False)
    assert len(a.contours) == len(b.contours) == 3
    for ca, cb in zip(a.contours, b.contours):
        np.testing.assert_allclose(ca, cb, atol=1e-4)


def test_edge_width_follows_the_blur():
    """FWHM of the intensity drop of a Gaussian-blurred step: 2 sqrt(2 ln 2) sigma_total,
    sigma_total^2 = blur^2 + measurement smoothing (1 px)^2 (+ the pixel's 1/12)."""
    for blur in (1.5, 3.0):
        img = band_image(48, 120, [(20.0, 60.0), (80.0, 110.0)], blur=blur)
        res = C.extract_classical_contours(img, edge_scale=1.0)
        width = C.measure_edge_width(img, res.contours)
        expect = 2 * np.sqrt(2 * np.log(2)) * np.sqrt(blur ** 2 + 1.0 + 1 / 12)
        assert width == pytest.approx(expect, abs=0.3)  # the half-maximum run is counted in 0.25-px steps


def test_calibration_recovers_a_known_edge_bias():
    """Images whose visible edges lie 0.4 px outside the true ones: the calibrated offset
    is 0.4 px and the calibrated extractor has no bias left."""
    d = 0.4
    pairs = []
    for k, shift in enumerate((0.0, 0.37, 0.71)):
        edges = [(c0 + shift, c1 + shift) for c0, c1 in EDGES]
        img = band_image(64, 104, edges, noise=0.01, seed=k)
        pairs.append((img, band_truth(64, [(c0 + d, c1 - d) for c0, c1 in edges])))
    s, info = C.calibrate_edge_offset(pairs, C.ContourSettings(edge_scale=1.0))
    assert s.edge_offset_px == pytest.approx(d, abs=0.03)
    assert info["n_images"] == 3 and info["n_points"] > 1000
    for img, truth in pairs:
        res = C.extract_classical_contours(img, s)
        assert abs(M.edge_placement_error(res.contours, truth, shape=img.shape).summary()["mean"]) < 0.03


def test_settings_are_validated():
    with pytest.raises(ValueError, match="gradient"):
        C.ContourSettings(refine="canny")
    with pytest.raises(ValueError, match="otsu"):
        C.ContourSettings(threshold="mean")
    with pytest.raises(ValueError, match="edge_scale"):
        C.ContourSettings(edge_scale="big")
    s = C.ContourSettings(profile_sigma_px=1.0, edge_offset_px=0.5).scaled(2.0)
    assert (s.profile_sigma_px, s.edge_offset_px, s.edge_scale) == (2.0, 1.0, 1.0)
    from semlab.segment.base import SegmentationError

    with pytest.raises(SegmentationError, match="blank"):
        C.extract_classical_contours(np.zeros((32, 32), np.float32), source="empty.png")


def test_must_show_mean_abs_epe_at_most_half_a_pixel_on_simulated_line_space():
    """The issue's MUST-SHOW: simulated line/space images at the default noise level,
    edge offset calibrated on other seeds; mean |EPE| against the exact contours."""
    from semlab.data.simulate import simulate

    size = 256
    calib = [simulate("line-space", size, (9000, i)) for i in range(3)]
    settings, _ = C.calibrate_edge_offset([(r.image, r.contours) for r in calib])
    rows = []
    for i in range(4):
        r = simulate("line-space", size, (7000, i))
        res = C.extract_classical_contours(r.image, settings, pixel_nm=r.params["pixel_nm"])
        rows.append(M.score_contours(res.contours, r.contours, r.image.shape, units="px"))
    mean_abs = float(np.mean([x["epe_mean_abs"] for x in rows]))
    assert mean_abs <= 0.5, [round(x["epe_mean_abs"], 3) for x in rows]
    assert abs(float(np.mean([x["epe_mean"] for x in rows]))) < 0.25
    assert min(x["iou"] for x in rows) > 0.85
    assert all(np.isfinite(x["cd_bias"]) for x in rows)  # scored as line/space


def test_weak_contours_are_dropped():
    """A broad, shallow dark patch inside a bright band crosses the threshold (a coarse
    hole) but has no edge: its median edge strength is far below the band's edges."""
    h, w = 80, 104
    img = band_image(h, w, EDGES).astype(np.float64)
    yy, xx = np.mgrid[:h, :w]
    img -= 0.4 * np.exp(-((yy - 40) ** 2 + (xx - 51.3) ** 2) / (2 * 4.0 ** 2))
    img = img.astype(np.float32)
    kept = C.extract_classical_contours(img, edge_scale=1.0, min_edge_strength=0.0)
    assert len(kept.by_label(labels.HOLE)) == 1 and len(kept.contours) == 4
    res = C.extract_classical_contours(img, edge_scale=1.0)
    assert len(res.by_label(labels.HOLE)) == 0 and len(res.contours) == 3
    assert sorted(s.id for s in res.structures) == [1, 2, 3]
    ee = M.edge_placement_error(res.contours, band_truth(h, EDGES), shape=img.shape)
    far = np.abs(ee.points[:, 0] - 40) > 16  # the patch's tail bends the band edges near it
    assert np.abs(ee.epe[far]).max() < 0.05


def test_export_of_a_classical_result(tmp_path):
    from semlab.contours import export as E

    img = band_image(48, 104, EDGES)
    res = C.extract_classical_contours(img, edge_scale=1.0, pixel_nm=1.5)
    p = E.write_contours_json(tmp_path / "r.json", res, pixel_nm=res.pixel_nm, image_shape=img.shape,
                              parameters=res.settings.describe())
    back = E.read_contours_json(p)
    assert sorted(back.structures) == [s.id for s in res.by_label(labels.PATTERN)]
    assert back.meta["parameters"]["refine"] == res.settings.refine
    for s in res.by_label(labels.PATTERN):
        np.testing.assert_allclose(back.contours_px()[s.id][0], X.open_contour(s.contours[0]), atol=1e-9)
