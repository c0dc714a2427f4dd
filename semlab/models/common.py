"""Building blocks shared by the semlab networks: normalisation layers, weight
initialisation, parameter counting and the conversions at the model boundary.

Conventions (see ``/work/shared/design.md``):

- images inside semlab are float32 in [0, 1]; networks see them in [-1, 1]
  (:func:`to_model` / :func:`from_model` are the only conversions);
- masks are integer label maps with the class ids of :mod:`semlab.labels`; networks
  see them one-hot (:func:`one_hot`), never as colours.

Normalisation and initialisation follow the original pix2pix/CycleGAN code
(Isola et al. 2017, Zhu et al. 2017):

- ``"batch"``: ``BatchNorm2d(affine=True, track_running_stats=True)``; convolutions
  before it have no bias (the norm's shift replaces it);
- ``"instance"``: ``InstanceNorm2d(affine=False, track_running_stats=False)``; the
  convolutions keep their bias (the norm has no learnable shift);
- ``"none"``: identity. The original also drops the conv biases here (a side effect of
  how it tests the norm type); semlab keeps them, because without a norm nothing
  else provides a shift. Parameter counts for "batch"/"instance" are unaffected.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from semlab.labels import NUM_CLASSES

__all__ = [
    "NORMS",
    "INITS",
    "norm_layer",
    "conv_bias",
    "init_weights",
    "count_params",
    "one_hot",
    "from_one_hot",
    "to_model",
    "from_model",
    "concat_noise",
    "NOISE_KINDS",
]

NORMS = ("batch", "instance", "none")
INITS = ("normal", "xavier", "kaiming", "orthogonal")
NOISE_KINDS = ("uniform", "normal")


def _check_name(kind: str, name: str, valid) -> str:
    key = str(name).strip().lower()
    if key not in valid:
        raise KeyError(f"unknown {kind} {name!r}; valid names: {', '.join(valid)}")
    return key


def norm_layer(name: str = "batch") -> Callable[[int], nn.Module]:
    """A factory ``channels -> nn.Module`` for the normalisation called `name`.

    ``"batch"``: BatchNorm2d (affine, running statistics); ``"instance"``:
    InstanceNorm2d(affine=False, track_running_stats=False), as in the original
    pix2pix/CycleGAN code; ``"none"``: identity. Unknown names raise a KeyError
    listing the valid ones.
    """
    key = _check_name("norm", name, NORMS)
    if key == "batch":
        return lambda c: nn.BatchNorm2d(c, affine=True, track_running_stats=True)
    if key == "instance":
        return lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
    return lambda c: nn.Identity()


def conv_bias(norm: str) -> bool:
    """Whether a convolution followed by the norm `norm` carries a bias.

    False for batch norm (its learnable shift makes a bias redundant), True otherwise
    (instance norm here has no affine parameters; with no norm a bias is needed).
    """
    return _check_name("norm", norm, NORMS) != "batch"


_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
             nn.ConvTranspose3d, nn.Linear)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise `net` in place as the original pix2pix/CycleGAN code does; returns it.

    Convolution, transposed convolution and linear weights:

    - ``"normal"``: N(0, gain) (gain is the standard deviation, 0.02 by default);
    - ``"xavier"``: Xavier/Glorot normal with `gain`;
    - ``"kaiming"``: Kaiming/He normal, a=0, fan_in (`gain` unused);
    - ``"orthogonal"``: orthogonal with `gain`;

    their biases are set to 0. BatchNorm weights are drawn from N(1, gain) and their
    biases set to 0 whatever `init_type` is. Instance norm (affine=False) has no
    parameters. Draws come from torch's global RNG: ``torch.manual_seed(s)`` before
    building a network makes its weights reproducible.
    """
    key = _check_name("init_type", init_type, INITS)
    for m in net.modules():
        if isinstance(m, _WEIGHTED):
            w = m.weight
            if key == "normal":
                nn.init.normal_(w, 0.0, gain)
            elif key == "xavier":
                nn.init.xavier_normal_(w, gain=gain)
            elif key == "kaiming":
                nn.init.kaiming_normal_(w, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(w, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _BATCHNORMS) and m.affine:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


def count_params(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of `net` (all, or only those with requires_grad)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


# ------------------------------------------------------------------ model boundary


def _as_tensor(a) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    return torch.from_numpy(np.ascontiguousarray(a))


def one_hot(mask, num_classes: int = NUM_CLASSES, *, dtype: torch.dtype = torch.float32,
            device=None) -> torch.Tensor:
    """Label map(s) -> one-hot float tensor ``(B, num_classes, H, W)``.

    `mask` is an integer numpy array or tensor of shape ``(H, W)`` (becomes B = 1) or
    ``(B, H, W)`` holding class ids ``0..num_classes-1`` (see :mod:`semlab.labels`).
    Ids outside that range raise a ValueError. The result is in channels_last memory
    format (values as any other layout).
    """
    m = _as_tensor(mask)
    if m.dtype == torch.bool:
        m = m.to(torch.uint8)
    if m.is_floating_point() or m.is_complex():
        raise ValueError(f"mask must hold integer class ids, got dtype {m.dtype}")
    if m.ndim == 2:
        m = m.unsqueeze(0)
    if m.ndim != 3:
        raise ValueError(f"mask must have shape (H, W) or (B, H, W), got {tuple(m.shape)}")
    m = m.to(device=device, dtype=torch.long)
    if m.numel():
        lo, hi = int(m.min()), int(m.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"mask holds class ids in {lo}..{hi}, outside 0..{num_classes - 1}")
    # (B, H, W, C) -> (B, C, H, W): a view in channels_last memory format (oneDNN's fast
    # layout on CPU), the tensor every caller in semlab has always fed its networks
    return torch.nn.functional.one_hot(m, num_classes).permute(0, 3, 1, 2).to(dtype)


def from_one_hot(x: torch.Tensor) -> torch.Tensor:
    """One-hot (or per-class scores) ``(B, C, H, W)`` -> label maps ``(B, H, W)`` long."""
    if x.ndim != 4:
        raise ValueError(f"expected (B, C, H, W), got {tuple(x.shape)}")
    return x.argmax(dim=1)


def _as_image_batch(image) -> torch.Tensor:
    x = _as_tensor(image)
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[:, None]
    elif x.ndim != 4:
        raise ValueError(f"image must be (H, W), (B, H, W) or (B, C, H, W), got {tuple(x.shape)}")
    return x


def to_model(image01) -> torch.Tensor:
    """A semlab image in [0, 1] -> network input in [-1, 1], float32 ``(B, C, H, W)``.

    Accepts numpy arrays or tensors of shape ``(H, W)``, ``(B, H, W)`` or
    ``(B, C, H, W)``. uint8 input (how datasets are held in memory) is scaled by
    1/255 first. Floating-point tensors keep their device and autograd graph.
    """
    x = _as_image_batch(image01)
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif not x.is_floating_point():
        raise ValueError(f"image must be float in [0, 1] or uint8, got dtype {x.dtype}")
    return x.float() * 2.0 - 1.0


def from_model(x: torch.Tensor) -> torch.Tensor:
    """Network output in [-1, 1] -> float32 image in [0, 1] (clamped), same shape."""
    x = _as_tensor(x)
    return ((x.float() + 1.0) * 0.5).clamp(0.0, 1.0)


def concat_noise(x: torch.Tensor, kind: str = "uniform", *,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Append one noise channel to ``x`` ``(B, C, H, W)`` -> ``(B, C + 1, H, W)``.

    ``"uniform"``: U(-1, 1) (the model-boundary range); ``"normal"``: N(0, 1). The
    noise has x's dtype, device and memory format; pass a seeded `generator` for
    reproducible noise, otherwise torch's global RNG is used.
    """
    key = _check_name("noise kind", kind, NOISE_KINDS)
    if x.ndim != 4:
        raise ValueError(f"expected (B, C, H, W), got {tuple(x.shape)}")
    shape = (x.shape[0], 1, x.shape[2], x.shape[3])
    dtype = x.dtype if x.is_floating_point() else torch.float32
    if key == "uniform":
        z = torch.rand(shape, generator=generator, dtype=dtype, device=x.device) * 2.0 - 1.0
    else:
        z = torch.randn(shape, generator=generator, dtype=dtype, device=x.device)
    out = torch.cat([x.to(dtype), z], dim=1)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out
