"""Frame "looks": jointly fitted frame-level parameter sets of a preset (issue 17).

Real frames of one tool differ from frame to frame in their gray levels, blur, edge
profile and noise (white on one frame, correlated along the scan on the next). Drawing
each of those parameters independently from a range spanning the frames gives simulated
frames that resemble no real frame. A preset may therefore hold ``looks``: a list of
parameter sets, one per fitted real frame (`semlab fit-sim` writes them, see
`semlab.data.presetfile`). Each simulated frame draws ONE look (seeded, from the frame's
own random stream) and uses its values together; geometry (pitch, CD, LER, ...) keeps the
preset's ranges.

In a `semlab.data.simulate.Preset` the looks live under ``params["looks"]``: a tuple of
dicts in the simulator's spec form (constants or (low, high) ranges). A preset without
looks is drawn exactly as before (the same random stream).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

__all__ = ["LOOK_KEYS", "MAX_LOOKS", "KEY", "draw", "count", "pin", "look_of"]

KEY = "looks"
MAX_LOOKS = 16
# frame-level parameters a look may set: levels and contrast, edge profile, blur, noise,
# bit depth, slow brightness gradients, the scan wander and tilt of the rows (never geometry:
# pitch, CD, LER keep their ranges)
LOOK_KEYS = ("pattern_level", "background_level", "hole_level", "rim_amp", "rim_width_nm", "rim_offset_nm",
             "halo_amp", "halo_width_nm", "sidewall_nm", "psf_sigma_nm", "scan_asymmetry", "dose",
             "detector_sigma", "noise_corr_px", "scan_corr_px", "scanline_sigma", "bit_depth", "charging_amp",
             "brightness", "contrast", "texture_amp", "texture_corr_nm", "drift_px", "wander_nm", "wander_corr_nm",
             "tilt")


def draw(rng: np.random.Generator, spec: dict[str, Any],
         base_draw: Callable[[np.random.Generator, dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """The parameters of one frame: `base_draw(rng, spec)` for a spec without looks (the
    same stream as always); otherwise the spec without its looks, then one look chosen
    uniformly by `rng` and drawn over it (its values win)."""
    looks = spec.get(KEY)
    p = base_draw(rng, {k: v for k, v in spec.items() if k != KEY})
    if not looks:
        return p
    i = int(rng.integers(len(looks)))
    p.update(base_draw(rng, dict(looks[i])))
    return p


def count(preset) -> int:
    """How many looks a `Preset` (or a params dict) holds (0: none)."""
    params = preset if isinstance(preset, dict) else preset.params
    return len(params.get(KEY) or ())


def pin(preset, i: int):
    """`preset` with only its look `i` (every frame drawn from it uses that look); a preset
    without looks is returned unchanged. IndexError naming the number of looks."""
    n = count(preset)
    if n == 0:
        return preset
    if not 0 <= i < n:
        raise IndexError(f"preset {preset.name}: look {i} does not exist ({n} looks)")
    return dataclasses.replace(preset, params={**preset.params, KEY: (preset.params[KEY][i],)})


def look_of(preset, params: dict[str, Any]) -> int | None:
    """The index of the look whose constant values all equal `params` (a simulated frame's
    drawn parameters), or None: which look a frame used."""
    for i, lk in enumerate(preset.params.get(KEY) or ()):
        if all(isinstance(v, tuple) or params.get(k) == v for k, v in lk.items()):
            return i
    return None
