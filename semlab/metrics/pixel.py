"""Paired pixel metrics (PSNR, SSIM) with per-image values and bootstrap intervals.

Thin, tested wrappers of scikit-image's implementations on float images in [0, 1].
"""

from __future__ import annotations

import numpy as np


def psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(np.asarray(ref, np.float64), np.asarray(pred, np.float64), data_range=1.0))


def ssim(pred: np.ndarray, ref: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(np.asarray(ref, np.float64), np.asarray(pred, np.float64), data_range=1.0,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False))


def bootstrap_ci(values, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap confidence interval of the mean."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    a = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def paired_scores(preds, refs) -> dict[str, np.ndarray]:
    """Per-image PSNR and SSIM of `preds` against `refs` (sequences of 2-D arrays)."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions for {len(refs)} references")
    return {"psnr": np.array([psnr(p, r) for p, r in zip(preds, refs)]),
            "ssim": np.array([ssim(p, r) for p, r in zip(preds, refs)])}


def ci_table(rows: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, tuple[float, float, float]]]:
    """{comparison: per-image scores} -> {comparison: {metric: (mean, ci_low, ci_high)}}."""
    return {name: {k: bootstrap_ci(v) for k, v in sc.items()} for name, sc in rows.items()}


def format_ci_table(table: dict, title: str = "comparison") -> str:
    """A plain-text table of `ci_table`'s output (PSNR in dB, SSIM)."""
    lines = [f"{title:<44}{'PSNR dB [95% CI]':>26}{'SSIM [95% CI]':>26}"]
    for name, t in table.items():
        p, s = t["psnr"], t["ssim"]
        lines.append(f"{name:<44}{p[0]:>10.2f} [{p[1]:.2f}, {p[2]:.2f}]{s[0]:>10.3f} [{s[1]:.3f}, {s[2]:.3f}]")
    return "\n".join(lines)


# Wang, Simoncelli & Bovik (2003): scale weights of MS-SSIM, finest first
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _ssim_terms(x: np.ndarray, y: np.ndarray, sigma: float = 1.5) -> tuple[float, float]:
    """(mean SSIM, mean contrast-structure term) with an 11x11-support Gaussian window
    (sigma 1.5, truncate 3.5), population covariances, data range 1, border cropped as
    scikit-image does: the same SSIM as `skimage.metrics.structural_similarity(...,
    gaussian_weights=True, use_sample_covariance=False)`."""
    from scipy import ndimage

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    f = lambda a: ndimage.gaussian_filter(a, sigma, truncate=3.5)  # noqa: E731
    mx, my = f(x), f(y)
    vx = f(x * x) - mx * mx
    vy = f(y * y) - my * my
    cxy = f(x * y) - mx * my
    cs = (2 * cxy + c2) / (vx + vy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    pad = (2 * int(3.5 * sigma + 0.5) + 1 - 1) // 2
    crop = (slice(pad, -pad or None), slice(pad, -pad or None))
    return float((lum * cs)[crop].mean()), float(cs[crop].mean())


def ms_ssim(pred: np.ndarray, ref: np.ndarray, weights=MS_SSIM_WEIGHTS) -> float:
    """Multi-scale SSIM (Wang et al. 2003): contrast-structure at every scale, luminance
    at the coarsest, images halved by 2x2 averaging between scales. Scales whose image
    would be smaller than the 11-px window are dropped and the remaining weights
    renormalised (128-px images use 4 of the 5 scales)."""
    x, y = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"ms_ssim needs two 2-D images of one shape, got {x.shape} and {y.shape}")
    n = 1
    while n < len(weights) and min(x.shape) // 2 ** n >= 11:
        n += 1
    w = np.asarray(weights[:n], np.float64)
    w = w / w.sum()
    vals = []
    for s in range(n):
        ssim_s, cs_s = _ssim_terms(x, y)
        vals.append(ssim_s if s == n - 1 else cs_s)
        if s < n - 1:
            h, wd = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
            x = x[:h, :wd].reshape(h // 2, 2, wd // 2, 2).mean(axis=(1, 3))
            y = y[:h, :wd].reshape(h // 2, 2, wd // 2, 2).mean(axis=(1, 3))
    v = np.maximum(np.asarray(vals), 0.0)  # negative cs at a scale: clamp, as common implementations do
    return float(np.prod(v ** w))
