"""Contour metrics for OPC-grade SEM contours: IoU/Dice, edge placement error (EPE),
Hausdorff 95, CD bias, LWR and LER, and bootstrap confidence tables over images.

Definitions (all lengths in px; `score_contours` converts to nm when the pixel size is
known):

- **EPE** of a predicted contour point: its distance to the nearest point of the true
  contour (exact point-to-segment distance over all true contours), signed **positive
  when the point lies outside the true pattern** (the pattern is printed too large) and
  negative inside, the sign taken from an even-odd point-in-polygon test on the true
  contours. Why not "along the true contour's normal": the normal ray is undefined at
  corners and line-ends, can miss the true contour or hit a different structure, and
  needs the two contours to be matched point by point; the nearest-point distance is
  defined everywhere, is symmetric in which structure a point belongs to, and equals the
  normal distance wherever the true edge is smooth on the scale of the error (a circle
  of radius r + d against one of radius r gives exactly d). Predicted contours are
  resampled every `spacing_px` (0.5 px) along their length first, so every edge
  length weighs the same whatever vertex density the extractor produced.
- **Summary** of the per-point EPE: ``mean`` (signed: the bias), ``mean_abs``,
  ``sigma3`` (3 x the standard deviation of the signed EPE: the spread after removing
  the bias, the usual OPC "3 sigma EPE"), ``max`` (largest |EPE|) and ``rms``.
- **Hausdorff 95** (symmetric): the larger of the 95th percentiles of the two
  directed nearest-point distances (predicted -> true, true -> predicted). The second
  direction catches missed structures that the EPE of predicted points cannot see.
- **Frame**: structures cut by the image frame are closed along it (see
  `semlab.contours.extract`). These closures are not edges: segments with an end on
  the frame are left out of the true contour used as the reference, and points closer
  than `frame_margin_px` (1 px) to the frame are left out of the evaluated points (of
  both contours for Hausdorff). Points inside that margin would otherwise be measured
  against a frame line and look perfect.
- **CD, LWR, LER** (line/space, `measure_cd`): cut lines perpendicular to the lines
  every `step_px`, as a CD-SEM measures; the width of each line on each cut is the
  distance between its two edge crossings. Lines cut by the frame (the crossing lies on
  it) are not measured; cuts within `end_exclusion_px` of a line-end are left out (the
  corner rounding of a tip is not line width). LWR = 3 sigma of the widths of one line,
  LER = 3 sigma of one edge's positions around a straight-line fit (tilt removed); both
  averaged over lines (edges). CD bias = mean (predicted width - true width) over cuts
  where both contours have that line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from semlab.contours.extract import (
    frame_distance,
    frame_segments,
    open_contour,
    points_inside,
    rasterize_contours,
    resample_contour,
)

__all__ = [
    "iou",
    "dice",
    "EdgeErrors",
    "edge_placement_error",
    "summarize_epe",
    "nearest_distances",
    "hausdorff95",
    "CDMeasurement",
    "measure_cd",
    "compare_cd",
    "line_orientation",
    "score_contours",
    "score_structures",
    "score_table",
    "format_score_table",
    "SCORE_KEYS",
]

# keys of `score_contours`, in table order; lengths in the dict's `units`
SCORE_KEYS = ("epe_mean", "epe_mean_abs", "epe_3sigma", "epe_max", "hausdorff95", "cd_bias",
              "cd_true", "cd_pred", "lwr_true", "lwr_pred", "ler_true", "ler_pred", "iou", "dice")
_LENGTH_KEYS = {"epe_mean", "epe_mean_abs", "epe_3sigma", "epe_max", "epe_rms", "hausdorff95", "hausdorff",
                "cd_bias", "cd_true", "cd_pred", "lwr_true", "lwr_pred", "ler_true", "ler_pred"}


# ------------------------------------------------------------------------------ masks


def _bool_pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred).astype(bool), np.asarray(true).astype(bool)
    if p.shape != t.shape:
        raise ValueError(f"masks differ in shape: predicted {p.shape}, true {t.shape}")
    return p, t


def iou(pred: np.ndarray, true: np.ndarray) -> float:
    """Intersection over union of two boolean masks (non-zero = inside); NaN when both
    are empty (nothing to agree on)."""
    p, t = _bool_pair(pred, true)
    u = int(np.count_nonzero(p | t))
    return float(np.count_nonzero(p & t) / u) if u else float("nan")


def dice(pred: np.ndarray, true: np.ndarray) -> float:
    """Dice coefficient 2|P & T| / (|P| + |T|); NaN when both masks are empty."""
    p, t = _bool_pair(pred, true)
    s = int(np.count_nonzero(p)) + int(np.count_nonzero(t))
    return float(2 * np.count_nonzero(p & t) / s) if s else float("nan")


# ------------------------------------------------------------- point-to-polyline search


def _segments(contours: Sequence[np.ndarray], shape: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Start and end points of the closed polygons' segments, frame segments dropped."""
    a_list, b_list = [], []
    for c in contours:
        a = open_contour(c)
        if len(a) < 2:
            continue
        b = np.roll(a, -1, axis=0)
        keep = ~frame_segments(a, shape) if shape is not None else np.ones(len(a), bool)
        a_list.append(a[keep])
        b_list.append(b[keep])
    if not a_list:
        return np.zeros((0, 2)), np.zeros((0, 2))
    return np.concatenate(a_list), np.concatenate(b_list)


class _PolylineIndex:
    """Exact nearest point on a set of segments for many query points.

    Segments are cut into pieces of at most `max_len` px and indexed by their midpoints
    in a k-d tree. A piece whose midpoint is farther than m from the query is at least
    m - max_len / 2 away, so the k nearest midpoints contain the nearest piece whenever
    the best exact distance among them is below the k-th midpoint distance minus
    max_len / 2; the few queries where that check fails are answered by a ball search
    of that radius, which is exact."""

    def __init__(self, a: np.ndarray, b: np.ndarray, max_len: float = 0.5):
        from scipy.spatial import cKDTree

        if len(a) == 0:
            self.a = self.b = np.zeros((0, 2))
            self.half, self.tree = 0.0, None
            return
        ln = np.hypot(*(b - a).T)
        k = np.maximum(np.ceil(ln / max_len).astype(int), 1)
        rep = np.repeat(np.arange(len(a)), k)
        start = np.concatenate([[0], np.cumsum(k)[:-1]])
        j = np.arange(len(rep)) - np.repeat(start, k)
        t0 = (j / np.repeat(k, k))[:, None]
        t1 = ((j + 1) / np.repeat(k, k))[:, None]
        d = (b - a)[rep]
        self.a = a[rep] + t0 * d
        self.b = a[rep] + t1 * d
        self.half = 0.5 * float(np.hypot(*(self.b - self.a).T).max()) if len(self.a) else 0.0
        self.tree = cKDTree(0.5 * (self.a + self.b)) if len(self.a) else None

    def _exact(self, p: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact distances from p ((n, 2) with idx (n, k), or (2,) with idx (m,)) to the
        indexed pieces, and the nearest points on them."""
        a, b = self.a[idx], self.b[idx]
        d = b - a
        pp = p[:, None, :] if p.ndim == 2 else p[None, :]
        dd = (d * d).sum(-1)
        t = np.clip(((pp - a) * d).sum(-1) / np.where(dd > 0, dd, 1.0), 0.0, 1.0)
        q = a + t[..., None] * d
        diff = pp - q
        return np.hypot(diff[..., 0], diff[..., 1]), q

    def query(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distance, nearest point) per query point."""
        n = len(pts)
        if self.tree is None:
            return np.full(n, np.inf), np.full((n, 2), np.nan)
        if n == 0:
            return np.zeros(0), np.zeros((0, 2))
        k = min(8, len(self.a))
        dm, idx = self.tree.query(pts, k=k)
        dm, idx = dm.reshape(n, k), idx.reshape(n, k)
        dist, q = self._exact(pts, idx)
        best = np.argmin(dist, axis=1)
        rows = np.arange(n)
        out_d, out_q = dist[rows, best], q[rows, best]
        if k < len(self.a):
            unsure = np.nonzero(out_d > dm[:, -1] - self.half)[0]
            for i in unsure:
                cand = np.asarray(self.tree.query_ball_point(pts[i], out_d[i] + self.half + 1e-9), int)
                if len(cand):
                    di, qi = self._exact(pts[i], cand)
                    j = int(np.argmin(di))
                    if di[j] < out_d[i]:
                        out_d[i], out_q[i] = di[j], qi[j]
        return out_d, out_q


def _inside(contours: Sequence[np.ndarray], pts: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon over all contours (holes count whatever their orientation)."""
    return points_inside(contours, pts)


def _sample(contours: Sequence[np.ndarray], shape, spacing_px: float | None, frame_margin_px: float):
    """Evaluation points of contours: resampled every `spacing_px` (None: the vertices),
    those within `frame_margin_px` of the frame removed. Returns (points, contour index)."""
    pts, which = [], []
    for i, c in enumerate(contours):
        a = open_contour(c)
        if len(a) < 2:
            continue
        p = resample_contour(a, spacing_px) if spacing_px else a
        if shape is not None and frame_margin_px > 0:
            p = p[frame_distance(p, shape) >= frame_margin_px]
        pts.append(p)
        which.append(np.full(len(p), i))
    if not pts:
        return np.zeros((0, 2)), np.zeros(0, int)
    return np.concatenate(pts), np.concatenate(which)


# ------------------------------------------------------------------------------- EPE


@dataclass
class EdgeErrors:
    """Per-point edge placement errors of a predicted contour set (px)."""

    points: np.ndarray  # (N, 2) evaluated predicted points (row, col)
    epe: np.ndarray  # (N,) signed EPE: + outside the true pattern, - inside
    nearest: np.ndarray  # (N, 2) nearest point of the true contours
    contour: np.ndarray  # (N,) index of the predicted contour each point comes from

    def summary(self) -> dict[str, float]:
        return summarize_epe(self.epe)


def summarize_epe(epe: np.ndarray) -> dict[str, float]:
    """mean (signed), mean_abs, sigma3 (3 x std of the signed values), max (|.|), rms, n."""
    e = np.asarray(epe, np.float64)
    e = e[np.isfinite(e)]
    if e.size == 0:
        nan = float("nan")
        return {"mean": nan, "mean_abs": nan, "sigma3": nan, "max": nan, "rms": nan, "n": 0}
    return {"mean": float(e.mean()), "mean_abs": float(np.abs(e).mean()),
            "sigma3": float(3.0 * e.std(ddof=1)) if e.size > 1 else 0.0,
            "max": float(np.abs(e).max()), "rms": float(np.sqrt(np.mean(e * e))), "n": int(e.size)}


def edge_placement_error(pred: Sequence[np.ndarray], true: Sequence[np.ndarray], *,
                         shape: tuple[int, int] | None = None, spacing_px: float | None = 0.5,
                         frame_margin_px: float = 1.0) -> EdgeErrors:
    """Signed EPE of every predicted contour point against the true contours (see the
    module docstring: nearest-point distance, + outside the true pattern). With `shape`
    the frame closures are excluded (segments of the true contours with an end on the
    frame; predicted points within `frame_margin_px` of the frame)."""
    pts, which = _sample(pred, shape, spacing_px, frame_margin_px if shape is not None else 0.0)
    a, b = _segments(true, shape)
    dist, near = _PolylineIndex(a, b).query(pts)
    sign = np.where(_inside(true, pts), -1.0, 1.0) if len(pts) else np.zeros(0)
    epe = sign * dist
    if not len(a):
        epe = np.full(len(pts), np.nan)
    return EdgeErrors(points=pts, epe=epe, nearest=near, contour=which)


def nearest_distances(src: Sequence[np.ndarray], dst: Sequence[np.ndarray], *, shape=None,
                      spacing_px: float | None = 0.5, frame_margin_px: float = 1.0) -> np.ndarray:
    """Unsigned distance from each (resampled) point of `src` to the contours `dst`."""
    pts, _ = _sample(src, shape, spacing_px, frame_margin_px if shape is not None else 0.0)
    a, b = _segments(dst, shape)
    return _PolylineIndex(a, b).query(pts)[0]


def hausdorff95(pred: Sequence[np.ndarray], true: Sequence[np.ndarray], *, shape=None,
                spacing_px: float | None = 0.5, frame_margin_px: float = 1.0, q: float = 95.0,
                pred_distances: np.ndarray | None = None) -> float:
    """Symmetric Hausdorff distance at the `q`-th percentile: max of the two directed
    percentiles (q=100 gives the classical Hausdorff distance). NaN if either side has no
    edge points; frame closures excluded as for the EPE. `pred_distances`: the distances
    of `pred`'s points to `true` when known (|EPE| of `edge_placement_error` with the same
    settings: the same points and segments)."""
    d1 = nearest_distances(pred, true, shape=shape, spacing_px=spacing_px, frame_margin_px=frame_margin_px) \
        if pred_distances is None else np.asarray(pred_distances)
    d2 = nearest_distances(true, pred, shape=shape, spacing_px=spacing_px, frame_margin_px=frame_margin_px)
    if d1.size == 0 or d2.size == 0 or not (np.isfinite(d1).all() and np.isfinite(d2).all()):
        return float("nan")
    return float(max(np.percentile(d1, q), np.percentile(d2, q)))


# -------------------------------------------------------------------- CD, LWR and LER


def line_orientation(contours: Sequence[np.ndarray], shape=None, chord_px: float = 4.0) -> tuple[str, float]:
    """("vertical" | "horizontal", how strongly the edges run along that axis, in [0.5, 1]):
    vertical lines have edges running along the rows. Measured on chords of `chord_px`
    along the contours (resampled every px; chords with an end within 1 px of the
    frame left out) as the share of sum(d_row^2) or sum(d_col^2): chords and squares,
    because rough or pixel-stepped edges zigzag in short segments whose cross
    components would otherwise add up like an edge running across."""
    num = np.zeros(2)
    k = max(int(round(chord_px)), 1)
    for c in contours:
        a = open_contour(c)
        if len(a) < 3:
            continue
        p = resample_contour(a, 1.0)
        if len(p) <= k:
            continue
        q = np.roll(p, -k, axis=0)
        keep = np.ones(len(p), bool)
        if shape is not None:
            keep = (frame_distance(p, shape) >= 1.0) & (frame_distance(q, shape) >= 1.0)
        num += ((q - p)[keep] ** 2).sum(0)
    tot = float(num.sum())
    if tot == 0:
        return "vertical", 0.0
    return ("vertical", num[0] / tot) if num[0] >= num[1] else ("horizontal", num[1] / tot)


@dataclass
class CDMeasurement:
    """Line widths on cut lines. `lines[i]` holds per kept cut: `cut` (index into
    `cuts`), `left`, `right` (edge positions across the lines, px) and `width`."""

    orientation: str
    cuts: np.ndarray  # cut positions along the lines (rows for vertical lines), px
    lines: list[dict] = field(default_factory=list)

    @property
    def widths(self) -> np.ndarray:
        return np.concatenate([ln["width"] for ln in self.lines]) if self.lines else np.zeros(0)

    def summary(self) -> dict[str, float]:
        """cd (mean width), lwr (mean over lines of 3 sigma of width), ler (mean over
        edges of 3 sigma of the residual to a straight-line fit), n_lines, n_cuts."""
        lwr, ler = [], []
        for ln in self.lines:
            if len(ln["width"]) >= 3:
                lwr.append(3 * np.std(ln["width"], ddof=1))
                for e in ("left", "right"):
                    ler.append(3 * _detrended_std(self.cuts[ln["cut"]], ln[e]))
        w = self.widths
        nan = float("nan")
        return {"cd": float(w.mean()) if w.size else nan, "lwr": float(np.mean(lwr)) if lwr else nan,
                "ler": float(np.mean(ler)) if ler else nan, "n_lines": len(self.lines), "n_cuts": int(w.size)}

    def per_line(self) -> list[dict[str, float]]:
        """One dict per line (the distribution behind `summary`'s means): centre, cd
        (mean width), lwr (3 sigma of its widths), ler_left / ler_right (3 sigma of each
        edge around a straight-line fit; NaN with fewer than 3 cuts), n_cuts (px)."""
        out = []
        for ln in self.lines:
            w = ln["width"]
            ok = len(w) >= 3
            x = self.cuts[ln["cut"]]
            out.append({"centre": float(ln["centre"]), "cd": float(np.mean(w)),
                        "lwr": float(3 * np.std(w, ddof=1)) if ok else float("nan"),
                        "ler_left": 3 * _detrended_std(x, ln["left"]) if ok else float("nan"),
                        "ler_right": 3 * _detrended_std(x, ln["right"]) if ok else float("nan"),
                        "n_cuts": int(len(w))})
        return out


def _detrended_std(x: np.ndarray, y: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if len(x) < 3:
        return float("nan")
    coef = np.polyfit(x, y, 1)
    return float(np.std(y - np.polyval(coef, x), ddof=2))


def _crossings(a: np.ndarray, b: np.ndarray, cut: float) -> np.ndarray:
    """Positions across the lines where segments (a -> b, in (along, across) coords)
    cross the cut `along == cut` (half-open rule: a vertex on the cut counts once)."""
    r0, r1 = a[:, 0], b[:, 0]
    hit = ((r0 <= cut) & (cut < r1)) | ((r1 <= cut) & (cut < r0))
    if not hit.any():
        return np.zeros(0)
    r0, r1, c0, c1 = r0[hit], r1[hit], a[hit, 1], b[hit, 1]
    return np.sort(c0 + (cut - r0) / (r1 - r0) * (c1 - c0))


def _intervals(contours, shape, orientation: str, cuts: np.ndarray) -> list[np.ndarray]:
    """Per cut: (k, 2) array of inside intervals (start, end) across the lines, lines
    cut by the frame removed. Uses all segments, frame closures included, so that the
    even-odd pairing of crossings is right."""
    a, b = _segments(contours, None)
    if orientation == "horizontal":  # work in (along, across) = (col, row)
        a, b = a[:, ::-1], b[:, ::-1]
        across_max = shape[0] - 0.5
    else:
        across_max = shape[1] - 0.5
    out = []
    for cut in cuts:
        x = _crossings(a, b, float(cut))
        if len(x) % 2:  # an open contour or a numerical tie: skip the cut
            out.append(np.zeros((0, 2)))
            continue
        iv = x.reshape(-1, 2)
        keep = (iv[:, 0] > -0.5 + 1e-3) & (iv[:, 1] < across_max - 1e-3) & (iv[:, 1] > iv[:, 0])
        out.append(iv[keep])
    return out


def measure_cd(contours: Sequence[np.ndarray], shape: tuple[int, int], *, orientation: str = "auto",
               step_px: float = 1.0, margin_px: float = 2.0, end_exclusion_px: float = 10.0,
               cuts: np.ndarray | None = None) -> CDMeasurement:
    """Line widths of a line/space pattern on cut lines perpendicular to the lines.

    `orientation`: "vertical" (lines along the rows, cuts are rows), "horizontal", or
    "auto" (from the edge directions). Cuts every `step_px` from `margin_px` to the far
    side minus `margin_px` (or the given `cuts`). Lines are found by clustering the
    centres of the inside intervals (a gap larger than half the median width separates
    two lines); cuts closer than `end_exclusion_px` to a cut where the line is absent (a
    line-end, a break) are not used."""
    h, w = shape
    if orientation == "auto":
        orientation = line_orientation(contours, shape)[0]
    if orientation not in ("vertical", "horizontal"):
        raise ValueError(f"orientation {orientation!r}; valid: 'auto', 'vertical', 'horizontal'")
    along = h if orientation == "vertical" else w
    if cuts is None:
        cuts = np.arange(margin_px, along - 1 - margin_px + 1e-9, step_px)
    cuts = np.asarray(cuts, np.float64)
    ivs = _intervals(contours, shape, orientation, cuts)
    rows = [(k, l, r) for k, iv in enumerate(ivs) for (l, r) in iv]
    meas = CDMeasurement(orientation=orientation, cuts=cuts)
    if not rows:
        return meas
    arr = np.array(rows, np.float64)
    centre = 0.5 * (arr[:, 1] + arr[:, 2])
    width = arr[:, 2] - arr[:, 1]
    order = np.argsort(centre)
    gap_min = max(0.5 * float(np.median(width)), 1.0)
    split = np.nonzero(np.diff(centre[order]) > gap_min)[0] + 1
    step = float(np.median(np.diff(cuts))) if len(cuts) > 1 else 1.0
    for grp in np.split(order, split):
        k = arr[grp, 0].astype(int)
        # one interval per cut: the one nearest the line's median centre
        med = float(np.median(centre[grp]))
        best: dict[int, int] = {}
        for g, kk in zip(grp, k):
            if kk not in best or abs(centre[g] - med) < abs(centre[best[kk]] - med):
                best[kk] = g
        ks = np.array(sorted(best))
        sel = np.array([best[kk] for kk in ks])
        present = np.zeros(len(cuts), bool)
        present[ks] = True
        if end_exclusion_px > 0 and not present.all():
            from scipy import ndimage as ndi

            dist = ndi.distance_transform_edt(present) * step
            ok = dist[ks] > end_exclusion_px
            ks, sel = ks[ok], sel[ok]
        if len(ks) == 0:
            continue
        meas.lines.append({"cut": ks, "left": arr[sel, 1], "right": arr[sel, 2], "width": width[sel],
                           "centre": float(np.median(centre[sel]))})
    return meas


def compare_cd(pred: Sequence[np.ndarray], true: Sequence[np.ndarray], shape: tuple[int, int], *,
               orientation: str = "auto", step_px: float = 1.0, margin_px: float = 2.0,
               end_exclusion_px: float = 10.0) -> dict[str, float]:
    """CD, LWR and LER of both contour sets on the same cuts, and the CD bias.

    Lines and kept cuts come from the true contours; on each kept cut the predicted
    interval overlapping the true one most is its match (none: a missed line there). The
    predicted LWR/LER use the matched widths/edges on the true line's cuts. Keys:
    cd_true, cd_pred, cd_bias, lwr_true, lwr_pred, ler_true, ler_pred, n_lines,
    n_cuts, matched_frac (px)."""
    if orientation == "auto":
        orientation = line_orientation(true, shape)[0]
    tm = measure_cd(true, shape, orientation=orientation, step_px=step_px, margin_px=margin_px,
                    end_exclusion_px=end_exclusion_px)
    pivs = _intervals(pred, shape, orientation, tm.cuts)
    pw, tw, lwr_p, lwr_t, ler_p, ler_t = [], [], [], [], [], []
    n_total = 0
    for ln in tm.lines:
        mk, ml, mr = [], [], []
        for k, l, r in zip(ln["cut"], ln["left"], ln["right"]):
            n_total += 1
            iv = pivs[k]
            if not len(iv):
                continue
            ov = np.minimum(iv[:, 1], r) - np.maximum(iv[:, 0], l)
            j = int(np.argmax(ov))
            if ov[j] <= 0:
                continue
            mk.append(k)
            ml.append(iv[j, 0])
            mr.append(iv[j, 1])
        mk, ml, mr = np.array(mk, int), np.array(ml), np.array(mr)
        if len(mk):
            idx = np.searchsorted(ln["cut"], mk)
            tw.append(ln["width"][idx])
            pw.append(mr - ml)
        if len(ln["width"]) >= 3:
            lwr_t.append(3 * np.std(ln["width"], ddof=1))
            for e in ("left", "right"):
                ler_t.append(3 * _detrended_std(tm.cuts[ln["cut"]], ln[e]))
        if len(mk) >= 3:
            lwr_p.append(3 * np.std(mr - ml, ddof=1))
            for e in (ml, mr):
                ler_p.append(3 * _detrended_std(tm.cuts[mk], e))
    nan = float("nan")
    tw_all = np.concatenate(tw) if tw else np.zeros(0)
    pw_all = np.concatenate(pw) if pw else np.zeros(0)
    allw = tm.widths
    return {
        "cd_true": float(allw.mean()) if allw.size else nan,
        "cd_pred": float(pw_all.mean()) if pw_all.size else nan,
        "cd_bias": float((pw_all - tw_all).mean()) if pw_all.size else nan,
        "lwr_true": float(np.mean(lwr_t)) if lwr_t else nan,
        "lwr_pred": float(np.mean(lwr_p)) if lwr_p else nan,
        "ler_true": float(np.nanmean(ler_t)) if ler_t else nan,
        "ler_pred": float(np.nanmean(ler_p)) if ler_p else nan,
        "n_lines": len(tm.lines),
        "n_cuts": int(allw.size),
        "matched_frac": float(pw_all.size / n_total) if n_total else nan,
    }


# ---------------------------------------------------------------------------- scoring


def score_contours(pred: Sequence[np.ndarray], true: Sequence[np.ndarray], shape: tuple[int, int], *,
                   pixel_nm: float | None = None, units: str = "auto", pred_mask: np.ndarray | None = None,
                   true_mask: np.ndarray | None = None, cd: bool | None = None, spacing_px: float = 0.5,
                   frame_margin_px: float = 1.0, cd_step_px: float = 1.0,
                   end_exclusion_px: float = 10.0, edge_errors: EdgeErrors | None = None) -> dict[str, Any]:
    """All contour metrics of one image as a flat dict (see the module docstring).

    Lengths are in nm when `units` is "nm", or "auto" with a known `pixel_nm`; else px
    (the dict says which in `units`). IoU and Dice compare `pred_mask` and `true_mask`
    if given, else the contours rasterised at pixel centres. `cd`: measure CD/LWR/LER
    (True), skip them (False), or "auto" (None): only when at least 90 % of the true
    edge length runs along one axis (a line/space pattern). `edge_errors`: the
    `edge_placement_error` of these contours with the same `shape`, `spacing_px` and
    `frame_margin_px`, when the caller has it already (it is not computed twice)."""
    if units not in ("auto", "px", "nm"):
        raise ValueError(f"units {units!r}; valid: 'auto', 'px', 'nm'")
    if units == "nm" and not (pixel_nm and pixel_nm > 0):
        raise ValueError("units='nm' needs the pixel size (pixel_nm)")
    to_nm = units == "nm" or (units == "auto" and bool(pixel_nm and pixel_nm > 0))
    scale = float(pixel_nm) if to_nm else 1.0
    ee = edge_errors if edge_errors is not None else \
        edge_placement_error(pred, true, shape=shape, spacing_px=spacing_px, frame_margin_px=frame_margin_px)
    s = ee.summary()
    out: dict[str, Any] = {
        "epe_mean": s["mean"], "epe_mean_abs": s["mean_abs"], "epe_3sigma": s["sigma3"], "epe_max": s["max"],
        "epe_rms": s["rms"], "n_points": s["n"],
        "hausdorff95": hausdorff95(pred, true, shape=shape, spacing_px=spacing_px, frame_margin_px=frame_margin_px,
                                   pred_distances=np.abs(ee.epe)),
    }
    pm = pred_mask if pred_mask is not None else rasterize_contours(pred, shape)
    tm = true_mask if true_mask is not None else rasterize_contours(true, shape)
    out["iou"] = iou(pm, tm)
    out["dice"] = dice(pm, tm)
    orient, frac = line_orientation(true, shape)
    if cd is None:
        cd = frac >= 0.9
    if cd:
        out.update(compare_cd(pred, true, shape, orientation=orient, step_px=cd_step_px,
                              end_exclusion_px=end_exclusion_px))
    for k in list(out):
        if k in _LENGTH_KEYS and out[k] is not None:
            out[k] = float(out[k]) * scale
    out["units"] = "nm" if to_nm else "px"
    out["pixel_nm"] = float(pixel_nm) if pixel_nm else None
    return out


def score_structures(structures, true: Sequence[np.ndarray], shape: tuple[int, int], *,
                     true_mask: np.ndarray | None = None, spacing_px: float = 0.5,
                     frame_margin_px: float = 1.0) -> list[dict[str, Any]]:
    """Per-structure errors (px), for choosing between two extractors structure by
    structure (SegSEM's hybrid) and for calibrating that choice.

    `structures`: objects with `id`, `contours` and `mask` (e.g.
    `ClassicalContours.structures`). For each: the EPE summary of its contours against
    all true contours (nearest true edge, frame closures excluded), and the IoU of its
    mask with the true connected structure it overlaps most (`true_mask`, default: the
    true contours rasterised; 4-connected components). Returns one dict per structure:
    id, epe_mean, epe_mean_abs, epe_max, n_points, iou, true_id (0: overlaps nothing)."""
    from scipy import ndimage as ndi

    tm = np.asarray(true_mask).astype(bool) if true_mask is not None else rasterize_contours(true, shape)
    lab, _ = ndi.label(tm)
    out = []
    for st in structures:
        ee = edge_placement_error(list(st.contours), true, shape=shape, spacing_px=spacing_px,
                                  frame_margin_px=frame_margin_px)
        s = ee.summary()
        m = np.asarray(st.mask).astype(bool)
        hits = lab[m & (lab > 0)]
        tid = int(np.bincount(hits).argmax()) if hits.size else 0
        out.append({"id": int(st.id), "epe_mean": s["mean"], "epe_mean_abs": s["mean_abs"], "epe_max": s["max"],
                    "n_points": s["n"], "iou": iou(m, lab == tid) if tid else 0.0, "true_id": tid})
    return out


def score_table(rows: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None, *, n_boot: int = 2000,
                level: float = 0.95, seed: int = 0) -> dict[str, dict[str, float]]:
    """Mean and percentile-bootstrap CI over images (`semlab.metrics.pixel.bootstrap_ci`)
    of each metric of per-image `score_contours` dicts; NaN entries (a metric undefined on
    an image) are left out. Returns {key: {mean, ci_low, ci_high, n}}."""
    from semlab.metrics.pixel import bootstrap_ci

    keys = [k for k in (keys or SCORE_KEYS) if any(k in r for r in rows)]
    out = {}
    for k in keys:
        v = np.array([r.get(k) for r in rows if r.get(k) is not None], np.float64)
        v = v[np.isfinite(v)]
        m, lo, hi = bootstrap_ci(v, n_boot=n_boot, level=level, seed=seed)
        out[k] = {"mean": m, "ci_low": lo, "ci_high": hi, "n": int(v.size)}
    return out


def format_score_table(tables: Mapping[str, Mapping[str, Mapping[str, float]]], *, units: str = "px",
                       digits: int = 3) -> str:
    """A Markdown table: one row per method/setting (the keys of `tables`, each a
    `score_table` result), one column per metric, "mean [low, high]"."""
    keys: list[str] = []
    for t in tables.values():
        keys += [k for k in t if k not in keys]
    head = ["method"] + [k if k in ("iou", "dice") else f"{k} ({units})" for k in keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, t in tables.items():
        cells = [name]
        for k in keys:
            c = t.get(k)
            if c is None or not np.isfinite(c["mean"]):
                cells.append("n/a")
            else:
                cells.append(f"{c['mean']:.{digits}f} [{c['ci_low']:.{digits}f}, {c['ci_high']:.{digits}f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
