"""The SegSEM experiment the reviewers asked for: k-fold CV on 60 simulated images,
out-of-distribution tests, baselines, and ablations of the fallback and its threshold.

**Data** (`build_items`, `build_ood_items`): `n_per_preset` images of each of the
`ic-metal` and `line-space` presets (30 + 30 = 60 at the paper's scale), simulated at
`size` px with their exact pattern contours (`semlab.data.simulate`), seeds
`(seed, 0, preset index, i)`. Folds are drawn per preset (each fold holds the same
number of images of each preset). Out-of-distribution sets use other seeds and move
one imaging or layout parameter outside the training range (`OOD_VARIANTS`; each image
draws its value from the OOD range): low dose (more shot noise), stronger beam blur,
more detector noise, smaller and larger features (pitch).

**Methods** (`METHODS`; rows of every table):

| key | what |
|---|---|
| `classical` | the classical fallback alone, its edge offset calibrated on the fold's training images |
| `sam2_zero_shot` | pretrained SAM2, prompted from the classical pre-segmentation, every structure from SAM2 |
| `sam2_decoder`, `sam2_full`, `sam2_encoder` | SAM2 fine-tuned on the fold's training images (mask decoder only / everything / image encoder only = SegSEM) |
| `hybrid` | SegSEM: the encoder-fine-tuned SAM2 where confident, else the fallback, threshold calibrated on the fold's validation images |
| `hybrid_zero_shot` | the same with zero-shot SAM2 |

`hybrid` vs `sam2_encoder` vs `classical` is the ablation of the fallback (hybrid vs
each part alone); the threshold sweep (`ExperimentResult.sweep`) is the ablation of the
threshold: fallback rate and pooled |EPE| of the hybrid's pattern structures at every
threshold, from the same SAM2 answers (`HybridResult.rechoose`). A SAM2 method runs only
when the SAM2 weights are found (`sam2_unavailable_reason`); otherwise its row reads
"unavailable: <reason>" -- never a number from random weights -- and the hybrid rows
are computed honestly as what they are without SAM2: every structure from the
fallback, with that reason.

**Per fold** k: the classical edge offset is fitted on the training images (the
least-squares fit of `calibrate_edge_offset`, computed from per-image sums of one
uncalibrated extraction per image, which every fold reuses); `n_val` of the training
images (stratified by preset) are held out of fine-tuning for early stopping and for
calibrating the hybrid's threshold (`calibrate_threshold`, objective: the mean
per-structure |EPE| in nm); the fold's test images are scored with `score_contours`
(nm). Out-of-distribution sets are scored with fold 0's models (classical offset, SAM2
weights, threshold): the same models whose in-distribution scores are fold 0's.

**Cost.** Without weights the `cpu` profile takes about 1.5 minutes (classical
extraction and scoring of 60 + 100 images at 256 px). With weights every SAM2 method
adds one image embedding per test and validation image (0.25-0.4 s at 512 px on an idle
2-core CPU, `semlab bench segsem`) plus decoding, contour extraction and scoring (about
0.5 s), and every fine-tuned one `sam2_steps` optimizer steps per fold and mode (1.1-1.8 s
each at 512 px, 4-7 s at 1024) plus writing its checkpoint: roughly
`folds x 3 modes x sam2_steps x 1.5 s + (4 models x (60 + OOD images) + 2 x folds x n_val) x 0.9 s`,
about 15-20 minutes for the `cpu` profile at 10 steps on an idle machine. Measured:
fold 0 of the `cpu` profile with a randomly initialised hiera-tiny took 19 minutes (5 of
them fine-tuning) while other jobs kept the 2 cores busy (load ~3.5). `sam2_steps`
bounds the training part; `full` trains to early stopping and is meant for a GPU.

**Resumable**: the per-image uncalibrated statistics, every fold's results and every
OOD set's results are written atomically under `out/` as they finish, each with a key
of the configuration, the simulator version and whether SAM2 was available; a re-run
with the same key reuses them (fine-tuning itself also resumes from its checkpoints).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from semlab import labels as L
from semlab.contours.classical import ContourSettings, extract_classical_contours
from semlab.contours.hybrid import HybridExtractor, HybridResult, sam2_unavailable_reason
from semlab.contours.metrics import edge_placement_error, score_contours, score_table

__all__ = ["PROFILES", "METHODS", "METHOD_LABELS", "OOD_VARIANTS", "KEYS", "ExperimentConfig", "Item",
           "ExperimentResult", "experiment_config", "build_items", "build_ood_items", "ood_examples", "assign_folds",
           "run_experiment", "default_experiment_dir", "RealLines", "measure_real_lines", "test_set_label",
           "sweep_curve"]

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
_KEY_NAMES = {"epe_mean_abs": "mean abs EPE", "epe_mean": "mean EPE", "epe_3sigma": "EPE 3 sigma",
              "hausdorff95": "Hausdorff 95", "iou": "IoU", "cd_bias": "CD bias"}

PROFILES: dict[str, dict[str, Any]] = {
    # seconds: tests and CI
    "smoke": {"size": 64, "n_per_preset": 4, "folds": 2, "n_val": 2, "ood_n": 2, "ood_variants": ("low_dose", "blur"),
              "sam2_image_size": 512, "sam2_steps": 1, "sam2_epochs": 1, "sam2_max_prompts": 4, "n_boot": 200,
              "sweep": tuple(np.round(np.linspace(0.0, 1.0, 11), 3)), "real_tile": 128, "real_tiles": 1,
              "gallery": 2},
    # the paper's 60 images and 5 folds at 256 px; about a minute without SAM2 weights
    "cpu": {"size": 256, "n_per_preset": 30, "folds": 5, "n_val": 8, "ood_n": 20, "ood_variants": tuple(OOD_VARIANTS),
            "sam2_image_size": 512, "sam2_steps": 10, "sam2_epochs": 30, "sam2_max_prompts": 8, "n_boot": 1000,
            "sweep": tuple(np.round(np.linspace(0.0, 1.0, 21), 3)), "real_tile": 512, "real_tiles": 2,
            "gallery": 4},
    # the paper's scale: 512 px images, SAM2 at 1024, fine-tuning to early stopping (a GPU)
    "full": {"size": 512, "n_per_preset": 30, "folds": 5, "n_val": 8, "ood_n": 60, "ood_variants": tuple(OOD_VARIANTS),
             "sam2_image_size": 1024, "sam2_steps": None, "sam2_epochs": 30, "sam2_max_prompts": 16,
             "sam2_bf16": False, "n_boot": 2000, "sweep": tuple(np.round(np.linspace(0.0, 1.0, 41), 3)),
             "real_tile": 1024, "real_tiles": 4, "gallery": 6},
}


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
    """`data/runs/segsem-<profile>`: where a notebook run without RUN_DIR keeps its results."""
    from semlab.paths import data_dir

    return data_dir() / "runs" / f"segsem-{config.profile}"


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


def _simulate(preset: str, size: int, seed, overrides: dict) -> Any:
    from semlab.data.simulate import simulate

    return simulate(preset, size, seed, **overrides)


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


def _val_ids(config: ExperimentConfig, items: Sequence[Item], fold: int) -> list[str]:
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


# --------------------------------------------------------------------------- scoring


def _score(contours: Sequence[np.ndarray], item: Item) -> tuple[dict, np.ndarray]:
    """score_contours in nm (plain floats), and the signed per-point EPE in nm."""
    row = score_contours(contours, item.contours, item.image.shape, pixel_nm=item.pixel_nm)
    ee = edge_placement_error(contours, item.contours, shape=item.image.shape)
    keep = {k: (float(v) if isinstance(v, (int, float, np.floating)) and k != "n_points" else v)
            for k, v in row.items() if k not in ("units", "pixel_nm")}
    return keep, (ee.epe * item.pixel_nm).astype(np.float32)


def _per_structure_epe(contour_sets: Sequence[Sequence[np.ndarray] | None], item: Item) -> np.ndarray:
    """(n, 2): sum of |EPE| (nm) and point count per structure, in one EPE call (the
    contours' owners are tracked through `EdgeErrors.contour`). None sets give zeros."""
    flat, owner = [], []
    for j, cs in enumerate(contour_sets):
        for c in cs or []:
            flat.append(c)
            owner.append(j)
    out = np.zeros((len(contour_sets), 2))
    if not flat:
        return out
    ee = edge_placement_error(flat, item.contours, shape=item.image.shape)
    ok = np.isfinite(ee.epe)
    who = np.asarray(owner)[ee.contour[ok].astype(int)]
    out[:, 0] = np.bincount(who, weights=np.abs(ee.epe[ok]) * item.pixel_nm, minlength=len(contour_sets))
    out[:, 1] = np.bincount(who, minlength=len(contour_sets))
    return out


def _structure_records(hr: HybridResult, item: Item, fb: np.ndarray | None = None) -> list[dict]:
    """Per pattern structure: confidence, whether SAM2 gave a contour, and the |EPE| sums
    and counts of both candidates (for threshold calibration and sweeps)."""
    pats = [s for s in hr.structures if s.label == L.PATTERN]
    if fb is None:
        fb = _per_structure_epe([s.fallback_contours for s in pats], item)
    sm = _per_structure_epe([s.sam2_contours for s in pats], item)
    return [{"image": item.id, "id": int(s.id), "confidence": s.confidence, "has_sam2": s.sam2_contours is not None,
             "fb_sum": float(f[0]), "fb_n": int(f[1]), "sam2_sum": float(m[0]), "sam2_n": int(m[1]),
             "px_nm": item.pixel_nm} for s, f, m in zip(pats, fb, sm)]


def _structure_errors(recs: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """confidence, SAM2 error and fallback error (mean |EPE| nm) per structure for
    `calibrate_threshold`, mirroring the extractor: without a SAM2 contour the hybrid
    uses the fallback whatever the threshold (SAM2 error := fallback error); a SAM2
    contour without evaluable points costs 10 px. Structures without fallback points
    (nothing to compare) are left out."""
    c, s, f = [], [], []
    for r in recs:
        if r["fb_n"] == 0 or r["confidence"] is None:
            continue
        fe = r["fb_sum"] / r["fb_n"]
        if not r["has_sam2"]:
            se = fe
        elif r["sam2_n"] == 0:
            se = max(10.0 * r["px_nm"], fe)
        else:
            se = r["sam2_sum"] / r["sam2_n"]
        c.append(r["confidence"])
        s.append(se)
        f.append(fe)
    return np.asarray(c, float), np.asarray(s, float), np.asarray(f, float)


def _calibrate(recs: Sequence[dict], default: float) -> dict:
    from semlab.contours.confidence import calibrate_threshold

    c, s, f = _structure_errors(recs)
    if c.size == 0:
        return {"threshold": default, "calibrated": False, "n": 0,
                "note": f"no validation structure with a SAM2 answer: default threshold {default}"}
    cal = calibrate_threshold(c, s, f, "min_error")
    return {**cal.as_dict(), "calibrated": True}


def sweep_curve(recs: Sequence[dict], thresholds: Sequence[float]) -> dict:
    """Fallback rate and pooled mean |EPE| (nm, over the points of all pattern
    structures) of the hybrid at each threshold, from per-structure records."""
    ts = list(thresholds) + [float("inf")]
    if not recs:
        nan = [float("nan")] * len(ts)
        return {"thresholds": ts, "fallback_rate": nan, "mean_abs_epe_nm": list(nan),
                "n_structures": 0}
    conf = np.array([r["confidence"] if r["confidence"] is not None else -np.inf for r in recs], float)
    has = np.array([r["has_sam2"] for r in recs], bool)
    fs, fn = np.array([r["fb_sum"] for r in recs]), np.array([r["fb_n"] for r in recs], float)
    ss, sn = np.array([r["sam2_sum"] for r in recs]), np.array([r["sam2_n"] for r in recs], float)
    rate, err = [], []
    for t in ts:
        use = has & (conf >= t)
        n = np.where(use, sn, fn).sum()
        rate.append(float(1.0 - use.mean()))
        err.append(float(np.where(use, ss, fs).sum() / n) if n else float("nan"))
    return {"thresholds": ts, "fallback_rate": rate, "mean_abs_epe_nm": err, "n_structures": len(recs)}


# ------------------------------------------------------------------------- SAM2 arms


class _Sam2:
    """Loads the pretrained SAM2 once, fine-tunes copies of it per fold and mode, and
    wraps models in predictors."""

    def __init__(self, config: ExperimentConfig, progress: bool):
        self.cfg = config
        self.progress = progress
        self._base = None

    def base(self):
        if self._base is None:
            from semlab.contours.predictor import load_sam2_model

            self._base, _ = load_sam2_model(self.cfg.sam2_model, self.cfg.sam2_checkpoint, self.cfg.sam2_image_size)
        return self._base

    def finetune_config(self, mode: str, fold: int):
        from semlab.contours.finetune import FinetuneConfig

        c = self.cfg
        return FinetuneConfig(model=c.sam2_model, checkpoint=c.sam2_checkpoint, image_size=c.sam2_image_size,
                              mode=mode, epochs=c.sam2_epochs, max_steps=c.sam2_steps, batch_size=1,
                              max_prompts=c.sam2_max_prompts, bf16=c.sam2_bf16, seed=c.seed * 100 + fold,
                              patience=c.sam2_patience)

    def train(self, mode: str, fold: int, folder: Path, train: Sequence[Item], val: Sequence[Item]):
        """(model, info) for `mode` ("zero_shot": the pretrained model itself)."""
        if mode == "zero_shot":
            return self.base(), {"mode": "zero_shot"}
        from semlab.contours.finetune import finetune, make_examples

        t0 = time.perf_counter()
        ex_t = make_examples([it.image for it in train], [it.mask for it in train], classes=[L.PATTERN],
                             names=[it.id for it in train])
        ex_v = make_examples([it.image for it in val], [it.mask for it in val], classes=[L.PATTERN],
                             names=[it.id for it in val])
        res = finetune(ex_t, ex_v, self.finetune_config(mode, fold), folder / f"sam2-{mode}", progress=self.progress,
                       sam_model=copy.deepcopy(self.base()))
        return res.model, {"mode": mode, "steps": res.steps, "epochs": res.epochs, "best_epoch": res.best_epoch,
                           "best_val_loss": res.best_val_loss, "history": res.history,
                           "exported": str(res.exported) if res.exported else None,
                           "seconds": round(time.perf_counter() - t0, 2)}

    def load(self, mode: str, folder: Path):
        """A fold's model from disk (for OOD sets and re-predictions)."""
        if mode == "zero_shot":
            return self.base()
        from semlab.contours.predictor import load_sam2_model

        path = folder / f"sam2-{mode}" / f"{self.cfg.sam2_model}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the fine-tuned {mode} model of {folder.name} is missing "
                                    f"(delete {folder / 'result.json'} to train it again)")
        return load_sam2_model(self.cfg.sam2_model, path, self.cfg.sam2_image_size)[0]

    def predictor(self, net):
        from semlab.contours.predictor import Sam2Predictor

        return Sam2Predictor.from_model(net, self.cfg.sam2_model, bf16=self.cfg.sam2_bf16)


# ---------------------------------------------------------------------------- running


def _key(config: ExperimentConfig, sam2_reason: str | None, stage: str) -> str:
    from semlab.data.simulate import SIMULATOR_VERSION

    doc = {"config": config.to_dict(), "sam2": sam2_reason is None, "simulator": SIMULATOR_VERSION,
           "stage": stage, "format": 1}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_stage(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except ValueError:
        return None
    return doc if doc.get("key") == key else None


def _write_epe(path: Path, epe: Mapping[str, list[np.ndarray]]) -> None:
    import io as _io

    from semlab.io import write_bytes_atomic

    buf = _io.BytesIO()
    np.savez_compressed(buf, **{m: (np.concatenate(v) if v else np.zeros(0, np.float32)).astype(np.float32)
                                for m, v in epe.items()})
    write_bytes_atomic(path, buf.getvalue())


def _raw_stats(items: Sequence[Item], base: ContourSettings, out: Path, key: str, progress: bool) -> dict:
    """Per image: sum of the signed EPE (px), count and edge scale of one uncalibrated
    extraction -- all `calibrate_edge_offset` needs, so every fold's offset is a sum over
    its training images."""
    from tqdm.auto import tqdm

    path = out / "classical-raw.json"
    doc = _read_stage(path, key)
    if doc is not None:
        return doc["stats"]
    s0 = replace(base, edge_offset_px=0.0)
    stats = {}
    for it in tqdm(items, desc="uncalibrated classical", disable=not progress):
        res = extract_classical_contours(it.image, s0)
        ee = edge_placement_error(res.contours, it.contours, shape=it.image.shape, spacing_px=0.5,
                                  frame_margin_px=1.0)
        e = ee.epe[np.isfinite(ee.epe)]
        stats[it.id] = {"sum": float(e.sum()), "n": int(e.size), "scale": float(res.scale)}
    from semlab.io import write_json_atomic

    write_json_atomic(path, {"key": key, "stats": stats})
    return stats


def _offset(stats: Mapping[str, dict], ids: Iterable[str]) -> float:
    """The least-squares edge offset of `calibrate_edge_offset` over the images `ids`."""
    num = den = 0.0
    for i in ids:
        s = stats[i]
        num += s["sum"] * s["scale"]
        den += s["n"] * s["scale"] ** 2
    if den == 0:
        raise ValueError("no edge points in the training images: cannot calibrate the edge offset")
    return num / den


def _row(method: str, item: Item, scores: dict, **extra) -> dict:
    return {"method": method, "test_set": item.test_set, "image": item.id, "preset": item.preset,
            "fold": item.fold, **scores, **extra}


def _evaluate(items: Sequence[Item], settings: ContourSettings, config: ExperimentConfig, sam2: _Sam2 | None,
              models: Mapping[str, Any], thresholds: Mapping[str, float], sam2_reason: str | None,
              progress: bool, desc: str) -> tuple[list[dict], dict[str, list[np.ndarray]], dict[str, list[dict]]]:
    """Score every method on `items`. `models`: {model key: SAM2 model} (empty without
    SAM2); `thresholds`: {model key: hybrid threshold}. Returns per-image rows, signed
    EPE arrays per method and per-structure records per model key."""
    from tqdm.auto import tqdm

    rows: list[dict] = []
    epe: dict[str, list[np.ndarray]] = {m: [] for m in config.methods}
    recs: dict[str, list[dict]] = {k: [] for k in models}
    classical = {}
    fb_struct = {}
    for it in tqdm(items, desc=f"{desc}: classical", disable=not progress):
        cl = extract_classical_contours(it.image, settings, pixel_nm=it.pixel_nm)
        classical[it.id] = cl
        if "classical" in config.methods or not models:
            sc, e = _score(cl.contours, it)
        if "classical" in config.methods:
            rows.append(_row("classical", it, sc, n_structures=len(cl.structures)))
            epe["classical"].append(e)
        if not models:  # no SAM2: the hybrids are the fallback on every structure
            hr = HybridExtractor(None, settings, unavailable_reason=sam2_reason).extract(it.image, classical=cl)
            assert hr.n_sam2 == 0  # so its contours are exactly the classical ones, scored above
            for m in ("hybrid", "hybrid_zero_shot"):
                if m in config.methods:
                    rows.append(_row(m, it, sc, n_structures=len(hr.structures), fallback_rate=hr.fallback_rate))
                    epe[m].append(e)
        else:
            pats = [s for s in cl.structures if s.label == L.PATTERN]
            fb_struct[it.id] = _per_structure_epe([s.contours for s in pats], it)
    for key, net in models.items():
        pred = sam2.predictor(net)
        thr = _thr(thresholds, key, config.default_threshold)
        hy = HybridExtractor(pred, settings, threshold=thr)
        for it in tqdm(items, desc=f"{desc}: SAM2 {key}", disable=not progress):
            hr = hy.extract(it.image, pixel_nm=it.pixel_nm, classical=classical[it.id])
            recs[key] += _structure_records(hr, it, fb_struct[it.id])
            for m in config.sam2_methods:
                if MODEL_OF[m] != key:
                    continue
                if m.startswith("sam2"):
                    sc, e = _score(hr.contours_of("sam2"), it)
                    n_missing = sum(s.sam2_contours is None for s in hr.structures if s.label == L.PATTERN)
                    rows.append(_row(m, it, sc, n_structures=len(hr.structures), sam2_missing=n_missing))
                else:
                    hh = hr.rechoose(thr)
                    sc, e = _score(hh.contours, it)
                    rows.append(_row(m, it, sc, n_structures=len(hh.structures), fallback_rate=hh.fallback_rate,
                                     threshold=hh.threshold))
                epe[m].append(e)
    return rows, epe, recs


def _thr(thresholds: Mapping[str, float | None], key: str, default: float) -> float:
    """A stored threshold (JSON writes +inf, "always fall back", as null)."""
    if key not in thresholds:
        return float(default)
    v = thresholds[key]
    return float("inf") if v is None else float(v)


def _needed_models(config: ExperimentConfig) -> list[str]:
    out: list[str] = []
    for m in config.sam2_methods:
        if MODEL_OF[m] not in out:
            out.append(MODEL_OF[m])
    return out


def _hybrid_models(config: ExperimentConfig) -> set[str]:
    return {MODEL_OF[m] for m in config.sam2_methods if m.startswith("hybrid")}


def _run_fold(k: int, items: Sequence[Item], stats: dict, config: ExperimentConfig, folder: Path,
              sam2: _Sam2 | None, sam2_reason: str | None, progress: bool) -> dict:
    t0 = time.perf_counter()
    test = [it for it in items if it.fold == k]
    train = [it for it in items if it.fold != k]
    val_ids = set(_val_ids(config, items, k))
    offset = _offset(stats, [it.id for it in train])
    settings = replace(config.fallback_settings(), edge_offset_px=offset)
    models, thresholds, calibration, finetune_info = {}, {}, {}, {}
    if sam2 is not None:
        fit = [it for it in train if it.id not in val_ids]
        val = [it for it in train if it.id in val_ids]
        for key in _needed_models(config):
            net, info = sam2.train(key, k, folder, fit, val)
            finetune_info[key] = info
            if key in _hybrid_models(config):
                _, _, vrecs = _evaluate(val, settings, replace(config, methods=()), sam2, {key: net}, {},
                                        sam2_reason, progress, f"fold {k} validation")
                calibration[key] = _calibrate(vrecs[key], config.default_threshold)
                thresholds[key] = calibration[key]["threshold"]
            models[key] = net
    rows, epe, recs = _evaluate(test, settings, config, sam2, models, thresholds, sam2_reason, progress, f"fold {k}")
    return {"fold": k, "offset_px": offset, "n_test": len(test), "n_train": len(train), "val": sorted(val_ids),
            "thresholds": thresholds, "calibration": calibration, "finetune": finetune_info, "rows": rows,
            "structures": recs, "seconds": round(time.perf_counter() - t0, 2)}, epe


@dataclass
class ExperimentResult:
    """Per-image rows of every method and test set, and what each stage found."""

    config: ExperimentConfig
    out: Path
    rows: list[dict]
    folds: list[dict]
    ood: dict[str, dict]
    sam2_reason: str | None  # None: SAM2 ran; else why every SAM2 method is unavailable
    reused: list[str]
    seconds: float

    @property
    def sam2_available(self) -> bool:
        return self.sam2_reason is None

    @property
    def test_sets(self) -> list[str]:
        return ["cv"] + [v for v in self.config.ood_variants if v in self.ood]

    def unavailable(self, method: str) -> str | None:
        """Why `method` has no numbers (None: it has)."""
        if method != "classical" and not method.startswith("hybrid") and self.sam2_reason is not None:
            return self.sam2_reason
        return None

    def method_rows(self, method: str, test_set: str = "cv") -> list[dict]:
        return [r for r in self.rows if r["method"] == method and r["test_set"] == test_set]

    def table(self, test_set: str = "cv", keys: Sequence[str] = KEYS) -> dict[str, dict | None]:
        """{method: score_table (mean and bootstrap CI over images) or None if unavailable}."""
        out: dict[str, dict | None] = {}
        for m in self.config.methods:
            rows = self.method_rows(m, test_set)
            if self.unavailable(m) or not rows:
                out[m] = None
                continue
            tab = score_table(rows, list(keys) + ["fallback_rate"], n_boot=self.config.n_boot, seed=self.config.seed)
            out[m] = tab
        return out

    def markdown(self, test_set: str = "cv", keys: Sequence[str] = KEYS, digits: int = 2) -> str:
        """The results table: mean [95 % CI] over images, nm (IoU unitless); unavailable
        methods say why."""
        tab = self.table(test_set, keys)
        head = ["method", "images"] + [_KEY_NAMES.get(k, k) + ("" if k == "iou" else " (nm)") for k in keys] + [
            "fallback rate"]
        lines = [f"**{test_set_label(test_set, self.config.folds)}**", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        notes: list[str] = []
        for m in self.config.methods:
            t = tab[m]
            if t is None:
                why = self.unavailable(m) or "no results"
                if why not in notes:
                    notes.append(why)
                mark = "abcdefghij"[min(notes.index(why), 9)]
                lines.append(f"| {METHOD_LABELS[m]} | 0 | unavailable ({mark}) |" + " |" * (len(head) - 3))
                continue
            n = len(self.method_rows(m, test_set))
            cells = [METHOD_LABELS[m], str(n)]
            for k in list(keys) + ["fallback_rate"]:
                c = t.get(k)
                if k == "fallback_rate" and m == "classical":
                    cells.append("(all)")
                elif k == "fallback_rate" and m.startswith("sam2"):
                    cells.append("(none)")
                elif c is None or not np.isfinite(c["mean"]):
                    cells.append("n/a")
                else:
                    d = 3 if k in ("iou", "fallback_rate") else digits
                    cells.append(f"{c['mean']:.{d}f} [{c['ci_low']:.{d}f}, {c['ci_high']:.{d}f}]")
            lines.append("| " + " | ".join(cells) + " |")
        paragraphs = ["\n".join(lines)] + [f"({'abcdefghij'[min(i, 9)]}) {why}" for i, why in enumerate(notes)]
        if self.sam2_reason is not None and any(m.startswith("hybrid") for m in self.config.methods):
            paragraphs.append("Without SAM2 the hybrid uses the fallback on every structure (fallback rate 1), so "
                              "its numbers equal the classical row's.")
        return "\n\n".join(paragraphs) + "\n"

    def long_table(self, keys: Sequence[str] = KEYS) -> list[dict]:
        """One row per (test set, method, metric): mean, CI, n, status -- for CSV."""
        out = []
        for ts in self.test_sets:
            tab = self.table(ts, keys)
            for m in self.config.methods:
                if tab[m] is None:
                    out.append({"test_set": ts, "method": m, "metric": "", "mean": "", "ci_low": "", "ci_high": "",
                                "n": 0, "status": f"unavailable: {self.unavailable(m) or 'no results'}"})
                    continue
                for k, c in tab[m].items():
                    out.append({"test_set": ts, "method": m, "metric": k, "mean": c["mean"], "ci_low": c["ci_low"],
                                "ci_high": c["ci_high"], "n": c["n"], "status": "ok"})
        return out

    def write_tables(self, folder: str | Path | None = None) -> dict[str, Path]:
        """results.csv (long form) and results.md (every test set) in `folder` (default: out)."""
        from semlab.io import write_csv_atomic, write_text_atomic

        folder = Path(folder) if folder is not None else self.out
        csv = write_csv_atomic(folder / "results.csv", self.long_table(),
                               ["test_set", "method", "metric", "mean", "ci_low", "ci_high", "n", "status"])
        md = write_text_atomic(folder / "results.md", "\n\n".join(self.markdown(ts) for ts in self.test_sets) + "\n")
        return {"csv": csv, "markdown": md}

    def epe_values(self, test_set: str = "cv") -> dict[str, np.ndarray]:
        """Signed per-point EPE (nm) of every available method, pooled over the images."""
        files = ([self.out / f"fold-{f['fold']}" / "epe.npz" for f in self.folds] if test_set == "cv"
                 else [self.out / "ood" / test_set / "epe.npz"])
        acc: dict[str, list[np.ndarray]] = {}
        for p in files:
            with np.load(p) as z:
                for m in z.files:
                    acc.setdefault(m, []).append(z[m])
        return {m: np.concatenate(acc[m]) for m in self.config.methods
                if m in acc and not self.unavailable(m) and sum(len(a) for a in acc[m])}

    def sweep(self, model: str = "encoder") -> dict:
        """The threshold ablation on the CV test images: fallback rate and pooled mean
        |EPE| of the hybrid with `model`'s SAM2 at every threshold of `config.sweep`
        (+inf: always fall back), the per-fold calibrated thresholds, and the SAM2-only
        and fallback-only levels. Without SAM2 every threshold gives the fallback."""
        if self.sam2_reason is not None:
            rows = self.method_rows("classical")
            n = sum(r["n_points"] for r in rows)
            err = sum(r["epe_mean_abs"] * r["n_points"] for r in rows if r["n_points"]) / n if n else float("nan")
            ts = list(self.config.sweep) + [float("inf")]
            return {"model": model, "available": False, "reason": self.sam2_reason, "thresholds": ts,
                    "fallback_rate": [1.0] * len(ts), "mean_abs_epe_nm": [err] * len(ts), "calibrated": [],
                    "all_sam2": float("nan"), "all_fallback": err,
                    "n_structures": sum(r.get("n_structures", 0) for r in rows)}
        recs = [r for f in self.folds for r in f["structures"].get(model, [])]
        cur = sweep_curve(recs, self.config.sweep)
        all_s = sweep_curve(recs, [-np.inf])["mean_abs_epe_nm"][0] if recs else float("nan")
        return {"model": model, "available": True, "reason": None, **cur,
                "calibrated": [_thr(f["thresholds"], model, self.config.default_threshold) for f in self.folds],
                "all_sam2": all_s,
                "all_fallback": cur["mean_abs_epe_nm"][-1]}

    def worst(self, method: str = "hybrid", test_set: str | None = None, n: int | None = None,
              key: str = "epe_mean_abs") -> list[dict]:
        """The `n` (default `config.gallery`) images with the largest `key` for `method`
        in `test_set` (None: every test set): the failure gallery."""
        rows = [r for r in self.rows if r["method"] == method and (test_set is None or r["test_set"] == test_set)
                and r.get(key) is not None and np.isfinite(r[key])]
        return sorted(rows, key=lambda r: -r[key])[: (n or self.config.gallery)]

    def examples(self, method: str = "hybrid", key: str = "epe_mean_abs") -> list[str]:
        """One typical CV test image per preset: the one with the median `key` for `method`."""
        out = []
        for preset in self.config.presets:
            rows = sorted((r for r in self.method_rows(method) if r["preset"] == preset
                           and r.get(key) is not None and np.isfinite(r[key])), key=lambda r: r[key])
            if rows:
                out.append(rows[len(rows) // 2]["image"])
        return out

    def overlay_methods(self) -> list[str]:
        """The methods worth drawing on one image: the fallback, SegSEM's SAM2 and the
        hybrid (without SAM2 the hybrid's contours are the fallback's)."""
        return [m for m in ("classical", "sam2_encoder", "hybrid") if m in self.config.methods
                and not self.unavailable(m)]

    def ci_by_test_set(self, key: str = "epe_mean_abs") -> dict[str, dict[str, dict | None]]:
        """{test set label: {method label: {mean, ci_low, ci_high, n} or None}} for
        `semlab.viz.segsem.method_ci_figure`."""
        out = {}
        for ts in self.test_sets:
            tab = self.table(ts, (key,))
            out[test_set_label(ts, self.config.folds)] = {METHOD_LABELS[m]: (t or {}).get(key) for m, t in tab.items()}
        return out

    def unavailable_notes(self) -> dict[str, str]:
        """{method label: reason} of the methods without numbers."""
        return {METHOD_LABELS[m]: self.unavailable(m) for m in self.config.methods if self.unavailable(m)}

    def item(self, item_id: str) -> Item:
        """Simulate one image of the experiment again (deterministic)."""
        ts = next((v for v in OOD_VARIANTS if item_id.startswith(v + "-")), "cv")
        pool = build_items(self.config) if ts == "cv" else build_ood_items(self.config, ts)
        for it in pool:
            if it.id == item_id:
                return it
        raise KeyError(f"no image {item_id!r} in this experiment")

    def predict(self, item_id: str, methods: Sequence[str] | None = None) -> tuple[Item, dict[str, list[np.ndarray]]]:
        """(item, {method: contours}) for one image, with the models that scored it (its
        fold's; fold 0's for OOD images). SAM2 methods only when SAM2 is available."""
        it = self.item(item_id)
        fold = it.fold if it.fold >= 0 else 0
        fd = next(f for f in self.folds if f["fold"] == fold)
        settings = replace(self.config.fallback_settings(), edge_offset_px=fd["offset_px"])
        methods = [m for m in (methods or self.config.methods) if m in self.config.methods and not self.unavailable(m)]
        cl = extract_classical_contours(it.image, settings, pixel_nm=it.pixel_nm)
        out: dict[str, list[np.ndarray]] = {}
        if "classical" in methods:
            out["classical"] = cl.contours
        if self.sam2_reason is not None:
            for m in methods:
                if m.startswith("hybrid"):
                    out[m] = HybridExtractor(None, settings, unavailable_reason=self.sam2_reason).extract(
                        it.image, classical=cl).contours
            return it, out
        sam2 = _Sam2(self.config, progress=False)
        for key in dict.fromkeys(MODEL_OF[m] for m in methods if m != "classical"):
            net = sam2.load(key, self.out / f"fold-{fold}")
            hr = HybridExtractor(sam2.predictor(net), settings,
                                 threshold=_thr(fd["thresholds"], key, self.config.default_threshold)
                                 ).extract(it.image, pixel_nm=it.pixel_nm, classical=cl)
            for m in methods:
                if m != "classical" and MODEL_OF[m] == key:
                    out[m] = hr.contours_of("sam2") if m.startswith("sam2") else hr.contours
        return it, out

    def metrics(self) -> dict:
        """Key numbers for metrics.json: mean |EPE| (nm) with CI per method and test set,
        the hybrid's fallback rate, thresholds, offsets and SAM2 availability."""
        out: dict[str, Any] = {"sam2_available": self.sam2_available, "sam2_reason": self.sam2_reason,
                               "n_images": len(self.method_rows("classical")) or None, "folds": self.config.folds,
                               "size_px": self.config.size, "seconds": self.seconds,
                               "edge_offset_px": [f["offset_px"] for f in self.folds],
                               "thresholds": [f["thresholds"] for f in self.folds], "tables": {}}
        for ts in self.test_sets:
            tab = self.table(ts, ("epe_mean_abs", "epe_mean", "iou"))
            out["tables"][ts] = {m: ({k: c for k, c in t.items()} if t is not None else
                                     f"unavailable: {self.unavailable(m)}") for m, t in tab.items()}
        return out


def run_experiment(config: ExperimentConfig | str = "cpu", out: str | Path | None = None, *,
                   progress: bool = True) -> ExperimentResult:
    """Run (or finish) the experiment (see the module docstring) into `out` (default
    `default_experiment_dir`). Stages whose results exist with the same key are reused."""
    from tqdm.auto import tqdm

    from semlab.io import write_json_atomic

    t0 = time.perf_counter()
    cfg = experiment_config(config) if isinstance(config, str) else config
    out = Path(out) if out is not None else default_experiment_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    sam2_reason = sam2_unavailable_reason(cfg.sam2_model, cfg.sam2_checkpoint) if cfg.sam2_methods else "not requested"
    write_json_atomic(out / "config.json", {"config": cfg.to_dict(), "sam2_reason": sam2_reason})
    items = build_items(cfg)
    reused: list[str] = []
    stats = _raw_stats(items, cfg.fallback_settings(), out, _key(cfg, sam2_reason, "raw"), progress)
    sam2 = _Sam2(cfg, progress) if sam2_reason is None else None
    folds, rows = [], []
    for k in tqdm(range(cfg.folds), desc="folds", disable=not progress):
        folder = out / f"fold-{k}"
        key = _key(cfg, sam2_reason, f"fold-{k}")
        doc = _read_stage(folder / "result.json", key)
        if doc is None or not (folder / "epe.npz").is_file():
            doc, epe = _run_fold(k, items, stats, cfg, folder, sam2, sam2_reason, progress)
            doc["key"] = key
            _write_epe(folder / "epe.npz", epe)
            write_json_atomic(folder / "result.json", doc, indent=None)  # last: marks the fold done
        else:
            reused.append(f"fold-{k}")
        rows += doc.pop("rows")
        folds.append(doc)
    ood: dict[str, dict] = {}
    cache: dict[str, Any] = {}
    fold0 = folds[0]
    settings0 = replace(cfg.fallback_settings(), edge_offset_px=fold0["offset_px"])
    for variant in tqdm(cfg.ood_variants, desc="OOD sets", disable=not progress):
        folder = out / "ood" / variant
        key = _key(cfg, sam2_reason, f"ood-{variant}")
        doc = _read_stage(folder / "result.json", key)
        if doc is None or not (folder / "epe.npz").is_file():
            t1 = time.perf_counter()
            its = build_ood_items(cfg, variant)
            if sam2 is not None:
                for mk in _needed_models(cfg):
                    if mk not in cache:
                        cache[mk] = sam2.load(mk, out / "fold-0")
            vrows, epe, recs = _evaluate(its, settings0, cfg, sam2, cache, fold0["thresholds"], sam2_reason,
                                         progress, f"OOD {variant}")
            doc = {"key": key, "variant": variant, "n": len(its), "rows": vrows, "structures": recs,
                   "params": {it.id: {k: it.params.get(k) for k in ("dose", "psf_sigma_nm", "detector_sigma",
                                                                      "pitch_nm", "pixel_nm")} for it in its},
                   "seconds": round(time.perf_counter() - t1, 2)}
            _write_epe(folder / "epe.npz", epe)
            write_json_atomic(folder / "result.json", doc, indent=None)
        else:
            reused.append(f"ood-{variant}")
        rows += doc.pop("rows")
        ood[variant] = doc
    return ExperimentResult(cfg, out, rows, folds, ood, sam2_reason, reused, round(time.perf_counter() - t0, 2))


# ----------------------------------------------------------------------- real images


@dataclass
class RealLines:
    """Line-width and LER statistics of real line/space images, per tile and per line,
    and one example tile per image with its contours for display."""

    folder: Path | None
    rows: list[dict]  # per tile: image, row, col, pixel_nm, unit, cd, lwr, ler, n_lines, n_structures, fallback...
    lines: list[dict]  # per line: image, tile, cd, lwr, ler_left, ler_right (in `unit` of the tile)
    examples: list[dict]  # per image: name, image (tile), contours, unit, pixel_nm
    reason: str | None = None  # why there is nothing (missing folder), else None
    hybrid: dict | None = None  # the extractor's describe()

    @property
    def available(self) -> bool:
        return bool(self.rows)

    def per_image(self) -> list[dict]:
        """Mean CD, LWR and LER per image over its lines (and their spread)."""
        out = []
        for name in dict.fromkeys(r["image"] for r in self.rows):
            ln = [x for x in self.lines if x["image"] == name]
            cd = np.array([x["cd"] for x in ln])
            ler = np.array([v for x in ln for v in (x["ler_left"], x["ler_right"]) if np.isfinite(v)])
            lwr = np.array([x["lwr"] for x in ln if np.isfinite(x["lwr"])])
            tiles = [r for r in self.rows if r["image"] == name]
            out.append({"image": name, "unit": tiles[0]["unit"], "pixel_nm": tiles[0]["pixel_nm"], "tiles": len(tiles),
                        "n_lines": len(ln), "cd_mean": float(cd.mean()) if cd.size else float("nan"),
                        "cd_std": float(cd.std(ddof=1)) if cd.size > 1 else float("nan"),
                        "lwr_mean": float(lwr.mean()) if lwr.size else float("nan"),
                        "ler_mean": float(ler.mean()) if ler.size else float("nan"),
                        "ler_std": float(ler.std(ddof=1)) if ler.size > 1 else float("nan"),
                        "fallback_rate": float(np.mean([r["fallback_rate"] for r in tiles]))})
        return out

    def markdown(self, digits: int = 2) -> str:
        if not self.rows:
            return f"_No real line/space images: {self.reason}_"
        head = ("| image | pixel (nm) | tiles | lines | CD mean +- sd | LWR (3 sigma) | LER (3 sigma) mean +- sd "
                "| fallback rate |")
        lines = [head, "|---|---|---|---|---|---|---|---|"]
        for r in self.per_image():
            u = r["unit"]
            px = f"{r['pixel_nm']:.3f}" if r["pixel_nm"] else "unknown"
            lines.append(f"| {r['image']} | {px} | {r['tiles']} | {r['n_lines']} | {r['cd_mean']:.{digits}f} +- "
                         f"{r['cd_std']:.{digits}f} {u} | {r['lwr_mean']:.{digits}f} {u} | "
                         f"{r['ler_mean']:.{digits}f} +- "
                         f"{r['ler_std']:.{digits}f} {u} | {r['fallback_rate']:.2f} |")
        return "\n".join(lines)


def measure_real_lines(folder: str | Path | None, *, tile: int = 512, tiles: int = 2,
                       extractor: HybridExtractor | None = None, crop_databar: str = "auto",
                       progress: bool = False) -> RealLines:
    """Contours and line statistics of real line/space SEM images (e.g. the DSA images
    of `../shared/data/real_sem/dsa_lines`).

    Each image is read (`semlab.io.read_image`, pixel size from its TIFF tags), its data
    bar cropped, and `tiles` tiles of `tile` px spread evenly over it are extracted with
    `extractor` (default: `HybridExtractor.from_weights(image_size=512)`: SAM2 zero-shot
    where confident when weights exist, else the fallback with the reason). On every
    tile `measure_cd` gives per line the mean width (CD), LWR and the LER of both edges,
    in nm when the pixel size is known. The classical edge offset is not calibrated for
    real images (no ground truth): CD carries the extractor's unknown edge bias, while
    LWR and LER (spreads) do not. A missing folder gives an empty result with the reason."""
    from tqdm.auto import tqdm

    from semlab.contours.metrics import measure_cd
    from semlab.data.sources import crop_databar as _crop, list_images, tile_image
    from semlab.io import read_image, read_image_meta

    if folder is None or not Path(folder).is_dir():
        return RealLines(Path(folder) if folder else None, [], [], [],
                         reason=f"folder not found: {folder}" if folder else "no folder given")
    ex = extractor if extractor is not None else HybridExtractor.from_weights(image_size=512)
    rows, lines, examples = [], [], []
    for path in tqdm(list_images(folder), desc="real images", disable=not progress):
        img = read_image(path)
        px = read_image_meta(path).get("pixel_size_nm")
        img, _ = _crop(img, crop_databar)
        t = min(int(tile), *img.shape)
        pieces = tile_image(img, t)
        pick = np.unique(np.linspace(0, len(pieces) - 1, max(1, int(tiles))).round().astype(int))
        unit = "nm" if px else "px"
        k = float(px) if px else 1.0
        for j, idx in enumerate(pick):
            r0, c0, crop = pieces[int(idx)]
            crop = np.ascontiguousarray(crop, np.float32)
            hr = ex.extract(crop, pixel_nm=px, source=f"{path.name} tile ({r0}, {c0})")
            cd = measure_cd(hr.contours, crop.shape)
            s = cd.summary()
            rows.append({"image": path.name, "row": int(r0), "col": int(c0), "pixel_nm": px, "unit": unit,
                         "cd": s["cd"] * k, "lwr": s["lwr"] * k, "ler": s["ler"] * k, "n_lines": s["n_lines"],
                         "n_cuts": s["n_cuts"], "orientation": cd.orientation, "n_structures": len(hr.structures),
                         "fallback_rate": hr.fallback_rate, "n_sam2": hr.n_sam2})
            for ln in cd.per_line():
                lines.append({"image": path.name, "tile": j, **{q: (v * k if q in ("cd", "lwr", "ler_left", "ler_right",
                                                                                   "centre") else v)
                                                                  for q, v in ln.items()}})
            if j == 0:
                examples.append({"name": path.name, "image": crop, "contours": hr.contours, "unit": unit,
                                 "pixel_nm": px, "summary": hr.summary()})
    return RealLines(Path(folder), rows, lines, examples, None, ex.describe())
