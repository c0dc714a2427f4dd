"""Checkpoints: one dict with everything needed to continue exactly (design.md section 3),
written atomically (temp file + rename) and read with `torch.load(weights_only=True)`."""

from __future__ import annotations

import re
from pathlib import Path

import torch

_NAME = re.compile(r"^ckpt-(\d{9})\.pt$")


def checkpoint_path(folder, step: int) -> Path:
    return Path(folder) / f"ckpt-{step:09d}.pt"


def atomic_torch_save(obj, dst) -> Path:
    """torch.save through `semlab.io.atomic_write` (temp file, fsync, rename): never a
    partial file at `dst`."""
    from semlab.io import atomic_write

    dst = Path(dst)
    with atomic_write(dst, "wb") as f:
        torch.save(obj, f)
    return dst


def save_checkpoint(state: dict, folder, step: int, keep: int = 2) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dst = atomic_torch_save(state, checkpoint_path(folder, step))
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return dst


def list_checkpoints(folder) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def latest_checkpoint(folder) -> Path | None:
    cps = list_checkpoints(folder)
    return cps[-1] if cps else None


def load_checkpoint(path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"{path}: not a readable semlab checkpoint ({type(e).__name__}: {e})") from e
