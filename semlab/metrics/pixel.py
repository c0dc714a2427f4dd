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
