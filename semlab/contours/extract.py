"""Sub-pixel contours from masks, probability maps and logits; smoothing, simplification.

Conventions (the same as `semlab.data.simulate.SimResult.contours`, which are the
exact pattern edges of simulated images):

- A contour is an ``(N, 2)`` float array of ``(row, col)`` points in pixels, with the
  origin at the centre of the top-left pixel, describing a **closed** polygon. Functions
  here return it with the first point repeated at the end (as the simulator does) and
  accept it with or without that repetition.
- **Frame closure**: a structure cut by the image frame is closed along the frame, on
  the outer pixel boundary (row -0.5 or H - 0.5, column -0.5 or W - 0.5), exactly as
  `structure_contours` does: the field is padded by one pixel mirrored about the level
  where it is inside, so the crossing falls half-way, on the boundary. These *frame
  segments* are not edges of the pattern; `frame_points` / `frame_segments` find them
  so that metrics can leave them out.
- **Orientation**: outer boundaries run counter-clockwise *as displayed* (row axis
  pointing down), i.e. counter-clockwise in the layout frame ``x = col, y = -row``
  used by the GDSII export, and holes clockwise. `signed_area` is positive for
  counter-clockwise contours in that frame. With this orientation the inside of the
  structure is always on the left of the walking direction, so the outward normal is a
  fixed rotation of the tangent (`outward_normals`).
- Units: pixels everywhere; `to_nm` multiplies by the pixel size (nm per pixel) at the
  boundary of reports and exports.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "extract_contours",
    "mask_contours",
    "smooth_contour",
    "simplify_contour",
    "resample_contour",
    "orient_contours",
    "group_structures",
    "signed_area",
    "outward_normals",
    "frame_points",
    "frame_segments",
    "frame_distance",
    "rasterize_contours",
    "points_inside",
    "close_contour",
    "open_contour",
    "to_nm",
    "to_px",
    "SMOOTHERS",
]

SMOOTHERS = ("gaussian", "savgol")
FRAME_TOL = 1e-3  # px: a point this close to a frame line lies on the frame


# ----------------------------------------------------------------------------- basics


def open_contour(c: np.ndarray) -> np.ndarray:
    """The polygon's vertices without a repeated closing point, float64 (N, 2)."""
    a = np.asarray(c, np.float64)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"a contour is an (N, 2) array of (row, col) points, got shape {a.shape}")
    if len(a) > 1 and np.array_equal(a[0], a[-1]):
        a = a[:-1]
    return a


def close_contour(c: np.ndarray) -> np.ndarray:
    """The polygon with its first point repeated at the end (the simulator's convention)."""
    a = open_contour(c)
    if len(a) == 0:
        return a
    return np.vstack([a, a[:1]])


def signed_area(c: np.ndarray) -> float:
    """Signed area in px^2, positive when the contour runs counter-clockwise as displayed
    (counter-clockwise in the layout frame x = col, y = -row)."""
    a = open_contour(c)
    if len(a) < 3:
        return 0.0
    x, y = a[:, 1], -a[:, 0]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def to_nm(contours: Sequence[np.ndarray], pixel_nm: float) -> list[np.ndarray]:
    """Contours in nm: (row, col) x pixel size, origin at the top-left pixel centre."""
    if not (pixel_nm and pixel_nm > 0):
        raise ValueError(f"pixel size must be a positive number of nm, got {pixel_nm!r}")
    return [np.asarray(c, np.float64) * float(pixel_nm) for c in contours]


def to_px(contours: Sequence[np.ndarray], pixel_nm: float) -> list[np.ndarray]:
    """The inverse of `to_nm`."""
    if not (pixel_nm and pixel_nm > 0):
        raise ValueError(f"pixel size must be a positive number of nm, got {pixel_nm!r}")
    return [np.asarray(c, np.float64) / float(pixel_nm) for c in contours]


def frame_points(c: np.ndarray, shape: tuple[int, int], tol: float = FRAME_TOL) -> np.ndarray:
    """Boolean per point of `c` (as given): True where the point lies on the frame
    (row -0.5 or H - 0.5, column -0.5 or W - 0.5, within `tol` px)."""
    a = np.asarray(c, np.float64)
    h, w = shape
    r, q = a[:, 0], a[:, 1]
    return ((np.abs(r + 0.5) <= tol) | (np.abs(r - (h - 0.5)) <= tol)
            | (np.abs(q + 0.5) <= tol) | (np.abs(q - (w - 0.5)) <= tol))


def frame_distance(p: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Distance (px) of (row, col) points to the nearest frame line (the outer pixel
    boundary), for points inside the frame."""
    p = np.asarray(p, np.float64)
    h, w = shape
    r, q = p[..., 0], p[..., 1]
    return np.minimum.reduce([np.abs(r + 0.5), np.abs(r - (h - 0.5)), np.abs(q + 0.5), np.abs(q - (w - 0.5))])


def frame_segments(c: np.ndarray, shape: tuple[int, int], tol: float = FRAME_TOL,
                   chord_px: float = 1.5) -> np.ndarray:
    """Boolean per segment (point i -> i + 1 of the open polygon, the last one closing
    it): True for the closure of a structure cut by the frame, which is not a pattern
    edge: segments running along the frame (both ends and the midpoint on it) and the
    short chords (at most `chord_px`) with an end on the frame, which marching squares
    draws from the last edge point (on the outermost pixel centres) to the frame line
    and across frame corners. A long segment that merely starts or ends on the frame
    (a sparse polygon's edge running out of the image) is an edge."""
    a = open_contour(c)
    on = frame_points(a, shape, tol)
    b = np.roll(a, -1, axis=0)
    on_b = np.roll(on, -1)
    length = np.hypot(*(b - a).T)
    along = on & on_b & (frame_distance(0.5 * (a + b), shape) <= tol)
    return (on | on_b) & ((length <= chord_px) | along)


# ------------------------------------------------------------------- marching squares


def _pad_for_frame(field: np.ndarray, level: float) -> np.ndarray:
    """Pad by one pixel with the edge values mirrored about `level` where they are above
    it (so the level crossing is exactly half-way, on the outer pixel boundary) and kept
    where they are below (no crossing): every structure closes along the frame."""
    f = np.asarray(field, np.float64)
    p = np.pad(f, 1, mode="edge")
    for sl in ((0, slice(None)), (-1, slice(None)), (slice(None), 0), (slice(None), -1)):
        v = p[sl]
        p[sl] = np.minimum(v, 2.0 * level - v)
    # a value exactly at the level would put the contour on the pixel itself; nudge down
    for sl in ((0, slice(None)), (-1, slice(None)), (slice(None), 0), (slice(None), -1)):
        v = p[sl]
        v[v >= level] = level - 1e-9
        p[sl] = v
    return p


def mask_contours(field: np.ndarray, level: float = 0.5, *, close_frame: bool = True,
                  min_points: int = 4) -> list[np.ndarray]:
    """Closed sub-pixel contours of ``field > level`` by marching squares.

    `field` is a binary mask (level 0.5 puts the edge half-way between pixel centres), a
    probability map (level 0.5) or logits (level 0.0); the crossing is linearly
    interpolated between pixel centres, which is what makes the contour sub-pixel for a
    soft field. Outer boundaries counter-clockwise as displayed, holes clockwise (see
    the module docstring); the inside (> level) is 4-connected, like
    `scipy.ndimage.label`'s default, so structures touching only diagonally stay apart.
    With `close_frame=False` structures cut by the frame give open polylines instead.
    """
    from skimage import measure

    f = np.asarray(field)
    if f.ndim != 2:
        raise ValueError(f"expected a 2-D mask or map, got shape {f.shape}")
    f = f.astype(np.float64)
    if not np.isfinite(f).all():
        raise ValueError("the map contains NaN or infinite values")
    if close_frame:
        lines = measure.find_contours(_pad_for_frame(f, level), level,
                                      fully_connected="low", positive_orientation="high")
        lines = [c - 1.0 for c in lines]
    else:
        lines = measure.find_contours(f, level, fully_connected="low", positive_orientation="high")
    out = []
    for c in lines:
        if len(c) < min_points:
            continue
        if not np.array_equal(c[0], c[-1]) and close_frame:  # pragma: no cover - padded maps always close
            c = np.vstack([c, c[:1]])
        out.append(c.astype(np.float64))
    return out


# ---------------------------------------------------------------- resample / smoothing


def _arc(a: np.ndarray) -> tuple[np.ndarray, float]:
    """Cumulative arc length at each vertex of the closed polygon and its perimeter."""
    seg = np.hypot(*(np.roll(a, -1, axis=0) - a).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    return s[:-1], float(s[-1])


def resample_contour(c: np.ndarray, spacing_px: float = 0.5, *, shape: tuple[int, int] | None = None,
                     return_frame: bool = False):
    """Points every `spacing_px` along the closed polygon (linear interpolation; the
    number of points is the perimeter / spacing, rounded, at least 4).

    With `shape`, the vertices where an edge meets the frame closure are kept exactly
    and `return_frame=True` also returns a boolean per output point: True for points of
    the closure (on the frame, or inside a closure chord). Returns the open polygon (no
    repeated point)."""
    a = open_contour(c)
    if len(a) < 2:
        raise ValueError(f"cannot resample a contour of {len(a)} point(s)")
    s, per = _arc(a)
    n = max(int(round(per / max(spacing_px, 1e-6))), 4)
    t = np.linspace(0.0, per, n, endpoint=False)
    fseg = frame_segments(a, shape) if shape is not None else np.zeros(len(a), bool)
    if shape is not None and fseg.any():
        # keep the vertices where an edge meets the frame closure: they anchor it
        keep = s[fseg != np.roll(fseg, 1)]
        t = np.unique(np.concatenate([t, keep]))
    closed = np.vstack([a, a[:1]])
    sc = np.concatenate([s, [per]])
    idx = np.clip(np.searchsorted(sc, t, side="right") - 1, 0, len(a) - 1)
    seglen = sc[idx + 1] - sc[idx]
    u = np.where(seglen > 0, (t - sc[idx]) / np.where(seglen > 0, seglen, 1.0), 0.0)
    pts = closed[idx] + u[:, None] * (closed[idx + 1] - closed[idx])
    if return_frame:
        # on the frame: inside a closure segment, or on a frame line; the vertex where an
        # edge meets a closure chord is the edge's last point, not part of the closure
        on_frame = (fseg[idx] & (u > 0)) | frame_points(pts, shape) if shape is not None else np.zeros(len(pts), bool)
        return pts, on_frame
    return pts


def true_runs(flag: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the maximal circular runs where `flag` is False."""
    n = len(flag)
    if not flag.any():
        return [np.arange(n)]
    start = int(np.argmax(flag))  # begin at a True so no run wraps the array end
    order = (np.arange(n) + start) % n
    runs, cur = [], []
    for i in order:
        if flag[i]:
            if cur:
                runs.append(np.array(cur))
            cur = []
        else:
            cur.append(i)
    if cur:
        runs.append(np.array(cur))
    return runs


def smooth_signal(values: np.ndarray, sigma: float, *, closed: bool, method: str = "gaussian") -> np.ndarray:
    """Smooth a 1-D (or (N, k)) signal sampled uniformly along a contour; `sigma` in
    samples. Gaussian: `scipy.ndimage.gaussian_filter1d`; Savitzky-Golay: quadratic fits
    over a window of 2 * round(2 sigma) + 1 samples (a similar cut-off, but corners
    and line-ends keep their shape better). `closed` wraps around; otherwise the ends
    are extended by their nearest value (Gaussian) or fitted (Savitzky-Golay)."""
    v = np.asarray(values, np.float64)
    if sigma <= 0 or len(v) < 3:
        return v.copy()
    if method == "gaussian":
        return ndi.gaussian_filter1d(v, sigma, axis=0, mode="wrap" if closed else "nearest")
    if method == "savgol":
        from scipy.signal import savgol_filter

        win = 2 * int(round(2 * sigma)) + 1
        if not closed:
            win = min(win, len(v) if len(v) % 2 else len(v) - 1)
        if win <= 3:
            return v.copy()
        if closed and win > len(v):
            win = len(v) if len(v) % 2 else len(v) - 1
        return savgol_filter(v, win, 2, axis=0, mode="wrap" if closed else "interp")
    raise ValueError(f"smoothing method {method!r}; valid: {SMOOTHERS}")


def smooth_contour(c: np.ndarray, smooth_px: float, *, method: str = "gaussian", spacing_px: float = 0.5,
                   shape: tuple[int, int] | None = None) -> np.ndarray:
    """Smooth a closed contour along its arc length (Gaussian of sigma `smooth_px` px, or
    Savitzky-Golay of a comparable window): resampled every `spacing_px` first, so the
    smoothing acts on length, not on the vertex count marching squares happened to make.

    With `shape`, points on the frame stay where they are and the edge pieces between
    them are smoothed as open curves: the frame closure is not an edge and must neither
    move nor pull on the real edges. Returns the closed contour (first point repeated).
    Note that smoothing a convex curve moves it inwards by about curvature * sigma^2 / 2
    (0.02 px for sigma 1 px on a 25 px radius): keep sigma well below the radius."""
    if method not in SMOOTHERS:
        raise ValueError(f"smoothing method {method!r}; valid: {SMOOTHERS}")
    pts, on = resample_contour(c, spacing_px, shape=shape, return_frame=True)
    sig = smooth_px / spacing_px
    if shape is None or not on.any():
        out = smooth_signal(pts, sig, closed=True, method=method)
    else:
        out = pts.copy()
        for run in true_runs(on):
            out[run] = smooth_signal(pts[run], sig, closed=False, method=method)
    return close_contour(out)


def simplify_contour(c: np.ndarray, tolerance_px: float) -> np.ndarray:
    """Douglas-Peucker simplification (`skimage.measure.approximate_polygon`): every
    original point stays within `tolerance_px` of the simplified polygon, which keeps
    only the vertices needed for that (GDSII files and OPC tools want few vertices).
    Returns the closed contour; keeps at least 3 distinct vertices."""
    from skimage import measure

    a = close_contour(c)
    if tolerance_px <= 0 or len(a) <= 4:
        return a
    out = measure.approximate_polygon(a, tolerance_px)
    if len(out) < 4:  # degenerate: keep a triangle spread along the contour
        k = len(a) - 1
        out = np.vstack([a[[0, k // 3, 2 * k // 3]], a[:1]])
    return out


# ------------------------------------------------------------------------ orientation


def orient_contours(contours: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Outer boundaries counter-clockwise (as displayed), holes clockwise, whatever the
    input's orientation: a contour is a hole when it lies inside an odd number of the
    others (nesting depth by a point-in-polygon test of one vertex, pre-filtered by
    bounding boxes). Contours must not cross each other (true of level sets)."""
    cs = [open_contour(c) for c in contours]
    n = len(cs)
    lo = np.array([c.min(0) for c in cs]) if n else np.zeros((0, 2))
    hi = np.array([c.max(0) for c in cs]) if n else np.zeros((0, 2))
    out = []
    for i, c in enumerate(cs):
        depth = 0
        p = c[0]
        for j in range(n):
            if j == i or len(cs[j]) < 3:
                continue
            if np.any(p < lo[j]) or np.any(p > hi[j]):
                continue
            if points_inside([cs[j]], p[None])[0]:
                depth += 1
        want_ccw = depth % 2 == 0
        if (signed_area(c) > 0) != want_ccw:
            c = c[::-1]
        out.append(close_contour(c))
    return out


def group_structures(contours: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """Group a flat list of contours into structures: each outer boundary (even nesting
    depth) with the holes (odd depth) directly inside it, outer first; all oriented
    (outer counter-clockwise as displayed, holes clockwise). A hole belongs to the
    smallest outer boundary that contains it. Islands inside holes are structures of
    their own. This is what GDSII needs: a polygon with its holes cut out."""
    cs = orient_contours(contours)
    area = np.array([signed_area(c) for c in cs])
    outers = [i for i in range(len(cs)) if area[i] > 0]
    groups = {i: [cs[i]] for i in outers}
    for j in range(len(cs)):
        if area[j] > 0:
            continue
        p = open_contour(cs[j])[:1]
        best, best_area = None, np.inf
        for i in outers:
            if area[i] < best_area and abs(area[i]) > abs(area[j]) and points_inside([cs[i]], p)[0]:
                best, best_area = i, area[i]
        if best is None:  # a hole with no outer (should not happen for level sets): keep it alone
            groups[j] = [cs[j]]
        else:
            groups[best].append(cs[j])
    return [groups[k] for k in sorted(groups)]


def outward_normals(c: np.ndarray) -> np.ndarray:
    """Unit normals pointing out of the structure, per vertex of the open polygon
    (central differences of the neighbouring vertices), for a contour in the normalised
    orientation (outer counter-clockwise as displayed, holes clockwise): the inside is
    on the left of the walking direction, so the outward normal is the tangent turned
    to the right."""
    a = open_contour(c)
    t = np.roll(a, -1, axis=0) - np.roll(a, 1, axis=0)  # (drow, dcol)
    # layout frame x = col, y = -row: tangent (dcol, -drow), right-hand normal
    # (-drow, -dcol) in (x, y), which is (dcol, -drow) in (row, col)
    n = np.stack([t[:, 1], -t[:, 0]], axis=1)
    ln = np.hypot(n[:, 0], n[:, 1])
    return n / np.where(ln > 0, ln, 1.0)[:, None]


# ------------------------------------------------------------------------ rasterising


def _all_segments(contours: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    a_list, b_list = [], []
    for c in contours:
        a = open_contour(c)
        if len(a) < 2:
            continue
        a_list.append(a)
        b_list.append(np.roll(a, -1, axis=0))
    if not a_list:
        return np.zeros((0, 2)), np.zeros((0, 2))
    return np.concatenate(a_list), np.concatenate(b_list)


def rasterize_contours(contours: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the pixels whose centre lies inside the contours (even-odd rule,
    so holes are holes whatever their orientation): the same sampling as the simulator's
    `mask = phi > 0` at pixel centres, so masks and contours can be compared.

    A scanline fill: every segment toggles the parity of the pixel row it crosses (rows
    r with min(r0, r1) <= r < max(r0, r1), so a vertex on a row counts once) from the
    first pixel centre right of the crossing; a cumulative sum gives the parity."""
    h, w = shape
    a, b = _all_segments(contours)
    out = np.zeros((h, w + 1), np.int32)
    if len(a):
        lo, hi = np.minimum(a[:, 0], b[:, 0]), np.maximum(a[:, 0], b[:, 0])
        k0 = np.clip(np.ceil(lo), 0, h).astype(np.int64)
        k1 = np.clip(np.ceil(hi), 0, h).astype(np.int64)
        n = np.maximum(k1 - k0, 0)
        if n.sum():
            seg = np.repeat(np.arange(len(a)), n)
            start = np.repeat(np.cumsum(n) - n, n)
            k = k0[seg] + (np.arange(int(n.sum())) - start)
            ra, ca, rb, cb = a[seg, 0], a[seg, 1], b[seg, 0], b[seg, 1]
            x = ca + (k - ra) / (rb - ra) * (cb - ca)
            j = np.clip(np.floor(x).astype(np.int64) + 1, 0, w)
            np.add.at(out, (k, j), 1)
    return (np.cumsum(out, axis=1)[:, :w] % 2).astype(bool)


def points_inside(contours: Sequence[np.ndarray], pts: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of (row, col) points against all contours (holes
    count whatever their orientation): the number of segments crossing the ray from each
    point towards +col is odd. Segments and points are bucketed by pixel row, so the
    cost grows with the number of points and segments, not with their product."""
    p = np.asarray(pts, np.float64).reshape(-1, 2)
    a, b = _all_segments(contours)
    inside = np.zeros(len(p), bool)
    if not len(a) or not len(p):
        return inside
    lo, hi = np.minimum(a[:, 0], b[:, 0]), np.maximum(a[:, 0], b[:, 0])
    ok = hi > lo
    a, b, lo, hi = a[ok], b[ok], lo[ok], hi[ok]
    base = int(np.floor(min(lo.min(), p[:, 0].min())))
    f0 = np.floor(lo).astype(np.int64) - base
    f1 = np.floor(hi).astype(np.int64) - base
    n = f1 - f0 + 1
    seg = np.repeat(np.arange(len(a)), n)
    bucket = f0[seg] + (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n))
    order = np.argsort(bucket, kind="stable")
    seg, bucket = seg[order], bucket[order]
    pb = np.floor(p[:, 0]).astype(np.int64) - base
    porder = np.argsort(pb, kind="stable")
    ub, ustart = np.unique(pb[porder], return_index=True)
    uend = np.append(ustart[1:], len(porder))
    s0 = np.searchsorted(bucket, ub, side="left")
    s1 = np.searchsorted(bucket, ub, side="right")
    for i0, i1, j0, j1 in zip(ustart, uend, s0, s1):
        if j1 <= j0:
            continue
        pi = porder[i0:i1]
        sj = seg[j0:j1]
        y = p[pi, 0][:, None]
        hit = (lo[sj][None, :] <= y) & (y < hi[sj][None, :])
        ra, ca, rb, cb = a[sj, 0], a[sj, 1], b[sj, 0], b[sj, 1]
        x = ca[None, :] + (y - ra[None, :]) / (rb - ra)[None, :] * (cb - ca)[None, :]
        cnt = np.count_nonzero(hit & (x > p[pi, 1][:, None]), axis=1)
        inside[pi] = cnt % 2 == 1
    return inside


# ----------------------------------------------------------------------- the pipeline


def extract_contours(field: np.ndarray, level: float = 0.5, *, smooth_px: float = 0.0,
                     smooth_method: str = "gaussian", simplify_px: float = 0.0, min_area_px: float = 0.0,
                     spacing_px: float = 0.5, close_frame: bool = True) -> list[np.ndarray]:
    """Sub-pixel contours of a binary mask, probability map (`level` 0.5) or logit map
    (`level` 0.0), in px, oriented (outer counter-clockwise as displayed, holes
    clockwise), closed along the frame where structures are cut by it.

    Optional steps, in order: contours enclosing less than `min_area_px` px^2 dropped
    (specks and pinholes); smoothing along the arc length (`smooth_px` sigma, frame
    closure kept fixed; resampled every `spacing_px`); Douglas-Peucker simplification
    (`simplify_px` tolerance). Use `to_nm` for nm.
    """
    if smooth_method not in SMOOTHERS:
        raise ValueError(f"smoothing method {smooth_method!r}; valid: {SMOOTHERS}")
    f = np.asarray(field)
    if f.dtype == bool:
        f = f.astype(np.float32)
    cs = mask_contours(f, level, close_frame=close_frame)
    shape = f.shape if close_frame else None
    out = []
    for c in cs:
        if min_area_px > 0 and abs(signed_area(c)) < min_area_px:
            continue
        if smooth_px > 0 and close_frame:
            c = smooth_contour(c, smooth_px, method=smooth_method, spacing_px=spacing_px, shape=shape)
        if simplify_px > 0:
            c = simplify_contour(c, simplify_px)
        out.append(c)
    return out
