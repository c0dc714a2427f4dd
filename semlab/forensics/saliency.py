"""Where does a real-vs-generated detector look? Captum attributions and their summaries.

A *detector* is any ``torch.nn.Module`` mapping a batch ``(B, 1, H, W)`` float32 in
[0, 1] to one logit per image (shape ``(B,)`` or ``(B, 1)``); a positive logit means
"generated". This module turns such a detector and a set of SEM images into
attribution maps ``(N, H, W)``; `semlab.forensics.attribution_stats` turns those into
numbers an engineer can read (its public names are re-exported here):

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
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from semlab.arrays import as_gray_stack
from semlab.forensics.attribution_stats import (REGIONS, ClassMap, attribution_by_region,
                                                attribution_spectrum, class_average_maps, edge_zone,
                                                high_frequency_share)

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


def make_baseline(images: Any, kind: str | float | np.ndarray = "blur", *,
                  blur_sigma: float = 3.0) -> np.ndarray:
    """The integrated-gradients / occlusion reference for each image, float32 (N, H, W).

    `kind` is "blur" (Gaussian of `blur_sigma` px, reflected borders), "black" (zeros),
    "mean" (each image's mean gray level), a number (a flat gray level) or an array
    (H, W) shared by all images or (N, H, W) / (N, 1, H, W), one per image. See the
    module docstring for why "blur" is the default for SEM.
    """
    imgs = as_gray_stack(images, min_size=2)
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
    imgs = as_gray_stack(images, min_size=2)
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
    imgs = as_gray_stack(images, min_size=2)
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
