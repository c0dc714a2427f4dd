"""The types and settings of the real-vs-generated study (notebook 40).

The bottom layer of the study: constants (`SIMULATOR`, `RUN_GENERATORS`,
`UPSAMPLING_MODELS`, `HF_BAND`, `BANDS`), the per-profile settings (`PROFILES`,
`study_settings`), small helpers every layer uses (`slug`, `on_upsampling_grid`) and
the dataclasses the steps fill in (`TrainedGenerator`, `FakeSets`, `ModelDetection`,
`SpectralStudy`, `SaliencyStudy`, `StudyResults`). It imports nothing from the other
study modules: `semlab.forensics.study` (the steps), `semlab.forensics.results` (the
table and metrics) and `semlab.forensics.narrative` (the conclusion) import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SIMULATOR",
    "RUN_GENERATORS",
    "UPSAMPLING_MODELS",
    "HF_BAND",
    "BANDS",
    "PROFILES",
    "study_settings",
    "slug",
    "on_upsampling_grid",
    "TrainedGenerator",
    "FakeSets",
    "ModelDetection",
    "SpectralStudy",
    "SaliencyStudy",
    "StudyResults",
]

SIMULATOR = "simulator (physics baseline)"
# name in the study -> (notebook that trains it, model kind / standalone run folder prefix)
RUN_GENERATORS: dict[str, tuple[str, str]] = {
    "Pix2Pix": ("20_train_pix2pix", "pix2pix"),
    "CycleGAN": ("21_train_cyclegan", "cyclegan"),
}
UPSAMPLING_MODELS: dict[str, str] = {
    "Pix2Pix transposed-conv": "transposed",
    "Pix2Pix resize-conv": "resize",
}
HF_BAND = (0.25, 0.5)  # cycles/px: the band of the "high-frequency power" column
BANDS = ((0.0, 0.125), (0.125, 0.25), (0.25, 0.5), (0.5, 0.75))

# Settings per profile. Sizes were chosen so that the cpu profile of notebook 40 runs in
# a few minutes on a 2-core machine (see the notebook's last cell for the measured time):
# - splits: which held-out masks are rendered (the generators train on "train"; smoke has
#   too few images per split and uses all of them, saying so);
# - detector: n_splits folds, epochs, crop (train on random crops of this many px; the
#   detectors pool globally and score whole images), detectors (ResNet-18 is slow on CPU);
# - upsample_*: the transposed-vs-resize Pix2Pix pair, identical budgets (ngf 32: on this
#   CPU the ngf-64 transposed U-Net was ~10-25x slower per step than ngf 32);
# - saliency: methods by cost (integrated gradients ~40x saliency; occlusion more),
#   examples per model, images per class for region enrichment and spectra.
def _forensics_settings(name: str) -> dict[str, Any]:
    """Notebook 40's settings of a profile, flat, from `semlab.config` (the one place they
    live): the detector's training settings beside the study's own."""
    import dataclasses

    from semlab.config import load_profile

    f = load_profile(name).forensics
    out = {k.name: getattr(f, k.name) for k in dataclasses.fields(f) if k.name != "detector"}
    det = f.detector
    out.update({k.name: getattr(det, k.name) for k in dataclasses.fields(det)})
    out["detector_kwargs"] = dict(det.detector_kwargs)
    return out


PROFILES: dict[str, dict[str, Any]] = {name: _forensics_settings(name) for name in ("smoke", "cpu", "full")}


def study_settings(profile: str, **overrides: Any) -> dict[str, Any]:
    """The settings of a profile (a fresh dict), updated with `overrides` (unknown names
    raise KeyError listing the valid ones, so a typo never silently does nothing)."""
    try:
        s = dict(PROFILES[profile])
    except KeyError:
        raise KeyError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}") from None
    bad = sorted(set(overrides) - set(s))
    if bad:
        raise KeyError(f"unknown study setting(s) {bad}; valid: {sorted(s)}")
    s.update({k: v for k, v in overrides.items() if v is not None})
    s["profile"] = profile
    return s


def slug(name: str) -> str:
    """A file-name-safe version of a model name ("Pix2Pix resize-conv" -> "pix2pix_resize-conv")."""
    return re.sub(r"[^a-z0-9_-]+", "_", name.lower()).strip("_") or "model"


def on_upsampling_grid(fy: float, fx: float, size: int, grid: int = 8) -> bool:
    """Whether a frequency lies on the lattice of multiples of 1/`grid` cycles/px,
    excluding zero: where x2 upsampling layers leave their traces (0.5 from the last
    layer's 2-px period, 0.25 from the one before, 0.125 ...). Tolerance: one frequency
    bin of a `size`-px image, the half-width of the Hann window's main lobe (a pattern
    that is periodic along x only leaks into fy = +-1 bin, and against a reference whose
    axis line is strong the peak of the ratio can sit there)."""
    tol = 1.0 / size + 1e-9
    near = [abs(v * grid - round(v * grid)) / grid <= tol for v in (fy, fx)]
    nonzero = max(abs(fy), abs(fx)) > tol
    return all(near) and nonzero


# --------------------------------------------------------------------------- results of the steps


@dataclass
class TrainedGenerator:
    """One generator trained (or reused) by `train_upsampling_pair`."""

    name: str
    upsample: str
    path: Path
    steps: int
    seconds: float
    reused: bool
    log: list[dict] = field(default_factory=list, repr=False)


@dataclass
class FakeSets:
    """Real images of held-out masks and, per model, the images generated from the same
    masks. Image i of every set comes from mask ``ids[i]``; `groups` (the mask ids) keep
    each real/generated pair in one cross-validation fold."""

    dataset: Path
    splits: tuple[str, ...]
    ids: list[str]
    real: np.ndarray
    masks: np.ndarray
    fakes: dict[str, np.ndarray]
    sources: dict[str, str]
    missing: dict[str, str]
    seconds: dict[str, float] = field(default_factory=dict)
    # real domain: the cross-validation group of each tile (its frame, or a block of
    # neighbouring tiles), how they were formed, and the real set with its frames
    fold_groups: list[str] | None = None
    grouping: str = "folds grouped by mask (a real image and its generated images in one fold)"
    real_split: Any = None  # a semlab.train.realsets.RealSplit (real domain)

    @property
    def groups(self) -> np.ndarray:
        return np.asarray(self.fold_groups if self.fold_groups is not None else self.ids)

    @property
    def n_groups(self) -> int:
        return len(set(self.groups.tolist()))

    @property
    def models(self) -> list[str]:
        return list(self.fakes)

    @property
    def n_pairs(self) -> int:
        return len(self.ids)

    def pair(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(real, fake, groups_real, groups_fake) for `semlab.forensics.detector`."""
        if name not in self.fakes:
            raise KeyError(f"no fake set {name!r}; available: {', '.join(self.fakes) or 'none'}")
        g = self.groups
        return self.real, self.fakes[name], g, g

    def table(self) -> str:
        """A Markdown table: every model with its source, or why it is missing (names,
        paths and reasons escaped with `md_escape`)."""
        from semlab.textfmt import md_escape as esc

        lines = ["| model | images | source |", "|---|---|---|"]
        for name in self.fakes:
            lines.append(f"| {esc(name)} | {len(self.fakes[name])} | {esc(self.sources.get(name, ''))} |")
        for name, why in self.missing.items():
            lines.append(f"| {esc(name)} | **missing** | {esc(why)} |")
        return "\n".join(lines)


@dataclass
class ModelDetection:
    """Cross-validated detection of one model's images: one `DetectionResult` per CNN
    (label -> result, e.g. "small_cnn") and the spectrum-only detector's, on identical
    folds."""

    model: str
    cnn: dict[str, Any]
    spectrum: Any
    seconds: float = 0.0

    @property
    def main(self):
        """The first CNN's result (the one saliency explains)."""
        return next(iter(self.cnn.values()))


@dataclass
class SpectralStudy:
    """Spectra of the real set and of each fake set (all from the same masks).

    `comparison`: mean radial spectra with paired bootstrap bands and ratios to real;
    `bands`: band power ratios in dB with CIs (rows of `band_summary`); `differences`:
    generated-minus-real 2-D spectra in dB; `ratios`: (fy, fx, P_fake / P_real) for the
    peak figure; `peaks`: narrow peaks of each set relative to real."""

    comparison: Any
    bands: list[dict[str, Any]]
    differences: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    ratios: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    peaks: dict[str, list[Any]]
    size: int
    threshold: float

    def band(self, model: str, band: tuple[float, float] = HF_BAND) -> dict[str, Any] | None:
        key = f"({band[0]:g}, {band[1]:g}]"
        return next((r for r in self.bands if r["set"] == model and r["band"] == key), None)

    def grid_peaks(self, model: str) -> list[Any]:
        return [p for p in self.peaks.get(model, []) if on_upsampling_grid(p.fy, p.fx, self.size)]

    def band_table(self) -> str:
        """Markdown: models in rows, frequency bands in columns, ratio to real in dB [CI]
        (names and band labels escaped with `md_escape`)."""
        from semlab.textfmt import md_escape as esc

        names = list(dict.fromkeys(r["set"] for r in self.bands))
        bands = list(dict.fromkeys(r["band"] for r in self.bands))
        lines = ["| model | " + " | ".join(f"{esc(b)} c/px" for b in bands) + " |",
                 "|---|" + "---|" * len(bands)]
        for n in names:
            cells = []
            for b in bands:
                r = next((x for x in self.bands if x["set"] == n and x["band"] == b), None)
                cells.append("" if r is None else f"{r['ratio_db']:+.1f} [{r['ratio_db_lo']:+.1f}, "
                                                  f"{r['ratio_db_hi']:+.1f}] dB")
            lines.append(f"| {esc(n)} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def peak_table(self) -> str:
        """Markdown: the strongest peaks of every model (frequency, period, z, on the grid);
        model names escaped with `md_escape`."""
        from semlab.textfmt import md_escape

        lines = ["| model | peaks | on the upsampling grid | strongest peaks (fy, fx) c/px: period, z |",
                 "|---|---|---|---|"]
        for name, pk in self.peaks.items():
            top = "; ".join(f"({p.fy:.3f}, {p.fx:.3f}): {p.period_px:.2f} px, z={p.z:.0f}"
                            + (" (grid)" if on_upsampling_grid(p.fy, p.fx, self.size) else "") for p in pk[:3])
            lines.append(f"| {md_escape(name)} | {len(pk)} | {len(self.grid_peaks(name))} | {top or '-'} |")
        return "\n".join(lines)


@dataclass
class SaliencyStudy:
    """Attributions of one model's out-of-fold CNN detector.

    Examples (`index` into the stacked real-then-generated arrays of the detection
    result): `images`, `labels` (0 real, 1 generated), `probabilities` (P(generated)),
    `correct`, and `maps` {method: (k, H, W)} explaining the "generated" logit.
    `regions`: `attribution_by_region` of |saliency| over `n_attr` images per class;
    `spectrum`: `attribution_spectrum` of the saliency on real images (the same images
    for every model, so the curves compare the detectors)."""

    model: str
    detector: str
    index: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    correct: np.ndarray
    maps: dict[str, np.ndarray]
    regions: dict[str, Any]
    spectrum: dict[str, Any]
    methods: tuple[str, ...]
    seconds: float = 0.0

    @property
    def n_wrong(self) -> int:
        return int((~self.correct).sum())

    def title(self) -> str:
        return (f"{self.model}: {int(self.correct.sum())} correct and {self.n_wrong} wrong out-of-fold "
                f"predictions of {self.detector}")


@dataclass
class StudyResults:
    """Everything the conclusion is written from."""

    sets: FakeSets
    detections: dict[str, ModelDetection]
    spectral: SpectralStudy | None = None
    saliency: dict[str, SaliencyStudy] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
