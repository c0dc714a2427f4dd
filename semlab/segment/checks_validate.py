"""Validation of the label-free checks (`semlab.segment.checks`) on simulated truth, and
`semlab checks` (`semlab.segment.checks_cli`): the validation plus the real-frame table
of the kept checks.

A check is trusted only if it tracks the true quality of masks. On simulated frames
with exact truth (`VALIDATION_PRESETS`: line-space and contacts at the pixel sizes of
the real cdsem-lines and cdsem-contacts frames, particles and ic-metal at their
presets' own), every frame is segmented with each of `SETTINGS`, which span good to
bad on purpose: the new and old defaults, blurred global Otsu thresholds (blur 1, 2
and 4 px) and ones shifted by +-0.1 and +-0.2 of the frame's 5-95 % range, edge
offsets of +-1, 2 and 3 px, the Li, multi-Otsu and Sauvola thresholds, no denoising,
Gaussian denoising of 1, 3 and 5 px, and openings of 2 and 4 px. For each (setting,
frame) pair the check's value and the true IoU are recorded; the check's Spearman rank
correlation (`scipy.stats.spearmanr`) of -check with the IoU over all pairs is its
rho, with a percentile bootstrap CI over frames (the frames are resampled, each with
all its settings). `fraction_variation`, a set-level check, is one value per setting
(over the frames), so its rho is over the settings' means.

The true IoU is the mean of the pattern's and the rest's IoU (pattern plus defects vs
everything else): the checks judge the geometry of the bright structure, and a binary
baseline (Otsu) has no hole class. The mean structure IoU over background, pattern and
hole, which also scores labelling, is recorded too (`structure_iou`).

**The rule** (`kept_checks`): a check is kept for a kind of real frame (lines:
validated on line-space; contacts: on contacts) if its rho >= `KEEP_RHO` (0.5) on that
preset for every seed validated. Particles and ic-metal have no real set here; their
rhos are reported for the checks that apply to any frame.
"""

from __future__ import annotations

import time

import numpy as np

from semlab.segment.checks import KEEP_RHO, SET_CHECKS, frame_check_names, frame_checks, pattern_of, segment_with

__all__ = ["SETTINGS", "SMALL_SETTINGS", "VALIDATION_PRESETS", "KIND_PRESET", "binary_iou", "validate",
           "validate_seeds", "kept_checks", "validation_markdown", "summary_rows", "floors"]

# preset -> (frame kind, size px, pixel size nm or None for the preset's own)
VALIDATION_PRESETS: dict[str, tuple[str, int, float | None]] = {
    "line-space": ("lines", 128, 0.8268229),  # cdsem-lines
    "contacts": ("contacts", 192, 0.9009),  # cdsem-contacts
    "particles": ("any", 128, None),
    "ic-metal": ("any", 128, None),
}
KIND_PRESET = {"lines": "line-space", "contacts": "contacts"}

SETTINGS: dict[str, object] = {
    "new defaults": "new defaults",
    "old defaults": "old defaults",
    "blurred otsu": "blurred otsu",
    "otsu, blur 1 px": {"global_sigma": 1.0},
    "otsu, blur 4 px": {"global_sigma": 4.0},
    "threshold +0.1": {"global_sigma": 1.0, "global_shift": 0.1},
    "threshold -0.1": {"global_sigma": 1.0, "global_shift": -0.1},
    "threshold +0.2": {"global_sigma": 1.0, "global_shift": 0.2},
    "threshold -0.2": {"global_sigma": 1.0, "global_shift": -0.2},
    "edge offset +1 px": {"edge_offset_px": 1.0},
    "edge offset -1 px": {"edge_offset_px": -1.0},
    "edge offset +2 px": {"edge_offset_px": 2.0},
    "edge offset -2 px": {"edge_offset_px": -2.0},
    "edge offset +3 px": {"edge_offset_px": 3.0},
    "edge offset -3 px": {"edge_offset_px": -3.0},
    "li threshold": {"threshold": "li"},
    "multi-otsu": {"threshold": "multiotsu"},
    "sauvola": {"threshold": "sauvola"},
    "no denoising": {"denoise": "none", "min_area_px": 2},
    "gaussian 1 px": {"denoise": "gaussian", "smooth_px": 1.0},
    "gaussian 3 px": {"denoise": "gaussian", "smooth_px": 3.0},
    "gaussian 5 px": {"denoise": "gaussian", "smooth_px": 5.0},
    "opening 2 px": {"open_px": 2},
    "opening 4 px": {"open_px": 4},
}
# a subset spanning the same range, for notebook 10 (time): on the frames of the full run (two seeds, 3 frames
# at offsets 0, 3, 6, 9) it kept exactly the checks the full validation keeps, in all 8 subsamples
SMALL_SETTINGS = {k: SETTINGS[k] for k in ("new defaults", "old defaults", "blurred otsu", "otsu, blur 1 px",
                                           "threshold +0.1", "threshold -0.1", "edge offset +1 px",
                                           "edge offset -1 px", "edge offset +2 px", "edge offset -3 px", "multi-otsu",
                                           "no denoising", "gaussian 3 px", "opening 2 px")}


def binary_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean of the IoU of the pattern (pattern plus defects) and of the rest."""
    p, t = pattern_of(pred), pattern_of(truth)
    ious = [(a & b).sum() / (a | b).sum() for a, b in ((p, t), (~p, ~t)) if (a | b).any()]
    return float(np.mean(ious))


def structure_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean IoU over the structure classes (background, pattern, hole) of the truth."""
    from semlab import labels

    ious = []
    for c in (labels.BACKGROUND, labels.PATTERN, labels.HOLE):
        t, p = truth == c, pred == c
        if t.any():
            ious.append((t & p).sum() / (t | p).sum())
    return float(np.mean(ious))


def _spearman(x, y) -> float:
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(spearmanr(x[ok], y[ok])[0])


def _set_level(rows: list[dict], images, settings) -> tuple[np.ndarray, np.ndarray]:
    """(-fraction_variation, mean IoU) per setting over the frames `images` (repeats allowed)."""
    from semlab.segment.checks import fraction_variation

    by = {(r["setting"], r["image"]): r for r in rows}
    fv, iou = [], []
    for s in settings:
        sel = [by[(s, i)] for i in images if (s, i) in by]
        fv.append(-fraction_variation(r["pattern_fraction"] for r in sel))
        iou.append(np.mean([r["iou"] for r in sel]))
    return np.array(fv), np.array(iou)


def _rho_with_ci(rows: list[dict], check: str, n_images: int, n_boot: int, seed: int, level: float = 0.95) -> dict:
    """Spearman rho of -check with IoU over all (setting, image) pairs (or, for a set-level
    check, over the settings), and its percentile bootstrap CI over images."""
    rng = np.random.default_rng((seed, 7919))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    if check in SET_CHECKS:
        def stat(images):
            return _spearman(*_set_level(rows, images, settings))
    else:
        x = np.array([-r.get(check, np.nan) for r in rows], float)
        y = np.array([r["iou"] for r in rows], float)
        img = np.array([r["image"] for r in rows])
        where = [np.flatnonzero(img == i) for i in range(n_images)]

        def stat(images):
            idx = np.concatenate([where[i] for i in images])
            return _spearman(x[idx], y[idx])
    rho = stat(range(n_images))
    boots = np.array([stat(rng.integers(0, n_images, n_images)) for _ in range(n_boot)])
    boots = boots[np.isfinite(boots)]
    lo, hi = (np.quantile(boots, [(1 - level) / 2, (1 + level) / 2]) if len(boots) >= 20
              else (float("nan"), float("nan")))
    n_pairs = len(settings) if check in SET_CHECKS else int(sum(np.isfinite(r.get(check, np.nan)) for r in rows))
    return {"rho": rho, "ci": [float(lo), float(hi)], "n_images": n_images, "n_pairs": n_pairs,
            "n_settings": len(settings)}


def validate(presets=tuple(VALIDATION_PRESETS), *, n_images: int = 12, seed: int = 0, settings: dict | None = None,
             n_boot: int = 500, progress: bool = True, size: int | None = None) -> dict:
    """Validate every check of each preset's frame kind on `n_images` simulated frames
    (seeds `(seed, i)`) segmented with each of `settings` (default `SETTINGS`); see the
    module doc. `size` overrides the presets' sizes (pixel sizes stay)."""
    from tqdm.auto import tqdm

    from semlab.data.simulate import simulate

    settings = SETTINGS if settings is None else settings
    unknown = [p for p in presets if p not in VALIDATION_PRESETS]
    if unknown:
        raise KeyError(f"no check validation for preset(s) {', '.join(unknown)}; valid: {', '.join(VALIDATION_PRESETS)}")
    if n_images < 2:
        raise ValueError(f"n_images must be >= 2 (a bootstrap over frames), got {n_images}")
    t0 = time.perf_counter()
    rows: list[dict] = []
    rho: dict[str, dict] = {}
    truth_means: dict[str, dict] = {}
    for preset in presets:
        kind, px_size, pixel_nm = VALIDATION_PRESETS[preset]
        px_size = size or px_size
        prow, truth = [], []
        for i in tqdm(range(n_images), desc=f"validate checks ({preset}, seed {seed})", disable=not progress,
                      unit="frame"):
            r = simulate(preset, px_size, (seed, i), pixel_nm=pixel_nm)
            truth.append(frame_checks(r.image, r.mask, kind))  # the floor: the true mask's own values
            for name, st in settings.items():
                m = segment_with(r.image, st, source=f"{preset}#{i}")
                prow.append({"preset": preset, "kind": kind, "setting": name, "image": i,
                             "iou": binary_iou(m, r.mask), "structure_iou": structure_iou(m, r.mask),
                             **frame_checks(r.image, m, kind)})
        rows += prow
        truth_means[preset] = {c: float(np.nanmean([t[c] for t in truth])) if any(np.isfinite(t[c]) for t in truth)
                               else float("nan") for c in frame_check_names(kind)}
        for c in frame_check_names(kind) + SET_CHECKS:
            rho[f"{c}@{preset}"] = {"check": c, "preset": preset, "kind": kind, "seed": seed,
                                    **_rho_with_ci(prow, c, n_images, n_boot, seed)}
            rho[f"{c}@{preset}"]["rho_structure_iou"] = (
                _spearman([-r[c] for r in prow], [r["structure_iou"] for r in prow]) if c not in SET_CHECKS else None)
    return {"domain": "simulated", "seed": seed, "n_images": n_images, "n_settings": len(settings),
            "settings": list(settings), "presets": {p: dict(zip(("kind", "size", "pixel_nm"), VALIDATION_PRESETS[p]))
                                                    for p in presets},
            "rows": rows, "rho": rho, "truth": truth_means, "keep_rho": KEEP_RHO, "seconds": round(time.perf_counter() - t0, 1)}


def kept_checks(runs: list[dict]) -> dict[str, list[str]]:
    """The rule: per real frame kind, the checks whose rho >= `KEEP_RHO` on the kind's
    preset (`KIND_PRESET`) in every run (seed) that validated them."""
    kept = {}
    for kind, preset in KIND_PRESET.items():
        ok = []
        for c in frame_check_names(kind) + SET_CHECKS:
            vals = [r["rho"][f"{c}@{preset}"]["rho"] for r in runs if f"{c}@{preset}" in r["rho"]]
            if vals and all(np.isfinite(v) and v >= KEEP_RHO for v in vals):
                ok.append(c)
        kept[kind] = ok
    return kept


def validate_seeds(seeds=(0, 1), **kw) -> dict:
    """`validate` once per seed, and the checks kept by the rule over all of them."""
    runs = [validate(seed=s, **kw) for s in seeds]
    return {"runs": runs, "kept": kept_checks(runs), "keep_rho": KEEP_RHO, "seeds": list(seeds)}


def floors(v: dict) -> dict[str, dict[str, float]]:
    """Per real frame kind, each check's value for the true masks of its preset (mean over
    the seeds' runs): differences below it are not resolved by the check."""
    out = {}
    for kind, preset in KIND_PRESET.items():
        vals = [r["truth"][preset] for r in v["runs"] if preset in r.get("truth", {})]
        if vals:
            out[kind] = {c: float(np.nanmean([t[c] for t in vals])) for c in vals[0]}
    return out


def validation_markdown(v: dict) -> str:
    """The rho table of `validate_seeds` as Markdown: one row per (check, preset), one
    column per seed."""
    runs = v["runs"]
    r0 = runs[0]
    seeds = [r["seed"] for r in runs]
    lines = [f"Validation on simulated truth: Spearman rho of -check with the true IoU (pattern vs rest) over "
             f"{r0['n_settings']} settings x {r0['n_images']} frames per preset, 95% bootstrap CI over frames; "
             f"kept for a real frame kind if rho >= {v['keep_rho']} on its preset for every seed "
             f"({', '.join(map(str, seeds))}).", "",
             "| check | simulated set (frame kind) | " + " | ".join(f"rho [CI], seed {s}" for s in seeds)
             + " | n pairs | kept for |", "|---|---|" + "---|" * len(seeds) + "---|---|"]
    for key, first in r0["rho"].items():
        cells = []
        for r in runs:
            e = r["rho"].get(key)
            cells.append("" if e is None else f"{e['rho']:.2f} [{e['ci'][0]:.2f}, {e['ci'][1]:.2f}]")
        kinds = [k for k, p in KIND_PRESET.items() if p == first["preset"] and first["check"] in v["kept"][k]]
        info = "" if first["preset"] in KIND_PRESET.values() else " (no real set)"
        lines.append(f"| {first['check']} | {first['preset']} ({first['kind']}){info} | " + " | ".join(cells)
                     + f" | {first['n_pairs']} | {', '.join(kinds) or '-'} |")
    lines += ["", "The true masks' own values (mean over the first seed's frames; a check cannot tell masks apart "
              "below this floor): " + "; ".join(f"{p}: " + ", ".join(f"{c} {x:.3f}" for c, x in t.items()
                                                                      if np.isfinite(x))
                                                for p, t in r0.get("truth", {}).items())]
    return "\n".join(lines)


def summary_rows(v: dict) -> list[dict]:
    """Per (preset, setting) of the first run: mean true IoU and mean of each check."""
    out = []
    r0 = v["runs"][0]
    for p in r0["presets"]:
        for s in r0["settings"]:
            sel = [r for r in r0["rows"] if r["preset"] == p and r["setting"] == s]
            d = {"preset": p, "setting": s, "iou": float(np.mean([r["iou"] for r in sel]))}
            for c in frame_check_names(sel[0]["kind"]):
                vals = [r[c] for r in sel if np.isfinite(r[c])]
                d[c] = float(np.mean(vals)) if vals else float("nan")
            out.append(d)
    return out
