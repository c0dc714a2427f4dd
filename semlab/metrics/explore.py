"""Notebook 00's numbers: how close the simulator's images are to real SEM tiles in noise
level and spectral slope, per image group, and the notebook's `metrics.json`.

`group_stats` measures every group ("real/<folder>", "sim/<preset>"), `format_group_stats`
prints them, `explore_metrics_doc` builds the metrics.json doc (keys from
`semlab.metrics.keys`).
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np

from semlab.metrics import keys as K
from semlab.metrics.spectral import mean_radial_spectrum, noise_sigma_estimate, spectral_slope
from semlab.runs import metric, metrics_doc

__all__ = ["group_stats", "format_group_stats", "realism_metrics", "explore_metrics_doc"]

NOTEBOOK = "00_explore_data"


def group_stats(real: Mapping[str, Sequence[np.ndarray]], sim: Mapping[str, Sequence[np.ndarray]]) -> list[dict]:
    """One row per group, real groups first: {group: "real/<name>" | "sim/<name>", n (crops),
    noise_sigma (median of `noise_sigma_estimate` over crops), spectral_slope (of the mean
    radial spectrum)}."""
    rows = []
    for kind, groups in (("real", real), ("sim", sim)):
        for name, crops in groups.items():
            freq, mean, _, _ = mean_radial_spectrum(crops)
            rows.append({"group": f"{kind}/{name}", "n": len(crops),
                         "noise_sigma": float(np.median([noise_sigma_estimate(c) for c in crops])),
                         "spectral_slope": spectral_slope(freq, mean)})
    return rows


def format_group_stats(rows: Sequence[Mapping]) -> str:
    """The rows of `group_stats` as a plain-text table."""
    lines = [f"{'group':<28}{'crops':>6}{'noise sigma':>13}{'spectral slope':>16}"]
    lines += [f"{r['group']:<28}{r['n']:>6}{r['noise_sigma']:>13.4f}{r['spectral_slope']:>16.2f}" for r in rows]
    return "\n".join(lines)


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.split(" (")[0].lower()).strip("_") or "preset"


def realism_metrics(comparisons: Mapping[str, Mapping]) -> dict[str, dict]:
    """`realism/<set>/<preset row>.<detector>_balanced_accuracy` (with CI, n = real test
    tiles) from {set: `semlab.realism.compare_presets` result}."""
    out = {}
    for set_name, res in comparisons.items():
        for r in res["rows"]:
            for d in res["detectors"]:
                m = r[d]
                out[K.key(f"realism/{set_name}/{_slug(r['label'])}", f"{d}_balanced_accuracy")] = metric(
                    m["balanced_accuracy"], m["ci_low"], m["ci_high"], n=res["n_real"],
                    note=f"{r['label']}; real {res['real_split']} frames {', '.join(res['frames'])}")
    return out


def explore_metrics_doc(rows: Sequence[Mapping], *, profile: str, size_px: int,
                        figure: str = "real_vs_sim.png", realism: Mapping[str, Mapping] | None = None) -> dict:
    """Notebook 00's metrics.json: per group `<group>.noise_sigma` and
    `<group>.spectral_slope` (n = crops; the pixel size of a group simulated at the real
    images' scale in its note), and `noise_sigma_ratio_sim_over_real` (median over the
    simulated groups / median over the real ones) when both sides exist. Headline: the
    ratio and the noise sigma of the first real and simulated groups. `realism`: {set:
    `semlab.realism.compare_presets` result}, added by `realism_metrics`."""
    metrics, first = {}, {}
    for r in rows:
        g = K.group_key(r["group"])
        note = r["group"][len(g) + 3:] if r["group"] != g else ""
        metrics[K.key(g, K.NOISE_SIGMA)] = metric(r["noise_sigma"], n=r["n"], unit="gray (0-1)", note=note)
        metrics[K.key(g, K.SPECTRAL_SLOPE)] = metric(r["spectral_slope"], n=r["n"], unit="log-log", note=note)
        first.setdefault(g.split("/")[0], K.key(g, K.NOISE_SIGMA))
    real_sig = [r["noise_sigma"] for r in rows if r["group"].startswith("real/")]
    sim_sig = [r["noise_sigma"] for r in rows if r["group"].startswith("sim/")]
    headline = []
    if realism:
        metrics.update(realism_metrics(realism))
    if real_sig and sim_sig:
        metrics[K.NOISE_SIGMA_RATIO] = metric(float(np.median(sim_sig) / np.median(real_sig)),
                                              n=len(real_sig) + len(sim_sig), unit="x",
                                              note="median over simulated groups / median over real groups")
        headline.append(K.NOISE_SIGMA_RATIO)
    headline += [first[k] for k in ("real", "sim") if k in first]
    sim_keys = [K.key(K.group_key(r["group"]), K.NOISE_SIGMA) for r in rows if r["group"].startswith("sim/")]
    headline += [k for k in sim_keys if k not in headline][:max(0, 2 - len(headline))]
    domain = "both" if real_sig and sim_sig else ("real" if real_sig else "sim")
    return metrics_doc(NOTEBOOK, domain, "real SEM tiles and simulated crops" if real_sig else "simulated crops",
                       sum(r["n"] for r in rows), metrics, headline=headline[:4], figure=figure,
                       profile=profile, size_px=size_px, real_available=bool(real_sig))
