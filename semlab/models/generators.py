"""Generators of Pix2Pix and CycleGAN: the U-Net and the ResNet generator.

Both follow the architectures of the original pix2pix/CycleGAN PyTorch code
(Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial
Networks"; Zhu et al. 2017, "Unpaired Image-to-Image Translation using
Cycle-Consistent Adversarial Networks"), re-implemented here, with semlab's defaults:
the input is a one-hot label mask (``in_channels = NUM_CLASSES``), optionally with one
extra noise channel, and the output is one SEM channel in [-1, 1] (Tanh).

Upsampling (``upsample=``):

- ``"transposed"``: as in the original: ConvTranspose2d(k4, s2, p1) in the U-Net,
  ConvTranspose2d(k3, s2, p1, output_padding=1) in the ResNet generator;
- ``"resize"``: nearest-neighbour x2 then Conv2d(k3, s1, p1), the usual cure for
  checkerboard artifacts (Odena et al. 2016, "Deconvolution and Checkerboard
  Artifacts"). Output shapes are the same; the U-Net has fewer parameters (3x3
  instead of 4x4 kernels).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from semlab.labels import NUM_CLASSES

from .common import NOISE_KINDS, concat_noise, conv_bias, norm_layer

__all__ = ["UNetGenerator", "ResnetGenerator", "UPSAMPLE_MODES", "unet_num_downs"]

UPSAMPLE_MODES = ("transposed", "resize")


def _check_upsample(mode: str) -> str:
    key = str(mode).strip().lower()
    if key not in UPSAMPLE_MODES:
        raise KeyError(f"unknown upsample mode {mode!r}; valid names: {', '.join(UPSAMPLE_MODES)}")
    return key


def _noise_kind(noise_channel) -> str | None:
    if noise_channel is False or noise_channel is None:
        return None
    if noise_channel is True:
        return "uniform"
    key = str(noise_channel).strip().lower()
    if key not in NOISE_KINDS:
        raise KeyError(
            f"unknown noise kind {noise_channel!r}; valid names: {', '.join(NOISE_KINDS)} "
            "(or True for 'uniform', False for none)"
        )
    return key


def _upconv(in_c: int, out_c: int, *, bias: bool, mode: str, kernel: int) -> nn.Module:
    """x2 upsampling convolution: transposed (kernel 4 or 3) or nearest resize + 3x3."""
    if mode == "resize":
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(in_c, out_c, kernel_size=3, stride=1, padding=1, bias=bias),
        )
    if kernel == 4:
        return nn.ConvTranspose2d(in_c, out_c, kernel_size=4, stride=2, padding=1, bias=bias)
    return nn.ConvTranspose2d(in_c, out_c, kernel_size=3, stride=2, padding=1,
                              output_padding=1, bias=bias)


class _NoiseInput(nn.Module):
    """Mixin: optional noise channel appended to the conditioning input."""

    in_channels: int
    noise: str | None

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects (B, C, H, W), got {tuple(x.shape)}")
        c = x.shape[1]
        if self.noise is not None:
            if c == self.in_channels:
                return concat_noise(x, self.noise)
            if c == self.in_channels + 1:  # noise already appended by the caller
                return x
            raise ValueError(
                f"{type(self).__name__} expects {self.in_channels} channels (noise is "
                f"appended) or {self.in_channels + 1} (noise included), got {c}"
            )
        if c != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects {self.in_channels} channels, got {c}")
        return x


# ---------------------------------------------------------------------------- U-Net


def unet_num_downs(size: int) -> int:
    """Number of stride-2 downsamplings for a U-Net on `size` x `size` images:
    log2(size), so that the bottleneck is 1x1 (8 for 256, 7 for 128). `size` must be
    a power of two >= 4; anything else raises a ValueError."""
    s = int(size)
    if s != size or s < 4 or s & (s - 1):
        raise ValueError(
            f"U-Net image size must be a power of two >= 4 (e.g. 64, 128, 256), got {size!r}; "
            "crop or pad the images, or pass num_downs explicitly"
        )
    return int(math.log2(s))


class _UNetBlock(nn.Module):
    """One level of the U-Net: down -> submodule -> up, with a skip around it.

    As in the original, the non-outermost levels start their down path with a
    LeakyReLU(0.2); the original applies it in place, so the tensor its skip
    connection concatenates is the *activated* input. semlab reproduces that effect
    explicitly (out of place): the skip carries ``LeakyReLU(x)``.
    """

    def __init__(self, outer_nc: int, inner_nc: int, *, in_nc: int | None = None,
                 sub: nn.Module | None = None, outermost: bool = False,
                 innermost: bool = False, norm: str = "batch", dropout: bool = False,
                 upsample: str = "transposed"):
        super().__init__()
        in_nc = outer_nc if in_nc is None else in_nc
        bias = conv_bias(norm)
        nl = norm_layer(norm)
        self.outermost = outermost
        self.innermost = innermost
        # as in the original, the down conv's bias follows the norm type even where no
        # norm follows it (outermost and innermost levels)
        down_conv = nn.Conv2d(in_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=bias)
        up_in = inner_nc if innermost else inner_nc * 2
        if outermost:
            self.act = nn.Identity()
            self.down = nn.Sequential(down_conv)
            self.up = nn.Sequential(
                nn.ReLU(inplace=True),
                _upconv(up_in, outer_nc, bias=True, mode=upsample, kernel=4),
                nn.Tanh(),
            )
        else:
            self.act = nn.LeakyReLU(0.2)
            # no norm on the innermost down conv: its output is 1x1 at the bottleneck
            self.down = nn.Sequential(down_conv) if innermost else nn.Sequential(down_conv, nl(inner_nc))
            up = [nn.ReLU(inplace=True), _upconv(up_in, outer_nc, bias=bias, mode=upsample, kernel=4),
                  nl(outer_nc)]
            if dropout:
                up.append(nn.Dropout(0.5))
            self.up = nn.Sequential(*up)
        self.sub = sub

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        h = self.down(x)
        if self.sub is not None:
            h = self.sub(h)
        h = self.up(h)
        if self.outermost:
            return h
        return torch.cat([x, h], dim=1)


class UNetGenerator(_NoiseInput):
    """The pix2pix U-Net generator (encoder-decoder with skip connections).

    Level ``i`` (0 = outermost) downsamples by 2 to ``ngf * min(2**i, 8)`` channels;
    ``num_downs = log2(size)`` levels bring a ``size`` x ``size`` input to a 1x1
    bottleneck (8 for 256: the original's ``unet_256``; 7 for 128: ``unet_128``).
    LeakyReLU(0.2) on the way down, ReLU on the way up, Tanh output; no norm on the
    outermost down conv nor on the innermost (bottleneck) down conv.

    Dropout(0.5) (``dropout=True``, the pix2pix default, the only noise source of
    pix2pix) goes into the up path of the ``dropout_blocks`` levels just outside the
    bottleneck (3 by default). At 256 px this is exactly the original; for smaller
    images the original's rule puts it only on the ``8*ngf`` levels
    (``num_downs - 5`` of them: 2 at 128 px): pass ``dropout_blocks=None`` for that.

    Inputs whose sides are multiples of ``2**num_downs`` work (e.g. 512 px into a
    256 net gives a 2x2 bottleneck); others raise a ValueError.

    Args:
        in_channels: conditioning channels (one-hot mask: NUM_CLASSES).
        out_channels: output channels (1: SEM image).
        size: image side for ``num_downs = log2(size)``; must be a power of two.
        num_downs: override the number of downsamplings (>= 2).
        ngf: filters of the outermost level; the maximum is ``8 * ngf``.
        norm: "batch" (pix2pix), "instance" or "none".
        dropout: Dropout(0.5) in the innermost up-blocks.
        dropout_blocks: how many levels get dropout (None: the original's rule).
        upsample: "transposed" (original) or "resize" (nearest x2 + 3x3 conv).
        noise_channel: False, True/"uniform" or "normal": the first conv takes one
            more channel and ``forward`` appends a noise map when given
            ``in_channels`` channels (inputs with the noise already appended pass).
    """

    def __init__(self, in_channels: int = NUM_CLASSES, out_channels: int = 1, *,
                 size: int = 256, num_downs: int | None = None, ngf: int = 64,
                 norm: str = "batch", dropout: bool = True, dropout_blocks: int | None = 3,
                 upsample: str = "transposed", noise_channel: bool | str = False):
        super().__init__()
        upsample = _check_upsample(upsample)
        conv_bias(norm)  # validates the name
        if num_downs is None:
            num_downs = unet_num_downs(size)
        else:
            num_downs = int(num_downs)
            if num_downs < 2:
                raise ValueError(f"num_downs must be >= 2, got {num_downs}")
            if size % (2 ** num_downs):
                raise ValueError(f"size {size} is not a multiple of 2**num_downs = {2 ** num_downs}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.noise = _noise_kind(noise_channel)
        self.num_downs = num_downs
        n_drop = max(num_downs - 5, 0) if dropout_blocks is None else int(dropout_blocks)
        first_drop = max(1, num_downs - 1 - n_drop)  # levels first_drop .. num_downs-2
        net_in = self.in_channels + (1 if self.noise else 0)
        chans = [ngf * min(2 ** i, 8) for i in range(num_downs)]
        block = None
        for i in reversed(range(num_downs)):
            block = _UNetBlock(
                chans[i - 1] if i > 0 else self.out_channels,
                chans[i],
                in_nc=net_in if i == 0 else None,
                sub=block,
                outermost=i == 0,
                innermost=i == num_downs - 1,
                norm=norm,
                dropout=bool(dropout) and first_drop <= i <= num_downs - 2,
                upsample=upsample,
            )
        self.model = block
        self.dropout_levels = [i for i in range(1, num_downs - 1) if dropout and i >= first_drop]
        self.config = dict(in_channels=self.in_channels, out_channels=self.out_channels,
                           size=int(size), num_downs=num_downs, ngf=int(ngf), norm=str(norm),
                           dropout=bool(dropout), dropout_blocks=dropout_blocks,
                           upsample=upsample, noise_channel=self.noise or False)

    def levels(self) -> list[_UNetBlock]:
        """The U-Net levels from the outermost (index 0) to the bottleneck."""
        out, b = [], self.model
        while b is not None:
            out.append(b)
            b = b.sub
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prepare(x)
        m = 2 ** self.num_downs
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(
                f"U-Net with num_downs={self.num_downs} needs height and width divisible by "
                f"{m}, got {tuple(x.shape[-2:])}"
            )
        return self.model(x)


# --------------------------------------------------------------------------- ResNet


_PADS = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d}


def _pad_conv(dim: int, padding: str, bias: bool) -> list[nn.Module]:
    if padding == "zero":
        return [nn.Conv2d(dim, dim, kernel_size=3, padding=1, bias=bias)]
    return [_PADS[padding](1), nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=bias)]


class ResnetBlock(nn.Module):
    """Residual block ``x + [pad, conv3, norm, ReLU, (dropout), pad, conv3, norm](x)``."""

    def __init__(self, dim: int, *, norm: str = "instance", dropout: bool = False,
                 padding: str = "reflect"):
        super().__init__()
        bias = conv_bias(norm)
        nl = norm_layer(norm)
        layers = _pad_conv(dim, padding, bias) + [nl(dim), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += _pad_conv(dim, padding, bias) + [nl(dim)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(_NoiseInput):
    """The CycleGAN ResNet generator (Johnson et al. 2016 style).

    c7s1-ngf (reflection pad 3), two stride-2 3x3 downsamplings (ngf -> 2ngf -> 4ngf),
    ``n_blocks`` residual blocks at 4ngf with reflection padding, two x2 upsamplings
    back to ngf, c7s1-out (reflection pad 3) and Tanh. ``n_blocks=9`` is the
    original's ``resnet_9blocks`` (CycleGAN at 256 px), 6 its ``resnet_6blocks``.

    Input sides must be multiples of 4 (ValueError otherwise) so the output has the
    input's size. `size` is optional and only validated and recorded.

    Args:
        in_channels, out_channels, noise_channel, upsample: as in UNetGenerator.
        ngf: filters of the first layer.
        n_blocks: residual blocks.
        norm: "instance" (CycleGAN default), "batch" or "none".
        dropout: Dropout(0.5) inside the residual blocks (off in CycleGAN).
        padding: padding of the residual blocks: "reflect" (original), "replicate",
            "zero".
    """

    def __init__(self, in_channels: int = NUM_CLASSES, out_channels: int = 1, *,
                 ngf: int = 64, n_blocks: int = 9, norm: str = "instance",
                 dropout: bool = False, upsample: str = "transposed",
                 noise_channel: bool | str = False, padding: str = "reflect",
                 size: int | None = None):
        super().__init__()
        upsample = _check_upsample(upsample)
        if padding not in ("reflect", "replicate", "zero"):
            raise KeyError(f"unknown padding {padding!r}; valid names: reflect, replicate, zero")
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        if size is not None and size % 4:
            raise ValueError(f"ResNet generator needs a size divisible by 4, got {size}")
        bias = conv_bias(norm)
        nl = norm_layer(norm)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.noise = _noise_kind(noise_channel)
        net_in = self.in_channels + (1 if self.noise else 0)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(net_in, ngf, kernel_size=7, padding=0, bias=bias),
            nl(ngf), nn.ReLU(inplace=True),
        ]
        for i in range(2):
            c = ngf * 2 ** i
            layers += [nn.Conv2d(c, 2 * c, kernel_size=3, stride=2, padding=1, bias=bias),
                       nl(2 * c), nn.ReLU(inplace=True)]
        for _ in range(n_blocks):
            layers.append(ResnetBlock(4 * ngf, norm=norm, dropout=dropout, padding=padding))
        for i in range(2):
            c = ngf * 2 ** (2 - i)
            layers += [_upconv(c, c // 2, bias=bias, mode=upsample, kernel=3),
                       nl(c // 2), nn.ReLU(inplace=True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, self.out_channels, kernel_size=7, padding=0),
                   nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.config = dict(in_channels=self.in_channels, out_channels=self.out_channels,
                           ngf=int(ngf), n_blocks=int(n_blocks), norm=str(norm),
                           dropout=bool(dropout), upsample=upsample,
                           noise_channel=self.noise or False, padding=padding, size=size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prepare(x)
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(
                f"ResNet generator needs height and width divisible by 4, got {tuple(x.shape[-2:])}"
            )
        return self.model(x)
