"""The results of the real-vs-generated study: one table row per model and metrics.json.

`results_table` flattens a `StudyResults` (detections, spectra, saliency) into one row
per model; `format_results_table` renders the rows in Markdown; `study_metrics_doc`
builds metrics.json from the key numbers (`METRIC_COLUMNS`). `finite` and `format_ci` are the
number helpers the conclusion (`semlab.forensics.narrative`) shares. Imports
`semlab.forensics.study_types` (and, inside `study_metrics_doc`, `semlab.runs` and
`semlab.metrics.keys`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from semlab.forensics.study_types import HF_BAND, StudyResults, on_upsampling_grid, slug

__all__ = [
    "results_table",
    "format_results_table",
    "finite",
    "format_ci",
    "METRIC_COLUMNS",
    "study_metrics_doc",
    "domain_keys",
]


def _ci(m) -> tuple[float, float, float]:
    return float(m.value), float(m.lo), float(m.hi)


def results_table(results: StudyResults) -> list[dict[str, Any]]:
    """One row per model (flat, numbers only where measured, NaN otherwise): pairs,
    folds, the first CNN's accuracy / balanced accuracy / AUC with CIs, the spectrum-only
    detector's accuracy and AUC with CIs, spectral peaks (all and on the upsampling
    grid, the strongest one), high-frequency power relative to real (dB, CI), edge
    enrichment of |saliency| (CI) and the saliency's high-frequency share."""
    rows = []
    nan = float("nan")
    sp = results.spectral
    for name, det in results.detections.items():
        r = det.main
        row: dict[str, Any] = {"model": name, "n_pairs": results.sets.n_pairs, "n_splits": len(r.folds),
                               "splits": "+".join(results.sets.splits), "level": r.level, "detector": r.detector,
                               "grouping": results.sets.grouping}
        for key, label in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced_accuracy"), ("roc_auc", "auc")):
            row[label], row[f"{label}_lo"], row[f"{label}_hi"] = _ci(r.metrics[key])
        row["spectrum_accuracy"], row["spectrum_accuracy_lo"], row["spectrum_accuracy_hi"] = \
            _ci(det.spectrum.metrics["accuracy"])
        row["spectrum_auc"], row["spectrum_auc_lo"], row["spectrum_auc_hi"] = _ci(det.spectrum.metrics["roc_auc"])
        if "balanced_accuracy" in det.spectrum.metrics:
            row["spectrum_balanced_accuracy"], row["spectrum_balanced_accuracy_lo"], \
                row["spectrum_balanced_accuracy_hi"] = _ci(det.spectrum.metrics["balanced_accuracy"])
        for extra, res2 in list(det.cnn.items())[1:]:
            row[f"{slug(extra)}_accuracy"], row[f"{slug(extra)}_accuracy_lo"], row[f"{slug(extra)}_accuracy_hi"] = \
                _ci(res2.metrics["accuracy"])
        row.update(n_peaks=0, n_grid_peaks=0, peak_fy=nan, peak_fx=nan, peak_period_px=nan, peak_z=nan,
                   peak_on_grid=False, grid_peak_fy=nan, grid_peak_fx=nan, grid_peak_period_px=nan, grid_peak_z=nan,
                   hf_db=nan, hf_db_lo=nan, hf_db_hi=nan, hf_band=f"({HF_BAND[0]:g}, {HF_BAND[1]:g}]",
                   top_band="", top_band_db=nan, top_band_db_lo=nan, top_band_db_hi=nan)
        if sp is not None and name in sp.peaks:
            pk = sp.peaks[name]
            grid = sp.grid_peaks(name)
            row["n_peaks"], row["n_grid_peaks"] = len(pk), len(grid)
            if pk:
                row.update(peak_fy=pk[0].fy, peak_fx=pk[0].fx, peak_period_px=pk[0].period_px, peak_z=pk[0].z,
                           peak_on_grid=on_upsampling_grid(pk[0].fy, pk[0].fx, sp.size))
            if grid:
                row.update(grid_peak_fy=grid[0].fy, grid_peak_fx=grid[0].fx, grid_peak_period_px=grid[0].period_px,
                           grid_peak_z=grid[0].z)
            hf = sp.band(name)
            if hf is not None:
                row.update(hf_db=hf["ratio_db"], hf_db_lo=hf["ratio_db_lo"], hf_db_hi=hf["ratio_db_hi"])
            sig = [b for b in sp.bands if b["set"] == name and (b["ratio_db_lo"] > 0 or b["ratio_db_hi"] < 0)]
            if sig:
                top = max(sig, key=lambda b: abs(b["ratio_db"]))
                row.update(top_band=top["band"], top_band_db=top["ratio_db"], top_band_db_lo=top["ratio_db_lo"],
                           top_band_db_hi=top["ratio_db_hi"])
        sal = results.saliency.get(name)
        if sal is not None:
            e = sal.regions["enrichment"]["edge"]
            lo, hi = sal.regions["enrichment_ci"]["edge"]
            row.update(edge_enrichment=e, edge_enrichment_lo=lo, edge_enrichment_hi=hi,
                       attr_high_share=sal.spectrum["high_share"], image_high_share=sal.spectrum["image_high_share"],
                       n_wrong_examples=sal.n_wrong)
        else:
            row.update(edge_enrichment=nan, edge_enrichment_lo=nan, edge_enrichment_hi=nan, attr_high_share=nan,
                       image_high_share=nan, n_wrong_examples=0)
        rows.append(row)
    for name, why in results.sets.missing.items():
        rows.append({"model": name, "missing": why})
    return rows


def finite(*v) -> bool:
    """Whether every value is a finite int or float (not a bool, not None, not NaN)."""
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)


def format_ci(v, lo, hi, digits: int = 2, signed: bool = False, unit: str = "") -> str:
    """`v` with `digits` decimals (a sign with `signed`), its CI "[lo, hi]" when both are
    finite, then `unit`; "-" when `v` is not finite."""
    if not finite(v):
        return "-"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    s = f.format(v)
    if finite(lo, hi):
        s += f" [{f.format(lo)}, {f.format(hi)}]"
    return s + unit


def format_results_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The results table in Markdown (values with their CIs; missing models last); model
    names escaped with `md_escape`."""
    from semlab.textfmt import md_escape

    pct = round(100 * next((r["level"] for r in rows if "level" in r), 0.95))
    lines = [f"| model | pairs | CNN accuracy | balanced acc. | AUC | spectrum-only acc. | peaks (on grid) "
             f"| power {HF_BAND[0]:g}-{HF_BAND[1]:g} c/px vs real | edge enrichment | saliency HF share (images) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "missing" in r:
            lines.append(f"| {md_escape(r['model'])} | missing | | | | | | | | |")
            continue
        hs = (f"{r['attr_high_share']:.2f} ({r['image_high_share']:.2f})"
              if finite(r.get("attr_high_share"), r.get("image_high_share")) else "-")
        lines.append(
            f"| {md_escape(r['model'])} | {r['n_pairs']} | {format_ci(r['accuracy'], r['accuracy_lo'], r['accuracy_hi'])} "
            f"| {format_ci(r['balanced_accuracy'], r['balanced_accuracy_lo'], r['balanced_accuracy_hi'])} "
            f"| {format_ci(r['auc'], r['auc_lo'], r['auc_hi'])} "
            f"| {format_ci(r['spectrum_accuracy'], r['spectrum_accuracy_lo'], r['spectrum_accuracy_hi'])} "
            f"| {r['n_peaks']} ({r['n_grid_peaks']}) "
            f"| {format_ci(r['hf_db'], r['hf_db_lo'], r['hf_db_hi'], 1, True, ' dB')} "
            f"| {format_ci(r.get('edge_enrichment'), r.get('edge_enrichment_lo'), r.get('edge_enrichment_hi'))}x "
            f"| {hs} |")
    lines.append("")
    lines.append(f"Values: out-of-fold estimate [{pct}% bootstrap CI]. Peaks: narrow peaks of the mean spectrum "
                 "relative to the real one (on grid: at multiples of 1/8 cycles/px, where x2 upsampling leaves its "
                 "traces). Edge enrichment: share of |saliency| within the edge zone / its share of the pixels "
                 "(1 = no preference). Saliency HF share: share of the saliency's power above 0.25 cycles/px on "
                 "real images (in brackets: the images' own share).")
    return "\n".join(lines)


# results_table column -> metrics.json key (semlab.metrics.keys); CI columns "<column>_lo/_hi"
METRIC_COLUMNS = {"accuracy": "detector_accuracy", "balanced_accuracy": "detector_balanced_accuracy",
                  "auc": "detector_auc", "spectrum_accuracy": "spectrum_accuracy", "spectrum_auc": "spectrum_auc",
                  "spectrum_balanced_accuracy": "spectrum_balanced_accuracy", "n_peaks": "n_peaks",
                  "n_grid_peaks": "n_grid_peaks", "hf_db": "hf_power_db", "edge_enrichment": "edge_enrichment"}
_UNITS = {"hf_db": "dB", "edge_enrichment": "x", "n_peaks": "peaks", "n_grid_peaks": "peaks"}


def study_metrics_doc(results: StudyResults, *, profile: str, dataset: str = "", seconds: float | None = None,
                      figure: str = "detector_metrics.png") -> dict[str, Any]:
    """Notebook 40's metrics.json (`semlab.runs.metrics_doc`): per model `<model>.<key>`
    for the `METRIC_COLUMNS` of `results_table` (the CNN's accuracy, balanced accuracy and
    AUC and the spectrum-only accuracy with 95% CIs, spectral peaks, high-frequency power
    relative to real with CI, edge enrichment with CI), n = mask pairs. Values that could
    not be measured go to `extra["unavailable"]`; missing models to `extra["missing"]`.
    Headline: detector AUC and spectrum-only accuracy of Pix2Pix and CycleGAN (of the first
    two models when neither was trained). On real tiles (`results.sets.real`) the domain is
    "real", `set` names the real set with n tiles and n frames, and `extra` records the set,
    its frames, how the folds were grouped and the CI caveat."""
    from semlab.metrics import keys as K
    from semlab.runs import metric, metrics_doc

    metrics, unavailable, models = {}, {}, []
    for r in results_table(results):
        if "missing" in r:
            continue
        m = K.model_key(r["model"])
        models.append(r["model"])
        for col, name in METRIC_COLUMNS.items():
            v = r.get(col)
            if not finite(v):
                unavailable[K.key(m, name)] = "not measured"
                continue
            lo, hi = r.get(f"{col}_lo"), r.get(f"{col}_hi")
            metrics[K.key(m, name)] = metric(v, lo if finite(lo) else None, hi if finite(hi) else None,
                                             n=r["n_pairs"], unit=_UNITS.get(col, ""))
    first = [n for n in ("Pix2Pix", "CycleGAN") if n in models] or models[:2]
    headline = [k for n in first for k in (K.key(K.model_key(n), K.DETECTOR_AUC),
                                          K.key(K.model_key(n), K.SPECTRUM_ACCURACY)) if k in metrics]
    extra: dict[str, Any] = {"profile": profile, "splits": list(results.sets.splits),
                             "missing": dict(results.sets.missing)}
    if seconds is not None:
        extra["seconds"] = round(float(seconds), 1)
    if unavailable:
        extra[K.UNAVAILABLE] = unavailable
    extra["grouping"] = results.sets.grouping
    label = f"{dataset}, split(s) {'+'.join(results.sets.splits)}".lstrip(", ")
    real = results.sets.real_split
    if real is not None:
        from semlab.train.realsets import CI_CAVEAT

        frames = real.frames_of(results.sets.ids)
        n_frames = len(frames)
        label = (f"{real.set} (real), held-out split(s) {'+'.join(results.sets.splits)}: {results.sets.n_pairs} tiles "
                 f"of {n_frames} frame{'s' if n_frames != 1 else ''}")
        extra.update(real_set=real.set, n_tiles=results.sets.n_pairs, n_frames=n_frames, frames=frames,
                     train_frames=real.frames.get("train", []), ci_note=CI_CAVEAT)
    return metrics_doc("40_real_vs_fake", "real" if real is not None else "sim", label,
                       results.sets.n_pairs, metrics, headline=headline[:4], figure=figure, **extra)


def domain_keys() -> list[str]:
    """The keys notebook 40 shows for both domains side by side: for Pix2Pix, CycleGAN and
    the physics baseline, the CNN's balanced accuracy and AUC and the spectrum-only
    detector's balanced accuracy and AUC."""
    from semlab.metrics import keys as K

    return [K.key(m, x) for m in (K.PIX2PIX, K.CYCLEGAN, K.PHYSICS)
            for x in (K.DETECTOR_BALANCED_ACCURACY, K.DETECTOR_AUC, "spectrum_balanced_accuracy", "spectrum_auc")]
