"""Tables, metrics.json and the generated conclusion of the residual-noise study
(notebook 45; the study itself is `semlab.forensics.injection`)."""

from __future__ import annotations

import math
from typing import Any

from semlab.forensics.injection import InjectionStudy

__all__ = ["GOAL_POINT", "GOAL_UPPER", "POWER_MIN", "detector_rows", "selection_markdown", "results_markdown",
           "injection_metrics_doc", "conclusion"]

GOAL_POINT = 0.60  # the retrained CNN's balanced accuracy after injection: point estimate at most
GOAL_UPPER = 0.70  # and upper 95% CI at most
POWER_MIN = 0.95  # the same protocol on un-injected images must stay at least this (the detector has power)

_INJECTED_SUFFIX = "injected"


def _fmt(v, lo=None, hi=None, nd: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    s = f"{v:.{nd}f}"
    if lo is not None and hi is not None and all(isinstance(x, (int, float)) and math.isfinite(x) for x in (lo, hi)):
        s += f" [{lo:.{nd}f}, {hi:.{nd}f}]"
    return s


def _cnn(det) -> dict[str, Any]:
    """{balanced_accuracy, ci_low, ci_high, auc, auc_ci_low, auc_ci_high} of the main CNN of a ModelDetection."""
    m = det.main.metrics
    ba, auc = m["balanced_accuracy"], m["roc_auc"]
    return {"balanced_accuracy": ba.value, "ci_low": ba.lo, "ci_high": ba.hi, "auc": auc.value,
            "auc_ci_low": auc.lo, "auc_ci_high": auc.hi}


def detector_rows(study: InjectionStudy) -> list[dict[str, Any]]:
    """One row per generator and state (before / after injection): the retrained CNN, the
    stats and spectrum detectors (balanced accuracy with CI) and the image quality."""
    rows = []
    for g in study.injected.fakes:
        for state, det, st in (("before", study.before[g], study.stats_before[g]),
                               (f"after ({study.chosen[g]}, {study.mode})", study.after[g], study.stats_after[g])):
            q = study.quality[g]["before" if state == "before" else "after"]
            rows.append({"generator": g, "state": state, "cnn": _cnn(det), "stats": st.get("stats"),
                         "spectrum": st.get("spectrum"), "quality": q, "n": study.test.n_pairs})
    return rows


def selection_markdown(study: InjectionStudy) -> str:
    """The validation-split choice: every model's stats-detector balanced accuracy per
    generator, the chosen one in bold."""
    from semlab.textfmt import md_escape as esc

    kinds = list(dict.fromkeys(k for s in study.selection.values() for k in s["scores"]))
    lines = ["| generator | " + " | ".join(esc(k) for k in kinds) + " |", "|---|" + "---|" * len(kinds)]
    for g, s in study.selection.items():
        cells = []
        for k in kinds:
            r = s["scores"].get(k)
            c = "-" if r is None else _fmt(r["balanced_accuracy"], r["ci_low"], r["ci_high"])
            cells.append(f"**{c}**" if k == s["chosen"] else c)
        lines.append(f"| {esc(g)} | " + " | ".join(cells) + " |")
    ties = [g for g, sel in study.selection.items()
            if len(sel["scores"]) > 1 and len({round(r["balanced_accuracy"], 3) for r in sel["scores"].values()}) == 1]
    if ties:
        lines.append("")
        lines.append("Every model scores the same for " + ", ".join(esc(g) for g in ties)
                     + ": the validation split cannot tell the models apart, and the first in order is taken.")
    if study.fit_failed:
        lines.append("")
        lines.append("Not fitted: " + "; ".join(f"{esc(k)} ({esc(v)})" for k, v in study.fit_failed.items()))
    return "\n".join(lines)


def results_markdown(study: InjectionStudy) -> str:
    """The test-split table: per generator, before and after injection."""
    from semlab.textfmt import md_escape as esc

    has_clean = any("psnr_db" in r["quality"] for r in detector_rows(study))
    has_sem = any("fd_sem" in r["quality"] for r in detector_rows(study))
    head = ["generator", "state", "CNN (retrained) bal. acc.", "CNN AUC", "stats bal. acc.", "spectrum bal. acc.",
            "log-spectrum distance"]
    if has_clean:
        head += ["PSNR vs noise-free (dB)", "SSIM vs noise-free"]
    if has_sem:
        head += ["FD_sem", "KD_sem"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---|" * (len(head) - 1)]
    for r in detector_rows(study):
        c, q = r["cnn"], r["quality"]
        cells = [esc(r["generator"]), esc(r["state"]), _fmt(c["balanced_accuracy"], c["ci_low"], c["ci_high"]),
                 _fmt(c["auc"], c["auc_ci_low"], c["auc_ci_high"])]
        for d in ("stats", "spectrum"):
            x = r[d]
            cells.append("-" if not x else _fmt(x["balanced_accuracy"], x["ci_low"], x["ci_high"]))
        cells.append(_fmt(q.get("log_spectrum_distance")))
        if has_clean:
            cells += [_fmt(q.get("psnr_db"), q.get("psnr_db_ci_low"), q.get("psnr_db_ci_high"), 1),
                      _fmt(q.get("ssim"), q.get("ssim_ci_low"), q.get("ssim_ci_high"), 3)]
        if has_sem:
            cells += [_fmt(q.get("fd_sem")), _fmt(q.get("kd_sem"), nd=3)]
        lines.append("| " + " | ".join(cells) + " |")
    target = study.quality.get("simulated (target)", {}).get("before")
    if target and "ssim" in target:
        lines.append("")
        lines.append(f"What real noise costs: the simulated target against its own noise-free image has SSIM "
                     f"{_fmt(target['ssim'], target.get('ssim_ci_low'), target.get('ssim_ci_high'), 3)} and PSNR "
                     f"{_fmt(target['psnr_db'], target.get('psnr_db_ci_low'), target.get('psnr_db_ci_high'), 1)} dB.")
    return "\n".join(lines)


def injection_metrics_doc(study: InjectionStudy, *, profile: str, label: str, seconds: float | None = None,
                          figure: str = "detector_before_after.png") -> dict[str, Any]:
    """Notebook 45's metrics.json: per generator `<model>.<before|injected>.<key>` for the
    retrained CNN's balanced accuracy and AUC, the stats and spectrum detectors' balanced
    accuracy, and image quality; headline: Pix2Pix's CNN balanced accuracy before and after."""
    from semlab.metrics import keys as K
    from semlab.runs import metric, metrics_doc

    n = study.test.n_pairs
    metrics: dict[str, dict[str, Any]] = {}
    for r in detector_rows(study):
        m = K.model_key(r["generator"])
        state = "before" if r["state"] == "before" else _INJECTED_SUFFIX
        c = r["cnn"]
        metrics[K.key(m, state, K.DETECTOR_BALANCED_ACCURACY)] = metric(c["balanced_accuracy"], c["ci_low"],
                                                                        c["ci_high"], n=n)
        metrics[K.key(m, state, K.DETECTOR_AUC)] = metric(c["auc"], c["auc_ci_low"], c["auc_ci_high"], n=n)
        for d in ("stats", "spectrum"):
            x = r[d]
            if x:
                metrics[K.key(m, state, f"{d}_balanced_accuracy")] = metric(x["balanced_accuracy"], x["ci_low"],
                                                                            x["ci_high"], n=n)
        q = r["quality"]
        if q.get("log_spectrum_distance") is not None:
            metrics[K.key(m, state, K.SPECTRAL_DISTANCE)] = metric(q["log_spectrum_distance"], n=n, unit="dB")
        for k, unit in (("psnr_db", "dB"), ("ssim", "")):
            if k in q:
                metrics[K.key(m, state, K.PSNR if k == "psnr_db" else K.SSIM, K.VS_NOISE_FREE)] = metric(
                    q[k], q.get(f"{k}_ci_low"), q.get(f"{k}_ci_high"), n=n, unit=unit)
        for k in (K.FD_SEM, K.KD_SEM):
            if k in q:
                metrics[K.key(m, state, k)] = metric(q[k], n=n)
    headline = [k for k in (K.key(K.PIX2PIX, "before", K.DETECTOR_BALANCED_ACCURACY),
                            K.key(K.PIX2PIX, _INJECTED_SUFFIX, K.DETECTOR_BALANCED_ACCURACY)) if k in metrics]
    if not headline:
        headline = [k for k in metrics if k.endswith(K.DETECTOR_BALANCED_ACCURACY)][:2]
    extra = {"profile": profile, "chosen": study.chosen, "mode": study.mode, "fit_data": study.data.describe(),
             "fit_failed": study.fit_failed, "grouping": study.test.grouping,
             "selection": {g: {k: v["balanced_accuracy"] for k, v in s["scores"].items()}
                           for g, s in study.selection.items()},
             "seconds": {k: round(v, 1) for k, v in study.seconds.items()}}
    if seconds is not None:
        extra["notebook_seconds"] = round(float(seconds), 1)
    real = study.test.real_split
    if real is not None:
        from semlab.train.realsets import CI_CAVEAT

        frames = real.frames_of({i.split('#')[0] for i in study.test.ids})  # sub-tiles: <id>#<k>
        extra.update(real_set=real.set, n_tiles=n, n_frames=len(frames), frames=frames,
                     train_frames=real.frames.get("train", []), ci_note=CI_CAVEAT)
    return metrics_doc("45_residual_noise", study.domain, label, n, metrics, headline=headline, figure=figure,
                       **extra)


def conclusion(study: InjectionStudy) -> str:
    """A paragraph generated from the numbers: per generator, whether the retrained CNN
    still separates the injected images, against the goal and the power control."""
    parts = []
    dom = "real" if study.domain == "real" else "simulated (target)"
    for r in [r for r in detector_rows(study) if r["state"] == "before"]:
        g = r["generator"]
        b = r["cnn"]
        a = _cnn(study.after[g])
        power = b["balanced_accuracy"] >= POWER_MIN
        goal = a["balanced_accuracy"] <= GOAL_POINT and a["ci_high"] <= GOAL_UPPER
        s = (f"**{g}** with `{study.chosen[g]}` ({study.mode}): the retrained CNN's balanced accuracy against "
             f"{dom} tiles goes from {_fmt(b['balanced_accuracy'], b['ci_low'], b['ci_high'])} to "
             f"{_fmt(a['balanced_accuracy'], a['ci_low'], a['ci_high'])} (n = {r['n']} pairs). ")
        if not power:
            s += (f"Before injection the detector is below the power control ({POWER_MIN:.2f}), so this test "
                  "cannot show that injection hides anything. ")
        elif goal:
            s += f"That meets the goal (at most {GOAL_POINT:.2f}, upper CI at most {GOAL_UPPER:.2f}). "
        else:
            s += (f"That misses the goal (at most {GOAL_POINT:.2f}, upper CI at most {GOAL_UPPER:.2f}): the "
                  "injected noise does not remove every tell the retrained detector finds; the saliency maps "
                  "and spectra below show where it still looks. ")
            q = study.quality.get(g, {})
            d0 = (q.get("before") or {}).get("log_spectrum_distance")
            d1 = (q.get("after") or {}).get("log_spectrum_distance")
            if d0 is not None and d1 is not None and d1 < 0.5 * d0 and a["balanced_accuracy"] >= POWER_MIN:
                s += (f"Injection brought the log-spectrum distance to the {dom} tiles from {d0:.2f} to {d1:.2f} "
                      "dB, yet the detector still separates them: what it reads is not the noise spectrum "
                      "(structure, contrast or edge profiles the generator gets wrong). ")
        parts.append(s)
    if study.domain == "real":
        parts.append("A CI over the tiles of one or two frames describes those frames only.")
    return "\n\n".join(parts) if parts else "No generator was available to study."
