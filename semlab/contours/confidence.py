"""When to trust SAM2: a confidence score per mask and a calibrated fallback threshold.

SegSEM falls back to a traditional contour algorithm when SAM2's confidence is low but
gives no formula or threshold. We define both here and measure them on validation data.

**The score.** `confidence = sqrt(predicted_iou * stability)`, the geometric mean of

- SAM2's *predicted IoU* (its IoU head's estimate of mask quality, in [0, 1]), and
- the *stability score* (IoU of the mask thresholded at +1 and -1 logit, see
  `semlab.contours.predictor.stability_score`): 1 when the boundary does not move when
  the logits shift, i.e. when the edge position -- what a contour and its EPE measure --
  is sharply determined.

Why the geometric mean: both must be high for a mask to be trusted (a confident but
blurry boundary, or a sharp boundary on the wrong object, are both failures), and the
geometric mean behaves like an AND: it is 0 if either is 0, it is monotone in both, it
stays in [0, 1] and on the same scale as its inputs (a mask with IoU 0.9 and stability
0.9 scores 0.9), and it needs no labelled data. When validation masks exist,
`fit_logistic_confidence` learns the weights instead: a logistic model of
P(true IoU >= good_iou) on log(predicted IoU) and log(stability) -- the geometric mean
is this model's special case with equal weights, so the fitted model can only
re-weight the two signals, not invent new ones.

**The threshold.** `calibrate_threshold` takes, for validation structures, the
confidence and the error (or score) of both SAM2 and the fallback on each structure, and
picks the threshold `t` (SAM2 is used where confidence >= t, the fallback elsewhere)
that optimises the hybrid's mean: `objective="min_error"` (e.g. mean |EPE| in nm) or
`"max_score"` (e.g. mean IoU). Candidates are every observed confidence and +inf
(always fall back); among equally good thresholds the lowest is chosen (keep SAM2 when
it costs nothing). `threshold_for_precision` instead finds the lowest threshold whose
accepted SAM2 masks are "good" at a target rate. Both are computed exactly in
O(n log n) from sorted cumulative sums.

**Reliability.** `reliability_table` bins the confidence and reports the mean observed
value (IoU, or the 0/1 "good" indicator for the logistic probability) per bin, with the
count-weighted mean gap (an expected calibration error); `semlab.viz.segsem` plots it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["confidence_score", "LogisticConfidence", "fit_logistic_confidence", "ThresholdCalibration",
           "calibrate_threshold", "threshold_for_precision", "reliability_table", "hybrid_choice",
           "OBJECTIVES"]

OBJECTIVES = ("min_error", "max_score")
_EPS = 1e-6


def _as_1d(name: str, a, n: int | None = None) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} has non-finite values (map undefined errors, e.g. a missing "
                         f"contour, to a penalty before calibrating)")
    if n is not None and x.size != n:
        raise ValueError(f"{name} has {x.size} values, expected {n}")
    return x


def confidence_score(predicted_iou, stability) -> np.ndarray | float:
    """sqrt(predicted_iou * stability), both clipped to [0, 1] (see module docstring)."""
    iou = np.clip(np.asarray(predicted_iou, dtype=np.float64), 0.0, 1.0)
    st = np.clip(np.asarray(stability, dtype=np.float64), 0.0, 1.0)
    c = np.sqrt(iou * st)
    return float(c) if c.ndim == 0 else c


def _features(predicted_iou, stability) -> np.ndarray:
    iou = np.clip(np.asarray(predicted_iou, dtype=np.float64).reshape(-1), _EPS, 1.0)
    st = np.clip(np.asarray(stability, dtype=np.float64).reshape(-1), _EPS, 1.0)
    return np.stack([np.log(iou), np.log(st)], axis=1)


@dataclass(frozen=True)
class LogisticConfidence:
    """P(true IoU >= good_iou) = sigmoid(b0 + b1 log(predicted IoU) + b2 log(stability))."""

    intercept: float
    coef_iou: float
    coef_stability: float
    good_iou: float
    n_train: int = 0

    def __call__(self, predicted_iou, stability) -> np.ndarray:
        f = _features(predicted_iou, stability)
        z = self.intercept + f[:, 0] * self.coef_iou + f[:, 1] * self.coef_stability
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))

    def to_dict(self) -> dict:
        return {"intercept": self.intercept, "coef_iou": self.coef_iou, "coef_stability": self.coef_stability,
                "good_iou": self.good_iou, "n_train": self.n_train}


def fit_logistic_confidence(predicted_iou, stability, true_iou, good_iou: float = 0.9,
                            C: float = 1.0) -> LogisticConfidence:
    """Fit `LogisticConfidence` on validation structures (L2-regularised, strength 1/C).
    Raises ValueError if every structure is good, or none is (nothing to separate)."""
    from sklearn.linear_model import LogisticRegression

    f = _features(predicted_iou, stability)
    y = _as_1d("true_iou", true_iou, len(f)) >= good_iou
    if y.all() or not y.any():
        raise ValueError(f"cannot fit a confidence model: {'all' if y.any() else 'none'} of the {len(y)} "
                         f"structures reach IoU {good_iou}; use confidence_score (the geometric mean)")
    lr = LogisticRegression(C=C).fit(f, y)
    return LogisticConfidence(float(lr.intercept_[0]), float(lr.coef_[0, 0]), float(lr.coef_[0, 1]),
                              float(good_iou), int(len(y)))


@dataclass
class ThresholdCalibration:
    """The chosen threshold (SAM2 where confidence >= threshold) and the whole curve."""

    threshold: float
    objective: str
    value: float  # the hybrid's mean error (min_error) or score (max_score) at `threshold`
    sam2_fraction: float  # share of structures kept from SAM2 at `threshold`
    all_sam2: float  # the mean if SAM2 were always used
    all_fallback: float  # the mean if the fallback were always used
    oracle: float  # per-structure best of both (an upper bound no threshold reaches)
    n: int
    thresholds: np.ndarray = field(repr=False)  # candidates, ascending (last: +inf)
    values: np.ndarray = field(repr=False)  # the hybrid's mean at each candidate
    fractions: np.ndarray = field(repr=False)  # SAM2 share at each candidate

    def as_dict(self) -> dict:
        """Plain types for metrics.json (the curve left out)."""
        return {"threshold": self.threshold, "objective": self.objective, "value": self.value,
                "sam2_fraction": self.sam2_fraction, "all_sam2": self.all_sam2,
                "all_fallback": self.all_fallback, "oracle": self.oracle, "n": self.n}


def hybrid_choice(confidence, threshold: float) -> np.ndarray:
    """True where the hybrid uses SAM2 (confidence >= threshold)."""
    return np.asarray(confidence, dtype=np.float64) >= threshold


def calibrate_threshold(confidence, sam2, fallback, objective: str = "min_error") -> ThresholdCalibration:
    """The threshold optimising the hybrid's mean per-structure metric on validation data.

    `sam2[i]` and `fallback[i]` are the same metric for structure i from each method:
    an error to minimise (`objective="min_error"`, e.g. |EPE|) or a score to maximise
    (`"max_score"`, e.g. IoU). See the module docstring for candidates and ties."""
    if objective not in OBJECTIVES:
        raise KeyError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
    c = _as_1d("confidence", confidence)
    n = c.size
    if n == 0:
        raise ValueError("calibrate_threshold needs at least one structure")
    s = _as_1d("sam2", sam2, n)
    fb = _as_1d("fallback", fallback, n)
    sign = 1.0 if objective == "min_error" else -1.0  # minimise sign * metric
    order = np.argsort(c, kind="stable")
    cs, gain = c[order], (s - fb)[order]
    uniq, first = np.unique(cs, return_index=True)
    # sum over structures with confidence >= uniq[j] of (sam2 - fallback): suffix sums
    suffix = np.concatenate([np.cumsum(gain[::-1])[::-1], [0.0]])
    delta = suffix[np.concatenate([first, [n]])]
    thresholds = np.concatenate([uniq, [np.inf]])
    values = (fb.sum() + delta) / n
    fractions = (n - np.concatenate([first, [n]])) / n
    best = int(np.argmin(sign * values))  # argmin keeps the first, i.e. the lowest threshold
    return ThresholdCalibration(
        threshold=float(thresholds[best]), objective=objective, value=float(values[best]),
        sam2_fraction=float(fractions[best]), all_sam2=float(s.mean()), all_fallback=float(fb.mean()),
        oracle=float(np.minimum(s, fb).mean() if sign > 0 else np.maximum(s, fb).mean()), n=int(n),
        thresholds=thresholds, values=values, fractions=fractions)


def threshold_for_precision(confidence, good, target: float = 0.95) -> tuple[float, float, float]:
    """The lowest threshold whose accepted structures (confidence >= threshold) are good
    (`good[i]` True, e.g. IoU >= 0.9 or |EPE| below tolerance) at a rate >= `target`.

    Returns (threshold, precision, coverage); (inf, nan, 0.0) if no threshold reaches
    the target."""
    c = _as_1d("confidence", confidence)
    g = np.asarray(good, dtype=bool).reshape(-1)
    if g.size != c.size:
        raise ValueError(f"good has {g.size} values, expected {c.size}")
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target must be in [0, 1], got {target}")
    n = c.size
    order = np.argsort(c, kind="stable")
    cs, gs = c[order], g[order].astype(np.float64)
    uniq, first = np.unique(cs, return_index=True)
    good_suffix = np.concatenate([np.cumsum(gs[::-1])[::-1], [0.0]])[first]
    count = (n - first).astype(np.float64)
    precision = good_suffix / count
    ok = np.nonzero(precision >= target - 1e-12)[0]
    if ok.size == 0:
        return float("inf"), float("nan"), 0.0
    j = int(ok[0])
    return float(uniq[j]), float(precision[j]), float(count[j] / n)


def reliability_table(confidence, observed, n_bins: int = 10, strategy: str = "uniform") -> dict:
    """Binned confidence vs observed value (IoU, or 0/1 "good").

    `strategy="uniform"`: `n_bins` equal-width bins on [0, 1]; `"quantile"`: bins with
    equal counts. Returns numpy arrays `edges` (n_bins + 1), `count`, `mean_confidence`,
    `mean_observed` (NaN for empty bins) and the scalar `ece`: the count-weighted mean
    of |mean_confidence - mean_observed|."""
    c = _as_1d("confidence", confidence)
    o = _as_1d("observed", observed, c.size)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.quantile(c, np.linspace(0.0, 1.0, n_bins + 1)) if c.size else np.linspace(0, 1, n_bins + 1)
    else:
        raise KeyError(f"unknown strategy {strategy!r}; valid: uniform, quantile")
    idx = np.clip(np.searchsorted(edges, c, side="right") - 1, 0, n_bins - 1)  # last bin closed
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_c = np.bincount(idx, weights=c, minlength=n_bins) / count
        mean_o = np.bincount(idx, weights=o, minlength=n_bins) / count
    filled = count > 0
    ece = float(np.sum(count[filled] * np.abs(mean_c[filled] - mean_o[filled])) / max(c.size, 1))
    return {"edges": edges, "count": count, "mean_confidence": mean_c, "mean_observed": mean_o,
            "ece": ece, "n": int(c.size), "strategy": strategy}
