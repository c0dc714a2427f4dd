"""The simulator against a real set, for notebook 00 (issue 17 item 5): the set fitted with
`semlab.data.fit.fit_sim` on its train and val frames, frames simulated with the fitted
preset file and measured by the same estimators, and the realism table (pre-issue preset,
re-tuned built-in preset, fitted preset, real-vs-real floor) on the set's test frames.

The fitted preset files ship in `semlab/data/presets/` (`semlab fit-sim` wrote them from
the train and val frames only); `compare_set` re-measures the real frames and the
simulated ones here so that the figures show both sides, and never fits on test frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SET_KINDS", "OLD_PRESETS", "packaged_preset_file", "SetComparison", "compare_set"]

SET_KINDS = {"cdsem-lines": "line-space", "cdsem-contacts": "contacts", "dsa-lines": "line-space"}
OLD_PRESETS = {"line-space": "line-space-v2", "contacts": "contacts-v2"}  # the presets before the re-tuning


def packaged_preset_file(set_name: str) -> Path | None:
    """`semlab/data/presets/<set>.yaml` if semlab ships a fitted preset for the set."""
    p = Path(__file__).resolve().parent / "presets" / f"{set_name}.yaml"
    return p if p.is_file() else None


@dataclass
class SetComparison:
    """One real set against the simulator: the fits of both sides, frames to show, the
    realism table (`semlab.realism.compare_presets`)."""

    set: str
    kind: str
    pixel_nm: float
    real_fit: Any
    sim_fit: Any
    real_frames: list[np.ndarray]
    sim_frames: list[np.ndarray]
    preset_file: Path | None
    realism: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def compare_set(set_name: str, folder=None, *, preset_file=None, refine: int = 0, n_frames: int = 2,
                tile: int = 128, seed: int = 0, n_boot: int = 300) -> SetComparison:
    """Fit `set_name` (a packaged set, or `folder` holding it) on its train and val frames,
    render `n_frames` frames with the fitted preset (`preset_file`, default the packaged
    one; without one, the fit just made), fit those too, and score the presets against the
    set's test frames."""
    from semlab.data import samples
    from semlab.data.fit import fit_sim, load_frames, render_like
    from semlab.data.presetfile import load_preset_file, pixel_nm_of
    from semlab.realism import compare_presets

    kind = SET_KINDS.get(set_name)
    if kind is None:
        raise ValueError(f"no simulator kind for the real set {set_name!r}; known: {', '.join(SET_KINDS)}")
    folder = Path(folder) if folder is not None else samples.path(set_name)
    notes = []
    real_fit = fit_sim(folder, kind, split=("train", "val"), refine=refine, seed=seed)
    preset_file = Path(preset_file) if preset_file else packaged_preset_file(set_name)
    if preset_file is not None:
        notes.append(f"fitted preset: {preset_file.name} (semlab fit-sim on the train and val frames)")
    else:  # no packaged preset for this set: the fit made here, through a preset file of its own
        import tempfile

        from semlab.data.presetfile import save_preset_file

        preset_file = save_preset_file(real_fit, Path(tempfile.mkdtemp(prefix="semlab-fit-")) / f"{set_name}.yaml")
        notes.append("fitted preset: the fit made here (no packaged preset file for this set)")
    preset = load_preset_file(preset_file)
    px = pixel_nm_of(preset)
    frames, _, _ = load_frames(folder, split=("train", "val"))
    shape = frames[0].image.shape
    real_frames = [f.image for f in frames[:n_frames]]
    sim_frames = render_like(preset, shape, n_frames, pixel_nm=px, seed=seed)
    sim_fit = fit_sim(sim_frames, kind, pixel_nm=px, refine=0, seed=seed)
    table = compare_presets(folder, {f"pre-issue ({OLD_PRESETS[kind]})": OLD_PRESETS[kind],
                                     f"re-tuned built-in ({kind})": kind,
                                     f"fitted ({preset_file.name})": preset},
                            tile=tile, real_split="test", seed=seed, n_boot=n_boot)
    return SetComparison(set_name, kind, px, real_fit, sim_fit, real_frames, sim_frames, preset_file, table, notes)
