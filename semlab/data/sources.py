"""Real SEM images: finding files, removing burned-in data bars, tiling.

Works for plain folders and for the MIIC layout (`Anomaly_train/*.jpg` ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def list_images(src) -> list[Path]:
    """All image files under `src` (recursive, sorted, by extension, hidden files/folders skipped).

    A single image file gives a one-element list. FileNotFoundError for a missing
    path, ValueError if the folder holds no images.
    """
    root = Path(src)
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    if root.is_file():
        if root.suffix.lower() in IMAGE_EXTENSIONS:
            return [root]
        raise ValueError(f"{root} is not an image file ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")
    found = []
    for p in root.rglob("*"):
        rel = p.relative_to(root).parts
        if any(part.startswith(".") for part in rel):
            continue
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
            found.append(p)
    if not found:
        kinds = ", ".join(e[1:] for e in IMAGE_EXTENSIONS[:5])
        raise ValueError(f"no images ({kinds} ...) found in {root}")
    return sorted(found)


# --------------------------------------------------------------------------- data bar


def _as_unit_float(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D (H, W) image, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    if a.dtype == bool:
        return a.astype(np.float32)
    a = a.astype(np.float32)
    if a.size and (a.min() < 0.0 or a.max() > 1.0):  # unknown scale: stretch
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return a


def detect_databar(img: np.ndarray) -> int | None:
    """First row of a burned-in SEM data bar at the bottom of the frame, or None.

    A data bar is a band at the bottom of near-constant dark (or light) background
    holding sparse saturated text, starting with a sharp row transition from the
    image above. Crop with `img[:row]`.
    """
    a = _as_unit_float(img)
    h, w = a.shape
    if h < 32 or w < 16:
        return None
    bg = float(np.median(a[-2:]))
    if 0.2 < bg < 0.8:  # bars are dark or light
        return None
    near = np.abs(a - bg) <= 0.06
    frac = near.mean(axis=1)
    strong = frac >= 0.3
    weak = frac >= 0.1
    if not strong[-1]:
        return None
    max_gap = max(2, h // 200)
    start, gap = h - 1, 0
    for r in range(h - 1, -1, -1):  # loop over rows only
        if strong[r]:
            start, gap = r, 0
        elif weak[r] and gap < max_gap:
            gap += 1
        else:
            break
    height = h - start
    if start == 0 or height < max(8, int(0.015 * h)) or height > 0.4 * h:
        return None
    # the image above must not look like bar background (sharp transition)
    above = frac[max(0, start - 16) : start]
    if above.mean() > 0.15 or frac[start - 1] > 0.1:
        return None
    band = a[start:]
    if frac[start:].mean() < 0.6:
        return None
    text = np.abs(band - bg) > 0.4
    text_frac = float(text.mean())
    if not 0.002 <= text_frac <= 0.4:
        return None
    # a uniform saturated separator line right above the band belongs to the bar
    for _ in range(3):
        if start == 0:
            break
        row = a[start - 1]
        if row.std() < 0.03 and abs(float(row.mean()) - bg) > 0.4 and start - 1 > 0:
            start -= 1
        else:
            break
    return int(start)


def crop_databar(img: np.ndarray, mode="auto") -> tuple[np.ndarray, int | None]:
    """Remove a data bar: mode "auto" (detect), "none", or an int (rows to keep).

    Returns (cropped image, first bar row or None).
    """
    a = np.asarray(img)
    if isinstance(mode, str):
        if mode == "none":
            return a, None
        if mode == "auto":
            row = detect_databar(a)
            return (a, None) if row is None else (a[:row], row)
        raise ValueError(f"mode must be 'auto', 'none' or an int, got {mode!r}")
    if isinstance(mode, (bool, np.bool_)) or not isinstance(mode, (int, np.integer)):
        raise ValueError(f"mode must be 'auto', 'none' or an int, got {mode!r}")
    keep = int(mode)
    if keep <= 0:
        raise ValueError(f"rows to keep must be positive, got {keep}")
    if keep >= a.shape[0]:
        return a, None
    return a[:keep], keep


# --------------------------------------------------------------------------- tiling


def _pair(v, name) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or (rows, cols), got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _starts(n: int, t: int, stride: int) -> list[int]:
    s = list(range(0, n - t, stride))
    s.append(n - t)
    return s


def tile_image(img: np.ndarray, tile, overlap=0) -> list[tuple[int, int, np.ndarray]]:
    """Cut an image into (row, col, tile) views covering every pixel.

    `tile` and `overlap` are ints or (rows, cols); tiles step by tile - overlap and
    the last row/column of tiles is aligned to the far edge. ValueError if the image
    is smaller than one tile or overlap >= tile.
    """
    a = np.asarray(img)
    if a.ndim < 2:
        raise ValueError(f"expected an (H, W[, C]) image, got shape {a.shape}")
    th, tw = _pair(tile, "tile")
    oh, ow = _pair(overlap, "overlap")
    if th <= 0 or tw <= 0:
        raise ValueError(f"tile must be positive, got {tile!r}")
    if oh < 0 or ow < 0 or oh >= th or ow >= tw:
        raise ValueError(f"overlap {overlap!r} must be >= 0 and smaller than the tile {tile!r}")
    h, w = a.shape[:2]
    if h < th or w < tw:
        raise ValueError(f"image {h}x{w} is smaller than one tile {th}x{tw}")
    return [
        (r, c, a[r : r + th, c : c + tw])
        for r in _starts(h, th, th - oh)
        for c in _starts(w, tw, tw - ow)
    ]


def untile(tiles: Sequence[tuple[int, int, np.ndarray]], shape) -> np.ndarray:
    """Reassemble (row, col, tile) pieces into an image of `shape`, averaging overlaps.

    Returns float32; ValueError if a pixel is not covered or a tile falls outside.
    """
    shape = tuple(int(s) for s in shape)
    acc = np.zeros(shape, dtype=np.float64)
    cnt = np.zeros(shape[:2], dtype=np.int64)
    for r, c, t in tiles:
        t = np.asarray(t)
        th, tw = t.shape[:2]
        if r < 0 or c < 0 or r + th > shape[0] or c + tw > shape[1]:
            raise ValueError(f"tile at ({r}, {c}) of size {th}x{tw} falls outside {shape}")
        acc[r : r + th, c : c + tw] += t
        cnt[r : r + th, c : c + tw] += 1
    if (cnt == 0).any():
        rows, cols = np.nonzero(cnt == 0)
        raise ValueError(f"{rows.size} pixels not covered by any tile, first at ({rows[0]}, {cols[0]})")
    cnt_b = cnt.reshape(cnt.shape + (1,) * (len(shape) - 2))
    return (acc / cnt_b).astype(np.float32)


@dataclass
class RealSample:
    """Tiles sampled from a folder of real SEM frames: `tiles` {group: [tile, ...]} (group:
    the frame's subfolder), `pixel_nm` {group: nm per px from the first tagged frame},
    `log` one line per frame (what was cropped, tiled, kept or skipped and why)."""

    tiles: dict[str, list[np.ndarray]] = field(default_factory=dict)
    pixel_nm: dict[str, float] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


def sample_real_tiles(folder, size: int, per_frame: int = 3) -> RealSample:
    """Up to `per_frame` evenly spaced `size`-px tiles of every image under `folder`,
    after cropping a burned-in data bar; frames smaller than one tile are skipped (and
    logged), as is an unreadable frame: one bad file does not stop the sample."""
    from semlab.io import read_image, read_image_meta

    folder = Path(folder)
    out = RealSample()
    for path in list_images(folder):
        group = path.parent.name if path.parent != folder else folder.name
        try:
            raw = read_image(path)
            px_nm = read_image_meta(path).get("pixel_size_nm")
        except (OSError, ValueError) as exc:
            out.log.append(f"skip {path.name}: unreadable ({exc})")
            continue
        if px_nm:
            out.pixel_nm.setdefault(group, px_nm)
        img, bar_row = crop_databar(raw, mode="auto")
        if min(img.shape) < size:
            out.log.append(f"skip {path.name}: {img.shape} is smaller than one {size}-px tile")
            continue
        tiles = tile_image(img, size)
        picked = [t for _, _, t in tiles[:: max(1, len(tiles) // per_frame)]][:per_frame]
        out.tiles.setdefault(group, []).extend(np.ascontiguousarray(t, dtype=np.float32) for t in picked)
        out.log.append(f"{group}/{path.name}: {raw.shape} -> data bar at row {bar_row}, {len(tiles)} tiles, "
                       f"kept {len(picked)}")
    return out
