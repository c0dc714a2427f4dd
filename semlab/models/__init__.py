"""The networks of Pix2Pix and CycleGAN, chosen by name.

Generators (``build_generator``):

==================  ==========================================================
``unet``            pix2pix U-Net, ``num_downs = log2(size)`` (pass ``size=``)
``resnet_6blocks``  CycleGAN ResNet generator with 6 residual blocks
``resnet_9blocks``  CycleGAN ResNet generator with 9 residual blocks
==================  ==========================================================

Discriminators (``build_discriminator``):

==============  ==============================================================
``basic``       70x70 PatchGAN (``n_layers=3``)
``n_layers``    PatchGAN with ``n_layers`` stride-2 convs
``pixel``       1x1 PixelGAN
``multiscale``  pix2pixHD multi-scale PatchGAN (``num_D`` scales)
==============  ==============================================================

Unknown names raise a KeyError listing the valid ones. The builders initialise the
weights as the original code does (``init_weights(net, "normal", 0.02)``; seed with
``torch.manual_seed`` first for reproducible weights) and record the name and
options, so ``describe(net)`` gives a JSON-ready record for manifests and
checkpoints and ``build_from_description(record)`` rebuilds the same architecture.

Model boundary: ``one_hot(mask)`` -> ``(B, NUM_CLASSES, H, W)``, ``to_model(image01)``
-> [-1, 1], ``from_model(x)`` -> [0, 1]. Defaults: generators take the one-hot mask
(``in_channels=NUM_CLASSES``) and output 1 channel; discriminators take
``NUM_CLASSES + 1`` channels (conditional pix2pix); use ``in_channels=1`` for
CycleGAN's image-only D.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .common import (
    INITS,
    NOISE_KINDS,
    NORMS,
    concat_noise,
    count_params,
    from_model,
    from_one_hot,
    init_weights,
    norm_layer,
    one_hot,
    to_model,
)
from .discriminators import (
    MultiscaleDiscriminator,
    NLayerDiscriminator,
    PixelDiscriminator,
    receptive_field,
)
from .flops import count_flops
from .generators import UPSAMPLE_MODES, ResnetGenerator, UNetGenerator, unet_num_downs

__all__ = [
    "GENERATORS",
    "DISCRIMINATORS",
    "build_generator",
    "build_discriminator",
    "build_from_description",
    "describe",
    "one_hot",
    "from_one_hot",
    "to_model",
    "from_model",
    "concat_noise",
    "count_params",
    "count_flops",
    "init_weights",
    "norm_layer",
    "receptive_field",
    "unet_num_downs",
    "UNetGenerator",
    "ResnetGenerator",
    "NLayerDiscriminator",
    "PixelDiscriminator",
    "MultiscaleDiscriminator",
    "NORMS",
    "INITS",
    "NOISE_KINDS",
    "UPSAMPLE_MODES",
]

# name -> (class, options fixed by the name)
GENERATORS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "unet": (UNetGenerator, {}),
    "resnet_6blocks": (ResnetGenerator, {"n_blocks": 6}),
    "resnet_9blocks": (ResnetGenerator, {"n_blocks": 9}),
}

DISCRIMINATORS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "basic": (NLayerDiscriminator, {"n_layers": 3}),
    "n_layers": (NLayerDiscriminator, {}),
    "pixel": (PixelDiscriminator, {}),
    "multiscale": (MultiscaleDiscriminator, {}),
}


def _build(kind: str, registry: dict, name: str, init: str | None, init_gain: float,
           kw: dict) -> nn.Module:
    key = str(name).strip().lower()
    if key not in registry:
        raise KeyError(f"unknown {kind} {name!r}; valid names: {', '.join(registry)}")
    cls, fixed = registry[key]
    for k, v in fixed.items():
        if k in kw and kw[k] != v:
            raise ValueError(f"{kind} {key!r} fixes {k}={v!r}, got {k}={kw[k]!r}")
    net = cls(**{**kw, **fixed})
    if init is not None:
        init_weights(net, init, init_gain)
    net.registry_kind = kind
    net.registry_name = key
    net.init_config = None if init is None else {"init_type": init, "gain": float(init_gain)}
    return net


def build_generator(name: str, *, init: str | None = "normal", init_gain: float = 0.02,
                    **kw) -> nn.Module:
    """Generator called `name` (``unet``, ``resnet_6blocks``, ``resnet_9blocks``).

    `kw` go to the class (:class:`UNetGenerator`, :class:`ResnetGenerator`):
    ``in_channels`` (NUM_CLASSES), ``out_channels`` (1), ``ngf`` (64), ``norm``,
    ``dropout``, ``upsample`` ("transposed" | "resize"), ``noise_channel``, and
    ``size`` (the U-Net's image side, a power of two; default 256). Weights are
    initialised with ``init_weights(net, init, init_gain)`` (``init=None`` keeps
    PyTorch's default initialisation).
    """
    return _build("generator", GENERATORS, name, init, init_gain, kw)


def build_discriminator(name: str, *, init: str | None = "normal", init_gain: float = 0.02,
                        **kw) -> nn.Module:
    """Discriminator called `name` (``basic``, ``n_layers``, ``pixel``, ``multiscale``).

    `kw` go to the class (:class:`NLayerDiscriminator`, :class:`PixelDiscriminator`,
    :class:`MultiscaleDiscriminator`): ``in_channels`` (NUM_CLASSES + 1: mask one-hot
    + image for pix2pix; 1 for CycleGAN), ``ndf`` (64), ``norm``, ``n_layers``,
    ``num_D``, ``return_features``. Initialisation as in :func:`build_generator`.
    """
    return _build("discriminator", DISCRIMINATORS, name, init, init_gain, kw)


def describe(net: nn.Module) -> dict[str, Any]:
    """JSON-ready record of a network: kind, registry name, class, parameter counts,
    options (the constructor arguments) and initialisation.

    For networks made by the builders, ``build_from_description(describe(net))``
    makes the same architecture (load the state dict for the same weights).
    """
    opts = dict(getattr(net, "config", {}) or {})
    return {
        "kind": getattr(net, "registry_kind", None),
        "name": getattr(net, "registry_name", type(net).__name__),
        "class": type(net).__name__,
        "params": count_params(net),
        "trainable_params": count_params(net, trainable_only=True),
        "options": opts,
        "init": getattr(net, "init_config", None),
    }


def build_from_description(desc: dict[str, Any], *, init: str | None = None) -> nn.Module:
    """Rebuild the network described by `desc` (from :func:`describe`).

    Weights are left at PyTorch's defaults (``init=None``) since they are normally
    loaded from a checkpoint next; pass ``init`` to initialise them instead.
    """
    kind = desc.get("kind")
    builders = {"generator": build_generator, "discriminator": build_discriminator}
    if kind not in builders:
        raise KeyError(f"description kind {kind!r} unknown; valid names: {', '.join(builders)}")
    return builders[kind](desc["name"], init=init, **desc.get("options", {}))
