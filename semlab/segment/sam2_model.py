"""The one SAM2 adapter of semlab: model names, building, safe checkpoint loading.

Both `semlab.segment` (automatic masks) and `semlab.contours` (prompted masks,
fine-tuning) build SAM2 through this module, never through sam2's private helpers.

**Checkpoints are untrusted files** (design.md section 9). semlab never lets sam2 open
them: `build_sam2_model` builds the network with `ckpt_path=None` and then
`read_sam2_checkpoint` reads the file itself with
`torch.load(path, map_location="cpu", weights_only=True)` (so unpickling cannot create
arbitrary Python objects or call functions), checks that it is `{"model": state_dict}`
with tensor values, and loads it with `load_state_dict(sd, strict=True)`. Any file that
fails (truncated, not a PyTorch file, a pickle that needs arbitrary globals, missing or
extra keys, a checkpoint of another model size) raises `Sam2CheckpointError`:
"<file> is not a valid SAM2 checkpoint (<reason>)", a `ValueError`, which the command
line prints as one line. (sam2 1.1.0's own `_load_checkpoint` also passes
`weights_only=True`, but reports a bad file only as a bare `RuntimeError` or a torch
traceback, and older or newer releases may differ: semlab does not depend on it.)

**Model size.** `image_size=512` builds the model with `++model.image_size=512`; the
1024-px checkpoint loads into it unchanged (see /work/shared/stack-notes.md).
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path

import numpy as np

__all__ = ["SAM2_MODELS", "SUPPORTED_IMAGE_SIZES", "Sam2CheckpointError", "sam2_config_and_weights",
           "sam2_overrides", "quiet_jit", "read_sam2_checkpoint", "build_sam2_model", "to_rgb_uint8"]

# registry name -> (hydra config inside the sam2 package, weights name in semlab.weights.KNOWN)
SAM2_MODELS: dict[str, tuple[str, str]] = {
    f"{family}_hiera_{variant}": (f"configs/{family}/{family}_hiera_{short}.yaml", f"{family}_hiera_{variant}")
    for family in ("sam2", "sam2.1")
    for variant, short in (("tiny", "t"), ("small", "s"), ("base_plus", "b+"), ("large", "l"))
}

SUPPORTED_IMAGE_SIZES = (512, 1024)


class Sam2CheckpointError(ValueError):
    """A SAM2 weights file that cannot be used. The message names the file and the
    problem: "<file> is not a valid SAM2 checkpoint (<reason>)"."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path} is not a valid SAM2 checkpoint ({reason})")


def sam2_config_and_weights(model: str) -> tuple[str, str]:
    """(hydra config, weights name in `semlab.weights.KNOWN`) of a SAM2 model name;
    KeyError listing the valid names."""
    try:
        return SAM2_MODELS[model]
    except KeyError:
        raise KeyError(f"unknown SAM2 model {model!r}; valid: {', '.join(SAM2_MODELS)}") from None


def sam2_overrides(image_size: int) -> list[str]:
    """The hydra overrides for a model input of `image_size` px (512 or 1024);
    ValueError for another size."""
    if image_size not in SUPPORTED_IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {SUPPORTED_IMAGE_SIZES}, got {image_size}")
    return [] if image_size == 1024 else [f"++model.image_size={int(image_size)}"]


@contextlib.contextmanager
def quiet_jit():
    """Hide the `torch.jit.script` FutureWarning sam2 triggers when building its transforms."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
        yield


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(16)


def _load_reason(exc: BaseException) -> str:
    """A one-line reason for a failed `torch.load(weights_only=True)`."""
    msg = str(exc)
    g = re.search(r"GLOBAL ([\w.]+)", msg)
    if g:
        return (f"unpickling it would need the Python object {g.group(1)}; a weights file holds only "
                f"tensors, and semlab loads it with weights_only=True, which refuses that")
    if "Weights only load failed" in msg or "WeightsUnpickler" in msg:
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", msg, re.S)
        what = " ".join(detail.group(1).split())[:120] if detail else type(exc).__name__
        return f"it holds data other than tensors, refused by weights_only loading ({what})"
    if isinstance(exc, EOFError):
        return "the file ends early: truncated?"
    if "central directory" in msg or "zip archive" in msg:
        return "truncated or corrupted zip archive (failed finding central directory)"
    first = msg.strip().splitlines()[0] if msg.strip() else ""
    first = first.split(". ")[0][:160]
    return f"cannot be read by torch.load ({type(exc).__name__}{': ' + first if first else ''})"


def read_sam2_checkpoint(path: str | os.PathLike) -> dict:
    """The state dict of a SAM2 checkpoint file `{"model": state_dict}`, read with
    `torch.load(path, map_location="cpu", weights_only=True)` (never a full unpickling).
    Raises `Sam2CheckpointError` naming the file for anything else."""
    import torch

    path = Path(path)
    try:
        head = _head(path)
    except OSError as e:
        raise Sam2CheckpointError(path, f"cannot read it: {e.strerror or e}") from e
    if not head:
        raise Sam2CheckpointError(path, "the file is empty")
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise Sam2CheckpointError(path, f"not a PyTorch file: it begins with {head[:12]!r}, "
                                        f"neither a zip archive nor a pickle")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*pickle protocol.*", category=UserWarning)
            ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every unreadable file gets the same clear error
        raise Sam2CheckpointError(path, _load_reason(e)) from e
    if not isinstance(ck, dict) or "model" not in ck:
        what = f"a dict with keys {sorted(map(str, ck))[:5]}" if isinstance(ck, dict) else f"a {type(ck).__name__}"
        raise Sam2CheckpointError(path, f'expected {{"model": state_dict}}, found {what}')
    sd = ck["model"]
    if not isinstance(sd, dict) or not sd:
        raise Sam2CheckpointError(path, f'"model" must be a non-empty state dict, found a {type(sd).__name__}'
                                        + (" (empty)" if isinstance(sd, dict) else ""))
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise Sam2CheckpointError(path, f"{len(bad)} entries of the state dict are not tensors, "
                                        f"e.g. {bad[0]!r}")
    return sd


def _fit_reason(net, sd: dict, model: str) -> str | None:
    """Why `sd` does not fit `net` exactly (None: it does)."""
    own = net.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    shape = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} keys missing, e.g. {missing[0]!r}")
    if extra:
        parts.append(f"{len(extra)} unexpected keys, e.g. {extra[0]!r}")
    if shape:
        k = shape[0]
        parts.append(f"{len(shape)} tensors of another shape, e.g. {k!r} {tuple(sd[k].shape)} "
                     f"instead of {tuple(own[k].shape)}")
    if not parts:
        return None
    return f"it does not fit {model}: {'; '.join(parts)}; a checkpoint of another SAM2 model?"


def build_sam2_model(model: str = "sam2.1_hiera_tiny", ckpt: str | os.PathLike | None = None,
                     image_size: int = 1024):
    """SAM2 `model` on the CPU in eval mode, at `image_size` (512 or 1024). Without `ckpt`
    its weights are random; with it, the file is read by `read_sam2_checkpoint` and
    loaded strictly (`Sam2CheckpointError` if it does not fit the model)."""
    from sam2.build_sam import build_sam2

    config, _ = sam2_config_and_weights(model)
    overrides = sam2_overrides(image_size)
    sd = read_sam2_checkpoint(ckpt) if ckpt is not None else None  # check the file before the heavy build
    with quiet_jit():
        net = build_sam2(config, None, device="cpu", mode="eval", hydra_overrides_extra=overrides)
    if sd is not None:
        reason = _fit_reason(net, sd, model)
        if reason is not None:
            raise Sam2CheckpointError(ckpt, reason)
        try:
            net.load_state_dict(sd, strict=True)
        except RuntimeError as e:  # pragma: no cover - _fit_reason checks keys and shapes first
            raise Sam2CheckpointError(ckpt, str(e).strip().splitlines()[0]) from e
        net.eval()
    return net


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Gray float [0, 1] -> uint8 (H, W, 3), gray replicated; values outside [0, 1] clip."""
    u8 = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.repeat(u8[:, :, None], 3, axis=2)
