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


_BAR_TOL = 0.06  # a bar pixel is drawn black or white: within this of 0 or 1 (unit scale)
_BAR_STRONG = 0.9  # share of black/white pixels in a row of the bar
_BAR_WEAK = 0.6  # ... tolerated for a few rows (anti-aliased or JPEG-blurred text)
_BAR_TAIL = 0.03  # share of the height that may lie below the bar (Zeiss frames keep image rows there)


def _graphic_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: share of pixels drawn black, drawn white, and either (unit-scale `a`)."""
    black = (a <= _BAR_TOL).mean(axis=1)
    white = (a >= 1.0 - _BAR_TOL).mean(axis=1)
    return black, white, black + white


def detect_databar(img: np.ndarray) -> int | None:
    """First row of a burned-in SEM data bar at the bottom of the frame, or None.

    A data bar is a band of rows drawn almost only in black and white (text, rules,
    scale bar on a black or white ground), at least max(8 px, 1.5% of the height) and
    at most 40% of it, holding both black and white pixels (the minority colour
    0.2-50%), and starting with a sharp transition from an image row above it (few
    saturated pixels). The band must reach the bottom of the frame or end within 3%
    of the height from it (Zeiss tools leave a few image rows below their bar).
    Pixels count as black/white within 0.06 of the ends of the scale (uint8/uint16 by
    their range, floats in [0, 1] as they are). Crop with `img[:row]`: the returned
    row is the bar's first row, so nothing above the bar is lost.
    """
    a = _as_unit_float(img)
    h, w = a.shape
    if h < 32 or w < 16:
        return None
    black, white, g = _graphic_rows(a)
    strong = g >= _BAR_STRONG
    weak = g >= _BAR_WEAK
    tail = max(2, int(_BAR_TAIL * h))
    low = np.flatnonzero(strong[h - 1 - tail:])
    if low.size == 0:
        return None
    end = h - 1 - tail + int(low[-1])  # last row of the bar
    max_gap = max(2, h // 200)
    start, gap = end, 0
    for r in range(end, -1, -1):  # loop over rows only
        if strong[r]:
            start, gap = r, 0
        elif weak[r] and gap < max_gap:
            gap += 1
        else:
            break
    height = end + 1 - start
    if start == 0 or height < max(8, int(0.015 * h)) or height > 0.4 * h:
        return None
    # a sharp transition: the image rows right above hold few saturated pixels
    if g[start - 1] > 0.5 or g[max(0, start - 16):start].mean() > 0.3:
        return None
    # text on a ground: both colours present, the minority one sparse
    nb, nw = float(black[start:end + 1].mean()), float(white[start:end + 1].mean())
    if not 0.002 <= min(nb, nw) / (nb + nw) <= 0.5:
        return None
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


def first_tiles(folder, n_images: int = 3, max_size: int = 512) -> list[tuple[str, np.ndarray]]:
    """(file name, tile) of the first `n_images` images under `folder`: each image's data
    bar cropped, then its top-left square tile of min(`max_size`, shorter side) px."""
    from semlab.io import read_image

    out = []
    for path in list_images(folder)[:n_images]:
        img, _ = crop_databar(read_image(path), mode="auto")
        out.append((path.name, tile_image(img, min(max_size, min(img.shape)))[0][2]))
    return out
