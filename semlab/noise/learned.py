"""The `learned` residual-noise model: a small conditional generator of SEM noise.

The residual of a real frame, ``r = image - clean`` (``clean`` the simulator's noise-free
image where the caller has it, else the non-local-means estimate of `clean_estimate`), is
modelled as a signal-dependent, spatially correlated Gaussian field::

    r = s(clean) * n,        n = k (*) z,        z ~ white N(0, 1),   sum(k**2) = 1

* ``s(clean)`` is the local standard deviation, predicted by a tiny CNN from the clean
  image around each pixel (3x3, 1x1, 3x3 convolutions: a 5x5 receptive field, so the
  noise level can follow the signal, e.g. Poisson-Gaussian ``var = a * clean + b``, and
  the edges);
* ``k`` is a learned colouring kernel (``kernel`` x ``kernel`` px, unit energy), which
  gives ``n`` the power spectrum ``|K(f)|**2``: scan-direction correlation, the detector's
  bandwidth, a blur of the noise.

This is a two-layer normalising flow in the spirit of Noise Flow (Abdelhamed et al.
2019): a signal-dependent gain layer and a linear colouring layer. It is trained by
likelihood, in two terms (see `_nll`): the gain by the per-pixel marginal Gaussian
likelihood of the residuals, the kernel by the Whittle likelihood of ``n = r / s`` on
Hann-tapered patches. The kernel starts from the residuals' Welch spectrum. About 270
parameters with the defaults (``width=8``, ``kernel=7``); `MAX_PARAMS` bounds it.

Training is bounded by ``steps`` and ``max_seconds`` (whichever comes first; a fit
stopped by the clock is not bit-reproducible, one stopped by ``steps`` is, per
``seed``). It runs on one thread (tiny convolutions gain nothing from more; this also
makes the result independent of the machine's thread count): about 22 ms per step of
16 patches of 48x48 px on an idle Xeon core, so the cpu profile's 1,000 steps take
about 22 s, under its 30 s cap. 150 steps already recover synthetic noise (see
tests/test_noise_learned.py); bf16 autocast is not used (the FFTs need float32). The
non-local-means clean estimate (made when no clean images are given) is outside the
budget: about 7 s for one 1280x896 frame. `PROFILE_OPTIONS` holds the budgets of the smoke / cpu / full profiles.
`sample(clean, rng)` draws ``z`` from the numpy generator, so it is deterministic per
seed. Saved as ``model.json`` plus ``learned.pt``, a plain dict of tensors, read back
with ``torch.load(weights_only=True)``; keys and shapes are checked and anything else
(a pickled object) is refused.

torch is imported inside the functions that need it, so listing the registry stays cheap.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from semlab.io import atomic_write
from semlab.noise.estimate import noise_sigma
from semlab.noise.registry import ModelMeta, NoiseModel, register

__all__ = ["LearnedNoise", "clean_estimate", "fit", "PROFILE_OPTIONS", "DEFAULTS", "MAX_PARAMS", "STATE_FILE"]

STATE_FILE = "learned.pt"
MAX_PARAMS = 10_000
EPS = 1e-6  # floor of the colouring spectrum |K(f)|^2 in the likelihood (keeps it invertible)

DEFAULTS: dict[str, Any] = {
    "steps": 600,         # optimiser steps (upper bound)
    "max_seconds": 30.0,  # wall-clock bound of setup + training (not of the NL-means clean estimate)
    "seed": 0,
    "patch": 48,          # training patch side (px)
    "batch": 16,          # patches per step
    "width": 8,           # channels of the gain CNN
    "kernel": 7,          # side of the colouring kernel (odd)
    "lr": 0.02,           # Adam, cosine-decayed to lr / 20
    "progress": None,     # tqdm: None shows a bar on a terminal only
}
PROFILE_OPTIONS: dict[str, dict[str, Any]] = {
    "smoke": {"steps": 80, "max_seconds": 5.0},
    "cpu": {"steps": 1000, "max_seconds": 30.0},  # ~22 s on one idle Xeon core
    "full": {"steps": 6000, "max_seconds": 600.0, "batch": 32, "patch": 64},
}
_PARAM_KEYS = {"width", "kernel", "steps_done", "seconds", "gain_nll", "colour_nll", "seed", "patch", "batch", "lr",
               "clean", "residual_std"}


def clean_estimate(image: np.ndarray) -> np.ndarray:
    """A noise-free estimate of one frame: the other models' non-local means
    (`semlab.noise.models.denoise`, h = 0.8 sigma), with sigma from the spectral
    `semlab.noise.noise_sigma`, which counts correlated noise fully. With the high-pass
    (Immerkaer) sigma, the default of `denoise`, the residual of the litho-lines repeated
    scans holds 45% of their frame-difference noise level; with this one, 86%.
    float32 in [0, 1], same shape."""
    from semlab.noise.models import denoise

    x = np.asarray(image, dtype=np.float32)
    return np.clip(denoise(x, sigma=float(noise_sigma(x))), 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- the network


def _build(width: int, kernel: int):
    """The torch module: `gain` (clean -> log s, valid convolutions, margin 2) and `kernel`."""
    import torch
    from torch import nn

    class _Net(nn.Module):
        margin = 2

        def __init__(self):
            super().__init__()
            self.gain = nn.Sequential(nn.Conv2d(1, width, 3), nn.Tanh(), nn.Conv2d(width, width, 1), nn.Tanh(),
                                      nn.Conv2d(width, 1, 3))
            k = torch.zeros(kernel, kernel)
            k[kernel // 2, kernel // 2] = 1.0
            self.kernel = nn.Parameter(k + 0.01 * torch.randn(kernel, kernel))

        def log_std(self, clean_padded):
            """(B, 1, H + 4, W + 4) clean in [0, 1] -> (B, 1, H, W) log of the noise std."""
            return self.gain(2.0 * clean_padded - 1.0)

        def unit_kernel(self):
            return self.kernel / torch.sqrt((self.kernel ** 2).sum())

    return _Net()


def _count_params(net) -> int:
    return int(sum(p.numel() for p in net.parameters()))


def _nll(net, clean_pad, resid):
    """The two training losses, in nats per pixel, of residual patches (B, 1, P, P):

    * ``gain``: the marginal Gaussian likelihood of every residual pixel, ``r ~ N(0, s**2)``
      (a composite likelihood: exact per pixel whatever the spatial correlation, so the
      noise level is unbiased);
    * ``colour``: the Whittle likelihood of ``n = r / s`` (s held fixed) under the spectrum
      ``|K|**2``, from Hann-tapered periodograms (the taper keeps the patch edges from
      leaking power to frequencies the kernel says are empty).

    Scoring the scale by the joint Whittle likelihood instead biases it low by 5-15% for
    correlated noise: a 7x7 kernel cannot follow the deep high-frequency tail of the
    spectrum, and Whittle weighs relative errors there as much as at the peak."""
    import torch

    log_s = net.log_std(clean_pad)
    gain = 0.5 * (resid ** 2 * torch.exp(-2.0 * log_s)).mean() + log_s.mean() + 0.5 * math.log(2 * math.pi)
    n = resid * torch.exp(-log_s.detach())
    p = resid.shape[-1]
    w1 = torch.hann_window(p, periodic=False, dtype=resid.dtype)
    w = w1[:, None] * w1[None, :]
    w = w / torch.sqrt((w ** 2).mean())
    k = net.unit_kernel()
    kk = k.shape[-1]
    big = torch.zeros(p, p, dtype=k.dtype)
    big[:kk, :kk] = k
    big = torch.roll(big, shifts=(-(kk // 2), -(kk // 2)), dims=(0, 1))  # kernel centre at the origin
    spec = (1.0 - EPS) * torch.fft.fft2(big).abs() ** 2 + EPS  # PSD of n, mean 1
    nf = torch.fft.fft2(n * w).abs() ** 2 / (p * p)
    colour = 0.5 * (nf / spec).mean() + 0.5 * torch.log(spec).mean() + 0.5 * math.log(2 * math.pi)
    return gain, colour


def _initial_kernel(resid: np.ndarray, kernel: int, patch: int) -> np.ndarray:
    """A starting colouring kernel from the data: the zero-phase square root of the
    residuals' Welch spectrum (Hann-tapered patches, half-overlapping or sparser), cut to
    `kernel` px, unit energy."""
    from scipy.signal import windows

    w = windows.hann(patch, sym=True)
    w2 = np.outer(w, w)
    w2 /= np.sqrt((w2 ** 2).mean())
    acc, cnt = np.zeros((patch, patch)), 0
    area = sum(r.size for r in resid)
    step = max(patch // 2, int(math.sqrt(area / 2000)), 1)  # at most ~2,000 patches
    for r in resid:
        r = r / max(float(r.std()), 1e-12)
        for y in range(0, r.shape[0] - patch + 1, step):
            for x in range(0, r.shape[1] - patch + 1, step):
                acc += np.abs(np.fft.fft2(r[y:y + patch, x:x + patch] * w2)) ** 2
                cnt += 1
    amp = np.sqrt(acc / max(cnt, 1) / (patch * patch))
    full = np.fft.fftshift(np.real(np.fft.ifft2(amp)))
    c, h = patch // 2, kernel // 2
    k = full[c - h:c + h + 1, c - h:c + h + 1]
    return (k / np.sqrt((k ** 2).sum())).astype(np.float32)


# --------------------------------------------------------------------------- the model


@register
class LearnedNoise(NoiseModel):
    """Signal-dependent, correlated Gaussian residuals from a tiny CNN and a colouring kernel."""
    kind = "learned"
    min_images = 1

    def __init__(self, net, params: dict[str, Any], meta: ModelMeta | None = None):
        super().__init__(meta)
        self.net = net
        self._params = dict(params)

    # -- fitting -------------------------------------------------------------------------
    @classmethod
    def _fit(cls, images: list[np.ndarray], cleans: list[np.ndarray] | None, meta: ModelMeta,
             **options) -> "LearnedNoise":
        import torch
        from tqdm.auto import tqdm

        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"learned fit: unknown option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        o = {**DEFAULTS, **options}
        width, kernel, steps, batch = int(o["width"]), int(o["kernel"]), int(o["steps"]), int(o["batch"])
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"learned fit: kernel must be a positive odd size, got {kernel}")
        if width < 1 or steps < 1 or batch < 1 or float(o["max_seconds"]) <= 0:
            raise ValueError("learned fit: width, steps, batch and max_seconds must be positive")
        h, w = images[0].shape
        patch = min(int(o["patch"]), h, w)
        if patch < 2 * kernel:
            raise ValueError(f"learned fit: images of {w}x{h} px are too small for a {kernel}-px kernel "
                             f"(need at least {2 * kernel} px)")
        if cleans is None:
            cleans = [clean_estimate(im) for im in images]
            source = "nl-means"
        else:
            source = "given"
        t0 = time.perf_counter()  # the budget counts from here: setup and training
        resid = np.stack([im - c for im, c in zip(images, cleans)]).astype(np.float32)
        if not np.any(np.abs(resid) > 1e-6):
            raise ValueError("learned fit: the images equal their clean estimates; there is no noise to fit")
        resid -= resid.mean(axis=(1, 2), keepdims=True)  # noise is zero-mean; drop a per-frame offset
        m = 2
        cpad = np.stack([np.pad(c, m, mode="reflect") for c in cleans]).astype(np.float32)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(o["seed"]))
            net = _build(width, kernel)
        if _count_params(net) > MAX_PARAMS:
            raise ValueError(f"learned fit: width={width}, kernel={kernel} gives {_count_params(net)} parameters, "
                             f"more than {MAX_PARAMS}")
        r_std = float(resid.std())
        with torch.no_grad():
            net.gain[-1].bias.fill_(math.log(max(r_std, 1e-6)))
            net.kernel.copy_(torch.from_numpy(_initial_kernel(resid, kernel, patch)))
        lr = float(o["lr"])
        opt = torch.optim.Adam([{"params": net.gain.parameters()}, {"params": [net.kernel], "lr": lr / 10}], lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=float(o["lr"]) / 20)
        prng = np.random.default_rng(int(o["seed"]))
        resid_t, cpad_t = torch.from_numpy(resid), torch.from_numpy(cpad)
        dy = np.arange(patch)[:, None]
        dx = np.arange(patch)[None, :]
        dyc = np.arange(patch + 2 * m)[:, None]
        dxc = np.arange(patch + 2 * m)[None, :]
        done, last = 0, (float("nan"), float("nan"))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny convolutions: a second thread costs twice the CPU for no speed-up
        bar = tqdm(total=steps, desc="learned noise fit", disable=o["progress"] if o["progress"] is not None
                   else None, leave=False)
        try:
            for _ in range(steps):
                idx = prng.integers(0, len(images), batch)
                ys = prng.integers(0, h - patch + 1, batch)
                xs = prng.integers(0, w - patch + 1, batch)
                i = torch.from_numpy(idx)[:, None, None]
                r = resid_t[i, torch.from_numpy(ys[:, None, None] + dy), torch.from_numpy(xs[:, None, None] + dx)]
                c = cpad_t[i, torch.from_numpy(ys[:, None, None] + dyc), torch.from_numpy(xs[:, None, None] + dxc)]
                gain, colour = _nll(net, c[:, None], r[:, None])
                loss = gain + colour
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                done += 1
                last = (float(gain.detach()), float(colour.detach()))
                bar.update(1)
                if done % 20 == 0:
                    bar.set_postfix(gain_nll=f"{last[0]:.3f}", colour_nll=f"{last[1]:.3f}")
                if time.perf_counter() - t0 > float(o["max_seconds"]):
                    break
        finally:
            bar.close()
            torch.set_num_threads(threads)
        if not all(math.isfinite(v) for v in last):
            raise ValueError("learned fit: training diverged (non-finite likelihood); try a smaller lr")
        net.eval()
        params = {"width": width, "kernel": kernel, "steps_done": done, "seconds": round(time.perf_counter() - t0, 3),
                  "gain_nll": last[0], "colour_nll": last[1], "seed": int(o["seed"]), "patch": patch, "batch": batch,
                  "lr": float(o["lr"]), "clean": source, "residual_std": r_std}
        meta.notes.append(f"learned: {done} steps in {params['seconds']:.1f} s, clean estimate {source}")
        return cls(net, params, meta)

    # -- use ------------------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return _count_params(self.net)

    def std_map(self, clean: np.ndarray) -> np.ndarray:
        """The model's noise standard deviation at every pixel of `clean` (float32)."""
        import torch

        x = self._check_clean(clean)
        xp = np.pad(x, 2, mode="reflect")
        with torch.no_grad():
            s = torch.exp(self.net.log_std(torch.from_numpy(xp)[None, None]))[0, 0]
        return s.numpy().astype(np.float32)

    def kernel_array(self) -> np.ndarray:
        """The unit-energy colouring kernel (float32)."""
        import torch

        with torch.no_grad():
            return self.net.unit_kernel().numpy().astype(np.float32)

    def noise(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A residual drawn for `clean` (not added, not clipped): s(clean) * (k (*) z)."""
        import torch
        import torch.nn.functional as F

        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"learned sample: rng must be a numpy Generator (np.random.default_rng(seed)), "
                            f"got {type(rng).__name__}")
        s = self.std_map(clean)
        k = self.kernel_array()
        kk = k.shape[0]
        h, w = s.shape
        z = rng.standard_normal((h + kk - 1, w + kk - 1), dtype=np.float32)
        with torch.no_grad():
            n = F.conv2d(torch.from_numpy(z)[None, None], torch.from_numpy(k)[None, None])[0, 0].numpy()
        return (s * n).astype(np.float32)

    def sample(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = self._check_clean(clean)
        return np.clip(x + self.noise(x, rng), 0.0, 1.0).astype(np.float32)

    def _check_clean(self, clean) -> np.ndarray:
        x = np.asarray(clean)
        if x.ndim != 2 or min(x.shape) < 3:
            raise ValueError(f"learned sample: expected a 2-D gray image of at least 3x3 px, got shape {x.shape}")
        if x.dtype.kind not in "f":
            raise ValueError(f"learned sample: image is {x.dtype}; pass a float image in [0, 1]")
        if not np.isfinite(x).all():
            raise ValueError("learned sample: image has NaN or inf values")
        return x.astype(np.float32, copy=False)

    # -- persistence --------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def _save_extra(self, folder: Path) -> None:
        import torch

        state = {k: v.detach().clone().contiguous() for k, v in self.net.state_dict().items()}
        with atomic_write(Path(folder) / STATE_FILE, "wb") as f:
            torch.save(state, f)

    @classmethod
    def from_params(cls, params: dict[str, Any], arrays: dict[str, np.ndarray], meta: ModelMeta,
                    folder: Path) -> "LearnedNoise":
        import torch

        src = Path(folder) / "model.json"
        missing, extra = _PARAM_KEYS - set(params), set(params) - _PARAM_KEYS
        if missing or extra:
            raise ValueError(f"{src}: learned model params: missing {sorted(missing)}, unknown {sorted(extra)}")
        if arrays:
            raise ValueError(f"{src}: a learned model has no arrays.npz, got {sorted(arrays)}")
        width, kernel = params["width"], params["kernel"]
        if not (isinstance(width, int) and 1 <= width <= 64 and isinstance(kernel, int) and 1 <= kernel <= 63
                and kernel % 2 == 1):
            raise ValueError(f"{src}: width {width!r} / kernel {kernel!r} out of range")
        net = _build(width, kernel)
        if _count_params(net) > MAX_PARAMS:
            raise ValueError(f"{src}: {_count_params(net)} parameters, more than {MAX_PARAMS}")
        path = Path(folder) / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (a learned noise model needs its state dict)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError for pickled objects, RuntimeError for garbage
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{path}: refused, not a plain state dict of tensors (weights_only load: "
                             f"{first[:200]})") from None
        want = net.state_dict()
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"{path}: refused, expected a dict of tensors, got {type(state).__name__}")
        if set(state) != set(want):
            raise ValueError(f"{path}: state dict keys {sorted(state)} do not match the model's {sorted(want)}")
        for k, v in want.items():
            if tuple(state[k].shape) != tuple(v.shape) or not state[k].is_floating_point():
                raise ValueError(f"{path}: {k} has shape {tuple(state[k].shape)} {state[k].dtype}, "
                                 f"expected {tuple(v.shape)} float")
            if not torch.isfinite(state[k]).all():
                raise ValueError(f"{path}: {k} has NaN or inf values")
        net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
        net.eval()
        return cls(net, params, meta)


def fit(real_images: Sequence[np.ndarray], clean_estimates: Sequence[np.ndarray] | None = None, *,
        profile: str | None = None, **options) -> LearnedNoise:
    """`LearnedNoise.fit` with the training budget of a profile (`PROFILE_OPTIONS`) unless
    given; other keywords (pixel_nm, bit_depth, steps, ...) pass through."""
    if profile is not None:
        if profile not in PROFILE_OPTIONS:
            raise KeyError(f"unknown profile {profile!r}; known: {', '.join(PROFILE_OPTIONS)}")
        options = {**PROFILE_OPTIONS[profile], **options}
    return LearnedNoise.fit(real_images, clean_estimates, **options)
