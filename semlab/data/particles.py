"""The layout and the particle-specific image terms of the simulator's `particles` preset.

Compact particles on a substrate (a common SEM case), labelled `pattern`, with small
bright debris as `defect`. Its difficulty is fixed by the preset's parameters
(`semlab.data.simulate.PRESETS["particles"]`) and checked on simulated frames by
tests/test_simulate.py, measured from the simulator's own truth:

- radius `particle_radius_nm` = 2-12 nm, i.e. 2-12 px at 256 px (field of view 256 nm);
- a fraction `touching_frac` (20-40%) of the particles touches another: they are placed
  in pairs that overlap by 0.5-1.5 px (one pattern component per pair), all other
  particles keep a gap of at least `GAP_PX` from every other one;
- half of the particles (exactly round(n / 2), chosen at random) have a bright rim and
  a darker core (`core_drop` x the pattern step taken off inside the rim, plus a rim of
  `core_rim_amp`), the edge effect of real SEM; the others are plain plateaus;
- step-to-noise ratio `step_to_noise` (drawn 3.5-7.5, so that the measured ratio stays
  within 3-8): the dose is set from it (`dose_for_step_to_noise`);
- uneven illumination: the simulator's charging gradient and bump (`charging_amp`);
- debris (`defect`): 1-3 small isolated discs in every frame (`defect_prob` 1.0), radius
  `defect_radius_nm` 2-5 px, drawn anywhere (also on a particle). SEM shows an object
  smaller than the secondary-electron escape range as "all edge": much brighter than a
  particle of the same material. The debris is drawn at `defect_level` 0.85-0.95 (a
  plateau of 0.36-0.48 on a 0.12-0.22 substrate): after the probe blur the peak of a
  debris of radius >= 3 px stands at least 1.08x (median 1.4x) as far above the substrate
  as the brightest particle of its frame (99th percentile inside the particle, rims
  included) and at least 2.2x the plateau step (noise-free, 30 frames); debris of 2-3 px
  are blurred down to 0.77x (median 1.2x) and are the hard cases. (Up to simulator v4 the debris was drawn at 0.55-0.75 with
  radius 2-4 px in 30% of the frames: after blur as bright as a particle and within its
  size range, so no pixel rule could tell them apart.) Measured by tests/test_simulate.py.
"""

from __future__ import annotations

import math

import numpy as np

TOUCHING_RANGE = (0.2, 0.4)  # the documented share of particles touching another
GAP_PX = 2.0  # minimum gap between particles that do not touch
_TRIES = 300


def _fits(c: tuple[float, float, float], placed: list, skip: int = -1) -> bool:
    cy, cx, r = c
    for j, (y, x, rr, *_rest) in enumerate(placed):
        if j != skip and math.hypot(cy - y, cx - x) < r + rr + GAP_PX:
            return False
    return True


def particle_layout(rng: np.random.Generator, h: int, w: int, px: float, p: dict) -> list[list]:
    """Particles as [cy, cx, r (px), rim_core (0/1), pair id (-1: single)], fully inside
    the frame. The number is `particle_density` (per 1000 nm^2) x the field's area; a
    particle that finds no free place in `_TRIES` draws is left out (with its partner)."""
    lo, hi = (v / px for v in p["particle_radius_nm"])
    n = max(int(round(p["particle_density"] * h * w * px * px / 1000.0)), 2)
    lo_t, hi_t = TOUCHING_RANGE  # whatever the rounding, 2 n_pairs / n stays in the range
    n_pairs = min(max(int(round(p["touching_frac"] * n / 2)), math.ceil(lo_t * n / 2)), math.floor(hi_t * n / 2))
    placed: list[list] = []

    def draw(r: float) -> tuple[float, float] | None:
        for _ in range(_TRIES):
            c = (float(rng.uniform(r + 1, h - r - 1)), float(rng.uniform(r + 1, w - r - 1)), r)
            if _fits(c, placed):
                return c[:2]
        return None

    for k in range(n_pairs):
        r1, r2 = (float(rng.uniform(lo, hi)) for _ in range(2))
        for _ in range(_TRIES // 10):
            a = draw(r1)
            if a is None:
                break
            ang = float(rng.uniform(0, 2 * math.pi))
            d = r1 + r2 - float(rng.uniform(0.5, 1.5))
            b = (a[0] + d * math.sin(ang), a[1] + d * math.cos(ang), r2)
            if r2 + 1 <= b[0] <= h - r2 - 1 and r2 + 1 <= b[1] <= w - r2 - 1 and _fits(b, placed) \
                    and _fits((a[0], a[1], r1), placed):
                placed += [[a[0], a[1], r1, 0, k], [b[0], b[1], r2, 0, k]]
                break
    for _ in range(n - len(placed)):
        r = float(rng.uniform(lo, hi))
        c = draw(r)
        if c is not None:
            placed.append([c[0], c[1], r, 0, -1])
    rim = rng.permutation(len(placed))[:int(round(len(placed) / 2))]
    for i in rim:
        placed[i][3] = 1
    return [[round(float(v), 3) if j < 3 else int(v) for j, v in enumerate(q)] for q in placed]


def rim_core_fields(particles: list, h: int, w: int, rim_width_px: float) -> tuple[np.ndarray, np.ndarray]:
    """(core, rim) of the rim-and-core particles: with the rim width w = min(`rim_width_px`,
    r / 4), `rim` is a Gaussian of width w centred w inside the edge and `core` is 1
    deeper than 2.5 w (a 1-px ramp)."""
    core = np.zeros((h, w), np.float32)
    rim = np.zeros((h, w), np.float32)
    for cy, cx, r, rc, _ in particles:
        if not rc:
            continue
        rw = max(min(float(rim_width_px), 0.2 * r), 0.5)
        y0, y1 = max(int(cy - r - 3), 0), min(int(cy + r + 4), h)
        x0, x1 = max(int(cx - r - 3), 0), min(int(cx + r + 4), w)
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
        inside = r - np.sqrt(yy * yy + xx * xx)  # distance inside the edge
        c = np.clip(inside - 2 * rw + 0.5, 0.0, 1.0)
        g = np.exp(-0.5 * ((inside - rw) / rw) ** 2) * (inside > -1.5)
        np.maximum(core[y0:y1, x0:x1], c, out=core[y0:y1, x0:x1])
        np.maximum(rim[y0:y1, x0:x1], g, out=rim[y0:y1, x0:x1])
    return core, rim


def dose_for_step_to_noise(p: dict, coverage: float) -> float:
    """The dose (e-/px) at which the frame's noise sigma is the plateau step
    contrast x (pattern_level - background_level) over `step_to_noise`, given the
    detector and scan-line noise and the mean intensity (`coverage`: particle area fraction)."""
    step = p["contrast"] * (p["pattern_level"] - p["background_level"])
    sigma = step / p["step_to_noise"]
    mean = p["contrast"] * (p["background_level"] + coverage * (p["pattern_level"] - p["background_level"]) - 0.5) \
        + 0.5 + p["brightness"]
    rest = sigma ** 2 - p["detector_sigma"] ** 2 - p["scanline_sigma"] ** 2
    if rest <= 1e-8:
        raise ValueError(f"step_to_noise {p['step_to_noise']:.2f} is unreachable with detector sigma "
                         f"{p['detector_sigma']:.3f}: lower it")
    return float(max(mean, 1e-3) / rest)


def particle_instances(mask: np.ndarray, particles: list, pattern: int = 1) -> np.ndarray:
    """Instance labels (1..n, 0 = none) of the simulated particles: each pattern pixel
    goes to the particle whose edge it lies deepest inside (`particles` from the frame's
    params). Two touching particles are one pattern component but two instances."""
    h, w = mask.shape
    best = np.full((h, w), -np.inf, np.float32)
    out = np.zeros((h, w), np.int32)
    for k, (cy, cx, r, *_rest) in enumerate(particles, start=1):
        y0, y1 = max(int(cy - r - 3), 0), min(int(cy + r + 4), h)
        x0, x1 = max(int(cx - r - 3), 0), min(int(cx + r + 4), w)
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
        depth = (r - np.sqrt(yy * yy + xx * xx)) / max(r, 1e-3)
        sb, so = best[y0:y1, x0:x1], out[y0:y1, x0:x1]
        take = (depth > sb) & (depth > -1.5 / max(r, 1e-3))
        sb[take], so[take] = depth[take], k
    out[mask != pattern] = 0
    return out
