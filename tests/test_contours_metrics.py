"""Contour extraction, metrics and export against closed forms and direct references."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.path import Path as MplPath

from semlab.contours import extract as X
from semlab.contours import metrics as M
from semlab.contours import export as E


def circle(r, centre=(50.0, 50.0), n=4000):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([centre[0] + r * np.sin(t), centre[1] + r * np.cos(t)])


def box(r0, c0, r1, c1, step=0.05):
    """Closed rectangle polygon with dense vertices (row, col)."""
    top = np.column_stack([np.full(int((c1 - c0) / step), r0), np.arange(c0, c1, step)[: int((c1 - c0) / step)]])
    right = np.column_stack([np.arange(r0, r1, step)[: int((r1 - r0) / step)], np.full(int((r1 - r0) / step), c1)])
    bottom = np.column_stack([np.full(int((c1 - c0) / step), r1), np.arange(c1, c0, -step)[: int((c1 - c0) / step)]])
    left = np.column_stack([np.arange(r1, r0, -step)[: int((r1 - r0) / step)], np.full(int((r1 - r0) / step), c0)])
    return np.vstack([top, right, bottom, left])


def seg_dist(p, poly):
    """Brute-force distance from points p to a closed polygon (independent reference)."""
    a = poly
    b = np.roll(poly, -1, axis=0)
    d = b - a
    t = np.clip(((p[:, None, :] - a[None]) * d[None]).sum(-1) / (d * d).sum(-1)[None], 0, 1)
    q = a[None] + t[..., None] * d[None]
    return np.hypot(*(p[:, None, :] - q).transpose(2, 0, 1)).min(1)


# ------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("d", [0.3, -0.4, 1.7])
def test_epe_of_concentric_circles_is_the_radius_difference(d):
    true = [circle(20.0)]
    pred = [circle(20.0 + d)]
    ee = M.edge_placement_error(pred, true, shape=(100, 100))
    assert ee.epe.size > 200
    np.testing.assert_allclose(ee.epe, d, atol=2e-4)
    s = ee.summary()
    assert s["mean"] == pytest.approx(d, abs=2e-4)
    assert s["mean_abs"] == pytest.approx(abs(d), abs=2e-4)
    assert s["sigma3"] < 1e-3
    assert M.hausdorff95(pred, true, shape=(100, 100)) == pytest.approx(abs(d), abs=2e-4)


def test_epe_of_shifted_square_matches_box_signed_distance():
    d = 0.8
    true = [box(20, 20, 60, 60)]
    pred = [box(20, 20 + d, 60, 60 + d)]
    ee = M.edge_placement_error(pred, true, shape=(100, 100))
    # closed-form signed distance to the axis-aligned box [20, 60]^2 (+ outside)
    q = np.abs(ee.points - 40.0) - 20.0
    outside = np.hypot(np.maximum(q[:, 0], 0), np.maximum(q[:, 1], 0))
    inside = np.minimum(np.maximum(q[:, 0], q[:, 1]), 0)
    np.testing.assert_allclose(ee.epe, outside + inside, atol=1e-6)
    # right edge pushed out by d, left edge pulled in by d
    right = np.abs(ee.points[:, 1] - (60 + d)) < 1e-9
    left = np.abs(ee.points[:, 1] - (20 + d)) < 1e-9
    interior_rows = (ee.points[:, 0] > 21) & (ee.points[:, 0] < 59)
    np.testing.assert_allclose(ee.epe[right & interior_rows], d, atol=1e-9)
    np.testing.assert_allclose(ee.epe[left & interior_rows], -d, atol=1e-9)


def test_nearest_distance_index_is_exact_against_brute_force():
    rng = np.random.default_rng(3)
    t = np.linspace(0, 2 * np.pi, 300, endpoint=False)
    r = 15 + 3 * np.sin(5 * t) + rng.normal(0, 0.3, t.size)
    poly = np.column_stack([40 + r * np.sin(t), 40 + r * np.cos(t)])
    pts = rng.uniform(10, 70, (2000, 2))
    a, b = M._segments([poly], None)
    got, _ = M._PolylineIndex(a, b).query(pts)
    np.testing.assert_allclose(got, seg_dist(pts, poly), atol=1e-9)


def test_iou_and_dice_match_direct_counts():
    rng = np.random.default_rng(0)
    p = rng.random((40, 50)) > 0.6
    t = rng.random((40, 50)) > 0.5
    inter, union = np.sum(p & t), np.sum(p | t)
    assert M.iou(p, t) == pytest.approx(inter / union)
    assert M.dice(p, t) == pytest.approx(2 * inter / (p.sum() + t.sum()))
    assert np.isnan(M.iou(np.zeros((3, 3)), np.zeros((3, 3))))
    with pytest.raises(ValueError, match="shape"):
        M.iou(p, t[:-1])


def line_polygon(left, right, h, rows=None):
    """A vertical line between edge functions left(row), right(row), cut by the frame at
    rows -0.5 and h - 0.5 (closed along it, as extracted contours are)."""
    rows = np.arange(-0.5, h - 0.5 + 1e-9, 0.05) if rows is None else rows
    return np.vstack([np.column_stack([rows, left(rows)]), np.column_stack([rows[::-1], right(rows[::-1])])])


def test_cd_of_a_straight_line_is_its_width():
    h, w = 80, 60
    poly = line_polygon(lambda r: np.full_like(r, 10.3), lambda r: np.full_like(r, 30.7), h)
    m = M.measure_cd([poly], (h, w), orientation="auto")
    assert m.orientation == "vertical"
    s = m.summary()
    assert s["n_lines"] == 1
    assert s["cd"] == pytest.approx(20.4, abs=1e-9)
    assert s["lwr"] == pytest.approx(0.0, abs=1e-9)
    # the same line transposed: horizontal
    mt = M.measure_cd([poly[:, ::-1]], (w, h))
    assert mt.orientation == "horizontal" and mt.summary()["cd"] == pytest.approx(20.4, abs=1e-9)


def test_lwr_and_ler_of_sinusoidal_edges_match_the_formula():
    h, w, a, period = 200, 60, 1.2, 25.0
    left = lambda r: 15 + a * np.sin(2 * np.pi * r / period)  # noqa: E731
    right = lambda r: 35 - a * np.sin(2 * np.pi * r / period)  # noqa: E731  (anti-phase: width varies by 2a)
    poly = line_polygon(left, right, h, rows=np.arange(-0.5, h - 0.5 + 1e-9, 0.01))
    m = M.measure_cd([poly], (h, w), end_exclusion_px=0)
    cuts = m.cuts
    width = right(cuts) - left(cuts)
    s = m.summary()
    assert s["cd"] == pytest.approx(width.mean(), abs=1e-3)
    assert s["lwr"] == pytest.approx(3 * np.std(width, ddof=1), rel=1e-3)
    resid = left(cuts) - np.polyval(np.polyfit(cuts, left(cuts), 1), cuts)
    assert s["ler"] == pytest.approx(3 * np.std(resid, ddof=2), rel=1e-3)


def test_cd_bias_of_a_widened_line_and_frame_cut_lines_are_skipped():
    h, w = 64, 80
    true = [line_polygon(lambda r: np.full_like(r, 20.0), lambda r: np.full_like(r, 32.0), h),
            # a line running out of the frame on the right: its width is not measurable
            np.array([[-0.5, 70.0], [h - 0.5, 70.0], [h - 0.5, w - 0.5], [-0.5, w - 0.5]])]
    pred = [line_polygon(lambda r: np.full_like(r, 19.75), lambda r: np.full_like(r, 32.25), h), true[1]]
    out = M.compare_cd(pred, true, (h, w))
    assert out["n_lines"] == 1
    assert out["cd_true"] == pytest.approx(12.0)
    assert out["cd_pred"] == pytest.approx(12.5)
    assert out["cd_bias"] == pytest.approx(0.5)
    assert out["matched_frac"] == pytest.approx(1.0)


def test_frame_closures_are_excluded_from_epe():
    """The same line cut by the frame as prediction and truth: EPE exactly 0. If the
    predicted frame closure were evaluated, or the true one were left out but the
    predicted kept, its points would have non-zero errors."""
    h, w = 50, 40
    m = np.zeros((h, w), np.float32)
    m[:, 10:22] = 1
    cs = X.extract_contours(m)
    assert len(cs) == 1 and X.frame_segments(cs[0], (h, w)).any()
    ee = M.edge_placement_error(cs, cs, shape=(h, w))
    assert np.all(X.frame_distance(ee.points, (h, w)) >= 1.0)
    assert np.max(np.abs(ee.epe)) == 0.0
    # every evaluated point lies on one of the two real edges (col 9.5 / 21.5)
    assert np.all(np.isclose(ee.points[:, 1], 9.5) | np.isclose(ee.points[:, 1], 21.5))


def test_score_contours_units_and_table():
    true = [circle(20.2)]  # radii with no pixel centre on the circles: no ties
    pred = [circle(20.7)]
    px = M.score_contours(pred, true, (100, 100), pixel_nm=None)
    nm = M.score_contours(pred, true, (100, 100), pixel_nm=2.0)
    assert px["units"] == "px" and nm["units"] == "nm"
    assert px["epe_mean"] == pytest.approx(0.5, abs=1e-3)
    assert nm["epe_mean"] == pytest.approx(1.0, abs=2e-3)
    assert nm["iou"] == px["iou"]
    # IoU of the rasterised discs against a direct count
    yy, xx = np.mgrid[:100, :100]
    rr = np.hypot(yy - 50, xx - 50)
    assert px["iou"] == pytest.approx(np.sum(rr < 20.2) / np.sum(rr < 20.7), abs=1e-12)
    assert "cd_bias" not in px  # a disc is no line/space pattern
    table = M.score_table([px, {**px, "epe_mean": 0.7}], n_boot=200)
    assert table["epe_mean"]["mean"] == pytest.approx((0.5 + 0.7) / 2, abs=1e-3)
    assert table["epe_mean"]["ci_low"] <= table["epe_mean"]["mean"] <= table["epe_mean"]["ci_high"]
    md = M.format_score_table({"a": table})
    assert md.startswith("| method |") and "epe_mean (px)" in md


def test_score_contours_reuses_given_edge_errors_and_hausdorff_directions():
    """Notebook 50 passes the EPE it computed to score_contours (computed once, not twice):
    every score must equal the self-computed one, and the Hausdorff distance must equal
    the brute-force reference of both directions."""
    true = [box(20.3, 18.6, 60.2, 70.4)]
    t = np.linspace(0, 2 * np.pi, 3000, endpoint=False)
    wob = box(21.0, 18.0, 61.1, 71.0)
    pred = [wob + 0.4 * np.column_stack([np.sin(7 * np.arange(len(wob)) / 50.0), np.cos(5 * np.arange(len(wob)) / 40.0)]),
            np.column_stack([40 + 3 * np.sin(t), 90 + 3 * np.cos(t)])]  # a spurious blob far from the truth
    shape = (100, 120)
    ee = M.edge_placement_error(pred, true, shape=shape)
    a = M.score_contours(pred, true, shape, pixel_nm=1.5)
    b = M.score_contours(pred, true, shape, pixel_nm=1.5, edge_errors=ee)
    assert a.keys() == b.keys() and all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)
    # Hausdorff 95 against brute force: pred points -> true polygon and true points -> pred polygons
    p_pts = np.concatenate([X.resample_contour(X.open_contour(c), 0.5) for c in pred])
    t_pts = X.resample_contour(X.open_contour(true[0]), 0.5)
    d1 = seg_dist(p_pts, X.open_contour(true[0]))
    d2 = np.minimum(*[seg_dist(t_pts, X.open_contour(c)) for c in pred])
    want = max(np.percentile(d1, 95), np.percentile(d2, 95))
    assert M.hausdorff95(pred, true, pred_distances=np.abs(M.edge_placement_error(pred, true).epe)) == \
        pytest.approx(want, abs=1e-3)
    assert M.hausdorff95(pred, true) == pytest.approx(want, abs=1e-3)
    assert b["hausdorff95"] == pytest.approx(1.5 * M.hausdorff95(pred, true, shape=shape), rel=1e-12)


# ----------------------------------------------------------------------- extraction


def supersampled_disc(h, w, cy, cx, r, k=16):
    """Exact-ish area coverage of a disc by k x k supersampling (independent of the
    extractor's interpolation)."""
    off = (np.arange(k) + 0.5) / k - 0.5
    yy = np.arange(h)[:, None, None, None] + off[None, None, :, None]
    xx = np.arange(w)[None, :, None, None] + off[None, None, None, :]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).mean(axis=(2, 3))


def test_antialiased_disc_contour_recovers_radius():
    cy, cx, r = 31.3, 29.8, 17.35
    cov = supersampled_disc(64, 64, cy, cx, r)
    cs = X.extract_contours(cov, 0.5)
    assert len(cs) == 1
    c = cs[0]
    rad = np.hypot(c[:, 0] - cy, c[:, 1] - cx)
    assert abs(rad.mean() - r) < 0.05
    assert np.abs(rad - r).max() < 0.1
    assert X.signed_area(c) > 0  # outer boundary counter-clockwise as displayed
    # the polygon's area is the disc's within the marching-squares chord error
    assert X.signed_area(c) == pytest.approx(np.pi * r * r, rel=5e-3)


def test_orientation_normals_and_holes():
    m = np.zeros((60, 60), np.float32)
    yy, xx = np.mgrid[:60, :60]
    m[np.hypot(yy - 30, xx - 30) < 20] = 1
    m[np.hypot(yy - 30, xx - 30) < 8] = 0
    cs = X.extract_contours(m)
    areas = sorted(X.signed_area(c) for c in cs)
    assert areas[0] < 0 < areas[1]  # hole clockwise, outer counter-clockwise
    outer = cs[int(np.argmax([X.signed_area(c) for c in cs]))]
    a = X.open_contour(outer)
    n = X.outward_normals(a)
    radial = (a - 30) / np.hypot(*(a - 30).T)[:, None]
    assert np.mean((n * radial).sum(1)) > 0.95
    # re-orienting reversed contours restores the convention
    fixed = X.orient_contours([c[::-1] for c in cs])
    assert sorted(X.signed_area(c) for c in fixed) == pytest.approx(areas)
    groups = X.group_structures(cs)
    assert len(groups) == 1 and len(groups[0]) == 2


def test_rasterize_and_points_inside_match_references():
    rng = np.random.default_rng(5)
    from scipy import ndimage as ndi

    f = ndi.gaussian_filter(rng.random((48, 56)), 2.5)
    lev = float(np.median(f))
    cs = X.extract_contours(f, lev)
    assert len(cs) > 2
    np.testing.assert_array_equal(X.rasterize_contours(cs, f.shape), f > lev)
    pts = rng.uniform(-0.5, 47.5, (3000, 2))
    ref = np.zeros(len(pts), bool)
    for c in cs:
        ref ^= MplPath(X.open_contour(c)).contains_points(pts)
    np.testing.assert_array_equal(X.points_inside(cs, pts), ref)


def test_structures_cut_by_the_frame_close_on_the_outer_pixel_boundary():
    m = np.zeros((30, 40), np.float32)
    m[:, 5:12] = 1
    m[20:, 30:] = 1
    cs = X.extract_contours(m)
    assert len(cs) == 2
    allp = np.concatenate(cs)
    assert allp[:, 0].min() == -0.5 and allp[:, 0].max() == 29.5 and allp[:, 1].max() == 39.5
    np.testing.assert_array_equal(X.rasterize_contours(cs, m.shape), m > 0.5)
    # with a probability map the frame crossing is also exactly on the boundary
    cs_p = X.extract_contours(0.2 + 0.6 * m, 0.5)
    assert np.concatenate(cs_p)[:, 0].min() == pytest.approx(-0.5)


def test_simplification_reduces_points_within_tolerance():
    c = X.extract_contours(supersampled_disc(80, 80, 40, 40, 30, k=8))[0]
    for tol in (0.1, 0.5):
        s = X.simplify_contour(c, tol)
        assert len(s) < 0.6 * len(c)
        d = seg_dist(X.open_contour(c), X.open_contour(s))
        assert d.max() <= tol + 1e-9


def test_smoothing_reduces_noise_and_keeps_frame_fixed():
    rng = np.random.default_rng(2)
    c = circle(20.0, n=600)
    noisy = c + rng.normal(0, 0.3, c.shape)
    sm = X.smooth_contour(noisy, 2.0)
    err_before = np.abs(np.hypot(*(noisy - 50).T) - 20).mean()
    err_after = np.abs(np.hypot(*(X.open_contour(sm) - 50).T) - 20).mean()
    assert err_after < 0.35 * err_before
    sav = X.smooth_contour(noisy, 2.0, method="savgol")
    assert np.abs(np.hypot(*(X.open_contour(sav) - 50).T) - 20).mean() < 0.6 * err_before
    # a line cut by the frame: the frame closure stays on the frame
    m = np.zeros((40, 30), np.float32)
    m[:, 8:20] = 1
    line = X.extract_contours(m)[0]
    sm_line = X.smooth_contour(line, 2.0, shape=m.shape)
    on = X.frame_points(sm_line, m.shape)
    assert on.sum() >= 4
    np.testing.assert_allclose(np.sort(sm_line[:, 0])[[0, -1]], [-0.5, 39.5])
    with pytest.raises(ValueError, match="valid"):
        X.smooth_contour(line, 1.0, method="median")


def test_to_nm_round_trip():
    c = [circle(5.0, n=50)]
    back = X.to_px(X.to_nm(c, 1.5), 1.5)
    np.testing.assert_allclose(back[0], c[0])
    with pytest.raises(ValueError):
        X.to_nm(c, 0)


# --------------------------------------------------------------------------- export


def _structures():
    m = np.zeros((40, 50), np.float32)
    m[5:30, 6:35] = 1
    m[10:15, 10:20] = 0  # a hole
    m[:, 40:45] = 1  # a line cut by the frame
    return m, X.extract_contours(m)


def test_gds_round_trip_units_and_axes(tmp_path):
    gdstk = pytest.importorskip("gdstk")
    m, cs = _structures()
    line = [c for c in cs if X.frame_points(c, m.shape).any()]
    path = E.write_contours_gds(tmp_path / "one.gds", line, pixel_nm=1.7, layer=5, datatype=2)
    lib = gdstk.read_gds(str(path))
    assert lib.unit == pytest.approx(1e-9) and lib.precision == pytest.approx(1e-12)
    (cell,) = lib.cells
    (poly,) = cell.polygons
    assert (poly.layer, poly.datatype) == (5, 2)
    want = X.open_contour(line[0])
    expect = np.column_stack([want[:, 1] * 1.7, -want[:, 0] * 1.7])  # x = col, y = -row (no mirroring)
    np.testing.assert_allclose(poly.points, expect, atol=1.01e-3)
    assert poly.area() == pytest.approx(abs(X.signed_area(line[0])) * 1.7 ** 2, rel=1e-6)
    # the image lies at y <= 0.5 px (the frame closure on the outer pixel boundary)
    assert poly.points[:, 1].max() == pytest.approx(0.5 * 1.7, abs=1e-3)
    # holes are cut out: area = outer - hole, and the readers invert the mapping
    both = E.write_contours_gds(tmp_path / "cells.gds", {"img_a": cs, "img-b": line}, pixel_nm=2.0)
    lib2 = gdstk.read_gds(str(both))
    names = sorted(c.name for c in lib2.cells)
    assert names == ["img_a", "img_b"]
    area = sum(p.area() for p in [c for c in lib2.cells if c.name == "img_a"][0].polygons)
    truth = sum(abs(X.signed_area(c)) * (1 if X.signed_area(c) > 0 else -1) for c in cs) * 4.0
    assert area == pytest.approx(truth, rel=1e-6)
    back = E.read_contours_gds(both, pixel_nm=2.0)["img_b"]
    np.testing.assert_allclose(back[0], want, atol=1e-3)


def test_csv_and_json_round_trip(tmp_path):
    m, cs = _structures()
    img_file = tmp_path / "image.bin"
    img_file.write_bytes(b"\x00\x01fake image bytes")
    p_csv = E.write_contours_csv(tmp_path / "c.csv", cs, pixel_nm=0.75)
    f = E.read_contours_csv(p_csv, pixel_nm=0.75)
    assert f.unit == "nm"
    groups = X.group_structures(cs)
    assert sorted(len(v) for v in f.structures.values()) == sorted(len(g) for g in groups)
    got = sorted((c for v in f.contours_px().values() for c in v), key=len)
    want = sorted((X.open_contour(c) for g in groups for c in g), key=len)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-9)
    p_json = E.write_contours_json(tmp_path / "c.json", cs, image_path=img_file, image_shape=m.shape,
                                   parameters={"threshold": "otsu"})
    doc = json.loads(p_json.read_text())
    assert doc["unit"] == "px" and doc["pixel_nm"] is None
    assert doc["image"]["sha256"] == hashlib.sha256(img_file.read_bytes()).hexdigest()
    assert doc["parameters"] == {"threshold": "otsu"}
    j = E.read_contours_json(p_json)
    got = sorted((c for v in j.structures.values() for c in v), key=len)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_writers_refuse_to_overwrite(tmp_path):
    _, cs = _structures()
    for writer, name, kw in ((E.write_contours_csv, "a.csv", {}), (E.write_contours_json, "a.json", {}),
                             (E.write_contours_gds, "a.gds", {"pixel_nm": 1.0})):
        path = tmp_path / name
        path.write_text("keep me")
        with pytest.raises(FileExistsError, match="overwrite=True"):
            writer(path, cs, **kw)
        assert path.read_text() == "keep me"
        writer(path, cs, overwrite=True, **kw)
        assert path.read_bytes() != b"keep me"
    with pytest.raises(ValueError, match="pixel"):
        E.write_contours_gds(tmp_path / "new.gds", cs, pixel_nm=None)


# ------------------------------------------------------------------------------ viz


def test_figures_draw_what_they_are_given():
    from semlab.viz.contours import contour_overlay_figure, epe_along_contour_figure, epe_distribution_figure

    img = np.full((40, 40), 0.3, np.float32)
    true = [circle(10.0, centre=(20, 20), n=200)]
    pred = {"a": [circle(10.5, centre=(20, 20), n=200)], "b": [circle(9.5, centre=(20, 20), n=200)]}
    fig = contour_overlay_figure(img, true, pred, inset=(20, 30, 8))
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert len(fig.axes[0].lines) == 4  # true, a, b, the inset outline
    ee = M.edge_placement_error(pred["a"], true, shape=(40, 40))
    fig = epe_distribution_figure({"a": ee.epe, "b": -ee.epe})
    assert isinstance(fig, Figure)
    fig = epe_distribution_figure({"a": ee.epe}, kind="hist")
    assert len(fig.axes[0].patches) == 1
    fig = epe_along_contour_figure(img, ee.points, ee.epe, true=true)
    coll = fig.axes[0].collections[0]
    np.testing.assert_allclose(coll.get_array(), ee.epe)
    with pytest.raises(ValueError):
        epe_along_contour_figure(img, ee.points, ee.epe[:-1])


def test_score_structures_per_structure_errors():
    from types import SimpleNamespace

    h, w = 60, 80
    band = lambda c0, c1: line_polygon(lambda r: np.full_like(r, c0), lambda r: np.full_like(r, c1), h)  # noqa: E731
    true = [band(10.3, 20.3), band(40.3, 50.3)]
    sts = [SimpleNamespace(id=i + 1, contours=[c], mask=X.rasterize_contours([c], (h, w)))
           for i, c in enumerate((band(10.3, 20.3), band(39.3, 51.3)))]  # the second 1 px too wide each side
    rows = M.score_structures(sts, true, (h, w))
    assert rows[0]["epe_mean_abs"] == pytest.approx(0.0, abs=1e-9) and rows[0]["iou"] == 1.0
    assert rows[1]["epe_mean"] == pytest.approx(1.0, abs=1e-9)
    assert rows[1]["iou"] == pytest.approx(10 / 12)  # true columns 41..50 of predicted 40..51
    assert rows[0]["true_id"] != rows[1]["true_id"] and min(r["true_id"] for r in rows) > 0
