"""What the SegSEM experiment found: `ExperimentResult` (per-image rows of every method
and test set, per-fold calibration, threshold sweeps) and its tables, summaries and
re-predictions. Built by `semlab.contours.experiment.run_experiment`; this module does
not import the runner.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from semlab.contours.classical import extract_classical_contours
from semlab.contours.experiment_config import (KEYS, METHOD_LABELS, MODEL_OF, OOD_VARIANTS, ExperimentConfig, Item,
                                               build_items, build_ood_items, test_set_label)
from semlab.contours.hybrid import HybridExtractor
from semlab.contours.metrics import score_table
from semlab.contours.sam2_arms import Sam2Arms

__all__ = ["ExperimentResult", "KEY_NAMES", "sweep_curve", "stored_threshold", "segsem_metrics_doc"]

KEY_NAMES = {"epe_mean_abs": "mean abs EPE", "epe_mean": "mean EPE", "epe_3sigma": "EPE 3 sigma",
             "hausdorff95": "Hausdorff 95", "iou": "IoU", "cd_bias": "CD bias"}


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


def stored_threshold(thresholds: Mapping[str, float | None], key: str, default: float) -> float:
    """A stored threshold (JSON writes +inf, "always fall back", as null)."""
    if key not in thresholds:
        return float(default)
    v = thresholds[key]
    return float("inf") if v is None else float(v)


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
        methods say why. Test set and key names and reasons are escaped (`md_escape`)."""
        from semlab.textfmt import md_escape as esc

        tab = self.table(test_set, keys)
        head = ["method", "images"] + [esc(KEY_NAMES.get(k, k)) + ("" if k == "iou" else " (nm)") for k in keys] + [
            "fallback rate"]
        lines = [f"**{esc(test_set_label(test_set, self.config.folds))}**", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        notes: list[str] = []
        for m in self.config.methods:
            t = tab[m]
            if t is None:
                why = self.unavailable(m) or "no results"
                if why not in notes:
                    notes.append(why)
                mark = "abcdefghij"[min(notes.index(why), 9)]
                lines.append(f"| {esc(METHOD_LABELS[m])} | 0 | unavailable ({mark}) |" + " |" * (len(head) - 3))
                continue
            n = len(self.method_rows(m, test_set))
            cells = [esc(METHOD_LABELS[m]), str(n)]
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
        paragraphs = ["\n".join(lines)] + [f"({'abcdefghij'[min(i, 9)]}) {esc(why)}" for i, why in enumerate(notes)]
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
                "calibrated": [stored_threshold(f["thresholds"], model, self.config.default_threshold) for f in self.folds],
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
        sam2 = Sam2Arms(self.config, progress=False)
        for key in dict.fromkeys(MODEL_OF[m] for m in methods if m != "classical"):
            net = sam2.load(key, self.out / f"fold-{fold}")
            hr = HybridExtractor(sam2.predictor(net), settings,
                                 threshold=stored_threshold(fd["thresholds"], key, self.config.default_threshold)
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


def segsem_metrics_doc(result: ExperimentResult, real=None, sweep: Mapping[str, Any] | None = None, *,
                       profile: str, figure: str = "epe_by_method_and_test_set.png") -> dict[str, Any]:
    """Notebook 50's metrics.json (`semlab.runs.metrics_doc`): per method the
    cross-validated `<method>.epe_mean_abs_nm` and `<method>.iou` (mean and 95% bootstrap
    CI over images), `hybrid.fallback_rate`, per out-of-distribution test set
    `<set>.<method>.epe_mean_abs_nm`, and with `real` (a `RealLines`) per real image
    `real/<stem>.cd_mean` ... (`semlab.metrics.keys`; measurements, no ground truth; the
    image's pixel size, tiles and lines in `extra["real"][stem]`).
    Unavailable methods (no SAM2 weights) are named with the reason in
    `extra["unavailable"]`; `sweep` (`result.sweep()`) adds whether the threshold sweep
    ran and its calibrated thresholds to `extra`."""
    from semlab.metrics import keys as K
    from semlab.runs import metric, metrics_doc

    def ci(t: Mapping[str, Any], unit: str = "", note: str = "") -> dict:
        return metric(t["mean"], t["ci_low"], t["ci_high"], n=t["n"], unit=unit, note=note)

    metrics: dict[str, dict] = {}
    unavailable: dict[str, str] = {}
    for m, t in result.table("cv", ("epe_mean_abs", "iou")).items():
        if t is None:
            unavailable[K.key(m, K.EPE_MEAN_ABS)] = result.unavailable(m) or "no results"
            continue
        metrics[K.key(m, K.EPE_MEAN_ABS)] = ci(t["epe_mean_abs"], "nm")
        metrics[K.key(m, K.IOU)] = ci(t["iou"])
        if m == "hybrid" and "fallback_rate" in t:
            metrics[K.key(m, K.FALLBACK_RATE)] = ci(t["fallback_rate"], note="share of structures")
    for ts in result.test_sets[1:]:
        for m, t in result.table(ts, ("epe_mean_abs",)).items():
            if t is not None:
                metrics[K.key(ts, m, K.EPE_MEAN_ABS)] = ci(t["epe_mean_abs"], "nm", note=test_set_label(ts))
    real_images = {}
    for r in (real.per_image() if real is not None else []):
        stem = Path(r["image"]).stem
        real_images[stem] = {k: r[k] for k in ("image", "pixel_nm", "tiles", "n_lines", "unit")}
        px = f"{r['pixel_nm']:.3f} nm/px" if r["pixel_nm"] else "pixel size unknown"
        for stat in (K.CD_MEAN, K.CD_STD, K.LWR_MEAN, K.LER_MEAN, K.LER_STD, K.FALLBACK_RATE):
            if np.isfinite(r[stat]):
                metrics[K.key(f"real/{stem}", stat)] = metric(
                    r[stat], n=r["n_lines"] if stat != K.FALLBACK_RATE else r["tiles"],
                    unit="" if stat == K.FALLBACK_RATE else r["unit"], note=f"real DSA image, {px}, no ground truth")
    headline = [k for k in (K.key("classical", K.EPE_MEAN_ABS), K.key("hybrid", K.EPE_MEAN_ABS),
                            K.key("hybrid", K.FALLBACK_RATE), K.key("sam2_encoder", K.EPE_MEAN_ABS)) if k in metrics]
    cfg = result.config
    extra: dict[str, Any] = {"profile": profile, "size_px": cfg.size, "folds": cfg.folds,
                             "sam2_available": result.sam2_available, "sam2_reason": result.sam2_reason,
                             "experiment_seconds": result.seconds,
                             "real_available": bool(real is not None and real.available)}
    if real_images:
        extra["real"] = real_images
    if sweep is not None:
        extra["threshold_sweep"] = {"available": sweep["available"], "calibrated": sweep["calibrated"]}
    if unavailable:
        extra[K.UNAVAILABLE] = unavailable
    n = len(result.method_rows("classical"))
    return metrics_doc("50_segsem_contours", "sim",
                       f"simulated {' + '.join(cfg.presets)} images, {cfg.folds}-fold CV", n, metrics,
                       headline=headline, figure=figure, **extra)
