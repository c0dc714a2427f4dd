"""The conclusion of the real-vs-generated study, written from the numbers.

`conclusion` turns the rows of `semlab.forensics.results.results_table` (or a
`StudyResults`) into Markdown prose for notebook 40: per model how strongly its images
are detected (CI-aware), whether the radial spectrum alone explains it, band power,
peaks on the upsampling grid, where the detector looks; then the transposed-vs-resize
comparison, a ranking and the missing models. Imports `semlab.forensics.results` and
`semlab.forensics.study_types`, never the steps (`semlab.forensics.study`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from semlab.forensics.results import finite, format_ci, results_table
from semlab.forensics.study_types import SIMULATOR, UPSAMPLING_MODELS, StudyResults

__all__ = ["conclusion"]


def _strength(v: float, lo: float, hi: float) -> str:
    """'below', 'chance', 'inconclusive', 'weak', 'clear' or 'near-perfect' (from the CI)."""
    if hi < 0.5:
        return "below"
    if lo <= 0.5:
        return "chance" if v < 0.6 else "inconclusive"
    if v >= 0.95:
        return "near-perfect"
    if v >= 0.8:
        return "clear"
    return "weak"


_STRENGTH_WORDS = {"near-perfect": "almost perfectly", "clear": "reliably", "weak": "better than chance, but weakly"}


def _acc(r: Mapping[str, Any], key: str = "accuracy") -> str:
    return f"{r[key]:.2f} [{r[key + '_lo']:.2f}, {r[key + '_hi']:.2f}]"


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


_DETECTOR_WORDS = {"small_cnn": "small CNN"}


def _model_paragraph(r: Mapping[str, Any], baseline_high_share: float | None = None) -> str:
    name = r["model"]
    det = _DETECTOR_WORDS.get(r.get("detector", ""), r.get("detector") or "CNN")
    cnn = _strength(r["accuracy"], r["accuracy_lo"], r["accuracy_hi"])
    spec = _strength(r["spectrum_accuracy"], r["spectrum_accuracy_lo"], r["spectrum_accuracy_hi"])
    parts = []
    if cnn in ("chance", "below"):
        parts.append(f"**{name}**: the {det} cannot tell these images from real ones: accuracy {_acc(r)} "
                     f"(AUC {_acc(r, 'auc')}) is at chance (the CI includes 0.5)"
                     + (" or below it" if cnn == "below" else "") + ".")
    elif cnn == "inconclusive":
        parts.append(f"**{name}**: inconclusive: the {det} reaches accuracy {_acc(r)} (AUC {_acc(r, 'auc')}), "
                     "but the CI still includes chance (0.5); more images would be needed.")
    else:
        parts.append(f"**{name}**: the {det} separates it from real {_STRENGTH_WORDS[cnn]}: accuracy {_acc(r)}, "
                     f"balanced accuracy {_acc(r, 'balanced_accuracy')}, AUC {_acc(r, 'auc')}.")
    # spectrum-only vs CNN
    cnn_ci = (r["accuracy_lo"], r["accuracy_hi"])
    spec_ci = (r["spectrum_accuracy_lo"], r["spectrum_accuracy_hi"])
    s_acc = _acc(r, "spectrum_accuracy")
    if spec in ("chance", "below"):
        if cnn in ("chance", "below", "inconclusive"):
            parts.append(f"A logistic regression on the radial power spectrum alone is at chance too ({s_acc}).")
        else:
            parts.append(f"A logistic regression on the radial power spectrum alone is at chance ({s_acc}): the "
                         "cue is not how much power there is at each scale but where it is (spatial arrangement: "
                         "edge profiles, textures, layout-dependent artifacts).")
    elif spec == "inconclusive":
        parts.append(f"The radial power spectrum alone gives {s_acc}, a CI that still includes chance.")
    elif cnn in ("chance", "below", "inconclusive"):
        parts.append(f"Yet a logistic regression on the radial power spectrum alone reaches {s_acc}: the "
                     "difference is spectral, and the CNN did not pick it up at this training budget.")
    elif _overlap(cnn_ci, spec_ci):
        parts.append(f"A logistic regression on the radial power spectrum alone reaches {s_acc}, within the CNN's "
                     "CI: most of the signal is spectral (how much power the images have at each scale).")
    elif spec_ci[1] < cnn_ci[0]:
        parts.append(f"The radial power spectrum alone reaches only {s_acc}, clearly below the CNN: part of the "
                     "signal is spectral, the rest lies in the spatial arrangement that a radial spectrum "
                     "discards.")
    else:
        parts.append(f"The radial power spectrum alone does better ({s_acc}) than the CNN: the cue is spectral and "
                     "the CNN is undertrained for it at this budget.")
    # band power
    if finite(r.get("top_band_db"), r.get("top_band_db_lo"), r.get("top_band_db_hi")) and r.get("top_band"):
        v = r["top_band_db"]
        word = "more" if v > 0 else "less"
        lo, hi = sorted((abs(r["top_band_db_lo"]), abs(r["top_band_db_hi"])))
        high = r["top_band"] in ("(0.25, 0.5]", "(0.5, 0.75]")
        size = "a small but significant difference: " if abs(v) < 1 else ""
        parts.append(f"Its largest spectral difference: {size}{abs(v):.1f} dB [{lo:.1f}, {hi:.1f}] {word} power "
                     f"than real at {r['top_band']} cycles/px"
                     + (" (too smooth: the fine texture and noise grain are missing)" if v <= -3 and high else "")
                     + (" (extra fine-scale structure: noise or artifacts)" if v >= 3 and high else "") + ".")
    elif finite(r.get("hf_db")):
        parts.append(f"Its band powers match the real ones within their CIs (at {r['hf_band']} cycles/px: "
                     f"{format_ci(r['hf_db'], r['hf_db_lo'], r['hf_db_hi'], 1, True, ' dB')}).")
    # peaks
    n_grid = int(r.get("n_grid_peaks") or 0)
    n_all = int(r.get("n_peaks") or 0)
    if n_grid:
        per = r["grid_peak_period_px"]
        parts.append(f"Its mean spectrum has {n_grid} narrow peak{'s' if n_grid > 1 else ''} on the upsampling grid "
                     f"(multiples of 1/8 cycles/px); the strongest at (fy, fx) = ({r['grid_peak_fy']:.3f}, "
                     f"{r['grid_peak_fx']:.3f}) cycles/px, a {per:.2f}-px period, z = {r['grid_peak_z']:.0f}: the "
                     "periodic fingerprint of x2 upsampling layers"
                     + (f" ({n_all - n_grid} more off the grid)" if n_all > n_grid else "") + ".")
    elif n_all:
        parts.append(f"Its mean spectrum has {n_all} narrow peak{'s' if n_all > 1 else ''} relative to real, none on "
                     f"the upsampling grid (strongest at ({r['peak_fy']:.3f}, {r['peak_fx']:.3f}) cycles/px, "
                     f"z = {r['peak_z']:.0f}).")
    elif "n_peaks" in r:
        parts.append("Its mean spectrum shows no narrow peaks relative to real (no periodic upsampling artifact).")
    # saliency (only meaningful for a detector that works)
    if finite(r.get("edge_enrichment"), r.get("edge_enrichment_lo"), r.get("edge_enrichment_hi")) \
            and cnn not in ("chance", "below"):
        e, lo, hi = r["edge_enrichment"], r["edge_enrichment_lo"], r["edge_enrichment_hi"]
        if lo > 1:
            where = f"|saliency| is {e:.2f}x [{lo:.2f}, {hi:.2f}] enriched at pattern edges"
        elif hi < 1:
            where = (f"|saliency| is depleted at pattern edges ({e:.2f}x [{lo:.2f}, {hi:.2f}] of an even "
                     "spread): the evidence lies mostly in the flat regions between edges")
        else:
            where = f"|saliency| has no clear preference for pattern edges ({e:.2f}x [{lo:.2f}, {hi:.2f}])"
        hs = ""
        if finite(r.get("attr_high_share"), r.get("image_high_share")):
            a, b = r["attr_high_share"], r["image_high_share"]
            rel = "more than" if a > b + 0.05 else ("less than" if a < b - 0.05 else "about as much as")
            hs = (f"; {100 * a:.0f}% of the saliency's power lies above 0.25 cycles/px, {rel} the images' own "
                  f"{100 * b:.0f}%")
            if baseline_high_share is not None and r["model"] != SIMULATOR:
                hs += (f" (the chance-level detector of the simulator baseline: {100 * baseline_high_share:.0f}%, "
                       "what the detector's architecture produces by itself)")
        parts.append(f"Where the detector looks: {where}{hs}.")
    return " ".join(parts)


def _upsampling_paragraph(rows: Mapping[str, Mapping[str, Any]]) -> str | None:
    names = list(UPSAMPLING_MODELS)
    if not all(n in rows for n in names):
        return None
    t, r = rows[names[0]], rows[names[1]]
    same = _overlap((t["accuracy_lo"], t["accuracy_hi"]), (r["accuracy_lo"], r["accuracy_hi"]))
    if same:
        acc = (f"CNN accuracy {_acc(t)} (transposed) vs {_acc(r)} (resize): the CIs overlap, so at this budget the "
               "upsampling layer does not measurably change how detectable the generator is.")
    else:
        better = "transposed" if t["accuracy"] > r["accuracy"] else "resize"
        acc = (f"CNN accuracy {_acc(t)} (transposed) vs {_acc(r)} (resize): the CIs do not overlap; the "
               f"{better}-conv generator is the easier one to detect.")
    gt, gr = int(t.get("n_grid_peaks") or 0), int(r.get("n_grid_peaks") or 0)
    if gt and not gr:
        peaks = (f"Spectral peaks on the upsampling grid: {gt} for transposed conv (strongest at "
                 f"({t['grid_peak_fy']:.3f}, {t['grid_peak_fx']:.3f}) cycles/px), none for resize-conv: the "
                 "periodic (checkerboard-type) fingerprint comes from the transposed convolutions, and nearest "
                 "resize + convolution removes it.")
    elif gr and not gt:
        peaks = (f"Spectral peaks on the upsampling grid: none for transposed conv, {gr} for resize-conv "
                 f"(strongest at ({r['grid_peak_fy']:.3f}, {r['grid_peak_fx']:.3f}) cycles/px): here the resize "
                 "path leaves the periodic trace (nearest-neighbour upsampling repeats pixels in 2x2 blocks).")
    elif gt and gr:
        peaks = (f"Both leave peaks on the upsampling grid ({gt} for transposed, {gr} for resize-conv), so the "
                 "periodic fingerprint is not specific to transposed convolutions at this budget.")
    else:
        peaks = ("Neither shows narrow peaks on the upsampling grid: at this budget the difference between the "
                 "two lies elsewhere than in periodic artifacts.")
    return ("**Transposed vs resize-convolution upsampling** (two Pix2Pix trainings with the same budget): "
            f"{acc} {peaks}")


def conclusion(results: StudyResults | Sequence[Mapping[str, Any]]) -> str:
    """A Markdown conclusion written from the numbers: per model how strongly the fakes
    are detected (CI-aware: at chance when the CI includes 0.5), whether the radial
    spectrum alone explains it, the largest band power difference, spectral peaks on
    the upsampling grid, where the detector looks; then the transposed-vs-resize
    comparison, a ranking, and the models that are missing. Accepts a `StudyResults`
    or the rows of `results_table`. Model names, splits and reasons are escaped
    (`md_escape`)."""
    from semlab.textfmt import md_escape as esc

    rows = results_table(results) if isinstance(results, StudyResults) else list(results)
    done = [r for r in rows if "missing" not in r]
    missing = [r for r in rows if "missing" in r]
    out = []
    if done:
        r0 = done[0]
        pct = round(100 * r0.get("level", 0.95))
        sp_names = str(r0.get("splits", ""))
        held = ("held-out masks" if sp_names and "train" not in sp_names.split("+")
                else "masks that include the generators' training split")
        grouping = str(r0.get("grouping") or "")
        how = ("grouped by mask (the real image and the fake of one mask never fall in different folds)"
               if not grouping or "by mask" in grouping else
               f"{esc(grouping.removeprefix('folds '))}; a real tile and its fakes are always in one fold")
        out.append(f"On {r0['n_pairs']} real/generated pairs made from {held} ({esc(sp_names) or '?'}), "
                   f"scored by {r0['n_splits']}-fold cross-validation {how}, with {pct}% bootstrap "
                   "confidence intervals:")
        base = next((r.get("attr_high_share") for r in done if r["model"] == SIMULATOR
                     and finite(r.get("attr_high_share"))
                     and _strength(r["accuracy"], r["accuracy_lo"], r["accuracy_hi"]) in ("chance", "below")), None)
        out.extend(f"- {_model_paragraph({**r, 'model': esc(r['model'])}, base)}" for r in done)
        by = {r["model"]: r for r in done}
        up = _upsampling_paragraph(by)
        if up:
            out.append(up)
        detectable = [r for r in done if _strength(r["accuracy"], r["accuracy_lo"], r["accuracy_hi"])
                      in ("weak", "clear", "near-perfect")]
        chance = [esc(r["model"]) for r in done if _strength(r["accuracy"], r["accuracy_lo"], r["accuracy_hi"])
                  in ("chance", "below")]
        summary = []
        if detectable:
            ranked = sorted(detectable, key=lambda r: -r["accuracy"])
            summary.append("Detectable, from easiest to hardest: " + ", ".join(
                f"{esc(r['model'])} ({r['accuracy']:.2f})" for r in ranked) + ".")
            spectral = [esc(r["model"]) for r in ranked if _strength(r["spectrum_accuracy"], r["spectrum_accuracy_lo"],
                                                                r["spectrum_accuracy_hi"]) in ("weak", "clear",
                                                                                               "near-perfect")
                        and _overlap((r["accuracy_lo"], r["accuracy_hi"]),
                                     (r["spectrum_accuracy_lo"], r["spectrum_accuracy_hi"]))]
            if spectral:
                summary.append("For " + ", ".join(spectral) + " the radial power spectrum alone carries most of the "
                               "signal: what gives them away is how much power they have at each spatial scale "
                               "(smoothness, noise level, periodic artifacts), not the layout.")
            top = ranked[0]
            if len(ranked) > 1 and _overlap((top["accuracy_lo"], top["accuracy_hi"]),
                                            (ranked[-1]["accuracy_lo"], ranked[-1]["accuracy_hi"])):
                summary.append("The CIs of the easiest and the hardest overlap: do not read the order as a "
                               "difference in detectability.")
        if chance:
            summary.append("At chance (indistinguishable from real with this many images): " + ", ".join(chance) + ".")
        if summary:
            out.append("**In short.** " + " ".join(summary))
    else:
        out.append("No model could be evaluated.")
    if missing:
        out.append("**Not compared** (missing): " + "; ".join(f"{esc(r['model'])}: {esc(r['missing'])}"
                                                               for r in missing) + ".")
    return "\n\n".join(out)
