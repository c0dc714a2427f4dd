"""Measure the classical segmenter on simulated data: the numbers quoted in issue notes.

Builds a simulated dataset (`semlab.data.datasets.simulate_dataset`), fits the edge
offset on the train split (`semlab.segment.evaluate.calibrate_on_dataset`), segments
every image (`semlab.segment.pipeline.segment_dataset`) and scores the test split
against the ground truth (`semlab.segment.evaluate.score_against_truth`). Prints the
per-class IoU table as Markdown and the whole result as JSON.

With `--ceiling` it also asks how far particle (defect) IoU could go at all: for each
true particle of the test split, the IoU of an *oracle* that knows where the particle
is and picks the single best threshold for it, on the noise-free image and on the
denoised noisy image, next to what the pipeline got, binned by particle radius, by
dose and by what the particle sits on. An oracle that is told the position and the
best threshold still has to find the extent from the image, so this bounds what any
threshold-based delineation can reach.

    .venv/bin/python tools/measure_segmentation.py --size 256 --n 1000 --seed 0 --ceiling
    .venv/bin/python tools/measure_segmentation.py --preset particles --size 256 --n 240
    .venv/bin/python tools/measure_segmentation.py --bench-defaults --size 512 --n 8

Object scores (issue 19's must-show list) are printed after the pixel table: `defect`
objects (all, and radius >= 3 px) and, on `particles` (particles as the pattern,
`particles_settings`, debris as defects), `pattern` objects, each with a per-size
table and CIs over images. `--bench-defaults` times the old defaults (ALGORITHM_VERSION
2) against the new ones in one process, alternating, and names the CPU.

Particle sizes are given physically (`--particle-radius-nm`, the range one looks for)
and turned into pixels with the dataset's pixel size
(`semlab.segment.classical.particle_settings`); `--particle-radius-nm none` keeps
the segmenter's pixel defaults. Everything is written under `--out` (default
/tmp/semlab-measure), never into the repository; reruns reuse finished folders. The
segmented folder's identity is the settings, not the code: after changing the
segmenter's code, delete `<out>/*-seg-classical-*` (or use another `--out`), or the
old masks are scored again.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from semlab import io, labels
from semlab.data.datasets import load_dataset, simulate_dataset
from semlab.metrics.objects import detection_scores, size_table
from semlab.segment.canonical import CanonicalRules
from semlab.segment.classical import particle_settings, particles_settings
from semlab.segment.evaluate import calibrate_on_dataset, object_matches, score_against_truth
from semlab.segment.pipeline import make_segmenter, segment_dataset

RADIUS_BINS_PX = (0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, math.inf)
PARTICLES_DEFECT_ABOVE_PATTERN = 0.3  # particles preset: debris must be this x gap above the particles


def _parse_radius(text: str) -> tuple[float, float] | None:
    if text.lower() == "none":
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--particle-radius-nm wants 'lo,hi' in nm or 'none', got {text!r}") from None
    return lo, hi


def class_iou_ci(seg_root, truth_root, split: str = "test", n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> dict:
    """Percentile-bootstrap confidence intervals of the per-class IoU (aggregated over
    all pixels, as `score_against_truth`) and of the mean over the classes present,
    resampling whole images: with a few dozen particles in a test split the defect IoU
    moves a lot with which images happen to be in it."""
    seg, truth = load_dataset(seg_root), load_dataset(truth_root)
    ids = [i for i in truth.split(split) if i in set(seg.ids)]
    k = labels.NUM_CLASSES
    inter = np.zeros((len(ids), k))
    union = np.zeros((len(ids), k))
    freq = np.zeros(k)
    for n, i in enumerate(ids):
        p, t = seg.mask(i), truth.mask(i)
        for c in range(k):
            a, b = p == c, t == c
            inter[n, c], union[n, c] = (a & b).sum(), (a | b).sum()
            freq[c] += b.sum()
    if not ids:
        return {}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ids), size=(n_boot, len(ids)))
    ib, ub = inter[idx].sum(1), union[idx].sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = ib / ub
    present = freq > 0
    q = ((1 - level) / 2, 1 - (1 - level) / 2)
    out = {}
    for c in labels.CLASSES:
        if present[c.id]:
            lo, hi = np.nanquantile(iou[:, c.id], q)
            out[c.name] = (float(lo), float(hi))
    lo, hi = np.nanquantile(np.nanmean(iou[:, present], axis=1), q)
    out["mean_iou"] = (float(lo), float(hi))
    return out


def _exact_best(img, truth, window, core):
    """The oracle's region over every level present in the window (semlab's function, exact)."""
    from semlab.segment.evaluate import best_threshold_region

    return best_threshold_region(img, truth, window, core, levels=None)


def particle_ceiling(truth_root, seg_root, segmenter, split: str = "test", progress: bool = True) -> dict:
    """Per-particle comparison of the pipeline with two oracles (see the module
    docstring), aggregated overall and by radius (px), dose and underlying class.

    For each true particle (a connected component of the defect class) the window is
    the disc of radius r + 4 px around its centroid (r: its equivalent radius). The
    pipeline's predicted defect pixels inside that window are its prediction (false
    positives elsewhere are not counted here: `score_against_truth` counts them)."""
    from tqdm.auto import tqdm

    truth, seg = load_dataset(truth_root), load_dataset(seg_root)
    ids = [i for i in truth.split(split) if i in set(seg.ids)]
    rows = []
    for i in tqdm(ids, desc="particle ceiling", disable=not progress, unit="img"):
        t = truth.mask(i)
        comp, n = ndi.label(t == labels.DEFECT)
        if n == 0:
            continue
        pred = seg.mask(i) == labels.DEFECT
        clean = truth.clean(i)
        den = segmenter.prepare(truth.image(i))
        dose = float(truth.params(i).get("dose") or float("nan"))
        h, w = t.shape
        yy, xx = np.mgrid[:h, :w]
        for j in range(1, n + 1):
            tj = comp == j
            area = int(tj.sum())
            r = math.sqrt(area / math.pi)
            cy, cx = (float(v) for v in np.argwhere(tj).mean(0))
            rho = np.hypot(yy - cy, xx - cx)
            window = rho <= r + 4
            core = tj & (rho <= max(1.0, 0.5 * r))
            if not core.any():
                core = tj
            ring = (rho > r + 2) & (rho <= r + 4) & (t != labels.DEFECT)
            on = "pattern" if ring.any() and (t[ring] == labels.PATTERN).mean() >= 0.5 else "background"
            pw = pred & window
            oc = _exact_best(clean, tj, window, core) if clean is not None else (0, 0)
            od = _exact_best(den, tj, window, core)
            rows.append({"id": i, "area_px": area, "radius_px": r, "dose": dose, "on": on,
                         "found": bool((pw & tj).any()),
                         "pipeline": (int((pw & tj).sum()), int((pw | tj).sum())),
                         "oracle_clean": oc, "oracle_denoised": od})

    def agg(sel: list[dict]) -> dict:
        out = {"particles": len(sel), "true_px": int(sum(r["area_px"] for r in sel)),
               "recall": (float(np.mean([r["found"] for r in sel])) if sel else float("nan"))}
        for key in ("pipeline", "oracle_denoised", "oracle_clean"):
            i = sum(r[key][0] for r in sel)
            u = sum(r[key][1] for r in sel)
            out[key + "_iou"] = float(i / u) if u else float("nan")
        return out

    by_radius = {}
    for lo, hi in zip(RADIUS_BINS_PX[:-1], RADIUS_BINS_PX[1:]):
        sel = [r for r in rows if lo <= r["radius_px"] < hi]
        if sel:
            by_radius[f"{lo:g}-{hi:g} px"] = agg(sel)
    doses = np.array([r["dose"] for r in rows if np.isfinite(r["dose"])])
    by_dose = {}
    if len(doses) >= 3:
        edges = np.quantile(doses, [0, 1 / 3, 2 / 3, 1])
        for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
            sel = [r for r in rows if lo <= r["dose"] <= hi and (k == 2 or r["dose"] < hi)]
            by_dose[f"{lo:.0f}-{hi:.0f} e/px"] = agg(sel)
    by_on = {k: agg(sel) for k in ("background", "pattern") if (sel := [r for r in rows if r["on"] == k])}
    return {"split": split, "all": agg(rows), "by_radius": by_radius, "by_dose": by_dose, "by_underlying": by_on}


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else f"{v:.3f}"
    return str(v)


def markdown_tables(result: dict) -> str:
    """The per-class table (and the ceiling tables, if measured) as Markdown."""
    sc = result["score"]
    lines = [f"**{result['preset']} {result['size']} px, {sc['split']} split, n={sc['n']}** "
             f"(classical; edge offset {result['edge_offset_px']:g} px fitted on "
             f"{result['calibrate_n']} train images; seed {result['seed']})", "",
             "| class | IoU | 95% CI (images resampled) | share of true pixels |", "|---|---|---|---|"]
    ci = result.get("ci", {})

    def cis(name):
        return f"{ci[name][0]:.3f}-{ci[name][1]:.3f}" if name in ci else ""
    for name, v in sc["per_class"].items():
        if sc["true_pixel_fraction"].get(name, 0) > 0 or math.isfinite(v):
            lines.append(f"| {name} | {_fmt(v)} | {cis(name)} | {sc['true_pixel_fraction'][name]:.5f} |")
    lines += [f"| **mean over present classes** | **{_fmt(sc['mean_iou'])}** | {cis('mean_iou')} | |",
              f"| mean over structure classes | {_fmt(sc['mean_iou_structure'])} | | |"]
    ceil = result.get("ceiling")
    if ceil:
        head = ["| particles | n | true px | found | pipeline IoU | oracle IoU (denoised) | oracle IoU (noise-free) |",
                "|---|---|---|---|---|---|---|"]

        def row(name, a):
            return (f"| {name} | {a['particles']} | {a['true_px']} | {_fmt(a['recall'])} | {_fmt(a['pipeline_iou'])} | "
                    f"{_fmt(a['oracle_denoised_iou'])} | {_fmt(a['oracle_clean_iou'])} |")
        lines += ["", "Defect ceiling: an oracle that knows each particle's position and picks its best "
                  "single threshold (window r + 4 px; pipeline false positives elsewhere not counted).", ""] + head
        lines.append(row("all", ceil["all"]))
        for group in ("by_radius", "by_dose", "by_underlying"):
            for k, a in ceil[group].items():
                lines.append(row(f"{group[3:].replace('_', ' ')} {k}", a))
    return "\n".join(lines)


def measure(*, preset: str = "ic-metal", size: int = 256, n: int = 1000, seed: int = 0,
            out="/tmp/semlab-measure", calibrate_n: int = 16,
            particle_radius_nm: tuple[float, float] | None = (3.0, 8.0), settings: dict | None = None,
            ceiling: bool = False, progress: bool = True) -> dict:
    """Build (or reuse) the dataset, calibrate on train, segment, score the test split."""
    out = Path(out)
    src = simulate_dataset(out / f"sim-{preset}-{size}px-n{n}-seed{seed}", preset=preset, n=n, size=size,
                           seed=seed, progress=progress)
    ds = load_dataset(src)
    px = ds.info.get("pixel_size_nm")
    cfg = dict(settings or {})
    extra_rules = {}
    if preset == "particles":  # particles are the pattern; debris (brighter still) the defects
        if not px:
            raise ValueError(f"{src}: no pixel size in dataset.json")
        cfg = {**particles_settings(float(px)), **cfg}
        extra_rules = {"defect_above_pattern": PARTICLES_DEFECT_ABOVE_PATTERN}
    elif particle_radius_nm is not None:
        if not px:
            raise ValueError(f"{src}: no pixel size in dataset.json; use --particle-radius-nm none")
        cfg = {**particle_settings(float(px), particle_radius_nm), **cfg}
    seg = make_segmenter("classical", **cfg)
    classes = tuple(c["name"] for c in ds.info.get("classes", [])) or CanonicalRules().classes
    rules = CanonicalRules(classes=classes, polarity="auto", **extra_rules)
    t0 = time.perf_counter()
    offset, cal = calibrate_on_dataset(src, seg, rules, split="train", n=calibrate_n)
    t_cal = time.perf_counter() - t0
    t0 = time.perf_counter()
    seg_root = segment_dataset(src, backend=seg, rules=rules, progress=progress)
    t_seg = time.perf_counter() - t0
    score = score_against_truth(seg_root, src, "test")
    score.pop("per_image", None)
    ci = class_iou_ci(seg_root, src, "test")
    result = {"preset": preset, "size": size, "n": n, "seed": seed, "pixel_size_nm": px,
              "particle_radius_nm": list(particle_radius_nm) if particle_radius_nm else None,
              "calibrate_n": calibrate_n, "edge_offset_px": offset,
              "calibration_scores": {f"{k:g}": v for k, v in cal.items()},
              "segmenter": seg.describe(), "rules": rules.describe(),
              "dataset": str(src), "segmented": str(seg_root),
              "seconds": {"calibrate": round(t_cal, 1), "segment": round(t_seg, 1)}, "score": score, "ci": ci}
    result["objects"] = object_scores(seg_root, src, preset)
    if ceiling:
        result["ceiling"] = particle_ceiling(src, seg_root, seg, "test", progress=progress)
    return result


def object_scores(seg_root, truth_root, preset: str, split: str = "test") -> dict:
    """Object scores of the must-show list (issue 19): `defect` objects (all sizes and
    radius >= 3 px) and, on `particles`, `pattern` objects (the simulated particles as
    instances, the backend's regions as predictions), each with a per-size table; CIs
    resample whole images (`semlab.metrics.objects`)."""
    out = {}
    m = object_matches(seg_root, truth_root, split, cls="defect")
    if m and sum(x.n_true + x.n_pred for x in m):
        out["defect"] = {"all": detection_scores(m), "min_radius_3px": detection_scores(m, min_radius_px=3.0),
                         "by_size": size_table(m)}
    if preset == "particles":
        m = object_matches(seg_root, truth_root, split, cls="pattern", instances=True)
        if m:
            out["pattern"] = {"all": detection_scores(m), "by_size": size_table(m)}
    return out


def objects_markdown(objects: dict) -> str:
    """The object scores as Markdown: one line per class and a per-size table."""
    def ci(d):
        return f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"
    lines = []
    for cls, d in objects.items():
        for key in ("all", "min_radius_3px"):
            if key in d:
                s = d[key]
                lines.append(f"- {cls} objects ({key}): F1 {ci(s['f1'])}, precision {ci(s['precision'])}, "
                             f"recall {ci(s['recall'])}")
        lines += ["", f"| {cls} radius | n true | n pred | precision | recall | F1 |", "|---|---|---|---|---|---|"]
        for r in d["by_size"]:
            lines.append(f"| {r['bin']} | {r.get('n_true', '')} | {r.get('n_pred', '')} | {ci(r['precision'])} | "
                         f"{ci(r['recall'])} | {ci(r['f1'])} |")
        lines.append("")
    return "\n".join(lines)


def bench_defaults(size: int = 512, n: int = 8, preset: str = "ic-metal") -> dict:
    """Seconds per image of `segment_image` (what `semlab bench segment --backend
    classical` times) with the old defaults (ALGORITHM_VERSION 2: fixed denoising
    strength, no flattening, bright polarity) and the new ones, alternating image by
    image in one process, with the CPU named (`lscpu`)."""
    import platform
    import subprocess

    from semlab.data.simulate import simulate
    from semlab.segment.checks import OLD_DEFAULTS
    from semlab.segment.pipeline import segment_image

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        cpu = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")
    except OSError:
        cpu = ""
    imgs = [simulate(preset, size, (0, i)).image for i in range(n)]
    arms = {"old": (make_segmenter("classical", **OLD_DEFAULTS), CanonicalRules(polarity="bright")),
            "new": (make_segmenter("classical"), CanonicalRules(polarity="auto"))}
    for seg, rules in arms.values():
        segment_image(imgs[0], seg, rules)  # warm-up
    per: dict[str, list[float]] = {k: [] for k in arms}
    for img in imgs:
        for k, (seg, rules) in arms.items():
            t = time.perf_counter()
            segment_image(img, seg, rules)
            per[k].append(time.perf_counter() - t)
    med = {k: round(float(np.median(v)), 4) for k, v in per.items()}
    return {"name": "segment-defaults", "backend": "classical", "preset": preset, "size": size, "n": n,
            "s_per_image_median": med, "ratio_new_over_old": round(med["new"] / med["old"], 3),
            "target_ratio": 1.1, "cpu": cpu or platform.processor(), "load_avg_1min": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="ic-metal")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--n", type=int, default=1000, help="images in the simulated dataset (all splits)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="/tmp/semlab-measure", help="working folder (datasets, segmentations)")
    ap.add_argument("--calibrate-n", type=int, default=16, help="train images for the edge-offset fit")
    ap.add_argument("--particle-radius-nm", type=_parse_radius, default=(3.0, 8.0),
                    help="particle radii to look for, 'lo,hi' in nm (default 3,8), or 'none' for pixel defaults")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra ClassicalSettings (repeatable), e.g. --set blob_contrast=0.6")
    ap.add_argument("--ceiling", action="store_true", help="also measure the particle IoU ceiling (oracles)")
    ap.add_argument("--json", help="also write the JSON result to this file")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--bench-defaults", action="store_true",
                    help="only time old vs new defaults (--size, --n images, alternating) and print JSON")
    a = ap.parse_args(argv)
    if a.bench_defaults:
        print(json.dumps(bench_defaults(size=a.size, n=a.n, preset=a.preset)))
        return 0
    settings = {}
    for kv in a.set:
        k, _, v = kv.partition("=")
        try:
            settings[k] = json.loads(v)
        except json.JSONDecodeError:
            settings[k] = v
    warnings.filterwarnings("ignore", category=UserWarning)
    res = measure(preset=a.preset, size=a.size, n=a.n, seed=a.seed, out=a.out, calibrate_n=a.calibrate_n,
                  particle_radius_nm=a.particle_radius_nm, settings=settings, ceiling=a.ceiling,
                  progress=not a.quiet)
    print(markdown_tables(res))
    print()
    print(objects_markdown(res.get("objects", {})))
    text = json.dumps(res, indent=1, default=io.json_default)
    print(text)
    if a.json:
        io.write_json_atomic(a.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
