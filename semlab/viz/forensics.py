"""Figures for the real-vs-generated forensics notebook: spectra, spectral peaks, detectors.

Each function returns a ``matplotlib.figure.Figure`` built without pyplot (nothing is
shown or left open). Inputs are the result objects of `semlab.forensics.spectrum` and
`semlab.forensics.detector`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence, Union

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from semlab.viz.figures import domain_name, set_label

if TYPE_CHECKING:
    from semlab.forensics.detector import DetectionResult
    from semlab.forensics.spectrum import SpectralPeak, SpectrumComparison

    Results = Union[Mapping[str, DetectionResult], Sequence[DetectionResult]]

__all__ = [
    "fake_sets_figure",
    "radial_spectra_figure",
    "spectrum_difference_figure",
    "spectral_peaks_figure",
    "confusion_matrices_figure",
    "roc_curves_figure",
    "detector_metrics_figure",
]


def _named(results) -> list[tuple[str, "DetectionResult"]]:
    if isinstance(results, Mapping):
        return list(results.items())
    if hasattr(results, "metrics") and hasattr(results, "scores"):  # a single result
        return [(results.detector, results)]
    return [(r.detector, r) for r in results]


def radial_spectra_figure(comparison: "SpectrumComparison", *, ratio: bool = True,
                          title: str | None = None, domain: str | None = None) -> Figure:
    """Mean radial power spectra (``sns.lineplot``) with their given bootstrap bands
    (``fill_between`` from each set's lo/hi arrays), log-log, and with `ratio` a second
    panel: each set's ratio to the reference in dB with its band (0 dB = same power as
    the reference images). A dotted line marks Nyquist (0.5 cycles/px); bins beyond it
    hold only diagonal frequencies (where a checkerboard sits). The set "real" is named
    after `domain` ("simulated (target)" for "sim", "target" if not given)."""
    import seaborn as sns

    c = comparison
    ncols = 2 if ratio and len(c.power) > 1 else 1
    fig = Figure(figsize=(5.2 * ncols, 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, ncols))
    colours = dict(zip(c.power, sns.color_palette(n_colors=len(c.power))))
    ref = set_label(c.reference, domain)
    ax = axes[0]
    ax.set_xscale("log")
    ax.set_yscale("log")
    pct = round(100 * c.level)
    for name, (m, lo, hi) in c.power.items():
        sns.lineplot(x=c.freq, y=m, color=colours[name], lw=1.4, errorbar=None, ax=ax,
                     label=f"{set_label(name, domain)} (n={c.n_images.get(name, '?')})")
        ax.fill_between(c.freq, np.maximum(lo, 1e-30), hi, color=colours[name], alpha=0.25, lw=0)
    ax.set_xlabel("spatial frequency (cycles/px)")
    ax.set_ylabel("power")
    ax.set_title(f"radial power spectra ({pct}% bootstrap bands)", fontsize=9)
    if c.freq.max() > 0.5:
        ax.axvline(0.5, color="0.4", ls=":", lw=1)
    ax.grid(alpha=0.3, which="both")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor log labels overlap
    ax.legend(fontsize=8)
    if ncols == 2:
        ax = axes[1]
        ax.set_xscale("log")
        for name, (m, lo, hi) in c.ratio_db.items():
            if name == c.reference:
                continue
            sns.lineplot(x=c.freq, y=m, color=colours.get(name), lw=1.4, errorbar=None, ax=ax,
                         label=f"{set_label(name, domain)} (n={c.n_images.get(name, '?')})")
            ax.fill_between(c.freq, lo, hi, color=colours.get(name), alpha=0.25, lw=0)
        ax.axhline(0, color="k", lw=0.8)
        if c.freq.max() > 0.5:
            ax.axvline(0.5, color="0.4", ls=":", lw=1)
        ax.set_xlabel("spatial frequency (cycles/px)")
        ax.set_ylabel(f"power vs {ref} (dB)")
        ax.set_title(f"ratio to {ref} (n={c.n_images.get(c.reference, '?')})", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def spectrum_difference_figure(diffs: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], *,
                               vmax: float | None = None, title: str | None = None,
                               domain: str | None = None) -> Figure:
    """One panel per generator: the generated-minus-reference 2-D spectrum difference in dB
    (`log_spectrum_difference`), zero frequency centred, a diverging colour map
    symmetric around 0 (red: the generator adds power, blue: it lacks power). `vmax`
    (dB) defaults to the 99th percentile of |difference| over all panels. The reference
    is named after `domain` ("simulated (target)", "real"; "target" if not given)."""
    if not diffs:
        raise ValueError("spectrum_difference_figure needs at least one difference map")
    if vmax is None:
        vmax = float(np.percentile(np.concatenate([np.abs(d[2]).ravel() for d in diffs.values()]), 99)) or 1.0
    n = len(diffs)
    fig = Figure(figsize=(3.6 * n + 0.8, 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n))
    im = None
    for ax, (name, (fy, fx, d)) in zip(axes, diffs.items()):
        dy, dx = (fy[1] - fy[0]) / 2, (fx[1] - fx[0]) / 2
        im = ax.imshow(d, cmap="RdBu_r", vmin=-vmax, vmax=vmax, origin="lower", interpolation="nearest",
                       extent=(fx[0] - dx, fx[-1] + dx, fy[0] - dy, fy[-1] + dy))
        ax.set_title(f"{name} - {domain_name(domain)}", fontsize=9)
        ax.set_xlabel("fx (cycles/px)")
        ax.set_ylabel("fy (cycles/px)")
    fig.colorbar(im, ax=list(axes), shrink=0.85, label="dB")
    if title:
        fig.suptitle(title)
    return fig


def spectral_peaks_figure(spectrum: tuple[np.ndarray, np.ndarray, np.ndarray], peaks: Sequence["SpectralPeak"],
                          *, title: str | None = None, annotate: int = 6) -> Figure:
    """The mean 2-D log spectrum ((fy, fx, P) from `mean_power_spectrum_2d`) with the
    detected peaks circled (each at +f and -f) and the strongest `annotate` labelled
    with their period in px and z-score."""
    fy, fx, p = spectrum
    fig = Figure(figsize=(5.0, 4.4), layout="constrained")
    ax = fig.subplots()
    dy, dx = (fy[1] - fy[0]) / 2, (fx[1] - fx[0]) / 2
    logp = np.log10(np.maximum(p, 1e-30))
    finite = logp[np.isfinite(logp) & (p > 0)]
    vmin, vmax = (np.percentile(finite, [1, 99.9]) if finite.size else (None, None))
    im = ax.imshow(logp, cmap="magma", origin="lower", interpolation="nearest", vmin=vmin, vmax=vmax,
                   extent=(fx[0] - dx, fx[-1] + dx, fy[0] - dy, fy[-1] + dy))
    fig.colorbar(im, ax=ax, shrink=0.85, label="log10 power")
    ext_y = (fy[0] - dy - 1e-9, fy[-1] + dy + 1e-9)
    ext_x = (fx[0] - dx - 1e-9, fx[-1] + dx + 1e-9)
    for k, pk in enumerate(peaks):
        pts = {(pk.fy, pk.fx), (-pk.fy, -pk.fx)}
        for y, x in list(pts):  # a Nyquist component is +0.5 = -0.5: drawn where the array holds it
            if abs(abs(y) - 0.5) < 1e-9:
                pts |= {(-y, x)}
            if abs(abs(x) - 0.5) < 1e-9:
                pts |= {(y, -x)}
                if abs(abs(y) - 0.5) < 1e-9:
                    pts |= {(-y, -x)}
        for y, x in pts:
            if ext_y[0] <= y <= ext_y[1] and ext_x[0] <= x <= ext_x[1]:
                ax.plot(x, y, marker="o", ms=13, mfc="none", mec="cyan", mew=1.5)
        if k < annotate:
            ax.annotate(f"{pk.period_px:.2f} px (z={pk.z:.0f})", (pk.fx, pk.fy), xytext=(6, 6 + 10 * (k % 2)),
                        textcoords="offset points", color="cyan", fontsize=8)
    ax.set_xlim(ext_x)
    ax.set_ylim(ext_y)
    ax.set_xlabel("fx (cycles/px)")
    ax.set_ylabel("fy (cycles/px)")
    ax.set_title(title or f"mean spectrum: {len(peaks)} peak(s)", fontsize=9)
    return fig


def _class_names(domain: str | None, class_names: Sequence[str] | None) -> list[str]:
    if class_names is not None:
        if len(class_names) != 2:
            raise ValueError(f"class_names needs 2 names (reference, generated), got {list(class_names)}")
        return [str(n) for n in class_names]
    return [domain_name(domain), "generated"]


def confusion_matrices_figure(results: "Results", *, normalize: bool = True, domain: str | None = None,
                              class_names: Sequence[str] | None = None) -> Figure:
    """One annotated confusion matrix (``sns.heatmap``) per detector (rows: true
    reference / generated, with their n; columns: predicted), as counts or, with
    `normalize`, as fractions of each true class with the counts in brackets. The
    reference class is named after `domain` ("simulated (target)", "real"; "target" if
    not given) unless `class_names` are given."""
    import seaborn as sns

    named = _named(results)
    names = _class_names(domain, class_names)
    n = len(named)
    fig = Figure(figsize=(3.3 * n + 0.4, 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n))
    for ax, (name, r) in zip(axes, named):
        cm = np.asarray(r.confusion, dtype=np.float64)
        show = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
        annot = np.array([[f"{show[i, j]:.2f}\n({int(cm[i, j])})" if normalize else f"{int(cm[i, j])}"
                           for j in range(2)] for i in range(2)])
        sns.heatmap(show, annot=annot, fmt="", cmap="Blues", vmin=0, vmax=1 if normalize else max(cm.max(), 1),
                    cbar=False, square=True, linewidths=0.5, linecolor="white", annot_kws={"fontsize": 9}, ax=ax,
                    xticklabels=[c.replace(" (", "\n(") for c in names], yticklabels=[f"{c}\nn={int(k)}" for c, k in zip(names, cm.sum(axis=1))])
        ax.tick_params(axis="y", rotation=0)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        acc = r.metrics["accuracy"]
        ax.set_title(f"{name} (n={int(cm.sum())})\naccuracy {acc.value:.3f} [{acc.lo:.3f}, {acc.hi:.3f}]", fontsize=9)
    return fig


def roc_curves_figure(results: "Results", *, title: str | None = None, domain: str | None = None) -> Figure:
    """ROC curves of the out-of-fold scores of each detector, the AUC and its CI and n
    in the legend, the chance diagonal dashed. The reference class is named after
    `domain` ("simulated (target)", "real"; "target" if not given)."""
    from sklearn.metrics import roc_curve

    ref = domain_name(domain)
    fig = Figure(figsize=(4.6, 4.2), layout="constrained")
    ax = fig.subplots()
    for name, r in _named(results):
        fpr, tpr, _ = roc_curve(r.labels, r.scores)
        auc = r.metrics["roc_auc"]
        n_ref, n_gen = int((np.asarray(r.labels) == 0).sum()), int((np.asarray(r.labels) == 1).sum())
        ax.plot(fpr, tpr, lw=1.5,
                label=f"{name}: AUC {auc.value:.3f} [{auc.lo:.3f}, {auc.hi:.3f}], n={n_ref}+{n_gen}")
    ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel(f"false positive rate ({ref} called generated)")
    ax.set_ylabel("true positive rate")
    ax.set_title(title or f"{ref} vs generated: ROC (out-of-fold)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def detector_metrics_figure(results: "Results", metrics: Sequence[str] = ("accuracy", "balanced_accuracy", "roc_auc"),
                            *, title: str | None = None, kind: str = "bars", domain: str | None = None) -> Figure:
    """How detectable is each generator, and by what. `kind="bars"`: one row per
    detector (with its n reference + generated images), one panel per metric, bars with
    their confidence intervals and the value written beside them; the dashed line is
    chance (0.5). `kind="grid"`: one annotated heatmap (``sns.heatmap``), detectors x
    metrics, each cell "value [lo, hi]", coloured from chance (0.5, white) to 1."""
    named = _named(results)
    if not named:
        raise ValueError("detector_metrics_figure needs at least one result")
    if kind not in ("bars", "grid"):
        raise ValueError(f"kind {kind!r}; valid: 'bars', 'grid'")
    rows = [f"{name} (n={r.n_real}+{r.n_generated})" for name, r in named]
    n, m = len(named), len(metrics)
    if kind == "grid":
        import seaborn as sns

        vals = np.array([[r.metrics[k].value for k in metrics] for _, r in named], dtype=float)
        annot = np.array([[f"{r.metrics[k].value:.3f}\n[{r.metrics[k].lo:.3f}, {r.metrics[k].hi:.3f}]"
                           for k in metrics] for _, r in named])
        fig = Figure(figsize=(2.0 * m + 3.2, 0.6 * n + 1.6), layout="constrained")
        ax = fig.subplots()
        sns.heatmap(vals, annot=annot, fmt="", cmap="vlag", vmin=0, vmax=1, linewidths=0.5,
                    xticklabels=[k.replace("_", " ") for k in metrics], yticklabels=rows, ax=ax,
                    annot_kws={"fontsize": 8}, cbar_kws={"label": "value (0.5 = chance)"})
        ax.tick_params(axis="y", rotation=0)
        ax.set_title(title or f"{domain_name(domain)} vs generated: detector metrics (95% CI)", fontsize=9)
        return fig
    fig = Figure(figsize=(3.2 * m + 1.6, 0.55 * n + 1.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, m, sharey=True))
    y = np.arange(n)[::-1]
    for ax, key in zip(axes, metrics):
        vals = np.array([r.metrics[key].value for _, r in named])
        lo = np.array([r.metrics[key].lo for _, r in named])
        hi = np.array([r.metrics[key].hi for _, r in named])
        ax.barh(y, vals, xerr=[vals - lo, hi - vals], color="tab:blue", alpha=0.75, capsize=3)
        for yi, v, l, h in zip(y, vals, lo, hi):
            ax.text(0.02, yi, f"{v:.3f} [{l:.3f}, {h:.3f}]", va="center", fontsize=7,
                    transform=ax.get_yaxis_transform(), bbox={"fc": "white", "ec": "none", "alpha": 0.75, "pad": 1})
        ax.axvline(0.5, color="0.4", ls="--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_title(key.replace("_", " "), fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(y, rows)
    if title:
        fig.suptitle(title)
    return fig


def fake_sets_figure(masks, real, fakes: Mapping[str, np.ndarray], *, n: int = 3, zoom: int | None = 32,
                     titles: Sequence[str] | None = None, domain: str | None = None) -> Figure:
    """Side by side for the first `n` masks: the mask (canonical palette), the reference image
    and each model's image made from that mask (columns). With `zoom` (px), a second row
    per mask shows the central `zoom` x `zoom` window of each image enlarged without
    interpolation, where pixel-scale artifacts (checkerboards, missing noise grain) are
    visible. All images share the gray scale [0, 1]. The reference column is named
    after `domain` ("simulated (target)", "real"; "target" if not given)."""
    from semlab import labels
    from semlab.viz.figures import axis_off, show_gray

    real = np.asarray(real, dtype=np.float32)
    masks = np.asarray(masks)
    k = min(int(n), len(real))
    if k < 1:
        raise ValueError("fake_sets_figure needs at least one image")
    cols = ["mask", domain_name(domain), *fakes]
    rows_per = 2 if zoom else 1
    fig = Figure(figsize=(2.1 * len(cols), 2.2 * k * rows_per + 0.3), layout="constrained")
    axes = np.atleast_2d(fig.subplots(k * rows_per, len(cols), squeeze=False))
    palette = np.array([c.rgb for c in labels.CLASSES], dtype=np.float32) / 255.0
    h, w = real.shape[1:]
    z = min(int(zoom), h, w) if zoom else 0
    y0, x0 = (h - z) // 2, (w - z) // 2
    for i in range(k):
        imgs = [None, real[i], *[np.asarray(f[i], dtype=np.float32) for f in fakes.values()]]
        for j, name in enumerate(cols):
            ax = axes[i * rows_per, j]
            if j == 0:
                ax.imshow(palette[np.clip(masks[i], 0, len(palette) - 1)], interpolation="nearest")
                axis_off(ax)
                ax.set_title(titles[i] if titles is not None else "mask", fontsize=8)
                if z:
                    ax.add_patch(_rect(x0, y0, z))
            else:
                show_gray(ax, imgs[j], name if i == 0 else None)
                if z:
                    ax.add_patch(_rect(x0, y0, z))
            if z:
                zax = axes[i * rows_per + 1, j]
                if j == 0:
                    zax.imshow(palette[np.clip(masks[i][y0:y0 + z, x0:x0 + z], 0, len(palette) - 1)],
                               interpolation="nearest")
                    axis_off(zax)
                    zax.set_title(f"centre {z}x{z} px", fontsize=8)
                else:
                    show_gray(zax, imgs[j][y0:y0 + z, x0:x0 + z])
    return fig


def _rect(x0: int, y0: int, z: int):
    from matplotlib.patches import Rectangle

    return Rectangle((x0 - 0.5, y0 - 0.5), z, z, fill=False, ec="cyan", lw=1.0)
