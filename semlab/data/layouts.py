"""Procedural IC layouts for the SEM simulator.

A layout is a set of shapes in pixel coordinates (floats, row/col, origin at the
top-left pixel centre): axis-aligned rectangles of pattern material, discs cut out
of the pattern (holes: contacts, vias) and discs of defects (particles). Layouts
extend a little beyond the frame so that lines run out of the image like in a
real field of view.

Generators, chosen by name from `LAYOUTS`:
- `line_space`: a grating of pitch and CD, vertical or horizontal, optionally with
  tip-to-tip line-end gaps;
- `manhattan`: metal routing on a track grid with line-ends, tip-to-tip gaps, L-bends
  and jogs between tracks (the `ic-metal` preset);
- `contacts`: a film with an array of contact holes (jittered, some missing);
- `comb`: two interdigitated combs (spines with fingers), a classic test structure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Layout:
    """Shapes in px: rects (y0, x0, y1, x1), holes and defects (cy, cx, radius)."""

    height: int
    width: int
    rects: list[tuple[float, float, float, float]] = field(default_factory=list)
    holes: list[tuple[float, float, float]] = field(default_factory=list)
    defects: list[tuple[float, float, float]] = field(default_factory=list)

    def transpose(self) -> "Layout":
        return Layout(
            self.width, self.height,
            [(x0, y0, x1, y1) for (y0, x0, y1, x1) in self.rects],
            [(cx, cy, r) for (cy, cx, r) in self.holes],
            [(cx, cy, r) for (cy, cx, r) in self.defects],
        )


def line_space(rng: np.random.Generator, h: int, w: int, *, pitch: float, cd: float,
               vertical: bool = True, tip_gap: float = 0.0, line_end_prob: float = 0.0, tilt: float = 0.0) -> Layout:
    """A grating: lines of width `cd` every `pitch` px; optional tip-to-tip gaps. `tilt`
    (px per row, about the middle row): lines tilted, each drawn as one rectangle per row."""
    lay = Layout(h, w) if vertical else Layout(w, h)
    hh, ww = lay.height, lay.width  # lines run along rows (vertical lines)
    offset = rng.uniform(0, pitch)
    extra = pitch * (1 + math.ceil(abs(tilt) * hh / 2 / pitch))  # a tilted grating still fills the frame
    x = offset - extra
    margin = 4 * pitch
    while x < ww + extra:
        if rng.random() < line_end_prob and tip_gap > 0:
            cut = rng.uniform(0.2 * hh, 0.8 * hh)
            lay.rects.append((-margin, x, cut - tip_gap / 2, x + cd))
            lay.rects.append((cut + tip_gap / 2, x, hh + margin, x + cd))
        else:
            lay.rects.append((-margin, x, hh + margin, x + cd))
        x += pitch
    if tilt:  # pixel row i (i - 0.5 .. i + 0.5) shifted by tilt * (i - middle row); end rows reach past the frame
        rows = [(i - 0.5 if i else -margin, i + 0.5 if i < hh - 1 else hh + margin, tilt * (i - (hh - 1) / 2))
                for i in range(hh)]
        lay.rects = [(max(a, y0), x0 + s, min(b, y1), x1 + s) for (y0, x0, y1, x1) in lay.rects for a, b, s in rows
                     if min(b, y1) > max(a, y0)]
    return lay if vertical else lay.transpose()


def manhattan(rng: np.random.Generator, h: int, w: int, *, pitch: float, width: float,
              fill: float = 0.7, min_len: float = 3.0, bend_prob: float = 0.35,
              horizontal: bool = True, min_gap: float | None = None) -> Layout:
    """Metal routing on a track grid: segments with line-ends, gaps, L-bends and jogs.

    Tracks run every `pitch` px; on each track segments of random length (mean
    length grows with `fill`) alternate with gaps at least `min_gap` long (tip-to-tip
    spaces; default `min_len * width`; a dense metal layer has gaps about as narrow as
    the trenches between tracks, `pitch - width`). With probability `bend_prob` a
    segment end turns by 90 degrees and jogs to the next track, which gives L-shapes,
    T-junctions and the typical staircase of routed metal.
    """
    lay = Layout(h, w) if horizontal else Layout(w, h)
    hh, ww = lay.height, lay.width  # tracks are rows
    y = rng.uniform(0, pitch) - pitch
    tracks = []
    while y < hh + pitch:
        tracks.append(y)
        y += pitch
    gap_min = min_len * width if min_gap is None else max(float(min_gap), 1.0)
    mean_seg = max(min_len * width, ww * fill / 1.5)
    mean_gap = max(gap_min, mean_seg * (1 - fill) / max(fill, 1e-3))
    for k, ty in enumerate(tracks):
        x = -rng.uniform(0, mean_seg)
        while x < ww + width:
            seg = max(min_len * width, rng.exponential(mean_seg))
            x0, x1 = x, x + seg
            lay.rects.append((ty, x0, ty + width, x1))
            if rng.random() < bend_prob and k + 1 < len(tracks):
                # jog down to the next track at the segment end, then a short run there
                jx = x1 - width
                lay.rects.append((ty, jx, tracks[k + 1] + width, jx + width))
                run = rng.uniform(min_len, 2 * min_len) * width
                lay.rects.append((tracks[k + 1], jx, tracks[k + 1] + width, jx + run))
            gap = max(gap_min, rng.exponential(mean_gap))
            x = x1 + gap
    return lay if horizontal else lay.transpose()


def disc_strips(cy: float, cx: float, r: float) -> list[tuple[float, float, float, float]]:
    """A disc as one rectangle per pixel row (y0, x0, y1, x1), each as wide as the disc's
    area within that row, centred on the disc: exact area per row, the row's coverage
    spread evenly across its chord (the simulator's corner rounding smooths the rest)."""

    def prim(t: float) -> float:  # integral of the chord length 2 sqrt(r^2 - t^2)
        t = min(max(t, -r), r)
        return t * math.sqrt(max(r * r - t * t, 0.0)) + r * r * math.asin(t / r)

    out = []
    for i in range(math.floor(cy - r + 0.5), math.ceil(cy + r + 0.5)):
        area = prim(i + 0.5 - cy) - prim(i - 0.5 - cy)
        if area > 1e-6:
            out.append((i - 0.5, cx - area / 2, i + 0.5, cx + area / 2))
    return out


def contacts(rng: np.random.Generator, h: int, w: int, *, pitch: float, diameter: float,
             jitter: float = 0.05, missing_prob: float = 0.03, stagger: bool = False,
             diameter_sigma: float = 0.04, pillars: bool = False) -> Layout:
    """A film (pattern) with a square or staggered array of contact holes; with
    `pillars`, the array's discs are the pattern (pillars, as `disc_strips`) standing on
    a bare background instead."""
    if pillars:
        holes = contacts(rng, h, w, pitch=pitch, diameter=diameter, jitter=jitter, missing_prob=missing_prob,
                         stagger=stagger, diameter_sigma=diameter_sigma)
        lay = Layout(h, w)
        for cy, cx, r in holes.holes:
            lay.rects.extend(disc_strips(cy, cx, r))
        return lay
    lay = Layout(h, w)
    lay.rects.append((-8.0, -8.0, h + 8.0, w + 8.0))
    oy, ox = rng.uniform(0, pitch, size=2)
    rows = np.arange(oy - pitch, h + pitch, pitch)
    for i, cy in enumerate(rows):
        shift = pitch / 2 if (stagger and i % 2) else 0.0
        for cx in np.arange(ox - pitch + shift, w + pitch, pitch):
            if rng.random() < missing_prob:
                continue
            r = 0.5 * diameter * (1 + diameter_sigma * rng.standard_normal())
            jy, jx = jitter * pitch * rng.standard_normal(2)
            lay.holes.append((cy + jy, cx + jx, max(r, 0.5)))
    return lay


def comb(rng: np.random.Generator, h: int, w: int, *, pitch: float, width: float,
         tip_gap: float, vertical: bool = True) -> Layout:
    """Two interdigitated combs: spines at both ends, fingers alternating between them."""
    lay = Layout(h, w) if vertical else Layout(w, h)
    hh, ww = lay.height, lay.width
    spine = rng.uniform(0.08, 0.16) * hh
    lay.rects.append((-8.0, -8.0, spine, ww + 8.0))
    lay.rects.append((hh - spine, -8.0, hh + 8.0, ww + 8.0))
    x = rng.uniform(0, pitch) - pitch
    k = 0
    while x < ww + pitch:
        if k % 2 == 0:
            lay.rects.append((spine - 1, x, hh - spine - tip_gap, x + width))
        else:
            lay.rects.append((spine + tip_gap, x, hh - spine + 1, x + width))
        x += pitch
        k += 1
    return lay if vertical else lay.transpose()


def add_defects(rng: np.random.Generator, lay: Layout, *, prob: float, radius: tuple[float, float]) -> None:
    """With probability `prob` add 1-3 particles of random radius anywhere in the frame."""
    if rng.random() >= prob:
        return
    for _ in range(int(rng.integers(1, 4))):
        lay.defects.append((rng.uniform(0, lay.height), rng.uniform(0, lay.width),
                            rng.uniform(*radius)))


LAYOUTS = {"line_space": line_space, "manhattan": manhattan, "contacts": contacts, "comb": comb}


# ----------------------------------------------------------------------------------
# rasterisation: area coverage per pixel, exact for a single rectangle

def _cover_1d(lo: float, hi: float, n: int) -> tuple[int, np.ndarray]:
    """Coverage of pixels [i-0.5, i+0.5] by the interval [lo, hi]; returns (start, values)."""
    i0 = max(math.floor(lo + 0.5), 0)
    i1 = min(math.ceil(hi + 0.5), n)
    if i1 <= i0:
        return i0, np.zeros(0, np.float32)
    vals = np.ones(i1 - i0, np.float32)
    # only the two end pixels can be partly covered
    vals[0] = min(max(min(i0 + 0.5, hi) - max(i0 - 0.5, lo), 0.0), 1.0)
    if i1 - i0 > 1:
        vals[-1] = min(max(min(i1 - 0.5, hi) - max(i1 - 1.5, lo), 0.0), 1.0)
    return i0, vals


def rasterize_rects(rects, h: int, w: int) -> np.ndarray:
    """Per-pixel area coverage of the union of rectangles (max where they overlap)."""
    out = np.zeros((h, w), np.float32)
    for (y0, x0, y1, x1) in rects:
        r0, cy = _cover_1d(y0, y1, h)
        c0, cx = _cover_1d(x0, x1, w)
        if cy.size == 0 or cx.size == 0:
            continue
        sl = out[r0:r0 + cy.size, c0:c0 + cx.size]
        np.maximum(sl, cy[:, None] * cx[None, :], out=sl)
    return out


def rasterize_discs(discs, h: int, w: int) -> np.ndarray:
    """Approximate area coverage of the union of discs (1-px linear ramp at the rim)."""
    out = np.zeros((h, w), np.float32)
    for (cy, cx, r) in discs:
        y0, y1 = max(int(cy - r - 2), 0), min(int(cy + r + 3), h)
        x0, x1 = max(int(cx - r - 2), 0), min(int(cx + r + 3), w)
        if y1 <= y0 or x1 <= x0:
            continue
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
        cov = np.clip(r - np.sqrt(yy * yy + xx * xx) + 0.5, 0.0, 1.0)
        sl = out[y0:y1, x0:x1]
        np.maximum(sl, cov, out=sl)
    return out
