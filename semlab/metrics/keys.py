"""The metric key names of every notebook's `metrics.json`, as constants that notebooks,
builders and tests share, and the map from the old key paths to the new keys.

Every `metrics.json` has one shape (`semlab.runs.metrics_doc`):
`{notebook, domain, set, n, metrics: {key: {value, ci_low, ci_high, n, unit}}, headline,
figure[, extra]}`. A key is flat: `<entity>.<metric>` for a number that belongs to a
model, method, class or image group (`pix2pix.psnr`, `hybrid.epe_mean_abs_nm`,
`pattern.iou`, `sim/ic-metal.noise_sigma`; `key(...)` joins the parts), or the metric
alone for a number of the whole notebook (`mean_iou`, `noise_sigma_ratio_sim_over_real`).
Non-metrics (paths, settings, the profile) live in `extra`; a metric that could not be
computed (missing weights, a missing model) is absent from `metrics` and named with its
reason in `extra["unavailable"]`.

Readers of old runs: `OLD_TO_NEW[notebook]` maps each old key path (nested keys joined
with ".") to its new key. `{name}` placeholders match any text and carry it over,
transformed: `{model}` by `model_key` ("Pix2Pix" -> "pix2pix", "simulator (physics
baseline)" -> "physics"), `{group}` by `group_key` (the " @ 3.52 nm/px" suffix of a
simulated group is dropped; the pixel size is in the metric's note), `{image}` by its file
stem; the others unchanged. New keys that start with `extra.` are the entries of `extra`.
`translate_old(notebook, old_doc)` applies the map: {new key: old value}.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any, Mapping

__all__ = [
    "key", "model_key", "group_key", "OLD_TO_NEW", "translate_old", "flatten_old", "UNAVAILABLE", "doc_problems",
    # 00
    "NOISE_SIGMA", "SPECTRAL_SLOPE", "NOISE_SIGMA_RATIO",
    # 10
    "EDGE_OFFSET", "N_OK", "N_EXCLUDED", "MS_PER_IMAGE", "IOU", "MEAN_IOU", "MEAN_IOU_STRUCTURE",
    "FREQ_WEIGHTED_IOU", "OBJECT_PRECISION", "OBJECT_RECALL", "OBJECT_F1", "RADIUS_ERROR", "ORACLE",
    "N_TILES", "N_FRAMES", "N_DARK_POLARITY", "PATTERN_COVERAGE", "min_radius_entity",
    # 20, 21, 30
    "PIX2PIX", "CYCLEGAN", "PHYSICS", "UPPER_BOUND", "VS_NOISE_FREE", "PSNR", "SSIM", "MS_SSIM", "LPIPS",
    "FID", "KID", "FD_SEM", "KD_SEM", "SPECTRAL_DISTANCE", "PSNR_GAP", "SSIM_GAP", "STEP_S_BF16",
    "STEP_S_FP32", "TABLE_METRICS", "SAME_DISTRIBUTION",
    "MASK_MIOU", "MASK_EPE", "MASK_IOU", "SEGMENTER_CEILING", "DATASET_MASKS", "IDEALISED_MASKS",
    "REALISM_BALANCED_ACCURACY",
    # 40
    "DETECTOR_ACCURACY", "DETECTOR_BALANCED_ACCURACY", "DETECTOR_AUC", "SPECTRUM_ACCURACY", "N_PEAKS",
    "N_GRID_PEAKS", "HF_POWER_DB", "EDGE_ENRICHMENT",
    # 50
    "EPE_MEAN_ABS", "FALLBACK_RATE", "CD_MEAN", "CD_STD", "LWR_MEAN", "LER_MEAN", "LER_STD",
    # 60
    "DOWNSTREAM_MIOU", "SYNTHETIC_OVER_REAL", "MIX_BEATS_REAL_UP_TO_N", "CD_DIFF", "LER_DIFF", "DIAMETER_DIFF",
    "downstream_entity",
]

UNAVAILABLE = "unavailable"  # extra[UNAVAILABLE]: {key: why it has no value}

# ---------------------------------------------------------------- 00_explore_data
NOISE_SIGMA = "noise_sigma"  # per group "<real|sim>/<name>": median robust pixel-noise sigma (gray 0-1)
SPECTRAL_SLOPE = "spectral_slope"  # per group: log-log slope of the mean radial spectrum
NOISE_SIGMA_RATIO = "noise_sigma_ratio_sim_over_real"  # median sim sigma / median real sigma

# ---------------------------------------------------------------- 10_make_dataset
EDGE_OFFSET = "edge_offset_px"
N_OK = "n_ok"
N_EXCLUDED = "n_excluded"
MS_PER_IMAGE = "ms_per_image"
IOU = "iou"  # per class "<class>.iou"; per contour method "<method>.iou" (50)
MEAN_IOU = "mean_iou"
MEAN_IOU_STRUCTURE = "mean_iou_structure"
FREQ_WEIGHTED_IOU = "frequency_weighted_iou"
# objects scored one to one (semlab.metrics.objects): "<class>.object_f1", and for the objects
# of at least r px "<class>_r<r>px.object_f1" (`min_radius_entity`); the oracle ceiling of
# particles is "oracle.defect.iou" / "oracle.defect.object_recall"
OBJECT_PRECISION = "object_precision"
OBJECT_RECALL = "object_recall"
OBJECT_F1 = "object_f1"
RADIUS_ERROR = "radius_error_px"  # matched objects: equivalent radius, predicted minus true
ORACLE = "oracle"
N_TILES = "n_tiles"  # real domain: tiles and the frames they come from
N_FRAMES = "n_frames"
N_DARK_POLARITY = "n_dark_polarity"  # frames segmented as inverted (pattern = dark phase)
PATTERN_COVERAGE = "pattern_coverage"  # mean share of pattern pixels per mask


def min_radius_entity(cls: str, radius_px: float) -> str:
    """`min_radius_entity("defect", 3)` -> "defect_r3px": the objects of at least 3 px radius."""
    return f"{cls}_r{radius_px:g}px"

# ---------------------------------------------------------------- 20, 21, 30: translators
PIX2PIX = "pix2pix"
CYCLEGAN = "cyclegan"
PHYSICS = "physics"  # the simulator's image formation on the test masks
UPPER_BOUND = "upper_bound"  # the noise-free image against the noisy one
VS_NOISE_FREE = "vs_noise_free"  # suffix of a model scored against the noise-free image
PSNR = "psnr"
SSIM = "ssim"
MS_SSIM = "ms_ssim"
LPIPS = "lpips"
FID = "fid"
KID = "kid"
FD_SEM = "fd_sem"
KD_SEM = "kd_sem"
SPECTRAL_DISTANCE = "spectral_distance_db"
# mask fidelity (semlab.metrics.fidelity): the classical segmenter on the images vs the input masks
MASK_MIOU = "mask_miou"  # mean IoU over the structure classes present
MASK_EPE = "mask_epe_nm"  # symmetric mean edge distance, nm
MASK_IOU = "mask_iou"  # per class: "<entity>.<class>_mask_iou"
SEGMENTER_CEILING = "segmenter_ceiling"  # the same segmenter on the target images
DATASET_MASKS = "dataset_masks"  # the idealised-mask experiment's arms
IDEALISED_MASKS = "idealised_masks"
REALISM_BALANCED_ACCURACY = "realism_balanced_accuracy"  # semlab.realism stats detector vs the target images
TABLE_METRICS = (PSNR, SSIM, MS_SSIM, LPIPS, FID, KID, FD_SEM, KD_SEM, SPECTRAL_DISTANCE, MASK_MIOU, MASK_EPE)
PSNR_GAP = "psnr_gap_db"  # upper bound minus model
SSIM_GAP = "ssim_gap"
STEP_S_BF16 = "step_s_bf16"
STEP_S_FP32 = "step_s_fp32"
SAME_DISTRIBUTION = "same_distribution"  # "same_distribution.n<n>.fd_sem": the FD bias at n images

# ---------------------------------------------------------------- 40_real_vs_fake
DETECTOR_ACCURACY = "detector_accuracy"
DETECTOR_BALANCED_ACCURACY = "detector_balanced_accuracy"
DETECTOR_AUC = "detector_auc"
SPECTRUM_ACCURACY = "spectrum_accuracy"
N_PEAKS = "n_peaks"
N_GRID_PEAKS = "n_grid_peaks"
HF_POWER_DB = "hf_power_db"
EDGE_ENRICHMENT = "edge_enrichment"

# ---------------------------------------------------------------- 50_segsem_contours
EPE_MEAN_ABS = "epe_mean_abs_nm"  # "<method>.epe_mean_abs_nm" (cv), "<test set>.<method>.epe_mean_abs_nm" (OOD)
FALLBACK_RATE = "fallback_rate"
CD_MEAN = "cd_mean"  # "real/<image>.cd_mean" ...
CD_STD = "cd_std"
LWR_MEAN = "lwr_mean"
LER_MEAN = "ler_mean"
LER_STD = "ler_std"

# ---------------------------------------------------------------- 60_downstream
# per training set "<entity>.miou" (`downstream_entity`: "real", "real_n10", "preset_line-space", ...;
# real domain: agreement with reference masks), "<class>.iou" as in 10; the summary without entity
DOWNSTREAM_MIOU = "miou"
SYNTHETIC_OVER_REAL = "synthetic_over_real"  # best synthetic-only mIoU / real-only (all tiles) mIoU
MIX_BEATS_REAL_UP_TO_N = "mix_beats_real_up_to_n"  # largest N where real N + synthetic beats real N (CIs apart)
CD_DIFF = "cd_diff_nm"  # "<entity>.cd_diff_nm": CD from the predicted masks minus the classical measurement
LER_DIFF = "ler_diff_nm"
DIAMETER_DIFF = "diameter_diff_nm"


def downstream_entity(spec: str) -> str:
    """The key entity of a training-set spec: "real:10+preset:line-space" -> "real_n10+preset_line-space"."""
    s = re.sub(r"real:(\d+)", r"real_n\1", spec)
    return re.sub(r"[^A-Za-z0-9_+\-]+", "_", s).strip("_") or "train"


def key(*parts: Any) -> str:
    """`key("pix2pix", PSNR)` -> "pix2pix.psnr"."""
    return ".".join(str(p) for p in parts)


_MODEL_KEYS = {"Pix2Pix": PIX2PIX, "CycleGAN": CYCLEGAN, "simulator (physics baseline)": PHYSICS,
               "noise-free image (upper bound)": UPPER_BOUND}


def model_key(name: str) -> str:
    """The key of a model's display name: "Pix2Pix" -> "pix2pix", "simulator (physics
    baseline)" -> "physics", "Pix2Pix resize-conv" -> "pix2pix_resize-conv"."""
    return _MODEL_KEYS.get(name) or (re.sub(r"[^a-z0-9_-]+", "_", name.lower()).strip("_") or "model")


def group_key(name: str) -> str:
    """The key of an image group of notebook 00: "sim/line-space @ 3.52 nm/px" -> "sim/line-space"."""
    return name.split(" @ ")[0]


_EXTRA = {k: f"extra.{k}" for k in ("profile", "size_px", "real_available")}



def _with_ci(old: str, new: str) -> dict[str, str]:
    """Notebook 40's old `<old>`, `<old>_lo`, `<old>_hi` -> `<new>` and its CI bounds."""
    return {old: new, f"{old}_lo": f"{new}:ci_low", f"{old}_hi": f"{new}:ci_high"}


OLD_TO_NEW: dict[str, dict[str, str]] = {
    "00_explore_data": {
        **_EXTRA,
        "noise_sigma.{group}": "{group}.noise_sigma",
        "spectral_slope.{group}": "{group}.spectral_slope",
        "noise_sigma_ratio_sim_over_real": NOISE_SIGMA_RATIO,
    },
    "10_make_dataset": {
        "profile": "extra.profile", "source": "extra.source", "output": "extra.output",
        "backend_requested": "extra.backend_requested", "backend_used": "extra.backend_used",
        "fallback_reason": "extra.fallback_reason",
        "edge_offset_px": EDGE_OFFSET, "n_ok": N_OK, "n_excluded": N_EXCLUDED, "ms_per_image": MS_PER_IMAGE,
        "iou_{cls}": "{cls}.iou", "mean_iou": MEAN_IOU, "mean_iou_structure": MEAN_IOU_STRUCTURE,
        "frequency_weighted_iou": FREQ_WEIGHTED_IOU, "n": "n",
    },
    "20_train_pix2pix": {
        "profile": "extra.profile", "steps": "extra.steps", "precision": "extra.precision",
        "batch_size": "extra.batch_size", "epochs": "extra.epochs", "n_test": "n",
        "psnr": "pix2pix.psnr", "ssim": "pix2pix.ssim", "psnr_upper_bound": "upper_bound.psnr",
        "ssim_upper_bound": "upper_bound.ssim", "psnr_gap_db": PSNR_GAP, "ssim_gap": SSIM_GAP,
        "step_s_bf16": STEP_S_BF16, "step_s_fp32": STEP_S_FP32,
    },
    "21_train_cyclegan": {
        "profile": "extra.profile", "steps": "extra.steps", "precision": "extra.precision",
        "psnr": "cyclegan.psnr", "ssim": "cyclegan.ssim", "psnr_upper_bound": "upper_bound.psnr",
    },
    "30_metric_tables": {
        "profile": "extra.profile", "n_test": "n", "models": "extra.models", "missing_models": "extra.missing_models",
        "sem_encoder_sha256": "extra.sem_encoder_sha256", "sem_encoder": "extra.sem_encoder",
        "{model}/{metric}": "{model}.{metric}",
        "fd_sem_same_distribution_by_n.{n}": "same_distribution.n{n}.fd_sem",
    },
    "40_real_vs_fake": {
        "profile": "extra.profile", "seconds": "extra.seconds", "n_pairs": "n", "splits": "extra.splits",
        "missing": "extra.missing", "missing.{name}": "extra.missing.{name}",
        **_with_ci("models.{model}.accuracy", "{model}.detector_accuracy"),
        **_with_ci("models.{model}.auc", "{model}.detector_auc"),
        **_with_ci("models.{model}.spectrum_accuracy", "{model}.spectrum_accuracy"),
        "models.{model}.n_peaks": "{model}.n_peaks",
        "models.{model}.n_grid_peaks": "{model}.n_grid_peaks",
        **_with_ci("models.{model}.hf_db", "{model}.hf_power_db"),
        **_with_ci("models.{model}.edge_enrichment", "{model}.edge_enrichment"),
    },
    "50_segsem_contours": {
        "profile": "extra.profile", "size_px": "extra.size_px", "n_images": "n", "folds": "extra.folds",
        "sam2_available": "extra.sam2_available", "sam2_reason": "extra.sam2_reason",
        "epe_mean_abs_nm.{method}.mean": "{method}.epe_mean_abs_nm",
        "epe_mean_abs_nm.{method}.ci_low": "{method}.epe_mean_abs_nm:ci_low",
        "epe_mean_abs_nm.{method}.ci_high": "{method}.epe_mean_abs_nm:ci_high",
        "epe_mean_abs_nm.{method}.n": "{method}.epe_mean_abs_nm:n",
        "epe_mean_abs_nm.{method}": "extra.unavailable.{method}.epe_mean_abs_nm",
        "iou.{method}": "{method}.iou",
        "hybrid_fallback_rate": "hybrid.fallback_rate",
        "ood_epe_mean_abs_nm.{ts}.{method}": "{ts}.{method}.epe_mean_abs_nm",
        "threshold_sweep.available": "extra.threshold_sweep.available",
        "threshold_sweep.calibrated": "extra.threshold_sweep.calibrated",
        "experiment_seconds": "extra.experiment_seconds", "real_available": "extra.real_available",
        **{f"real.{{image}}.{fact}": f"extra.real.{{image}}.{fact}" for fact in ("pixel_nm", "tiles", "n_lines", "unit")},
        "real.{image}.{stat}": "real/{image}.{stat}",
    },
}
"""Old key path -> new key. A new key ending in `:ci_low`, `:ci_high` or `:n` names that
field of the metric (the old file kept a CI bound as a key of its own); `extra.<path>` an
entry of `extra`."""

_TRANSFORM = {"model": model_key, "group": group_key, "image": lambda s: PurePath(s).stem}


def flatten_old(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """An old metrics.json as {dotted path: leaf}. Dicts are walked; a list of dicts with
    an "image" name (notebook 50's `real`) is walked by that name; other lists are leaves."""
    out: dict[str, Any] = {}
    for k, v in doc.items():
        path = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten_old(v, path + "."))
        elif isinstance(v, list) and v and all(isinstance(x, Mapping) and "image" in x for x in v):
            for x in v:
                out.update(flatten_old({kk: vv for kk, vv in x.items() if kk != "image"}, f"{path}.{x['image']}."))
        else:
            out[path] = v
    return out


def _pattern(old: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", old)
    # names (groups, images, models) may hold dots; metric, class, method and test-set names do not
    rx = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>{'.+?' if p in _TRANSFORM or p == 'name' else '[^.]+'})"
                 for i, p in enumerate(parts))
    return re.compile(f"^{rx}$")


def translate_old(notebook: str, old_doc: Mapping[str, Any]) -> dict[str, Any]:
    """{new key: old value} for an old `metrics.json` of `notebook`, through `OLD_TO_NEW`
    (exact keys first, then patterns in their order). Old paths the map does not know are
    returned under "?<old path>"."""
    if notebook not in OLD_TO_NEW:
        raise KeyError(f"no old-key map for notebook {notebook!r}; known: {', '.join(OLD_TO_NEW)}")
    table = OLD_TO_NEW[notebook]
    exact = {k: v for k, v in table.items() if "{" not in k}
    patterns = [(_pattern(k), v) for k, v in table.items() if "{" in k]
    out: dict[str, Any] = {}
    for path, value in flatten_old(old_doc).items():
        if path in exact:
            out[exact[path]] = value
            continue
        for rx, new in patterns:
            m = rx.match(path)
            if m:
                out[new.format(**{n: _TRANSFORM.get(n, str)(s) for n, s in m.groupdict().items()})] = value
                break
        else:
            out[f"?{path}"] = value
    return out


def doc_problems(doc: Mapping[str, Any]) -> list[str]:
    """What is wrong with a metrics.json doc (empty when nothing): the shape of
    `semlab.runs.metrics_doc`, n > 0, every value finite, every CI a finite interval that
    contains its value, every metric's n > 0, a headline of 1-4 keys among the metrics,
    and keys of the `<entity>.<metric>` form without spaces."""
    import math

    out = []
    for k in ("notebook", "domain", "set", "n", "metrics", "headline", "figure"):
        if k not in doc:
            out.append(f"no {k!r}")
    if out:
        return out
    if not (isinstance(doc["n"], int) and doc["n"] > 0):
        out.append(f"n must be a positive int, got {doc['n']!r}")
    if not doc["metrics"]:
        out.append("no metrics")
    for k, m in doc["metrics"].items():
        if not re.fullmatch(r"[^\s]+", k):
            out.append(f"{k!r}: a key holds no spaces")
        v, lo, hi, n = m.get("value"), m.get("ci_low"), m.get("ci_high"), m.get("n")
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            out.append(f"{k}: value {v!r} is not a finite number")
            continue
        if (lo is None) != (hi is None):
            out.append(f"{k}: only one CI bound")
        elif lo is not None and not (math.isfinite(lo) and math.isfinite(hi) and lo <= v <= hi):
            out.append(f"{k}: CI [{lo}, {hi}] does not bracket {v}")
        if n is not None and not n > 0:
            out.append(f"{k}: n = {n}")
    if not 1 <= len(doc["headline"]) <= 4 or any(h not in doc["metrics"] for h in doc["headline"]):
        out.append(f"headline {doc['headline']} must be 1-4 keys among the metrics")
    return out
