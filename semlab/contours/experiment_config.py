"""Settings and data of the SegSEM experiment (`semlab.contours.experiment`).

What defines a run: `PROFILES` (smoke, cpu, full), `ExperimentConfig` and
`experiment_config(profile, **overrides)`, the methods compared (`METHODS`, `MODEL_OF`:
which SAM2 model each uses), the out-of-distribution variants (`OOD_VARIANTS`) and the
metric keys of the tables (`KEYS`). The data: the simulated images with their exact
contours (`build_items`, `build_ood_items`), dealt into folds stratified by preset
(`assign_folds`), and the validation images held out of fine-tuning (`val_ids`). Every
image is a pure function of the configuration and its seed, so a result can simulate
any of its images again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from semlab.contours.classical import ContourSettings

__all__ = ["PRESETS", "PROFILES", "METHODS", "METHOD_LABELS", "MODEL_OF", "OOD_VARIANTS", "KEYS",
           "ExperimentConfig", "Item", "experiment_config", "default_experiment_dir", "test_set_label",
           "assign_folds", "build_items", "build_ood_items", "ood_examples", "val_ids"]

PRESETS = ("ic-metal", "line-space")
METHODS = ("classical", "sam2_zero_shot", "sam2_decoder", "sam2_full", "sam2_encoder", "hybrid", "hybrid_zero_shot")
METHOD_LABELS = {
    "classical": "classical fallback only",
    "sam2_zero_shot": "SAM2 zero-shot",
    "sam2_decoder": "SAM2 fine-tuned: decoder only",
    "sam2_full": "SAM2 fine-tuned: full",
    "sam2_encoder": "SAM2 fine-tuned: encoder only (SegSEM)",
    "hybrid": "hybrid: SegSEM SAM2 + fallback",
    "hybrid_zero_shot": "hybrid: zero-shot SAM2 + fallback",
}
# which SAM2 model each method uses ("zero_shot": the pretrained weights; else a fine-tuning mode)
MODEL_OF = {"sam2_zero_shot": "zero_shot", "sam2_decoder": "decoder", "sam2_full": "full",
            "sam2_encoder": "encoder", "hybrid": "encoder", "hybrid_zero_shot": "zero_shot"}

# Out-of-distribution variants: simulator parameters drawn per image from these ranges
# (training ranges, from semlab.data.simulate: dose 80-400 e-/px, psf_sigma_nm 1.5-3,
# detector_sigma 0.01-0.03, pitch_nm ic-metal 48-80 and line-space 28-56). A mapping
# keyed by preset applies to that preset only.
OOD_VARIANTS: dict[str, dict[str, Any]] = {
    "low_dose": {"dose": (15.0, 40.0)},
    "blur": {"psf_sigma_nm": (4.0, 6.0)},
    "noise": {"detector_sigma": (0.06, 0.10)},
    "small_features": {"ic-metal": {"pitch_nm": (30.0, 44.0)}, "line-space": {"pitch_nm": (18.0, 26.0)}},
    "large_features": {"ic-metal": {"pitch_nm": (100.0, 160.0)}, "line-space": {"pitch_nm": (70.0, 110.0)}},
}
_TEST_SET_LABELS = {
    "cv": "in-distribution ({k}-fold CV)",
    "low_dose": "low dose (15-40 e-/px; training 80-400)",
    "blur": "beam blur 4-6 nm (training 1.5-3)",
    "noise": "detector noise 0.06-0.10 (training 0.01-0.03)",
    "small_features": "small features (pitch 30-44 / 18-26 nm)",
    "large_features": "large features (pitch 100-160 / 70-110 nm)",
}
_TEST_SET_SHORT = {"cv": "{k}-fold CV", "low_dose": "low dose", "blur": "more blur", "noise": "more noise",
                   "small_features": "small features", "large_features": "large features"}
# metrics in table order (nm, except IoU); see semlab.contours.metrics
KEYS = ("epe_mean_abs", "epe_mean", "epe_3sigma", "hausdorff95", "iou", "cd_bias")

def _segsem_settings(name: str) -> dict[str, Any]:
    """The experiment's settings of a profile, from `semlab.config` (the one place they
    live); the threshold sweep is `sweep_points` values from 0 to 1."""
    import dataclasses

    from semlab.config import load_profile

    d = dataclasses.asdict(load_profile(name).segsem)
    d["sweep"] = tuple(np.round(np.linspace(0.0, 1.0, d.pop("sweep_points")), 3))
    return d


PROFILES: dict[str, dict[str, Any]] = {name: _segsem_settings(name) for name in ("smoke", "cpu", "full")}


def test_set_label(name: str, folds: int = 5, short: bool = False) -> str:
    """A readable name of a test set ("cv" or an OOD variant); `short` for crowded axes."""
    return (_TEST_SET_SHORT if short else _TEST_SET_LABELS).get(name, name).format(k=folds)


test_set_label.__test__ = False  # pytest: not a test


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines an experiment run (its key decides what a re-run reuses)."""

    profile: str = "cpu"
    presets: tuple[str, ...] = PRESETS
    n_per_preset: int = 30
    size: int = 256
    folds: int = 5
    seed: int = 0
    n_val: int = 8  # training images per fold held out of fine-tuning: early stopping, threshold calibration
    ood_n: int = 20  # images per out-of-distribution variant (split over the presets)
    ood_variants: tuple[str, ...] = tuple(OOD_VARIANTS)
    methods: tuple[str, ...] = METHODS
    fallback: Mapping[str, Any] = field(default_factory=dict)  # ContourSettings overrides
    sam2_model: str = "sam2.1_hiera_tiny"
    sam2_checkpoint: str | None = None  # pretrained base weights (file or folder); None: semlab.weights search
    sam2_image_size: int = 512
    sam2_steps: int | None = 10  # fine-tuning steps per fold and mode (None: epochs with early stopping)
    sam2_epochs: int = 30
    sam2_patience: int = 5
    sam2_bf16: bool = True
    sam2_max_prompts: int = 8
    default_threshold: float = 0.8  # when no validation structure allows a calibration
    sweep: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.0, 21), 3))
    n_boot: int = 1000
    real_tile: int = 512
    real_tiles: int = 2
    gallery: int = 4

    def __post_init__(self):
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise KeyError(f"unknown method(s) {bad}; valid: {', '.join(METHODS)}")
        bad = [v for v in self.ood_variants if v not in OOD_VARIANTS]
        if bad:
            raise KeyError(f"unknown OOD variant(s) {bad}; valid: {', '.join(OOD_VARIANTS)}")
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if self.n_per_preset < self.folds:
            raise ValueError(f"n_per_preset ({self.n_per_preset}) must be >= folds ({self.folds})")
        n_train = len(self.presets) * self.n_per_preset * (self.folds - 1) // self.folds
        if not 0 <= self.n_val < n_train:
            raise ValueError(f"n_val must be in [0, {n_train}) (the training images of a fold), got {self.n_val}")
        ContourSettings(**dict(self.fallback))  # validates the overrides

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fallback"] = dict(self.fallback)
        return d

    def fallback_settings(self) -> ContourSettings:
        return ContourSettings(**dict(self.fallback))

    @property
    def sam2_methods(self) -> list[str]:
        return [m for m in self.methods if m != "classical"]


def experiment_config(profile: str = "cpu", **overrides) -> ExperimentConfig:
    """The configuration of a profile (`PROFILES`) with `overrides` (ExperimentConfig
    fields; None keeps the profile's value); KeyError lists the valid profiles and fields."""
    if profile not in PROFILES:
        raise KeyError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    names = {f.name for f in fields(ExperimentConfig)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise KeyError(f"unknown experiment setting(s) {bad}; valid: {', '.join(sorted(names))}")
    d = {**PROFILES[profile], **{k: v for k, v in overrides.items() if v is not None}}  # None: the profile's
    for k in ("presets", "ood_variants", "methods", "sweep"):
        if k in d:
            d[k] = tuple(d[k])
    return ExperimentConfig(profile=profile, **d)


def default_experiment_dir(config: ExperimentConfig) -> Path:
    """`data/runs/segsem-sim-<profile>`: where a notebook run without RUN_DIR keeps its results."""
    from semlab.runs import standalone_dir

    return standalone_dir("segsem", "sim", config.profile)


# ------------------------------------------------------------------------------ data


@dataclass
class Item:
    """One simulated image with its exact pattern contours (px) and where it is used."""

    id: str
    preset: str
    test_set: str  # "cv" for the training images, else the OOD variant
    image: np.ndarray
    mask: np.ndarray
    contours: list[np.ndarray]
    pixel_nm: float
    fold: int = -1
    params: dict = field(default_factory=dict, repr=False)


_SIMULATED: dict[tuple, Any] = {}  # this process's simulations: the notebook, the experiment and its
# re-predictions ask for the same images (328 simulations of 100 images in notebook 50 before)


def _simulate(preset: str, size: int, seed, overrides: dict) -> Any:
    """`simulate` (deterministic in its arguments), remembered for the last 160 calls."""
    from semlab.data.simulate import SIMULATOR_VERSION, simulate

    key = (SIMULATOR_VERSION, preset, int(size), repr(seed), tuple(sorted(overrides.items())))
    if key not in _SIMULATED:
        if len(_SIMULATED) >= 160:
            _SIMULATED.pop(next(iter(_SIMULATED)))
        _SIMULATED[key] = simulate(preset, size, seed, **overrides)
    return _SIMULATED[key]


def assign_folds(config: ExperimentConfig) -> dict[str, int]:
    """{item id: fold} stratified by preset: each preset's images are shuffled with
    (seed, preset index) and dealt to the folds in turn."""
    out = {}
    for p_idx, preset in enumerate(config.presets):
        perm = np.random.default_rng([config.seed, 7, p_idx]).permutation(config.n_per_preset)
        for j, i in enumerate(perm):
            out[f"{preset}-{int(i):03d}"] = j % config.folds
    return out


def build_items(config: ExperimentConfig) -> list[Item]:
    """The training images (every one is a test image in exactly one fold)."""
    folds = assign_folds(config)
    items = []
    for p_idx, preset in enumerate(config.presets):
        for i in range(config.n_per_preset):
            r = _simulate(preset, config.size, (config.seed, 0, p_idx, i), {})
            iid = f"{preset}-{i:03d}"
            items.append(Item(iid, preset, "cv", r.image, r.mask, r.contours, float(r.params["pixel_nm"]),
                              folds[iid], r.params))
    return items


def _ood_overrides(variant: str, preset: str, rng: np.random.Generator) -> dict[str, float]:
    spec = OOD_VARIANTS[variant]
    if any(k in spec for k in PRESETS) or any(isinstance(v, Mapping) for v in spec.values()):
        spec = spec.get(preset, {})
    return {k: float(rng.uniform(*v)) if isinstance(v, tuple) else v for k, v in spec.items()}


def build_ood_items(config: ExperimentConfig, variant: str) -> list[Item]:
    """`ood_n` images of `variant` (split over the presets), seeds disjoint from the
    training images', each with its parameter drawn from the OOD range."""
    if variant not in OOD_VARIANTS:
        raise KeyError(f"unknown OOD variant {variant!r}; valid: {', '.join(OOD_VARIANTS)}")
    v_idx = list(OOD_VARIANTS).index(variant)
    items = []
    n_p = len(config.presets)
    for p_idx, preset in enumerate(config.presets):
        n = config.ood_n // n_p + (1 if p_idx < config.ood_n % n_p else 0)
        for i in range(n):
            ov = _ood_overrides(variant, preset, np.random.default_rng([config.seed, 99, v_idx, p_idx, i]))
            r = _simulate(preset, config.size, (config.seed, 1 + v_idx, p_idx, i), ov)
            items.append(Item(f"{variant}-{preset}-{i:03d}", preset, variant, r.image, r.mask, r.contours,
                              float(r.params["pixel_nm"]), -1, r.params))
    return items


def ood_examples(config: ExperimentConfig) -> list[Item]:
    """One image of each OOD set, alternating between the presets (for a figure)."""
    return [build_ood_items(config, v)[0 if j % 2 == 0 else -1] for j, v in enumerate(config.ood_variants)]


def val_ids(config: ExperimentConfig, items: Sequence[Item], fold: int) -> list[str]:
    """`n_val` of the fold's training images, stratified by preset, drawn with (seed, fold)."""
    train = [it for it in items if it.fold != fold]
    rng = np.random.default_rng([config.seed, 11, fold])
    out: list[str] = []
    per = [[it.id for it in train if it.preset == p] for p in config.presets]
    k = len(per)
    for j, ids in enumerate(per):
        n = config.n_val // k + (1 if j < config.n_val % k else 0)
        out += [ids[i] for i in sorted(rng.choice(len(ids), min(n, len(ids)), replace=False))]
    return out
