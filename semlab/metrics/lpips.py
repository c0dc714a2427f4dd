"""LPIPS (Zhang et al. 2018) on pairs of gray images, through the `lpips` package.

The package ships its linear heads; the backbone (AlexNet by default, VGG16 or
SqueezeNet 1.1) comes from torchvision's ImageNet weights, which torchvision downloads
through torch.hub. semlab finds that file with `semlab.weights.resolve` (explicit path,
`$SEMLAB_WEIGHTS`, `data/weights/`, the torch hub cache, then a download unless
`$SEMLAB_OFFLINE=1`) and lets the package's own constructor load it from there. If it
is missing, `compute_lpips` reports the metric as unavailable: LPIPS is never computed
on a randomly initialised backbone under its usual name.

Images: float [0, 1] gray (N, H, W); one conversion: replicated to 3 channels and scaled
to [-1, 1], as the package expects.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import numpy as np

BACKBONES = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}


def load_lpips(net: str = "alex", path=None):
    """The lpips model with the resolved backbone weights (eval mode, no gradients)."""
    import lpips
    import torch

    from semlab.metrics.fid import _torch_hub_dir_holding
    from semlab.weights import resolve

    if net not in BACKBONES:
        raise KeyError(f"unknown LPIPS backbone {net!r}; valid: {', '.join(BACKBONES)}")
    file = resolve(BACKBONES[net], path)
    with _torch_hub_dir_holding(file, BACKBONES[net]), open(os.devnull, "w") as null, contextlib.redirect_stdout(null), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")  # lpips' old API call
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=False, verbose=False)
    # channels_last: oneDNN's fast CPU layout (alex, 256 px: 25% faster, distances equal to 1e-7)
    return model.eval().to(memory_format=torch.channels_last)


def _to_input(images, device="cpu"):
    import torch

    a = np.asarray(images)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    a = a.astype(np.float32)
    if a.ndim == 2:
        a = a[None]
    t = torch.from_numpy(a)[:, None].expand(-1, 3, -1, -1)
    return (t * 2 - 1).to(device)


def lpips_distances(model, preds, refs, batch_size: int = 16) -> np.ndarray:
    """Per-pair LPIPS distances (N,) of gray images in [0, 1]."""
    import torch

    preds, refs = np.asarray(preds), np.asarray(refs)
    if preds.shape != refs.shape:
        raise ValueError(f"{preds.shape} predictions for {refs.shape} references")
    out = []
    with torch.no_grad():
        for i in range(0, len(preds), batch_size):
            d = model(_to_input(preds[i:i + batch_size]), _to_input(refs[i:i + batch_size]))
            out.append(d.reshape(-1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def compute_lpips(preds, refs, net: str = "alex", path=None) -> dict:
    """{"lpips": mean, "per_image": array, "net": ...}, or {"lpips": None, "status":
    "unavailable: <file> not found (put it in data/weights/)"} without the weights."""
    from semlab.weights import status

    found, where = status(BACKBONES[net], path)
    if not found:
        return {"lpips": None, "per_image": None, "net": net, "status": f"unavailable: {where}"}
    d = lpips_distances(load_lpips(net, path), preds, refs)
    return {"lpips": float(d.mean()) if d.size else float("nan"), "per_image": d, "net": net,
            "status": "ok", "weights": where}


def save_random_backbone(net: str, folder, seed: int = 0):
    """A randomly initialised torchvision backbone for LPIPS saved under its official
    file name in `folder` (tests, `semlab bench metrics`); never reported as LPIPS."""
    from pathlib import Path

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
