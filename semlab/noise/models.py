"""Parametric residual-noise models of `semlab.noise` (registered kinds).

* ``poisson-gaussian``: white noise whose variance is a straight line in the signal,
  ``var = a * clean + b`` (shot noise plus detector noise). With ``gamma=True`` a pixel
  is drawn from a Gamma distribution of mean `clean` and that variance (Mack & Lorusso
  2019: SEM gray levels are Gamma-distributed, skewed to bright values), else Gaussian.
* ``spectral``: the same variance curve, coloured by the 2-D noise power spectrum (at
  most 64 x 64 bins: correlation along the scan and between lines) plus per-row offsets
  (line-to-line noise); noise is still a function of the signal.
* ``patch-bank``: real residual patches (16 x 16 px, at most 4096, float16) drawn by the
  local clean level (quantile bins) and stitched with 50% overlap under sine windows
  whose squares sum to one (variance is kept, no seams).
* ``spectrum-match``: no noise drawn at all: a whole-image correction that scales every
  Fourier coefficient by (real radial mean amplitude) / (own radial mean amplitude) in
  its radial frequency bin, so the phase is kept exactly and high-frequency power is
  added or removed, whichever the real set needs. It amplifies what is there (gain at
  most `max_gain`, 10 by default): it corrects a generated image that has too little or
  too much high-frequency power; it cannot put noise on a noise-free image.

**Residuals** are ``image - clean``. With the clean images given (the simulator's
``clean`` output) they are exact. Without, the clean estimate is `denoise`: scikit-image's
non-local means (``fast_mode``, 5 x 5 patches, search distance 6, ``h = 0.8 sigma`` with
sigma from `immerkaer_sigma`), which keeps edges, so that the residual holds noise and
not structure; the variance of each signal bin is read robustly (1.4826 x MAD), which
discounts the edge pixels the denoiser still leaves. A denoiser also removes part of the
noise (its low frequencies, and all of a JPEG's correlated noise it cannot tell from
structure), so without clean images the fitted level is calibrated: a and b are scaled
together so that the mean predicted variance equals the mean of `noise_sigma` squared over
the frames (the spectral single-frame estimator, which agrees with repeated scans within
20% on the litho stack). The shape of the curve comes from the residuals, its level from
`noise_sigma`. That estimator needs room: on 256-px tiles of a dense 2-D lattice
(simulated contacts) it reads about 1.8x the noise, on 512-px tiles 1.15x, on line
gratings 1.06x at 256 px and 1.01x at 512 px; so fit on large tiles (`semlab inject` uses
512 px where the frames allow), or pass clean images, or ``calibrate=False`` (the
denoiser's residual as it is: low for correlated noise).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from semlab.noise.estimate import immerkaer_sigma, noise_sigma, noise_spectrum
from semlab.noise.registry import ModelMeta, NoiseModel, register

__all__ = ["denoise", "residuals", "variance_curve", "radial_amplitude", "PoissonGaussian", "Spectral",
           "PatchBank", "SpectrumMatch", "PARAMETRIC"]

PARAMETRIC = ("poisson-gaussian", "spectral", "patch-bank", "spectrum-match")
MAX_SPECTRUM = 64


# --------------------------------------------------------------------------- helpers


def denoise(img: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """The clean estimate used when no clean image is known (module doc): non-local means
    with h = 0.8 sigma, sigma from `immerkaer_sigma` unless given. float32, same shape."""
    from skimage.restoration import denoise_nl_means

    x = np.asarray(img, dtype=np.float32)
    s = immerkaer_sigma(x) if sigma is None else float(sigma)
    if s <= 0:
        return x.copy()
    return np.asarray(denoise_nl_means(x, patch_size=5, patch_distance=6, h=0.8 * s, sigma=s, fast_mode=True,
                                       preserve_range=True), dtype=np.float32)


def residuals(images, cleans=None) -> tuple[list[np.ndarray], list[np.ndarray], bool]:
    """(clean estimates, residuals = image - clean, whether the cleans were estimated)."""
    estimated = cleans is None
    cl = [denoise(i) for i in images] if estimated else [np.asarray(c, np.float32) for c in cleans]
    return cl, [np.asarray(i, np.float32) - c for i, c in zip(images, cl)], estimated


def variance_curve(cleans, resid, *, bins: int = 16, min_count: int = 200) -> dict[str, Any]:
    """Residual variance against the clean level: per bin of the clean level (equal width
    between its 0.5 and 99.5 percentiles) a robust variance, the larger of (1.4826 MAD)^2
    and the squared trimmed mean absolute deviation x sqrt(pi/2) (which does not collapse
    to 0 on quantized residuals), then
    weighted least squares ``var = a * clean + b`` (weights n / var^2, the inverse
    variance of a variance estimate), with a, b >= 0. Returns a, b and the per-bin
    `level`, `var`, `count` (lists)."""
    c = np.concatenate([np.ravel(x) for x in cleans]).astype(np.float64)
    r = np.concatenate([np.ravel(x - np.median(x)) for x in resid]).astype(np.float64)
    lo, hi = np.percentile(c, [0.5, 99.5])
    if hi - lo < 1e-6:
        hi = lo + 1e-6
    edges = np.linspace(lo, hi, bins + 1)
    idx = np.clip(np.digitize(c, edges) - 1, 0, bins - 1)
    level, var, count = [], [], []
    order = np.argsort(idx, kind="stable")
    splits = np.searchsorted(idx[order], np.arange(1, bins))
    for members in np.split(order, splits):
        if len(members) < min_count:
            continue
        rb = r[members]
        dev = np.abs(rb - np.median(rb))
        mad = 1.4826 * np.median(dev)
        # On 8-bit images with sub-gray-level noise the MAD collapses to 0 (most residuals are
        # one quantum apart); the mean absolute deviation (x sqrt(pi/2), Gaussian; the top 1%
        # trimmed against edge outliers, x 1.027 for the trim) does not. The larger of the two.
        mean_abs = np.sqrt(np.pi / 2) * 1.027 * float(dev[dev <= np.quantile(dev, 0.99)].mean())
        level.append(float(c[members].mean()))
        var.append(float(max(mad, mean_abs) ** 2))
        count.append(int(len(members)))
    if not level:
        raise ValueError(f"noise fit: fewer than {min_count} pixels in every signal bin; use larger images")
    L, V, N = np.array(level), np.array(var), np.array(count, np.float64)
    w = N / np.maximum(V, 1e-20) ** 2
    a, b = _wls_line(L, V, w)
    return {"a": a, "b": b, "level": level, "var": var, "count": count}


def _wls_line(x, y, w) -> tuple[float, float]:
    if len(x) >= 2 and np.ptp(x) > 0:
        A = np.stack([x, np.ones_like(x)], axis=1) * np.sqrt(w)[:, None]
        a, b = np.linalg.lstsq(A, y * np.sqrt(w), rcond=None)[0]
    else:
        a, b = 0.0, float(np.average(y, weights=w))
    if a < 0:
        a, b = 0.0, float(np.average(y, weights=w))
    if b < 0:
        b, a = 0.0, float((w * x * y).sum() / max((w * x * x).sum(), 1e-30))
    return float(a), float(b)


def _calibration(images, cleans, a: float, b: float) -> float:
    """Factor k so that k * mean(a clean + b) = mean(noise_sigma(image)^2)."""
    target = float(np.mean([noise_sigma(i) ** 2 for i in images]))
    pred = float(np.mean([np.mean(a * c + b) for c in cleans]))
    return target / pred if pred > 0 else 1.0


def _level_fit(images, cleans, calibrate: bool = True) -> tuple[dict[str, Any], list[np.ndarray], list[np.ndarray]]:
    cl, res, estimated = residuals(images, cleans)
    curve = variance_curve(cl, res)
    k = _calibration(images, cl, curve["a"], curve["b"]) if estimated and calibrate else 1.0
    curve.update(a=curve["a"] * k, b=curve["b"] * k, calibration=float(k), estimated_clean=bool(estimated))
    return curve, cl, res


def _seed_of(meta: ModelMeta) -> int:
    return int((meta.data_sha256 or "0")[:16], 16)


def _params(params: dict[str, Any], spec: dict[str, type | tuple], source: str) -> dict[str, Any]:
    """Check a params dict against {name: type(s)}: no missing, no extra keys, right types."""
    extra, missing = set(params) - set(spec), set(spec) - set(params)
    if extra or missing:
        raise ValueError(f"{source}: params: unknown keys {sorted(extra)}, missing keys {sorted(missing)}")
    for k, t in spec.items():
        v = params[k]
        if t is float:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
        elif t is list:
            ok = isinstance(v, list) and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in v)
        else:
            ok = isinstance(v, t) and not (t is int and isinstance(v, bool))
        if not ok:
            raise ValueError(f"{source}: params: {k} has the wrong type ({type(v).__name__})")
    return params


def _array(arrays: dict[str, np.ndarray], name: str, source: str, ndim: int) -> np.ndarray:
    a = arrays.get(name)
    if a is None or a.ndim != ndim or a.dtype.kind != "f" or not np.isfinite(a).all():
        raise ValueError(f"{source}: array {name!r} missing or not a finite {ndim}-D float array")
    return a


def _out(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _clean_input(clean) -> np.ndarray:
    c = np.asarray(clean, dtype=np.float32)
    if c.ndim != 2:
        raise ValueError(f"sample: expected a 2-D gray image, got shape {c.shape}")
    return c


# --------------------------------------------------------------------------- poisson-gaussian


@register
class PoissonGaussian(NoiseModel):
    """White noise of variance ``a * clean + b``; `gamma`: Gamma-distributed (module doc)."""

    kind = "poisson-gaussian"
    SPEC = {"a": float, "b": float, "gamma": bool, "calibration": float, "estimated_clean": bool,
            "curve_level": list, "curve_var": list}

    def __init__(self, a: float, b: float, *, gamma: bool = False, meta: ModelMeta | None = None,
                 calibration: float = 1.0, estimated_clean: bool = False, curve: tuple = ((), ())):
        super().__init__(meta)
        if a < 0 or b < 0:
            raise ValueError(f"poisson-gaussian: a and b must be >= 0, got a={a:g}, b={b:g}")
        self.a, self.b, self.gamma = float(a), float(b), bool(gamma)
        self.calibration, self.estimated_clean = float(calibration), bool(estimated_clean)
        self.curve_level, self.curve_var = [float(v) for v in curve[0]], [float(v) for v in curve[1]]

    @classmethod
    def _fit(cls, images, cleans, meta, *, gamma: bool = False, calibrate: bool = True):
        curve, _, _ = _level_fit(images, cleans, calibrate)
        return cls(curve["a"], curve["b"], gamma=gamma, meta=meta, calibration=curve["calibration"],
                   estimated_clean=curve["estimated_clean"], curve=(curve["level"], curve["var"]))

    def variance(self, clean: np.ndarray) -> np.ndarray:
        return np.maximum(self.a * np.asarray(clean, np.float32) + self.b, 0.0)

    def noise_level(self, clean: np.ndarray) -> float:
        """The mean noise sigma this model puts on `clean`: sqrt(mean variance)."""
        return float(np.sqrt(self.variance(clean).mean()))

    def sample(self, clean, rng):
        c = _clean_input(clean)
        var = self.variance(c)
        if not self.gamma:
            return _out(c + rng.standard_normal(c.shape, dtype=np.float32) * np.sqrt(var))
        out = c + rng.standard_normal(c.shape, dtype=np.float32) * np.sqrt(var)
        ok = (c > 1e-3) & (var > 0)
        k = c[ok].astype(np.float64) ** 2 / var[ok]
        out[ok] = rng.gamma(k, var[ok] / c[ok])
        return _out(out)

    def params(self):
        return {"a": self.a, "b": self.b, "gamma": self.gamma, "calibration": self.calibration,
                "estimated_clean": self.estimated_clean, "curve_level": self.curve_level,
                "curve_var": self.curve_var}

    @classmethod
    def from_params(cls, params, arrays, meta, folder):
        p = _params(params, cls.SPEC, f"{folder}/model.json")
        return cls(p["a"], p["b"], gamma=p["gamma"], meta=meta, calibration=p["calibration"],
                   estimated_clean=p["estimated_clean"], curve=(p["curve_level"], p["curve_var"]))


# --------------------------------------------------------------------------- spectral


def _spectrum_on(s: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An unshifted m x m spectrum resampled (linear, periodic) onto the rfft grid of
    `shape`, Hermitian-symmetric and normalised to mean 1 over the full grid."""
    from scipy.interpolate import RegularGridInterpolator

    m = s.shape[0]
    sh = np.fft.fftshift(s)
    sh = np.concatenate([sh, sh[:1]], axis=0)
    sh = np.concatenate([sh, sh[:, :1]], axis=1)
    ax = (np.arange(m + 1) - m // 2) / m
    f = RegularGridInterpolator((ax, ax), sh, bounds_error=False, fill_value=None)
    h, w = shape
    fy = np.fft.fftfreq(h)
    fx = np.fft.fftfreq(w)
    full = f(np.stack(np.meshgrid(fy, fx, indexing="ij"), axis=-1).reshape(-1, 2)).reshape(h, w)
    full = np.maximum(full, 0)
    full = 0.5 * (full + np.roll(full[::-1, ::-1], 1, axis=(0, 1)))  # S(f) = S(-f)
    full /= max(full.mean(), 1e-30)
    return full[:, : w // 2 + 1]


def colored_noise(spectrum: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian noise of `shape` whose power spectrum has the shape of
    `spectrum` (m x m, unshifted; any scale)."""
    amp = np.sqrt(_spectrum_on(np.asarray(spectrum, np.float64), shape))
    white = rng.standard_normal(shape)
    return np.fft.irfft2(np.fft.rfft2(white) * amp, s=shape).astype(np.float32)


@register
class Spectral(NoiseModel):
    """Noise of variance ``a * clean + b`` (the poisson-gaussian curve) coloured by a 2-D
    noise spectrum, plus per-row offsets of variance `row_var` (module doc)."""

    kind = "spectral"
    SPEC = {"a": float, "b": float, "row_var": float, "calibration": float, "estimated_clean": bool}

    def __init__(self, a: float, b: float, spectrum: np.ndarray, row_var: float = 0.0, *,
                 meta: ModelMeta | None = None, calibration: float = 1.0, estimated_clean: bool = False):
        super().__init__(meta)
        s = np.asarray(spectrum, np.float32)
        if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] > MAX_SPECTRUM or s.shape[0] < 8:
            raise ValueError(f"spectral: the spectrum must be square, 8..{MAX_SPECTRUM} bins, got {s.shape}")
        if a < 0 or b < 0 or row_var < 0 or (s < 0).any():
            raise ValueError("spectral: a, b, row_var and the spectrum must be >= 0")
        self.a, self.b, self.row_var = float(a), float(b), float(row_var)
        self.spectrum = s  # any scale: sampling normalises it to unit variance
        self.calibration, self.estimated_clean = float(calibration), bool(estimated_clean)

    @classmethod
    def _fit(cls, images, cleans, meta, *, calibrate: bool = True):
        curve, cl, res = _level_fit(images, cleans, calibrate)
        src = images if curve["estimated_clean"] else res  # the denoiser's residual lacks low frequencies
        spec = np.mean([noise_spectrum(x, segment=min(MAX_SPECTRUM, _seg(x)))[1] for x in src], axis=0)
        spec = spec / max(float(spec.mean()), 1e-30)
        # per-row offsets: robust variance of first differences of the residual's row means,
        # less what the 2-D noise itself puts into a row mean (its spectrum at fx = 0 / width)
        mean_var = float(np.mean([np.mean(curve["a"] * c + curve["b"]) for c in cl]))
        # (the row means of the 2-D noise have the spectrum S(fy, 0) / width; differencing
        # multiplies it by 2 - 2 cos(2 pi fy))
        fy = np.fft.fftfreq(spec.shape[0])
        per_row = mean_var * float(np.mean(spec[:, 0] * (1 - np.cos(2 * np.pi * fy))))
        rv = []
        for r in res:
            d = np.diff(r.mean(axis=1, dtype=np.float64))
            var_d = (1.4826 * np.median(np.abs(d - np.median(d)))) ** 2
            rv.append(max(0.0, var_d / 2 - per_row / r.shape[1]))
        row_var = float(np.mean(rv))
        b = curve["b"]
        if not curve["estimated_clean"]:  # the exact residuals' variance holds the offsets too
            b = max(b - row_var, 0.0)
        return cls(curve["a"], b, spec, row_var, meta=meta, calibration=curve["calibration"],
                   estimated_clean=curve["estimated_clean"])

    def sample(self, clean, rng):
        c = _clean_input(clean)
        field = colored_noise(self.spectrum, c.shape, rng)
        out = c + field * np.sqrt(np.maximum(self.a * c + self.b, 0.0))
        if self.row_var > 0:
            out += (np.sqrt(self.row_var) * rng.standard_normal(c.shape[0])).astype(np.float32)[:, None]
        return _out(out)

    def params(self):
        return {"a": self.a, "b": self.b, "row_var": self.row_var, "calibration": self.calibration,
                "estimated_clean": self.estimated_clean}

    def arrays(self):
        return {"spectrum": self.spectrum.astype(np.float32)}

    @classmethod
    def from_params(cls, params, arrays, meta, folder):
        src = f"{folder}/model.json"
        p = _params(params, cls.SPEC, src)
        s = _array(arrays, "spectrum", f"{folder}/arrays.npz", 2)
        return cls(p["a"], p["b"], s, p["row_var"], meta=meta, calibration=p["calibration"],
                   estimated_clean=p["estimated_clean"])


def _seg(x: np.ndarray) -> int:
    m = 1 << int(np.floor(np.log2(max(min(x.shape) / 2, 1))))
    return int(np.clip(m, 8, MAX_SPECTRUM))


# --------------------------------------------------------------------------- patch bank


def _window(p: int) -> np.ndarray:
    """Sine window: with a hop of p/2 the squares of overlapping windows sum to one."""
    w1 = np.sin(np.pi * (np.arange(p) + 0.5) / p)
    return np.outer(w1, w1).astype(np.float32)


@register
class PatchBank(NoiseModel):
    """Real residual patches drawn by local clean level (module doc). Patches are stored
    divided by the fitted noise sigma sqrt(a clean + b) of their own pixels and multiplied
    by that of the target's pixels when placed: the patch brings the noise's texture and
    correlation, the curve its level pixel by pixel."""

    kind = "patch-bank"
    SPEC = {"patch": int, "edges": list, "a": float, "b": float, "calibration": float, "estimated_clean": bool}

    def __init__(self, patches: np.ndarray, levels: np.ndarray, edges, a: float, b: float, *,
                 meta: ModelMeta | None = None, calibration: float = 1.0, estimated_clean: bool = False):
        super().__init__(meta)
        if a < 0 or b < 0 or a + b <= 0:
            raise ValueError(f"patch-bank: a, b must be >= 0 and not both 0, got a={a:g}, b={b:g}")
        self.a, self.b = float(a), float(b)
        p = np.asarray(patches)
        if p.ndim != 3 or p.shape[1] != p.shape[2] or p.shape[1] % 2 or not 4 <= p.shape[1] <= 64:
            raise ValueError(f"patch-bank: patches must be (N, p, p) with even p in 4..64, got {p.shape}")
        if len(p) == 0 or len(p) > 4096 or len(levels) != len(p):
            raise ValueError(f"patch-bank: 1..4096 patches with one level each, got {len(p)} and {len(levels)}")
        self.patches = p.astype(np.float16)
        self.levels = np.asarray(levels, np.float32)
        self.edges = np.asarray(edges, np.float64)
        self.calibration, self.estimated_clean = float(calibration), bool(estimated_clean)
        self._bins = self._members()

    def _members(self) -> list[np.ndarray]:
        idx = np.clip(np.digitize(self.levels, self.edges[1:-1]), 0, len(self.edges) - 2)
        members = [np.flatnonzero(idx == k) for k in range(len(self.edges) - 1)]
        # an empty bin borrows its nearest non-empty neighbour
        full = [k for k, m in enumerate(members) if len(m)]
        return [m if len(m) else members[min(full, key=lambda j: abs(j - k))] for k, m in enumerate(members)]

    @classmethod
    def _fit(cls, images, cleans, meta, *, patch: int = 16, max_patches: int = 4096, bins: int = 8,
             calibrate: bool = True):
        curve, cl, res = _level_fit(images, cleans, calibrate)
        gain = np.sqrt(curve["calibration"])
        a, b = curve["a"], curve["b"]
        if a + b <= 0:
            raise ValueError("patch-bank fit: the residuals have no noise")
        pats, levs = [], []
        for c, r in zip(cl, res):
            r = r * gain / np.sqrt(np.maximum(a * c + b, 1e-12))
            h, w = r.shape
            hh, ww = h // patch * patch, w // patch * patch
            rp = r[:hh, :ww].reshape(hh // patch, patch, ww // patch, patch).transpose(0, 2, 1, 3)
            cp = c[:hh, :ww].reshape(hh // patch, patch, ww // patch, patch).mean(axis=(1, 3))
            pats.append(rp.reshape(-1, patch, patch))
            levs.append(cp.ravel())
        P, L = np.concatenate(pats), np.concatenate(levs)
        if len(P) < bins:
            raise ValueError(f"patch-bank fit: only {len(P)} patches of {patch} px; use larger images")
        if len(P) > max_patches:
            keep = np.sort(np.random.default_rng(_seed_of(meta)).choice(len(P), max_patches, replace=False))
            P, L = P[keep], L[keep]
        edges = np.quantile(L, np.linspace(0, 1, bins + 1))
        edges[0], edges[-1] = 0.0, 1.0
        return cls(P, L, edges.tolist(), a, b, meta=meta, calibration=curve["calibration"],
                   estimated_clean=curve["estimated_clean"])

    def sample(self, clean, rng):
        c = _clean_input(clean)
        h, w = c.shape
        p = self.patches.shape[1]
        s = p // 2
        win = _window(p)
        ny, nx = -(-(h + s) // s), -(-(w + s) // s)
        canvas = np.zeros((ny * s + s, nx * s + s), np.float32)
        cpad = np.pad(c, ((s, canvas.shape[0] - h - s), (s, canvas.shape[1] - w - s)), mode="edge")
        # the clean level under each block
        block = cpad[: ny * s + s, : nx * s + s]
        lev = np.empty((ny, nx), np.float32)
        for j in range(ny):
            for i in range(nx):
                lev[j, i] = block[j * s: j * s + p, i * s: i * s + p].mean()
        kb = np.clip(np.digitize(lev, self.edges[1:-1]), 0, len(self.edges) - 2)
        u = rng.random((ny, nx))
        for j in range(ny):
            for i in range(nx):
                m = self._bins[kb[j, i]]
                k = m[min(int(u[j, i] * len(m)), len(m) - 1)]
                canvas[j * s: j * s + p, i * s: i * s + p] += win * self.patches[k].astype(np.float32)
        return _out(c + canvas[s: s + h, s: s + w] * np.sqrt(np.maximum(self.a * c + self.b, 0.0)))

    def params(self):
        return {"patch": int(self.patches.shape[1]), "edges": [float(e) for e in self.edges], "a": self.a, "b": self.b,
                "calibration": self.calibration, "estimated_clean": self.estimated_clean}

    def arrays(self):
        return {"patches": self.patches, "levels": self.levels}

    @classmethod
    def from_params(cls, params, arrays, meta, folder):
        p = _params(params, cls.SPEC, f"{folder}/model.json")
        pats = _array(arrays, "patches", f"{folder}/arrays.npz", 3)
        levs = _array(arrays, "levels", f"{folder}/arrays.npz", 1)
        if pats.shape[1] != p["patch"]:
            raise ValueError(f"{folder}/arrays.npz: patches are {pats.shape[1]} px, model.json says {p['patch']}")
        e = np.asarray(p["edges"])
        if len(e) < 2 or np.any(np.diff(e) < 0):
            raise ValueError(f"{folder}/model.json: params: edges must be a rising list of at least 2 levels")
        return cls(pats, levs, e, p["a"], p["b"], meta=meta, calibration=p["calibration"], estimated_clean=p["estimated_clean"])


# --------------------------------------------------------------------------- spectrum match


def _radius(shape: tuple[int, int]) -> np.ndarray:
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    return np.sqrt(fy ** 2 + fx ** 2)


def radial_amplitude(img: np.ndarray, bins: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(bin edges in cycles/px, mean |FFT| / sqrt(H W) of the mean-removed image per radial
    bin; DC excluded). White noise of std s gives s in every bin (times sqrt(pi)/2)."""
    x = np.asarray(img, np.float64)
    edges = np.linspace(0.0, np.sqrt(0.5), bins + 1)
    amp = np.abs(np.fft.fft2(x - x.mean())) / np.sqrt(x.size)
    r = _radius(x.shape)
    idx = np.clip(np.digitize(r, edges) - 1, 0, bins - 1)
    idx[0, 0] = -1
    ok = idx >= 0
    s = np.bincount(idx[ok], amp[ok], minlength=bins)
    n = np.bincount(idx[ok], minlength=bins)
    return edges, np.where(n > 0, s / np.maximum(n, 1), np.nan)


@register
class SpectrumMatch(NoiseModel):
    """Moves an image's radial mean amplitude spectrum to the real set's (module doc)."""

    kind = "spectrum-match"
    SPEC = {"bins": int, "max_gain": float, "target": list}

    def __init__(self, target, *, bins: int = 64, max_gain: float = 10.0, meta: ModelMeta | None = None):
        super().__init__(meta)
        t = np.asarray(target, np.float64)
        if t.shape != (bins,) or not (np.isnan(t) | (t >= 0)).all():
            raise ValueError(f"spectrum-match: target must be {bins} amplitudes >= 0, got shape {t.shape}")
        if not max_gain > 1:
            raise ValueError(f"spectrum-match: max_gain must be > 1, got {max_gain}")
        self.target, self.bins, self.max_gain = t, int(bins), float(max_gain)

    @classmethod
    def _fit(cls, images, cleans, meta, *, bins: int = 64, max_gain: float = 10.0):
        amps = np.array([radial_amplitude(x, bins)[1] for x in images])
        seen = np.isfinite(amps).any(axis=0)  # small images leave some radial bins empty: unknown (NaN)
        t = np.full(bins, np.nan)
        t[seen] = np.nanmean(amps[:, seen], axis=0)
        return cls(t, bins=bins, max_gain=max_gain, meta=meta)

    def gain(self, img: np.ndarray) -> np.ndarray:
        """The per-bin gain target / own amplitude (1 where either is unknown), bounded by
        [1 / max_gain, max_gain]."""
        _, own = radial_amplitude(img, self.bins)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = self.target / own
        g = np.where(np.isfinite(g) & (own > 1e-12), g, 1.0)
        return np.clip(g, 1.0 / self.max_gain, self.max_gain)

    def apply(self, img: np.ndarray, *, clip: bool = True) -> np.ndarray:
        x = _clean_input(img).astype(np.float64)
        g = self.gain(x)
        edges = np.linspace(0.0, np.sqrt(0.5), self.bins + 1)
        idx = np.clip(np.digitize(_radius(x.shape), edges) - 1, 0, self.bins - 1)
        gg = g[idx]
        gg[0, 0] = 1.0
        m = x.mean()
        y = np.fft.ifft2(np.fft.fft2(x - m) * gg).real + m
        return _out(y) if clip else y.astype(np.float32)

    def sample(self, clean, rng=None):
        return self.apply(clean)

    def params(self):
        return {"bins": self.bins, "max_gain": self.max_gain,
                "target": [float(v) if np.isfinite(v) else -1.0 for v in self.target]}

    @classmethod
    def from_params(cls, params, arrays, meta, folder):
        p = _params(params, cls.SPEC, f"{folder}/model.json")
        t = np.asarray(p["target"], np.float64)
        t[t == -1.0] = np.nan
        return cls(t, bins=p["bins"], max_gain=p["max_gain"], meta=meta)


def params_sha256(model: NoiseModel) -> str:
    """sha256 of a model's kind, parameters and arrays (what makes its samples)."""
    import json

    h = hashlib.sha256()
    h.update(json.dumps({"kind": model.kind, "params": model.params()}, sort_keys=True).encode())
    for k, a in sorted(model.arrays().items()):
        h.update(k.encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def model_summary(model: NoiseModel) -> dict[str, Any]:
    """A short JSON-able description (kind, meta, scalar params)."""
    p = {k: v for k, v in model.params().items() if not isinstance(v, list)}
    return {"kind": model.kind, "meta": model.meta.to_json(), "params": p, "params_sha256": params_sha256(model)}

