"""Discriminators: the N-layer PatchGAN, the 1x1 pixel discriminator and the
multi-scale discriminator of pix2pixHD.

All return raw logits (no sigmoid): the losses work on logits
(``BCEWithLogits`` for the vanilla GAN loss, MSE for LSGAN).

Inputs: for pix2pix the discriminator is conditional and sees
``cat([one_hot(mask), image], dim=1)``: ``in_channels = NUM_CLASSES + 1`` (the
default); for CycleGAN it sees the image only: ``in_channels = 1``.

Feature outputs (``return_features=True``, for a feature-matching loss as in
pix2pixHD): an N-layer D returns ``(logits, features)`` with ``features`` the
activations after each LeakyReLU (``n_layers + 1`` tensors, shallow to deep, the
logits not included); the multi-scale D returns ``(list_of_logits,
list_of_feature_lists)``, one entry per scale.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from semlab.labels import NUM_CLASSES

from .common import conv_bias, norm_layer

__all__ = [
    "NLayerDiscriminator",
    "PixelDiscriminator",
    "MultiscaleDiscriminator",
    "receptive_field",
    "patchgan_layers",
]

_K, _P = 4, 1  # kernel and padding of every PatchGAN conv (as in the original)


def patchgan_layers(n_layers: int) -> list[tuple[int, int]]:
    """(kernel, stride) of the convolutions of an n-layer PatchGAN, input to output:
    ``n_layers`` convs k4 s2, then two k4 s1 (the last one to 1 channel)."""
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    return [(_K, 2)] * n_layers + [(_K, 1), (_K, 1)]


def _rf(layers: Sequence[tuple[int, int]]) -> int:
    """Receptive field of a chain of (kernel, stride) layers (dilation 1)."""
    rf, jump = 1, 1
    for k, s in layers:
        rf += (k - 1) * jump
        jump *= s
    return rf


def _chain(module: nn.Module) -> list[tuple[int, int]]:
    out = []
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.AvgPool2d, nn.MaxPool2d)):
            k, s = m.kernel_size, m.stride
            d = getattr(m, "dilation", 1)
            k, s, d = (v[0] if isinstance(v, tuple) else v for v in (k, s, d))
            out.append((d * (k - 1) + 1, s))
    return out


def receptive_field(model_or_n_layers) -> int | list[int]:
    """Receptive field in input pixels of one output logit of a discriminator.

    Accepts an int ``n_layers`` (closed form on the original's layer sequence: 70 for
    3, the "70x70 PatchGAN"; 34 for 2; 16 for 1), an NLayerDiscriminator or
    PixelDiscriminator (computed from its layers: 1 for the pixel D), or a
    MultiscaleDiscriminator, for which a list is returned, one entry per scale, in
    pixels of the full-resolution input (each AvgPool2d(3, 2) before a scale counted).
    """
    if isinstance(model_or_n_layers, MultiscaleDiscriminator):
        ms = model_or_n_layers
        pool = _chain(ms.downsample)
        return [_rf(pool * i + _chain(d)) for i, d in enumerate(ms.discriminators)]
    if isinstance(model_or_n_layers, nn.Module):
        return _rf(_chain(model_or_n_layers))
    return _rf(patchgan_layers(int(model_or_n_layers)))


def _min_side(n_layers: int) -> int:
    # k4 s2 p1 maps s -> floor(s / 2); each k4 s1 p1 maps s -> s - 1; need >= 1 at the end
    return 3 * 2 ** n_layers


class NLayerDiscriminator(nn.Module):
    """The PatchGAN discriminator of pix2pix/CycleGAN.

    ``C64 - C128 - C256 - C512`` for ``n_layers=3`` (the "70x70 PatchGAN"): ``n_layers``
    k4 s2 convs (channels ``ndf * min(2**i, 8)``), one k4 s1 conv, then a k4 s1 conv
    to one channel of patch logits; LeakyReLU(0.2) after every conv but the last; no
    norm on the first conv. Output for a 256 input: 30x30 logits.

    Args:
        in_channels: NUM_CLASSES + 1 for conditional pix2pix (mask one-hot + image),
            1 for CycleGAN.
        ndf: filters of the first conv.
        n_layers: stride-2 convs (3: receptive field 70; 2: 34; 1: 16).
        norm: "batch" (pix2pix), "instance" (CycleGAN) or "none".
        return_features: default of ``forward``'s `return_features`.
    """

    def __init__(self, in_channels: int = NUM_CLASSES + 1, *, ndf: int = 64, n_layers: int = 3,
                 norm: str = "batch", return_features: bool = False):
        super().__init__()
        patchgan_layers(n_layers)  # validates
        bias = conv_bias(norm)
        nl = norm_layer(norm)
        self.in_channels = int(in_channels)
        self.n_layers = int(n_layers)
        self.return_features = bool(return_features)
        blocks = [nn.Sequential(nn.Conv2d(self.in_channels, ndf, _K, 2, _P),
                                nn.LeakyReLU(0.2, inplace=True))]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            blocks.append(nn.Sequential(
                nn.Conv2d(ndf * prev, ndf * mult, _K, stride, _P, bias=bias),
                nl(ndf * mult),
                nn.LeakyReLU(0.2, inplace=True),
            ))
        blocks.append(nn.Sequential(nn.Conv2d(ndf * mult, 1, _K, 1, _P)))
        self.blocks = nn.ModuleList(blocks)
        self.config = dict(in_channels=self.in_channels, ndf=int(ndf), n_layers=self.n_layers,
                           norm=str(norm), return_features=self.return_features)

    def forward(self, x: torch.Tensor, return_features: bool | None = None):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        m = _min_side(self.n_layers)
        if min(x.shape[-2:]) < m:
            raise ValueError(
                f"input {tuple(x.shape[-2:])} too small for an n_layers={self.n_layers} "
                f"PatchGAN: both sides must be >= {m}"
            )
        want = self.return_features if return_features is None else return_features
        feats = []
        for b in self.blocks[:-1]:
            x = b(x)
            if want:
                feats.append(x)
        out = self.blocks[-1](x)
        return (out, feats) if want else out


class PixelDiscriminator(nn.Module):
    """The 1x1 PixelGAN of the original ("pixel"): per-pixel logits, receptive field 1.

    ``conv1x1(in, ndf) - LeakyReLU - conv1x1(ndf, 2ndf) - norm - LeakyReLU -
    conv1x1(2ndf, 1)``. As in the original, the last conv's bias follows the norm
    type (none with batch norm).
    """

    def __init__(self, in_channels: int = NUM_CLASSES + 1, *, ndf: int = 64, norm: str = "batch"):
        super().__init__()
        bias = conv_bias(norm)
        self.in_channels = int(in_channels)
        self.net = nn.Sequential(
            nn.Conv2d(self.in_channels, ndf, 1, 1, 0),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, 2 * ndf, 1, 1, 0, bias=bias),
            norm_layer(norm)(2 * ndf),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * ndf, 1, 1, 1, 0, bias=bias),
        )
        self.config = dict(in_channels=self.in_channels, ndf=int(ndf), norm=str(norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        return self.net(x)


class MultiscaleDiscriminator(nn.Module):
    """``num_D`` N-layer PatchGANs on successively halved inputs (pix2pixHD).

    Scale ``i`` (0 = full resolution) sees the input downsampled ``i`` times by
    ``AvgPool2d(3, stride=2, padding=1, count_include_pad=False)``. ``forward``
    returns a list of ``num_D`` logit maps, full resolution first; with
    ``return_features=True`` it returns ``(logits_list, features_list)`` where
    ``features_list[i]`` is scale i's list of intermediate activations.

    The scales are independent networks with the same architecture (pix2pixHD's
    default ``num_D`` is 2). The coarsest scale must still be at least
    ``3 * 2**n_layers`` pixels on each side (24 for n_layers=3).
    """

    def __init__(self, in_channels: int = NUM_CLASSES + 1, *, num_D: int = 2, ndf: int = 64,
                 n_layers: int = 3, norm: str = "batch", return_features: bool = False):
        super().__init__()
        if num_D < 1:
            raise ValueError(f"num_D must be >= 1, got {num_D}")
        self.in_channels = int(in_channels)
        self.num_D = int(num_D)
        self.return_features = bool(return_features)
        self.discriminators = nn.ModuleList(
            NLayerDiscriminator(in_channels, ndf=ndf, n_layers=n_layers, norm=norm)
            for _ in range(num_D)
        )
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.config = dict(in_channels=self.in_channels, num_D=self.num_D, ndf=int(ndf),
                           n_layers=int(n_layers), norm=str(norm),
                           return_features=self.return_features)

    def forward(self, x: torch.Tensor, return_features: bool | None = None):
        want = self.return_features if return_features is None else return_features
        outs, feats = [], []
        for i, d in enumerate(self.discriminators):
            if i:
                x = self.downsample(x)
            if want:
                o, f = d(x, return_features=True)
                feats.append(f)
            else:
                o = d(x, return_features=False)
            outs.append(o)
        return (outs, feats) if want else outs
