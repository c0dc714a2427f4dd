"""LPIPS (Zhang et al. 2018) on pairs of gray images, through the `lpips` package.

The package ships its linear heads; the backbone (AlexNet by default, VGG16 or
SqueezeNet 1.1) comes from torchvision's ImageNet weights. semlab finds that file with
`semlab.weights` (explicit path, `$SEMLAB_WEIGHTS`, `data/weights/` inside a project,
the torch hub cache, then a download unless `$SEMLAB_OFFLINE=1`), checks its sha256 and
reads it itself with ``weights_only=True``: the package is built with a random backbone
(``pnet_rand=True``, nothing fetched, nothing unpickled by torchvision) and the checked
state dict is copied into its slices; the linear heads are read with ``weights_only=True``
too. If the file is missing, not the official one (unless
``$SEMLAB_ALLOW_UNVERIFIED_WEIGHTS=1``, then the result is labelled "LPIPS (unverified
weights)") or not a valid checkpoint, `compute_lpips` reports the metric as unavailable:
LPIPS is never computed on a randomly initialised backbone under its usual name.

Images: float [0, 1] gray (N, H, W); one conversion: replicated to 3 channels and scaled
to [-1, 1], as the package expects.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import numpy as np

from semlab.arrays import as_gray_stack

BACKBONES = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}


def heads_file(net: str) -> Path:
    """The linear heads the lpips package ships for backbone `net` (v0.1), where its own
    constructor looks for them."""
    import lpips

    return Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / f"{net}.pth"


def _load_heads(model, net: str) -> None:
    import torch

    from semlab.weights import InvalidWeights

    f = heads_file(net)
    try:
        heads = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidWeights(f"{f} is not a valid lpips linear-heads file ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    res = model.load_state_dict(heads, strict=False)
    # lin0..lin6 are also registered as lins.0..6 (one module, two names): the file holds lin<k>
    missing = [k for k in res.missing_keys if k.startswith("lin") and not k.startswith("lins.")]
    if missing or res.unexpected_keys:
        raise InvalidWeights(f"{f} is not a valid lpips linear-heads file (missing {missing[:3]}, "
                             f"unexpected {res.unexpected_keys[:3]})")


def _backbone_state(model_net, tv_state: dict, name: str, path) -> dict:
    """torchvision's ``features.<i>.<param>`` keys renamed to the lpips slices holding
    layer i (``slice<k>.<i>.<param>``); the classifier's keys are not used."""
    from semlab.weights import invalid

    out, missing = {}, []
    for key in model_net.state_dict():
        _slice, rest = key.split(".", 1)
        src = f"features.{rest}"
        if src in tv_state:
            out[key] = tv_state[src]
        else:
            missing.append(src)
    if missing:
        raise invalid(name, path, f"missing keys: {', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}"
                                  f" ({len(missing)})")
    return out


def load_lpips(net: str = "alex", path=None):
    """The lpips model with the checked backbone weights (eval mode, no gradients).
    ``model.semlab_weights_verified`` is False for a non-official backbone file (allowed
    by ``$SEMLAB_ALLOW_UNVERIFIED_WEIGHTS=1``). Raises `semlab.weights.WeightsNotFound`
    or `semlab.weights.InvalidWeights` (naming the file)."""
    import lpips
    import torch

    from semlab.weights import apply_state_dict, load_checked

    if net not in BACKBONES:
        raise KeyError(f"unknown LPIPS backbone {net!r}; valid: {', '.join(BACKBONES)}")
    name = BACKBONES[net]
    loaded = load_checked(name, path, download=True)
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")  # lpips' old API call
        model = lpips.LPIPS(net=net, pretrained=False, pnet_rand=True, verbose=False)
    _load_heads(model, net)
    apply_state_dict(model.net, _backbone_state(model.net, loaded.state_dict, name, loaded.path), name, loaded.path)
    model.semlab_weights_path = str(loaded.path)
    model.semlab_weights_verified = loaded.verified is not False
    # channels_last: oneDNN's fast CPU layout (alex, 256 px: 25% faster, distances equal to 1e-7)
    return model.eval().to(memory_format=torch.channels_last)


def lpips_distances(model, preds, refs, batch_size: int = 16) -> np.ndarray:
    """Per-pair LPIPS distances (N,) of gray images in [0, 1] (any form
    `semlab.arrays.as_gray_stack` takes; uint8 is divided by 255), fed to the network
    as 3 equal channels in [-1, 1]."""
    import torch

    preds = as_gray_stack(preds, what="LPIPS predictions")
    refs = as_gray_stack(refs, what="LPIPS references")
    if preds.shape != refs.shape:
        raise ValueError(f"{preds.shape} predictions for {refs.shape} references")

    def to_input(a):
        return torch.from_numpy(a)[:, None].expand(-1, 3, -1, -1) * 2 - 1

    out = []
    with torch.no_grad():
        for i in range(0, len(preds), batch_size):
            d = model(to_input(preds[i:i + batch_size]), to_input(refs[i:i + batch_size]))
            out.append(d.reshape(-1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def compute_lpips(preds, refs, net: str = "alex", path=None) -> dict:
    """{"lpips": mean, "per_image": array, "net", "status": "ok", "weights", "verified",
    "label"}, or {"lpips": None, "status": "unavailable: <file> not found (put it in
    data/weights/)"} without usable weights (also "<file> is not the official alexnet
    (sha256 ...)" and "<file> is not a valid torchvision alexnet checkpoint (...)"). With
    a non-official file allowed by ``$SEMLAB_ALLOW_UNVERIFIED_WEIGHTS=1``, "verified" is
    False and "label" is "LPIPS (unverified weights)"."""
    from semlab.weights import UNVERIFIED_LABEL, InvalidWeights, status

    if net not in BACKBONES:
        raise KeyError(f"unknown LPIPS backbone {net!r}; valid: {', '.join(BACKBONES)}")
    found, where = status(BACKBONES[net], path)
    if found:
        try:
            model = load_lpips(net, where)
        except InvalidWeights as exc:
            found, where = False, str(exc)
    if not found:
        return {"lpips": None, "per_image": None, "net": net, "status": f"unavailable: {where}",
                "verified": None, "label": "LPIPS"}
    d = lpips_distances(model, preds, refs)
    verified = model.semlab_weights_verified
    return {"lpips": float(d.mean()) if d.size else float("nan"), "per_image": d, "net": net,
            "status": "ok", "weights": where, "verified": verified,
            "label": "LPIPS" + ("" if verified else UNVERIFIED_LABEL)}


def save_random_backbone(net: str, folder, seed: int = 0):
    """A randomly initialised torchvision backbone for LPIPS saved under its official
    file name in `folder` (tests, `semlab bench metrics`); never reported as LPIPS."""
    import torch
    import torchvision

    from semlab.weights import KNOWN

    if net not in BACKBONES:
        raise KeyError(f"unknown LPIPS backbone {net!r}; valid: {', '.join(BACKBONES)}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = getattr(torchvision.models, BACKBONES[net])(weights=None)
    out = Path(folder) / KNOWN[BACKBONES[net]].filename
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    return out
