"""Where does a real-vs-generated detector look? Captum attributions and their summaries.

A *detector* is any ``torch.nn.Module`` mapping a batch ``(B, 1, H, W)`` float32 in
[0, 1] to one logit per image (shape ``(B,)`` or ``(B, 1)``); a positive logit means
"generated". This module turns such a detector and a set of SEM images into
attribution maps ``(N, H, W)`` and then into numbers an engineer can read:

* :func:`attribute` runs one method of the registry :data:`METHODS` (``saliency``,
  ``integrated_gradients``, ``smoothgrad``, ``layer_gradcam``, ``occlusion``) in
  batches, with the model in eval mode and its parameters untouched;
* :func:`class_average_maps` averages maps per true class (and per correct / wrong
  prediction): does the detector look at the same places on every image?
* :func:`attribution_by_region` splits |attribution| between pattern edges, flat
  pattern, background, holes and defects (from the canonical label masks) and divides
  by each region's area (an *enrichment*: 1.0 = no preference);
* :func:`attribution_spectrum` asks the same question in frequency: is attribution
  concentrated at high spatial frequencies (noise, texture, upsampling artifacts) or at
  low ones (layout, brightness, charging)?

Target. Every method explains one scalar per image: the "generated" logit ``z``
(``target="generated"``, the default), the "real" logit ``-z`` (``target="real"``),
the predicted side, or a per-image choice (e.g. the true labels, 0 = real,
1 = generated). The sign of a map flips with the target; |attribution| does not
(except for Grad-CAM with its ReLU, which keeps the evidence *for* the target only).

Signs. Saliency returns the signed gradient (captum's ``abs=False``), not its absolute
value: the spectrum of a map only means something with the signs kept (the absolute
value of a checkerboard is a constant). Take ``np.abs`` for display.

Baselines (integrated gradients and occlusion): what "absence of evidence" means.

* ``"blur"`` (the default): the image smoothed by a Gaussian of ``blur_sigma`` px
  (3 px). It keeps the layout, the brightness, the charging gradients, and removes
  shot noise, scan-line noise, fine texture and most of the edge rims. For a
  real-vs-generated detector that is the relevant question: generator artifacts
  (wrong noise statistics, checkerboard upsampling, over-smooth texture) live in the
  fine detail, and the path from the blurred image to the image stays near images the
  detector has seen. The bias to keep in mind: IG's attribution is proportional to
  ``x - baseline``, which for a blurred baseline is large on edges and noise, so edge
  enrichment is partly built in; compare with ``saliency`` (no baseline) before
  concluding "the detector looks at edges".
* ``"black"`` (zeros): the conventional IG reference and the only one with a fixed
  meaning across images. For SEM it is a poor "absence": no SEM image is black (there
  is always secondary-electron signal and noise), the straight path from black passes
  through dim, noise-free images no detector was trained on, and attribution is
  proportional to intensity, so bright pattern and bright edge rims collect
  attribution whatever the detector uses.
* ``"mean"``: a flat image at each image's mean gray level: removes all structure but
  keeps the brightness; attribution is proportional to the contrast ``x - mean``.
* an array ``(H, W)`` (one baseline for all images) or ``(N, H, W)`` (one each), or a
  number (a flat gray level).

Saliency, SmoothGrad over saliency and Grad-CAM need no baseline and ignore it.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from semlab import labels as _labels

__all__ = [
    "AttributionMethod",
    "ClassMap",
    "METHODS",
    "REGIONS",
    "attribute",
    "attribution_by_region",
    "attribution_spectrum",
    "class_average_maps",
    "edge_zone",
    "find_last_conv",
    "get_method",
    "high_frequency_share",
    "make_baseline",
    "method_names",
    "predict_logits",
]

# --------------------------------------------------------------------------- inputs


def _as_images(images: Any, what: str = "images") -> np.ndarray:
    """(H, W), (N, H, W) or (N, 1, H, W) numpy/torch -> float32 (N, H, W) in [0, 1]."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    a = np.asarray(images)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
                                 or a.dtype == bool):
        raise ValueError(f"{what} must be a numeric array, got dtype {a.dtype}")
    if a.ndim == 2:
        a = a[None]
    elif a.ndim == 4:
        if a.shape[1] != 1:
            raise ValueError(
                f"{what} must be gray: (H, W), (N, H, W) or (N, 1, H, W); got shape {a.shape} "
                f"({a.shape[1]} channels)")
        a = a[:, 0]
    elif a.ndim != 3:
        raise ValueError(f"{what} must be (H, W), (N, H, W) or (N, 1, H, W); got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{what} is empty (shape {a.shape})")
    if min(a.shape[1:]) < 2:
        raise ValueError(f"{what} are too small: {a.shape[1:]} px")
    a = a.astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contain NaN or infinite values")
    lo, hi = float(a.min()), float(a.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"{what} must be float in [0, 1] (semlab's image contract); got values in "
                         f"[{lo:.4g}, {hi:.4g}]")
    return a


def _as_maps(attr: Any, what: str = "attr") -> np.ndarray:
    """Attribution maps (H, W), (N, H, W) or (N, 1, H, W) -> float64 (N, H, W); any sign."""
    if isinstance(attr, torch.Tensor):
        attr = attr.detach().cpu().numpy()
    a = np.asarray(attr, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    elif a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3:
        raise ValueError(f"{what} must be (H, W), (N, H, W) or (N, 1, H, W); got shape {np.shape(attr)}")
    if a.shape[0] == 0:
        raise ValueError(f"{what} is empty (shape {a.shape})")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return a


def make_baseline(images: Any, kind: str | float | np.ndarray = "blur", *,
                  blur_sigma: float = 3.0) -> np.ndarray:
    """The integrated-gradients / occlusion reference for each image, float32 (N, H, W).

    `kind` is "blur" (Gaussian of `blur_sigma` px, reflected borders), "black" (zeros),
    "mean" (each image's mean gray level), a number (a flat gray level) or an array
    (H, W) shared by all images or (N, H, W) / (N, 1, H, W), one per image. See the
    module docstring for why "blur" is the default for SEM.
    """
    imgs = _as_images(images)
    n, h, w = imgs.shape
    if isinstance(kind, str):
        key = kind.strip().lower()
        if key == "black":
            return np.zeros_like(imgs)
        if key == "mean":
            return np.broadcast_to(imgs.mean(axis=(1, 2), keepdims=True), imgs.shape).astype(np.float32)
        if key == "blur":
            if not blur_sigma > 0:
                raise ValueError(f"blur_sigma must be > 0 px, got {blur_sigma}")
            return ndimage.gaussian_filter(imgs.astype(np.float64), sigma=(0, blur_sigma, blur_sigma),
                                           mode="reflect").astype(np.float32)
        raise KeyError(f"unknown baseline {kind!r}; valid: 'blur', 'black', 'mean', a number or an array")
    if np.isscalar(kind):
        return np.full_like(imgs, float(kind))
    b = kind.detach().cpu().numpy() if isinstance(kind, torch.Tensor) else np.asarray(kind)
    b = b.astype(np.float32)
    if b.ndim == 4 and b.shape[1] == 1:
        b = b[:, 0]
    if b.shape == (h, w):
        return np.broadcast_to(b, imgs.shape).copy()
    if b.shape == imgs.shape:
        return b.copy()
    raise ValueError(f"baseline array must be (H, W) = {(h, w)} or (N, H, W) = {imgs.shape}; got shape {b.shape}")


def _resolve_target(target: Any, n: int, logits: Callable[[], np.ndarray]) -> np.ndarray:
    """target -> int64 (N,) of 0 (explain the 'real' logit -z) or 1 (the 'generated' logit z)."""
    if isinstance(target, str):
        key = target.strip().lower()
        if key in ("generated", "fake"):
            return np.ones(n, np.int64)
        if key == "real":
            return np.zeros(n, np.int64)
        if key in ("predicted", "prediction"):
            return (logits() > 0).astype(np.int64)
        raise KeyError(f"unknown target {target!r}; valid: 'generated', 'real', 'predicted', or 0/1 per image")
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        t = np.full(n, int(target), np.int64)
    else:
        t = np.asarray(target.detach().cpu() if isinstance(target, torch.Tensor) else target)
        if t.shape != (n,):
            raise ValueError(f"target must be one 0/1 label per image, shape ({n},); got shape {t.shape}")
        t = t.astype(np.int64)
    if not np.isin(t, (0, 1)).all():
        raise ValueError(f"target labels must be 0 (real) or 1 (generated); got {np.unique(t).tolist()}")
    return t


# --------------------------------------------------------------------------- model plumbing


class _TwoSided(nn.Module):
    """Wraps a one-logit detector as outputs ``[-z, z]`` so that captum's ``target``
    index picks the explained side per image (0 = "real", 1 = "generated"), and checks
    the detector's output shape once, with a message that names the contract."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.detector(x)
        if not isinstance(z, torch.Tensor):
            raise ValueError(f"the detector must return a tensor of logits, got {type(z).__name__}")
        if z.ndim == 2 and z.shape[1] == 1:
            z = z[:, 0]
        if z.ndim != 1 or z.shape[0] != x.shape[0]:
            raise ValueError(
                f"the detector must return one logit per image, shape ({x.shape[0]},) or ({x.shape[0]}, 1); "
                f"got {tuple(z.shape)} for a batch of shape {tuple(x.shape)}")
        return torch.stack([-z, z], dim=1)


@contextlib.contextmanager
def _explaining(model: nn.Module) -> Iterator[None]:
    """Eval mode (dropout off, batch-norm running statistics) and frozen parameters
    while explaining; every module's mode and every parameter's ``requires_grad`` are
    restored afterwards. Freezing means captum's input gradients never write a
    parameter ``.grad`` (nothing leaks into the caller's next optimizer step) and
    autograd does not build the weight-gradient graph it would throw away."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)
        for m, t in modes:
            m.training = t


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _chunks(n: int, batch_size: int) -> list[slice]:
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [slice(i, min(i + int(batch_size), n)) for i in range(0, n, int(batch_size))]


def _progress(it, progress: bool, desc: str, total: int):
    if not progress:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total)


def predict_logits(model: nn.Module, images: Any, *, batch_size: int = 64) -> np.ndarray:
    """The detector's logits (N,) float64 ("generated" > 0), in eval mode, without
    gradients; the model's modes are restored afterwards."""
    imgs = _as_images(images)
    dev = _device(model)
    wrapped = _TwoSided(model)
    out = []
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            for sl in _chunks(len(imgs), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(imgs[sl][:, None])).to(dev)
                out.append(wrapped(x)[:, 1].double().cpu().numpy())
    finally:
        for m, t in modes:
            m.training = t
    return np.concatenate(out)


def find_last_conv(model: nn.Module) -> tuple[str, nn.Module]:
    """(name, module) of the last ``nn.Conv2d`` in registration order: for a plain
    sequential CNN the deepest convolution, whose maps Grad-CAM uses (the last spatial
    layer keeps the most class-specific features with some spatial resolution)."""
    last = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            last = (name, m)
    if last is None:
        raise ValueError(f"layer_gradcam needs a convolutional layer, and {type(model).__name__} has no "
                         "nn.Conv2d; pass layer=<module or its name>")
    return last


def _resolve_layer(model: nn.Module, layer: nn.Module | str | None) -> nn.Module:
    if layer is None:
        return find_last_conv(model)[1]
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError(f"layer {type(layer).__name__} is not a submodule of the detector")
        return layer
    try:
        return model.get_submodule(str(layer))
    except AttributeError:
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        raise KeyError(f"the detector has no submodule {layer!r}; its conv layers: {', '.join(convs) or 'none'}") \
            from None


# --------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class AttributionMethod:
    """One entry of :data:`METHODS`: captum's algorithm behind a uniform call.

    ``run(forward, x, target, baseline, options)`` gets the two-sided wrapped detector,
    a batch ``(b, 1, H, W)``, target indices ``(b,)``, the baseline batch (or None) and
    the merged options; it returns the maps ``(b, 1, H, W)`` and the convergence deltas
    ``(b,)`` (or None).
    """

    name: str
    description: str
    run: Callable[..., tuple[torch.Tensor, torch.Tensor | None]]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    uses_baseline: bool | Callable[[Mapping[str, Any]], bool] = False
    has_delta: bool = False
    gradient: bool = True  # differentiates w.r.t. the input (occlusion only runs forward passes)

    def needs_baseline(self, opts: Mapping[str, Any]) -> bool:
        """Whether these options use a baseline (SmoothGrad only with an IG base)."""
        return bool(self.uses_baseline(opts) if callable(self.uses_baseline) else self.uses_baseline)

    def options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults updated with `given`; unknown names raise a TypeError listing the valid ones."""
        bad = sorted(set(given) - set(self.defaults))
        if bad:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise TypeError(f"{self.name} got unknown option(s) {', '.join(bad)}; valid options: {valid}")
        return {**self.defaults, **given}


def _run_saliency(fwd, x, target, baseline, opts):
    from captum.attr import Saliency

    return Saliency(fwd).attribute(x, target=target, abs=False), None


def _ig_batch(opts: Mapping[str, Any], b: int) -> int:
    # captum splits n_steps * b forward passes into chunks of at most this many
    # images; it must be at least the number of images in the batch.
    return max(int(opts["internal_batch_size"]), b)


def _run_ig(fwd, x, target, baseline, opts):
    from captum.attr import IntegratedGradients

    if int(opts["n_steps"]) < 1:
        raise ValueError(f"n_steps must be >= 1, got {opts['n_steps']}")
    attr, delta = IntegratedGradients(fwd).attribute(
        x, baselines=baseline, target=target, n_steps=int(opts["n_steps"]), method=opts["ig_method"],
        internal_batch_size=_ig_batch(opts, x.shape[0]), return_convergence_delta=True)
    return attr, delta


def _run_smoothgrad(fwd, x, target, baseline, opts):
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    base = str(opts["base"]).lower()
    n = int(opts["nt_samples"])
    if n < 1:
        raise ValueError(f"nt_samples must be >= 1, got {n}")
    if not float(opts["stdev"]) >= 0:
        raise ValueError(f"stdev must be >= 0 (in units of the [0, 1] gray range), got {opts['stdev']}")
    common = dict(nt_type=opts["nt_type"], nt_samples=n, stdevs=float(opts["stdev"]),
                  nt_samples_batch_size=min(n, int(opts["nt_samples_batch_size"])), target=target)
    # NoiseTunnel draws its noise from torch's global generator: fork it so a seed
    # makes the maps reproducible without disturbing the caller's random stream.
    with torch.random.fork_rng(devices=[] if x.device.type == "cpu" else [x.device]):
        torch.manual_seed(int(opts["seed"]))
        if base == "saliency":
            attr = NoiseTunnel(Saliency(fwd)).attribute(x, abs=False, **common)
        elif base in ("integrated_gradients", "ig"):
            bsz = x.shape[0] * common["nt_samples_batch_size"]
            attr = NoiseTunnel(IntegratedGradients(fwd)).attribute(
                x, baselines=baseline, n_steps=int(opts["n_steps"]), method=opts["ig_method"],
                internal_batch_size=max(int(opts["internal_batch_size"]), bsz), **common)
        else:
            raise KeyError(f"unknown smoothgrad base {opts['base']!r}; valid: 'saliency', 'integrated_gradients'")
    return attr, None


def _run_gradcam(fwd, x, target, baseline, opts):
    from captum.attr import LayerAttribution, LayerGradCam

    layer = _resolve_layer(fwd.detector, opts["layer"])
    cam = LayerGradCam(fwd, layer).attribute(x, target=target, relu_attributions=bool(opts["relu"]))
    if not isinstance(cam, torch.Tensor) or cam.ndim != 4:
        raise ValueError(f"layer_gradcam needs a layer with (B, C, h, w) output; got "
                         f"{getattr(cam, 'shape', type(cam))} from {type(layer).__name__}")
    mode = str(opts["interpolate_mode"])
    return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode=mode), None


def _run_occlusion(fwd, x, target, baseline, opts):
    from captum.attr import Occlusion

    h, w = x.shape[-2:]
    win = int(opts["window"])
    stride = int(opts["stride"]) if opts["stride"] is not None else max(1, win // 2)
    if not 1 <= win <= min(h, w):
        raise ValueError(f"occlusion window must be 1..{min(h, w)} px for {h}x{w} images, got {win}")
    if not 1 <= stride <= win:
        raise ValueError(f"occlusion stride must be 1..window ({win}) px so every pixel is covered, got {stride}")
    attr = Occlusion(fwd).attribute(
        x, sliding_window_shapes=(1, win, win), strides=(1, stride, stride), baselines=baseline,
        target=target, perturbations_per_eval=max(1, int(opts["perturbations_per_eval"])))
    return attr, None


_IG_OPTS = {"n_steps": 50, "ig_method": "gausslegendre", "internal_batch_size": 16}

METHODS: dict[str, AttributionMethod] = {
    m.name: m
    for m in (
        AttributionMethod(
            "saliency", "signed input gradient d(logit)/d(pixel): local sensitivity, no baseline",
            _run_saliency),
        AttributionMethod(
            "integrated_gradients",
            "gradients integrated along the straight path from the baseline; sums to "
            "logit(image) - logit(baseline) (completeness)",
            _run_ig, dict(_IG_OPTS), uses_baseline=True, has_delta=True),
        AttributionMethod(
            "smoothgrad",
            "NoiseTunnel: the mean of a base method (saliency or IG) over copies of the "
            "image with Gaussian noise of `stdev` gray levels",
            _run_smoothgrad,
            {"base": "saliency", "nt_samples": 16, "stdev": 0.1, "nt_type": "smoothgrad",
             "nt_samples_batch_size": 1, "seed": 0, **_IG_OPTS, "n_steps": 16},
            uses_baseline=lambda o: str(o["base"]).lower() != "saliency"),
        AttributionMethod(
            "layer_gradcam",
            "Grad-CAM on a conv layer (default: the last nn.Conv2d), upsampled to the "
            "input size; coarse (the layer's resolution)",
            _run_gradcam, {"layer": None, "relu": True, "interpolate_mode": "bilinear"}),
        AttributionMethod(
            "occlusion",
            "logit(image) - logit(image with a window replaced by the baseline), averaged "
            "over the windows covering each pixel",
            _run_occlusion, {"window": 8, "stride": None, "perturbations_per_eval": 1},
            uses_baseline=True, gradient=False),
    )
}


def method_names() -> tuple[str, ...]:
    """Names of the registered attribution methods."""
    return tuple(METHODS)


def get_method(name: str) -> AttributionMethod:
    """The registered method called `name`; KeyError lists the valid names."""
    key = str(name).strip().lower()
    if key not in METHODS:
        raise KeyError(f"unknown attribution method {name!r}; valid: {', '.join(METHODS)}")
    return METHODS[key]


def attribute(
    model: nn.Module,
    images: Any,
    method: str,
    *,
    target: str | int | Sequence[int] | np.ndarray = "generated",
    baseline: str | float | np.ndarray = "blur",
    blur_sigma: float = 3.0,
    batch_size: int = 16,
    return_delta: bool = False,
    progress: bool = False,
    **kw: Any,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Attribution maps (N, H, W) float32 of `method` for a one-logit detector.

    `images`: (H, W), (N, H, W) or (N, 1, H, W) float in [0, 1] (numpy or torch).
    `target`: "generated" (explain the logit z), "real" (explain -z), "predicted", or
    0/1 per image. `baseline`: see :func:`make_baseline` and the module docstring;
    used by integrated_gradients, occlusion and smoothgrad over IG, ignored otherwise.
    Images are processed `batch_size` at a time; method options (`**kw`) bound memory
    further: ``internal_batch_size`` (IG: images per forward pass over all steps),
    ``nt_samples_batch_size`` (SmoothGrad), ``perturbations_per_eval`` (occlusion).
    Method options and their defaults: ``METHODS[name].defaults``.

    With ``return_delta=True`` (integrated_gradients only) also returns captum's
    convergence deltas (N,) float64: sum of the map minus (f(image) - f(baseline)) for
    the explained side f; |delta| small against |f(image) - f(baseline)| means enough
    steps (raise ``n_steps`` otherwise).

    The model runs in eval mode with frozen parameters; its modes and
    ``requires_grad`` flags are restored and no parameter ``.grad`` is written.
    """
    spec = get_method(method)
    opts = spec.options(kw)
    if return_delta and not spec.has_delta:
        with_delta = [m.name for m in METHODS.values() if m.has_delta]
        raise ValueError(f"{spec.name} has no convergence delta; methods with one: {', '.join(with_delta)}")
    imgs = _as_images(images)
    n, h, w = imgs.shape
    base = make_baseline(imgs, baseline, blur_sigma=blur_sigma) if spec.needs_baseline(opts) else None
    tgt = _resolve_target(target, n, lambda: predict_logits(model, imgs, batch_size=batch_size))
    dev = _device(model)
    fwd = _TwoSided(model)
    maps = np.empty((n, h, w), np.float32)
    deltas = np.full(n, np.nan)
    chunks = _chunks(n, batch_size)
    with _explaining(model):
        for sl in _progress(chunks, progress, spec.name, len(chunks)):
            x = torch.from_numpy(np.ascontiguousarray(imgs[sl][:, None])).to(dev)
            b = None if base is None else torch.from_numpy(np.ascontiguousarray(base[sl][:, None])).to(dev)
            t = torch.from_numpy(tgt[sl]).to(dev)
            x.requires_grad_(spec.gradient)
            attr, delta = spec.run(fwd, x, t, b, opts)
            attr = attr.detach()
            if attr.shape != (x.shape[0], 1, h, w):
                raise RuntimeError(f"{spec.name} returned maps of shape {tuple(attr.shape)}, expected "
                                   f"{(x.shape[0], 1, h, w)}")
            maps[sl] = attr[:, 0].float().cpu().numpy()
            if delta is not None:
                deltas[sl] = delta.detach().double().cpu().numpy().reshape(-1)
    if return_delta:
        return maps, deltas
    return maps


# --------------------------------------------------------------------------- class averages


@dataclass(frozen=True)
class ClassMap:
    """A class-averaged attribution map: group name, the (H, W) map, the number of
    images averaged, their true label (0 real, 1 generated) and whether the group is
    the correctly (True) or wrongly (False) predicted images, or all (None)."""

    name: str
    map: np.ndarray
    n: int
    label: int
    correct: bool | None = None


def class_average_maps(
    attr: Any,
    labels: Sequence[int] | np.ndarray,
    predicted: Sequence[int] | np.ndarray | None = None,
    *,
    absolute: bool = True,
    normalize: bool = True,
    class_names: Sequence[str] = ("real", "generated"),
) -> dict[str, ClassMap]:
    """Mean attribution map per true class (keys "real", "generated"), and with
    `predicted` (0/1 per image) also per correct / wrong prediction ("real/correct",
    "real/wrong", ...). Empty groups are left out.

    `absolute` averages |attribution| (default): signs cancel between images whose
    evidence points the same way but sits on opposite sides of an edge. `normalize`
    first divides each map by its mean |attribution|, so every image counts equally
    (otherwise a few confidently classified images with large gradients dominate).
    Maps must share one size (a class average over different layouts is a statement
    about positions in the frame: useful for fixed-geometry data, tiles, and for
    spotting border or corner artifacts).
    """
    a = _as_maps(attr)
    n = a.shape[0]
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    if y.shape != (n,):
        raise ValueError(f"labels must have one entry per map ({n}); got {y.shape[0]}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 (real) or 1 (generated); got {np.unique(y).tolist()}")
    p = None
    if predicted is not None:
        p = np.asarray(predicted).astype(np.int64).reshape(-1)
        if p.shape != (n,):
            raise ValueError(f"predicted must have one entry per map ({n}); got {p.shape[0]}")
        if not np.isin(p, (0, 1)).all():
            raise ValueError(f"predicted must be 0 (real) or 1 (generated); got {np.unique(p).tolist()}")
    if len(class_names) != 2:
        raise ValueError(f"class_names must name 2 classes (real, generated), got {list(class_names)}")
    v = np.abs(a) if absolute else a.copy()
    if normalize:
        scale = np.abs(a).mean(axis=(1, 2), keepdims=True)
        v = v / np.where(scale > 0, scale, 1.0)
    out: dict[str, ClassMap] = {}
    for lab in (0, 1):
        sel = y == lab
        groups = [(str(class_names[lab]), sel, None)]
        if p is not None:
            groups += [(f"{class_names[lab]}/correct", sel & (p == lab), True),
                       (f"{class_names[lab]}/wrong", sel & (p != lab), False)]
        for name, s, corr in groups:
            if s.any():
                out[name] = ClassMap(name, v[s].mean(axis=0).astype(np.float32), int(s.sum()), lab, corr)
    return out


# --------------------------------------------------------------------------- regions

REGIONS: tuple[str, ...] = ("edge", "pattern", "background", "hole", "defect")
_INTERIOR = {"pattern": _labels.PATTERN, "background": _labels.BACKGROUND, "hole": _labels.HOLE,
             "defect": _labels.DEFECT}


def _as_masks(masks: Any, shape: tuple[int, int, int]) -> np.ndarray:
    m = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if m.ndim == 2:
        m = m[None]
    elif m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.shape != shape:
        raise ValueError(f"masks must match the attribution maps: expected shape {shape} (or {shape[1:]} for "
                         f"one map), got {np.shape(masks)}")
    if m.dtype == bool:
        m = m.astype(np.uint8)
    if not np.issubdtype(m.dtype, np.integer):
        if not np.all(np.isfinite(m)) or not np.all(m == np.round(m)):
            raise _labels.MaskError(f"masks must hold integer class ids, got dtype {m.dtype}")
        m = m.astype(np.int64)
    bad = np.unique(m[(m < 0) | (m >= _labels.NUM_CLASSES)])
    if bad.size:
        raise _labels.MaskError(f"mask class ids {bad[:10].tolist()} are outside 0..{_labels.NUM_CLASSES - 1}")
    return m.astype(np.int64)


def edge_zone(mask: np.ndarray, edge_width_px: int = 2) -> np.ndarray:
    """Boolean (H, W): pixels with a pixel of another class within `edge_width_px` in
    both x and y (a (2w+1)^2 square). Both sides of a boundary count, so a straight
    edge gives a band 2w px wide; the image border is not a boundary; w = 0: no edge.
    (Within the square, the maximum and minimum label differ exactly when some label
    differs from the centre's.)"""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    w = int(edge_width_px)
    if w != edge_width_px or w < 0:
        raise ValueError(f"edge_width_px must be an integer >= 0, got {edge_width_px}")
    if w == 0:
        return np.zeros(m.shape, bool)
    size = 2 * w + 1
    return ndimage.maximum_filter(m, size=size, mode="nearest") != ndimage.minimum_filter(m, size=size,
                                                                                          mode="nearest")


def _region_sums(a: np.ndarray, m: np.ndarray, edge_width_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image and region: sum of |attr| and pixel count, each (N, len(REGIONS))."""
    n = a.shape[0]
    mass = np.zeros((n, len(REGIONS)))
    area = np.zeros((n, len(REGIONS)))
    for i in range(n):
        edge = edge_zone(m[i], edge_width_px)
        regions = [edge] + [(m[i] == _INTERIOR[r]) & ~edge for r in REGIONS[1:]]
        for j, sel in enumerate(regions):
            mass[i, j] = np.abs(a[i][sel]).sum()
            area[i, j] = sel.sum()
    return mass, area


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def attribution_by_region(
    attr: Any,
    masks: Any,
    *,
    edge_width_px: int = 2,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Where |attribution| goes: edges, flat pattern, background, holes, defects.

    Regions (disjoint, covering every pixel; from canonical masks, 0 background,
    1 pattern, 2 hole, 3 defect): "edge" = :func:`edge_zone` (within `edge_width_px`
    of a label boundary), then the interiors of each class outside the edge zone.

    Returns a dict:
      - ``regions``: the region names (:data:`REGIONS`);
      - ``attribution_share``, ``area_share``, ``enrichment``: {region: float}, pooled
        over all images (sum of |attr| in the region over all images / total; the same
        for pixel counts; enrichment = attribution share / area share, so 1.0 means no
        preference, 3.0 three times more attribution per pixel than average; NaN for a
        region with no pixels);
      - ``enrichment_ci``: {region: (low, high)}: percentile bootstrap over images
        (`n_boot` resamples, level `ci`) of the pooled enrichment;
      - ``per_image``: {"attribution_share", "area_share", "enrichment"}: arrays
        (N, len(regions));
      - ``rows``: one dict per region (region, attribution_share, area_share,
        enrichment, ci_low, ci_high, pixels) for a table;
      - ``edge_width_px``, ``n_images``.
    """
    a = _as_maps(attr)
    m = _as_masks(masks, a.shape)
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    mass, area = _region_sums(a, m, edge_width_px)
    total_mass = mass.sum()
    if total_mass <= 0:
        warnings.warn("attribution is zero everywhere: region shares are undefined (NaN)", stacklevel=2)
    share = _ratio(mass.sum(0), np.full(len(REGIONS), total_mass))
    area_share = area.sum(0) / area.sum()
    if area_share[0] > 0.8:
        warnings.warn(f"the edge zone covers {100 * area_share[0]:.0f}% of the pixels (edge_width_px="
                      f"{edge_width_px}): little is left to compare it with; use a smaller edge_width_px "
                      "(small images of fine patterns)", UserWarning, stacklevel=2)
    enrich = _ratio(share, area_share)
    per_share = _ratio(mass, mass.sum(1, keepdims=True))
    per_area = area / area.sum(1, keepdims=True)
    per_enrich = _ratio(per_share, per_area)

    n = a.shape[0]
    rng = np.random.default_rng(seed)
    lo = hi = enrich
    if n > 1 and n_boot > 0:
        idx = rng.integers(0, n, size=(int(n_boot), n))
        bm = mass[idx].sum(1)  # (n_boot, R)
        ba = area[idx].sum(1)
        b_enrich = _ratio(_ratio(bm, bm.sum(1, keepdims=True)), ba / ba.sum(1, keepdims=True))
        alpha = (1 - ci) / 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (absent regions)
            lo, hi = np.nanquantile(b_enrich, [alpha, 1 - alpha], axis=0)
    rows = [
        {"region": r, "attribution_share": float(share[j]), "area_share": float(area_share[j]),
         "enrichment": float(enrich[j]), "ci_low": float(lo[j]), "ci_high": float(hi[j]),
         "pixels": int(area[:, j].sum())}
        for j, r in enumerate(REGIONS)
    ]
    return {
        "regions": list(REGIONS),
        "attribution_share": {r: float(share[j]) for j, r in enumerate(REGIONS)},
        "area_share": {r: float(area_share[j]) for j, r in enumerate(REGIONS)},
        "enrichment": {r: float(enrich[j]) for j, r in enumerate(REGIONS)},
        "enrichment_ci": {r: (float(lo[j]), float(hi[j])) for j, r in enumerate(REGIONS)},
        "per_image": {"attribution_share": per_share, "area_share": per_area, "enrichment": per_enrich},
        "rows": rows,
        "edge_width_px": int(edge_width_px),
        "n_images": int(n),
    }


# --------------------------------------------------------------------------- spectra


def _window(shape: tuple[int, int], window: str | None) -> np.ndarray:
    if window in (None, "none"):
        return np.ones(shape)
    if window == "hann":
        return np.outer(np.hanning(shape[0]), np.hanning(shape[1]))
    raise ValueError(f"unknown window {window!r}; valid: 'hann', None")


def high_frequency_share(x: np.ndarray, cutoff: float = 0.25, *, window: str | None = "hann") -> float:
    """Share of the 2-D power of the mean-subtracted, windowed map `x` (H, W) at radial
    frequencies above `cutoff` cycles/px (DC excluded; the corners beyond Nyquist count
    as high). Computed on the full 2-D spectrum, not on a radial average, so every
    frequency counts once. White noise gives the area share of the frequency square
    beyond the cutoff (about 0.80 at 0.25); NaN for a constant map."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {a.shape}")
    if not 0 < cutoff < np.sqrt(0.5):
        raise ValueError(f"cutoff must be in (0, 0.707) cycles/px, got {cutoff}")
    p = np.abs(np.fft.fft2((a - a.mean()) * _window(a.shape, window))) ** 2
    r = np.hypot(np.fft.fftfreq(a.shape[0])[:, None], np.fft.fftfreq(a.shape[1])[None, :])
    p[0, 0] = 0.0
    tot = p.sum()
    return float(p[r > cutoff].sum() / tot) if tot > 0 else float("nan")


def attribution_spectrum(
    attr: Any,
    images: Any,
    *,
    of: str = "attribution",
    cutoff: float = 0.25,
    window: str | None = "hann",
) -> dict[str, Any]:
    """Attribution-weighted spectra: at which spatial frequencies does attribution sit?

    `of` = "attribution" analyses the signed map itself (where the detector's
    sensitivity oscillates: a detector keyed on checkerboard upsampling artifacts has
    maps that alternate sign pixel to pixel); "product" analyses attribution x image
    (the image content weighted by how much it counts). Each map's and each image's
    radially averaged power spectrum (:func:`semlab.metrics.spectral.radial_power_spectrum`,
    Hann window) is scaled to unit sum before averaging over images, so the curves are
    distributions over frequency that can be compared with the image's own.

    Returns a dict: ``freq`` (cycles/px), ``attribution_power`` and ``image_power``
    (mean normalised radial spectra), ``high_share`` and ``image_high_share`` (mean over
    images of :func:`high_frequency_share` above `cutoff`), ``per_image_high_share`` and
    ``per_image_image_high_share`` (N,), ``cutoff``, ``of``. "Attribution sits at high
    spatial frequencies" means ``high_share`` well above ``image_high_share``.

    Which maps to use: the spectrum of a gradient map (saliency, SmoothGrad over
    saliency) describes the detector. Integrated gradients are ``(x - baseline)`` times
    a path-averaged gradient, so their spectrum inherits that of ``x - baseline``
    (white-ish for noisy SEM images whatever the detector does; high-pass for the blur
    baseline); occlusion maps are box-filtered by the window, hence low-pass; Grad-CAM
    maps are upsampled from a coarse layer. Read those spectra relative to each other,
    not as evidence of what the detector keys on.
    """
    from semlab.metrics.spectral import radial_power_spectrum

    a = _as_maps(attr)
    imgs = _as_images(images).astype(np.float64)
    if imgs.shape != a.shape:
        raise ValueError(f"images must match the attribution maps: {a.shape} maps, images of shape {imgs.shape}")
    if min(a.shape[1:]) < 4:
        raise ValueError(f"maps too small for a spectrum: {a.shape[1:]}")
    if of == "attribution":
        target = a
    elif of == "product":
        target = a * imgs
    else:
        raise ValueError(f"of must be 'attribution' or 'product', got {of!r}")

    def norm_spec(x):
        f, p = radial_power_spectrum(x, window=window)
        s = p.sum()
        return f, (p / s if s > 0 else np.full_like(p, np.nan))

    freq = norm_spec(target[0])[0]
    ap = np.stack([norm_spec(t)[1] for t in target])
    ip = np.stack([norm_spec(im)[1] for im in imgs])
    hs = np.array([high_frequency_share(t, cutoff, window=window) for t in target])
    ihs = np.array([high_frequency_share(im, cutoff, window=window) for im in imgs])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN (constant maps)
        return {
            "freq": freq,
            "attribution_power": np.nanmean(ap, axis=0),
            "image_power": np.nanmean(ip, axis=0),
            "high_share": float(np.nanmean(hs)),
            "image_high_share": float(np.nanmean(ihs)),
            "per_image_high_share": hs,
            "per_image_image_high_share": ihs,
            "cutoff": float(cutoff),
            "of": of,
        }
