"""FID and KID with the official pytorch-fid Inception weights (design.md section 5).

The network is pytorch-fid's ``InceptionV3([3], resize_input=True, normalize_input=True,
use_fid_inception=True)``, assembled by semlab (:func:`load_inception`) around the state
dict that ``semlab.weights.load_checked("pt_inception")`` finds, checks against the
official sha256 and reads with ``weights_only=True``: pytorch-fid and torch.hub never
unpickle the file. Without a usable file the metric is *unavailable*: :func:`compute_fid`
then returns ``{"fid": None, "status": "unavailable: ..."}`` and never a number from a
random network. A non-official file is used only with
``$SEMLAB_ALLOW_UNVERIFIED_WEIGHTS=1``, and the result is labelled "FID (unverified weights)".

Image conversion (the only one): a gray image (H, W), checked and converted to float32 in
[0, 1] by `semlab.arrays.as_gray_stack` (uint8 divided by 255, uint16 by 65535; images may
differ in size), is replicated to 3 channels and fed in [0, 1]; the model itself resizes it to 299x299
bilinearly and scales it to [-1, 1], exactly as pytorch-fid does for RGB images.

Features are float64 (N, 2048), the 2048-d output of the final average pool.

* :func:`frechet_distance` - FID from statistics, scipy ``sqrtm`` with pytorch-fid's
  eps-offset fallback; equals ``pytorch_fid.fid_score.calculate_frechet_distance``.
* :func:`fid_from_features` - FID from two feature sets. With fewer samples than
  dimensions (both covariances singular, the usual case below 2,049 images) it uses the
  exact identity ``tr sqrt(S1 S2) = ||A B^T||_* / sqrt((n1-1)(n2-1))`` (A, B the centred
  features), which avoids a 2048x2048 ``sqrtm`` (~10 s, and ill-conditioned there); with
  more samples it takes the trace from two symmetric ``eigh`` (exact, ~7x faster than ``sqrtm``).
* :func:`kid_from_features` - KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel
  ``k(x, y) = (x.y / d + 1)^3`` averaged over random subsets.
* :func:`feature_stats_cache` - features/statistics of a (real) set cached on disk.
* :func:`fid_infinity` - FID extrapolated to infinitely many images (Chong & Forsyth 2020).
* :func:`distance_vs_n` - FD and KID against the number of images (the bias plot).
"""

from __future__ import annotations

import contextlib
import hashlib
import io as _io
import warnings
from pathlib import Path

import numpy as np

from semlab import weights as _weights
from semlab.arrays import as_gray_stack
from semlab.weights import weights_sha256  # re-exported: F.weights_sha256

__all__ = [
    "FID_DIMS",
    "fid_inception_net",
    "load_inception",
    "inception_features",
    "frechet_distance",
    "fid_from_features",
    "kid_from_features",
    "images_sha256",
    "weights_sha256",
    "feature_stats_cache",
    "compute_fid",
    "kid_bootstrap",
    "fid_infinity",
    "distance_vs_n",
]

FID_DIMS = 2048
_CACHE_VERSION = "fid-cache-v1"


# --------------------------------------------------------------------------- model


def fid_inception_net():
    """pytorch-fid's FID Inception (torchvision's Inception3 with 1008 classes, no aux
    logits, and pytorch-fid's patched blocks), built exactly as
    ``pytorch_fid.inception.fid_inception_v3()`` builds it but without weights and
    without any download: its parameters are whatever the constructors drew."""
    import torchvision
    from pytorch_fid import inception as pi

    net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008,
                                          init_weights=False)
    net.Mixed_5b = pi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pi.FIDInceptionE_1(1280)
    net.Mixed_7c = pi.FIDInceptionE_2(2048)
    return net


def _fid_model(net):
    """A ``pytorch_fid.inception.InceptionV3([3], resize_input=True, normalize_input=True)``
    around the loaded `net`: the same four blocks as its constructor assembles (so its own
    ``forward`` runs), built without that constructor, which would fetch the weights
    itself through torch.hub."""
    import torch
    from pytorch_fid.inception import InceptionV3

    nn = torch.nn

    class _Loaded(InceptionV3):
        def __init__(self):
            nn.Module.__init__(self)
            self.resize_input = True
            self.normalize_input = True
            self.output_blocks = [InceptionV3.BLOCK_INDEX_BY_DIM[FID_DIMS]]
            self.last_needed_block = max(self.output_blocks)
            self.blocks = nn.ModuleList([
                nn.Sequential(net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3,
                              nn.MaxPool2d(kernel_size=3, stride=2)),
                nn.Sequential(net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2)),
                nn.Sequential(net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b,
                              net.Mixed_6c, net.Mixed_6d, net.Mixed_6e),
                nn.Sequential(net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, nn.AdaptiveAvgPool2d(output_size=(1, 1))),
            ])
            for p in self.parameters():
                p.requires_grad = False

    return _Loaded()


def load_inception(path=None, *, download: bool = True):
    """The FID Inception network (eval mode, CPU) with the weights of
    ``semlab.weights.load_checked("pt_inception", path)``: the file is found, checked
    against the official sha256 and read by semlab with ``weights_only=True`` (pytorch-fid
    never unpickles it), then loaded into :func:`fid_inception_net`.

    Raises ``semlab.weights.WeightsNotFound`` (naming the file, size, URL and folder) when
    the file is missing and ``semlab.weights.InvalidWeights`` when it is not the official
    file (unless ``$SEMLAB_ALLOW_UNVERIFIED_WEIGHTS=1``) or not a valid checkpoint. The
    file is ``model.semlab_weights_path``, its sha256 ``model.semlab_weights_sha256``,
    and ``model.semlab_weights_verified`` is False for a non-official file."""
    import torch

    loaded = _weights.load_checked("pt_inception", path, download=download)
    net = fid_inception_net()
    _weights.apply_state_dict(net, loaded.state_dict, "pt_inception", loaded.path)
    model = _fid_model(net)
    model.eval()
    # channels_last: oneDNN's fast convolution layout on CPU (measured here, 256-px inputs,
    # batch 50: fp32 10.6 -> 15.9 img/s, bf16 16.8 -> 40 img/s; features equal to 1e-6)
    model.to(memory_format=torch.channels_last)
    model.semlab_weights_path = str(loaded.path)
    model.semlab_weights_sha256 = loaded.sha256
    model.semlab_weights_verified = loaded.verified is not False
    return model


# --------------------------------------------------------------------------- features


def inception_features(images, model, batch_size: int = 50, precision: str = "fp32") -> np.ndarray:
    """float64 (N, 2048) Inception pool features of gray images (see module docstring for
    the conversion). ``precision="bf16"`` runs under CPU bf16 autocast (faster, ~1e-2
    relative differences). Images of different sizes are allowed; each batch holds
    consecutive images of one size."""
    import torch

    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    imgs = as_gray_stack(images, same_shape=False)
    feats = np.empty((len(imgs), FID_DIMS), np.float64)
    model.eval()
    # batches: consecutive runs of equal shape, cut at batch_size
    starts, i = [], 0
    while i < len(imgs):
        j = i + 1
        while j < len(imgs) and j - i < batch_size and imgs[j].shape == imgs[i].shape:
            j += 1
        starts.append((i, j))
        i = j
    ctx = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16"
           else contextlib.nullcontext())
    with torch.inference_mode(), ctx:
        for a, b in starts:
            x = (torch.from_numpy(np.stack(imgs[a:b]))[:, None].expand(-1, 3, -1, -1)
                 .contiguous(memory_format=torch.channels_last))
            out = model(x)[0]
            if out.shape[2:] != (1, 1):  # never with block 3; kept like pytorch-fid
                out = torch.nn.functional.adaptive_avg_pool2d(out, (1, 1))
            feats[a:b] = out.float().reshape(b - a, -1).double().numpy()
    return feats


# --------------------------------------------------------------------------- distances


def _sqrtm(m: np.ndarray) -> np.ndarray:
    from scipy import linalg

    r = linalg.sqrtm(m)
    return r[0] if isinstance(r, tuple) else r


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) in float64:
    ``||mu1 - mu2||^2 + tr(s1 + s2 - 2 sqrtm(s1 s2))``. If the product's square root is not
    finite, ``eps * I`` is added to both covariances (as pytorch-fid does); an imaginary
    part above 1e-3 raises ValueError."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"inconsistent shapes: mu {mu1.shape} {mu2.shape}, sigma {s1.shape} {s2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's "singular matrix" notice
        covmean = _sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            off = np.eye(s1.shape[0]) * eps
            covmean = _sqrtm((s1 + off) @ (s2 + off))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag)):g} in sqrtm(s1 s2)")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(feats, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors (N, d), got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """``tr sqrtm(S1 S2)`` for covariance matrices, exactly and in symmetric arithmetic:
    S1 S2 is similar to R S2 R with R = S1^(1/2) (PSD), so the trace is the sum of the
    square roots of that symmetric matrix's eigenvalues. Two ``eigh`` instead of a
    Schur-based ``sqrtm`` of a non-symmetric product: equal to 1e-12 relative, ~7x faster
    at d = 2048, never complex."""
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    ev = np.linalg.eigvalsh(r @ s2 @ r)
    return float(np.sqrt(np.clip(ev, 0.0, None)).sum())


def fid_from_features(f1, f2) -> float:
    """FID between two feature sets (N1, d) and (N2, d), covariances with ddof=1.

    If ``min(N1, N2) <= d`` the covariances are singular and the trace term is computed
    exactly from the centred features (nuclear norm of ``A B^T``), which is what
    :func:`frechet_distance` approximates there; otherwise from the covariances with
    symmetric eigendecompositions (:func:`_trace_sqrt_product`), equal to
    :func:`frechet_distance`'s ``sqrtm`` (tested against pytorch-fid) and faster."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature shapes differ: {f1.shape} vs {f2.shape}")
    n1, n2, d = f1.shape[0], f2.shape[0], f1.shape[1]
    if n1 < 2 or n2 < 2:
        raise ValueError("need at least 2 feature vectors per set")
    if min(n1, n2) > d:
        (mu1, s1), (mu2, s2) = _stats(f1), _stats(f2)
        diff = mu1 - mu2
        return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * _trace_sqrt_product(s1, s2))
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    a, b = f1 - mu1, f2 - mu2
    tr1 = float(np.sum(a * a)) / (n1 - 1)
    tr2 = float(np.sum(b * b)) / (n2 - 1)
    nuc = float(np.linalg.svd(a @ b.T, compute_uv=False).sum())
    diff = mu1 - mu2
    return float(diff @ diff + tr1 + tr2 - 2 * nuc / np.sqrt((n1 - 1) * (n2 - 1)))


def _kid_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    m = x.shape[0]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


_FULL_KERNEL_MAX = 2500  # below this many vectors per set, the kernels are computed once


class _Kernels:
    """The three polynomial-kernel matrices of two feature sets, computed once, so that
    KID over many subsets (or bootstrap resamples) costs O(m^2) each instead of O(m^2 d)."""

    def __init__(self, f1: np.ndarray, f2: np.ndarray):
        d = f1.shape[1]
        self.kxx = (f1 @ f1.T / d + 1) ** 3
        self.kyy = (f2 @ f2.T / d + 1) ** 3
        self.kxy = (f1 @ f2.T / d + 1) ** 3

    def mmd2(self, ix: np.ndarray, iy: np.ndarray) -> float:
        """Unbiased MMD^2 of the distinct rows ix of set 1 and iy of set 2 (= `_kid_mmd2`)."""
        m = len(ix)
        kxx = self.kxx[np.ix_(ix, ix)]
        kyy = self.kyy[np.ix_(iy, iy)]
        sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        return float(sxx + syy - 2 * self.kxy[np.ix_(ix, iy)].mean())


def kid_from_features(f1, f2, subset_size: int = 1000, n_subsets: int = 100,
                      seed: int = 0) -> tuple[float, float]:
    """KID as (mean, std) over `n_subsets` subsets of ``m = min(subset_size, N1, N2)``
    vectors from each set (drawn without replacement within a subset, independently
    between subsets: ``rng = np.random.default_rng(seed)``, then per subset
    ``rng.choice(N1, m, replace=False)`` followed by ``rng.choice(N2, m, replace=False)``).
    Each value is the unbiased MMD^2 with ``k(x, y) = (x.y / d + 1)^3``; std has ddof=0.
    When m equals both set sizes every subset is the whole set: one value, std 0 (use
    :func:`kid_bootstrap` for an interval)."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature shapes differ: {f1.shape} vs {f2.shape}")
    m = min(subset_size, f1.shape[0], f2.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 feature vectors per set")
    if m == f1.shape[0] == f2.shape[0]:
        return _kid_mmd2(f1, f2), 0.0
    rng = np.random.default_rng(seed)
    vals = np.empty(n_subsets)
    kern = _Kernels(f1, f2) if max(f1.shape[0], f2.shape[0]) <= _FULL_KERNEL_MAX else None
    for k in range(n_subsets):
        ix = rng.choice(f1.shape[0], m, replace=False)
        iy = rng.choice(f2.shape[0], m, replace=False)
        vals[k] = kern.mmd2(ix, iy) if kern is not None else _kid_mmd2(f1[ix], f2[iy])
    return float(vals.mean()), float(vals.std())


def _kid_weighted(kxx, kyy, kxy, wx: np.ndarray, wy: np.ndarray) -> float:
    """Unbiased MMD^2 of a bootstrap resample given by counts `wx`, `wy` (how often each
    vector was drawn). Pairs of a vector with itself (or its copies) are left out of the
    within-set means, as the diagonal is in the unbiased estimator; keeping them would
    bias a with-replacement bootstrap upward by about k(x, x) / m."""
    def within(k, w):
        num = w @ k @ w - (w * w) @ np.diagonal(k)
        return num / (w.sum() ** 2 - (w * w).sum())
    return float(within(kxx, wx) + within(kyy, wy) - 2 * (wx @ kxy @ wy) / (wx.sum() * wy.sum()))


def kid_bootstrap(f1, f2, n_boot: int = 200, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of KID: the images of both sets resampled with
    replacement (m = the smaller set's size from each), each resample scored by the
    unbiased MMD^2 with copies of one vector not paired with each other
    (:func:`_kid_weighted`). The kernels are computed once (sets up to 2,500 vectors;
    larger sets are first subsampled to that size)."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    rng = np.random.default_rng(seed)
    if len(f1) > _FULL_KERNEL_MAX:
        f1 = f1[rng.choice(len(f1), _FULL_KERNEL_MAX, replace=False)]
    if len(f2) > _FULL_KERNEL_MAX:
        f2 = f2[rng.choice(len(f2), _FULL_KERNEL_MAX, replace=False)]
    kern = _Kernels(f1, f2)
    m = min(len(f1), len(f2))
    vals = []
    for _ in range(n_boot):
        wx = np.bincount(rng.integers(0, len(f1), m), minlength=len(f1)).astype(np.float64)
        wy = np.bincount(rng.integers(0, len(f2), m), minlength=len(f2)).astype(np.float64)
        vals.append(_kid_weighted(kern.kxx, kern.kyy, kern.kxy, wx, wy))
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- cache


def images_sha256(images) -> str:
    """sha256 over the images' shapes, dtypes and bytes (in order)."""
    h = hashlib.sha256()
    seq = list(images) if not isinstance(images, np.ndarray) or images.ndim != 2 else [images]
    h.update(f"n={len(seq)};".encode())
    for im in seq:
        a = np.ascontiguousarray(np.asarray(im))
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def feature_stats_cache(images, model, cache_dir, model_hash: str, batch_size: int = 50,
                        precision: str = "fp32", extract=None) -> dict:
    """Features and statistics of `images`, cached in ``cache_dir/<key>.npz`` where key is
    the sha256 of (images' bytes, `model_hash`, precision, cache version).
    `extract(images) -> (N, D) features` replaces the Inception network (`model` is then
    unused; `model_hash` must identify the extractor).

    Returns {"features", "mu", "sigma", "hit": bool, "path"}. Written atomically
    (``semlab.io.atomic_write``: temp file + os.replace); an unreadable cache file is
    recomputed. `cache_dir=None` disables the cache."""
    key = hashlib.sha256(f"{_CACHE_VERSION};{images_sha256(images)};{model_hash};{precision}"
                         .encode()).hexdigest()
    path = Path(cache_dir) / f"{key[:40]}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) == key:
                    return {"features": z["features"], "mu": z["mu"], "sigma": z["sigma"],
                            "hit": True, "path": str(path)}
        except (OSError, ValueError, KeyError):
            pass  # corrupt or foreign file: recompute and overwrite
    feats = (extract(images) if extract is not None
             else inception_features(images, model, batch_size=batch_size, precision=precision))
    mu, sigma = _stats(feats)
    if path is not None:
        from semlab.io import atomic_write

        buf = _io.BytesIO()
        np.savez(buf, key=np.array(key), features=feats, mu=mu, sigma=sigma)
        with atomic_write(path, "wb") as f:
            f.write(buf.getvalue())
    return {"features": feats, "mu": mu, "sigma": sigma, "hit": False,
            "path": str(path) if path is not None else None}


# --------------------------------------------------------------------------- entry point


def compute_fid(real, fake, weights_path=None, cache_dir=None, *, batch_size: int = 50,
                precision: str = "fp32", kid_subset_size: int = 1000, kid_subsets: int = 100,
                seed: int = 0, model=None) -> dict:
    """FID and KID of `fake` against `real` (gray image sets, see module docstring).

    Returns {"fid", "kid", "kid_std", "n_real", "n_fake", "weights", "precision",
    "real_cache_hit", "status": "ok", "verified", "label", "kid_label"}; or, without
    usable official weights (``semlab.weights.status``, never downloads), {"fid": None,
    "kid": None, "kid_std": None, "status": "unavailable: <file> not found (put it in
    data/weights/)"} (or "<file> is not the official pt_inception ...", "<file> is not a
    valid pytorch-fid Inception checkpoint (...)"). With a non-official file allowed by
    ``$SEMLAB_ALLOW_UNVERIFIED_WEIGHTS=1``, "verified" is False and "label" / "kid_label"
    read "FID (unverified weights)" / "KID (unverified weights)".
    Real-set features are cached in `cache_dir`. A `model` from :func:`load_inception`
    may be passed to avoid reloading it."""
    if model is not None and getattr(model, "semlab_weights_path", None):
        wfile = model.semlab_weights_path
    else:
        ok, info = _weights.status("pt_inception", weights_path)
        if not ok:
            return _unavailable(info)
        wfile = info
        try:
            model = load_inception(wfile, download=False)
        except _weights.InvalidWeights as exc:  # e.g. an allowed unverified file that is no checkpoint
            return _unavailable(str(exc))
    verified = getattr(model, "semlab_weights_verified", True) is not False
    suffix = "" if verified else _weights.UNVERIFIED_LABEL
    real_stats = feature_stats_cache(real, model, cache_dir, weights_sha256(wfile),
                                     batch_size=batch_size, precision=precision)
    f_real = real_stats["features"]
    f_fake = inception_features(fake, model, batch_size=batch_size, precision=precision)
    kid, kid_std = kid_from_features(f_real, f_fake, subset_size=kid_subset_size,
                                     n_subsets=kid_subsets, seed=seed)
    return {"fid": fid_from_features(f_real, f_fake), "kid": kid, "kid_std": kid_std,
            "n_real": int(f_real.shape[0]), "n_fake": int(f_fake.shape[0]),
            "weights": str(wfile), "precision": precision,
            "real_cache_hit": bool(real_stats["hit"]), "status": "ok", "verified": verified,
            "label": "FID" + suffix, "kid_label": "KID" + suffix}


def _unavailable(reason: str) -> dict:
    return {"fid": None, "kid": None, "kid_std": None, "status": f"unavailable: {reason}",
            "verified": None, "label": "FID", "kid_label": "KID"}


# --------------------------------------------------------------------------- sample size


def fid_infinity(f_real, f_fake, *, n_min: int | None = None, n_points: int = 15,
                 repeats: int = 1, seed: int = 0) -> dict:
    """FID extrapolated to an infinite number of generated images (Chong & Forsyth 2020).

    FID's bias falls off as 1/N: E[FID_N] ~ FID_inf + k / N. We compute FID between the
    whole real set and `repeats` random subsets (without replacement) of the fake set at
    `n_points` sizes N spaced evenly in 1/N between `n_min` (default: a fifth of the fake
    set, at least 2) and the whole fake set, fit a straight line FID = a + b / N by least
    squares and report its intercept a. Chong & Forsyth draw the subsets quasi-randomly
    (Sobol) from >= 5,000 images; plain random subsets of fewer images give the same
    estimator with more scatter, which the returned fit's residuals show.

    Works on any features (Inception for FID_inf, the SEM encoder for FD_sem_inf).
    Returns {"value", "slope", "ns", "fids", "r2", "n_real", "n_fake"}."""
    f_real, f_fake = np.asarray(f_real, np.float64), np.asarray(f_fake, np.float64)
    n = f_fake.shape[0]
    n_min = max(2, n // 5) if n_min is None else int(n_min)
    if n_min < 2 or n_min >= n:
        raise ValueError(f"n_min must be in [2, {n - 1}] for {n} fake images, got {n_min}")
    if n_points < 2:
        raise ValueError("n_points must be >= 2")
    inv = np.linspace(1.0 / n_min, 1.0 / n, n_points)
    ns = np.unique(np.round(1.0 / inv).astype(int))
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k in ns:
        for _ in range(repeats if k < n else 1):
            ix = rng.choice(n, int(k), replace=False) if k < n else np.arange(n)
            xs.append(1.0 / k)
            ys.append(fid_from_features(f_real, f_fake[ix]))
    x, y = np.asarray(xs), np.asarray(ys)
    slope, intercept = np.polyfit(x, y, 1)
    pred = intercept + slope * x
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    return {"value": float(intercept), "slope": float(slope), "ns": [int(1 / v + 0.5) for v in x],
            "fids": y.tolist(), "r2": r2, "n_real": int(f_real.shape[0]), "n_fake": int(n)}


def distance_vs_n(f_real, f_fake, ns, *, repeats: int = 3, seed: int = 0,
                  kid_subsets: int = 20) -> list[dict]:
    """FD and KID computed on `repeats` random subsets of n images from EACH set, for each
    n in `ns`: shows the sample-size bias that a single FID hides (FD falls as n grows
    even when nothing about the generator changes; unbiased KID stays level but scatters
    more at small n). Rows {"n", "repeat", "fd", "kid"}; n larger than a set is skipped."""
    f_real, f_fake = np.asarray(f_real, np.float64), np.asarray(f_fake, np.float64)
    rng = np.random.default_rng(seed)
    rows = []
    for n in ns:
        n = int(n)
        if n < 2 or n > min(len(f_real), len(f_fake)):
            continue
        for r in range(repeats):
            a = f_real[rng.choice(len(f_real), n, replace=False)]
            b = f_fake[rng.choice(len(f_fake), n, replace=False)]
            kid, _ = kid_from_features(a, b, subset_size=n, n_subsets=kid_subsets,
                                       seed=int(rng.integers(1 << 31)))
            rows.append({"n": n, "repeat": r, "fd": fid_from_features(a, b), "kid": kid})
    return rows


def save_random_inception(folder, seed: int = 0) -> Path:
    """A randomly initialised FID Inception saved under the official file name in
    `folder`: exercises the real loading code offline (tests, `semlab bench metrics`).
    Its numbers are meaningless and must never be reported as FID."""
    import torch

    spec = _weights.KNOWN["pt_inception"]
    net = fid_inception_net()  # the architecture, without the (offline) download
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, torch.nn.Conv2d):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
    out = Path(folder) / spec.filename
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out)
    return out
