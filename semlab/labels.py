"""The canonical semlab label scheme, its palette and the colour -> label mapping.

| id | name       | colour |
|----|------------|--------|
| 0  | background | black  |
| 1  | pattern    | white  |
| 2  | hole       | blue   |
| 3  | defect     | red    |

A user mask may be an indexed (palette) image, an RGB(A) image in these colours
(nearest colour within a tolerance) or a gray image with values 0..K-1 (a gray image
holding only 0 and 255 means background/pattern). Anything else is refused with a
:class:`MaskError` listing the unexpected colours and where they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class LabelClass:
    """One class of the canonical label scheme."""

    id: int
    name: str
    meaning: str
    rgb: tuple[int, int, int]


CLASSES: tuple[LabelClass, ...] = (
    LabelClass(0, "background", "substrate / dielectric / space between patterns", (0, 0, 0)),
    LabelClass(1, "pattern", "line, metal, resist top: the main structure", (255, 255, 255)),
    LabelClass(2, "hole", "via, contact, cut or hole inside a pattern", (0, 0, 255)),
    LabelClass(3, "defect", "particle, bridge, break, residue", (255, 0, 0)),
)

BACKGROUND = 0
PATTERN = 1
HOLE = 2
DEFECT = 3

NUM_CLASSES = len(CLASSES)
_RGB = np.array([c.rgb for c in CLASSES], dtype=np.uint8)  # (4, 3)
_MAX_LISTED = 10


class MaskError(ValueError):
    """A mask file or array that does not follow the semlab label scheme."""

    def __init__(self, problem: str, source: str | None = None):
        self.problem = problem
        self.source = source
        msg = f"{source}: {problem}" if source else problem
        super().__init__(msg)


def class_by_name(name: str) -> LabelClass:
    """The label class called `name` (case-insensitive); KeyError lists the valid names."""
    key = str(name).strip().lower()
    for c in CLASSES:
        if c.name == key:
            return c
    valid = ", ".join(c.name for c in CLASSES)
    raise KeyError(f"unknown label class {name!r}; valid names: {valid}")


def palette_bytes() -> list[int]:
    """The semlab palette as 768 ints for `PIL.Image.putpalette` (unused entries 0)."""
    pal = [0] * 768
    for c in CLASSES:
        pal[3 * c.id : 3 * c.id + 3] = list(c.rgb)
    return pal


def colorize(mask: np.ndarray) -> np.ndarray:
    """Label map (H, W) -> RGB image (H, W, 3) uint8 in the semlab colours."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise MaskError(f"mask must be 2-D (H, W), got shape {m.shape}")
    if m.size and (not np.issubdtype(m.dtype, np.integer) and m.dtype != bool):
        raise MaskError(f"mask must hold integer class ids, got dtype {m.dtype}")
    if m.size:
        lo, hi = int(m.min()), int(m.max())
        if lo < 0 or hi >= NUM_CLASSES:
            bad = np.unique(m[(m < 0) | (m >= NUM_CLASSES)])
            raise MaskError(
                f"class ids {bad[:_MAX_LISTED].tolist()} are outside 0..{NUM_CLASSES - 1}"
            )
    return _RGB[m.astype(np.intp)]


# --------------------------------------------------------------------------- mapping


def _locate(inv2d: np.ndarray, k: int) -> tuple[int, tuple[int, int, int, int]]:
    """Pixel count and bounding box (row0, col0, row1, col1) of value k in inv2d."""
    hit = inv2d == k
    rows = np.flatnonzero(hit.any(axis=1))
    cols = np.flatnonzero(hit.any(axis=0))
    return int(hit.sum()), (int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1]))


def _describe(value) -> str:
    if isinstance(value, tuple):
        return "colour (" + ", ".join(str(int(v)) for v in value) + ")"
    return f"value {value}"


def _raise_unexpected(
    what: str,
    values: list,
    inv2d: np.ndarray,
    keys: np.ndarray,
    source: str,
    allowed: str,
) -> None:
    """Raise MaskError listing unexpected values (index `keys` into inv2d), biggest first."""
    items = []
    for k, v in zip(keys.tolist(), values):
        n, box = _locate(inv2d, k)
        items.append((n, v, box))
    items.sort(key=lambda t: (-t[0], t[2]))
    lines = []
    for n, v, box in items[:_MAX_LISTED]:
        r0, c0, r1, c1 = box
        where = (
            f"at (row, col) ({r0}, {c0})"
            if (r0, c0) == (r1, c1)
            else f"in bbox (row0, col0, row1, col1) = ({r0}, {c0}, {r1}, {c1}), first at row {r0}"
        )
        lines.append(f"  {_describe(v)}: {n} px {where}")
    more = len(items) - _MAX_LISTED
    if more > 0:
        lines.append(f"  ... and {more} more")
    raise MaskError(
        f"{len(items)} unexpected {what} in mask (allowed: {allowed}):\n" + "\n".join(lines),
        source,
    )


def _allowed_text(classes: Sequence[int], gray: bool = False) -> str:
    parts = []
    for i in classes:
        c = CLASSES[i]
        parts.append(f"{i}={c.name}" if gray else f"{c.name} {c.rgb}")
    return ", ".join(parts)


def _check_classes(classes: Sequence[int]) -> tuple[int, ...]:
    cls = tuple(int(c) for c in classes)
    if not cls:
        raise ValueError("classes must not be empty")
    bad = [c for c in cls if not 0 <= c < NUM_CLASSES]
    if bad:
        raise ValueError(f"classes {bad} are not semlab class ids 0..{NUM_CLASSES - 1}")
    return cls


def _map_colours(
    colours: np.ndarray, classes: tuple[int, ...], tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest allowed class per colour (n, 3) -> (ids (n,), ok (n,) bool)."""
    ref = _RGB[list(classes)].astype(np.float64)  # (k, 3)
    d = np.sqrt(((colours[:, None, :].astype(np.float64) - ref[None]) ** 2).sum(-1))
    j = d.argmin(axis=1)
    ok = d[np.arange(len(colours)), j] <= tolerance
    ids = np.asarray(classes, dtype=np.uint8)[j]
    return ids, ok


def _colours_to_ids(colours, inv2d, classes, tolerance, source):
    """Map unique colours (n, 3) to class ids and expand them through `inv2d`, or refuse
    listing every colour farther than `tolerance` from all allowed class colours."""
    ids, ok = _map_colours(colours, classes, tolerance)
    if not ok.all():
        keys = np.flatnonzero(~ok)
        _raise_unexpected(
            "colours",
            [tuple(int(v) for v in colours[k]) for k in keys],
            inv2d,
            keys,
            source,
            _allowed_text(classes) + f", tolerance {tolerance}",
        )
    return ids[inv2d]


def _from_rgb(arr, classes, tolerance, source):
    rgb = arr[..., :3]
    if rgb.dtype != np.uint8:
        if np.issubdtype(rgb.dtype, np.integer) and rgb.size and rgb.max() > 255:
            rgb = (rgb.astype(np.float64) / 257.0).round()  # 16-bit per channel
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    h, w = rgb.shape[:2]
    packed = (
        (rgb[..., 0].astype(np.uint32) << 16)
        | (rgb[..., 1].astype(np.uint32) << 8)
        | rgb[..., 2].astype(np.uint32)
    )
    uniq, inv = np.unique(packed.ravel(), return_inverse=True)
    colours = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], axis=1)
    return _colours_to_ids(colours, inv.reshape(h, w), classes, tolerance, source)


def _from_ids(arr, classes, source, what="values", bw=True):
    """Integer/gray array whose values are class ids."""
    a = np.asarray(arr)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise MaskError(f"gray mask has non-integer values (dtype {a.dtype})", source)
        a = a.astype(np.int64)
    orig, inv = np.unique(a.ravel(), return_inverse=True)
    ids = orig.astype(np.int64)
    if bw and 255 in orig.tolist() and set(orig.tolist()) <= {0, 255}:
        ids = np.where(orig == 255, PATTERN, BACKGROUND)  # black/white mask
    allowed = np.isin(ids, np.asarray(classes))
    if not allowed.all():
        keys = np.flatnonzero(~allowed)
        _raise_unexpected(
            what,
            [int(orig[k]) for k in keys],
            inv.reshape(a.shape),
            keys,
            source,
            _allowed_text(classes, gray=True),
        )
    return ids.astype(np.uint8)[inv].reshape(a.shape)


def _from_palette(arr, palette, classes, tolerance, source):
    idx = np.asarray(arr)
    if palette is None:
        return _from_ids(idx, classes, source, what="palette indices", bw=False)
    pal = np.asarray(palette, dtype=np.int64).ravel()
    pal = pal[: (pal.size // 3) * 3].reshape(-1, 3)
    uniq, inv = np.unique(idx.ravel(), return_inverse=True)
    defined = uniq < len(pal)
    if defined.all():
        used = pal[uniq]
        same = uniq < NUM_CLASSES
        if same.all() and np.array_equal(used, _RGB[uniq].astype(np.int64)):
            return _from_ids(idx, classes, source, what="palette indices", bw=False)
    if not defined.all():
        keys = np.flatnonzero(~defined)
        _raise_unexpected(
            "palette indices without a colour",
            [int(uniq[k]) for k in keys],
            inv.reshape(idx.shape),
            keys,
            source,
            _allowed_text(classes),
        )
    return _colours_to_ids(pal[uniq], inv.reshape(idx.shape), classes, tolerance, source)


def labels_from_array(
    arr: np.ndarray,
    *,
    mode: str,
    palette: Sequence[int] | np.ndarray | None = None,
    source: str = "<array>",
    classes: Sequence[int] = (0, 1, 2, 3),
    tolerance: float = 48,
) -> np.ndarray:
    """Decoded mask pixels -> label map (H, W) uint8 of semlab class ids.

    `mode` is the PIL mode of the data: "P" (indices + `palette`, flat RGB list or
    (N, 3)), "RGB"/"RGBA" (nearest class colour within `tolerance`, Euclidean; alpha
    ignored) or gray "L"/"I;16"/"I"/"1" (values are ids; {0, 255} means
    background/pattern). Anything else raises MaskError naming `source`, each
    unexpected colour/value, its pixel count and where it occurs.
    """
    cls = _check_classes(classes)
    a = np.asarray(arr)
    if a.size == 0:
        raise MaskError(f"mask is empty (shape {a.shape})", source)
    mode = str(mode)
    if mode in ("RGB", "RGBA", "RGBX"):
        if a.ndim != 3 or a.shape[2] < 3:
            raise MaskError(f"mode {mode} needs an (H, W, 3|4) array, got {a.shape}", source)
        return _from_rgb(a, cls, tolerance, source)
    if mode in ("LA", "PA"):
        a = a[..., 0] if a.ndim == 3 else a
        mode = mode[0]
    if a.ndim != 2:
        raise MaskError(f"mode {mode} needs a 2-D array, got shape {a.shape}", source)
    if mode == "P":
        return _from_palette(a, palette, cls, tolerance, source)
    if mode in ("L", "1", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _from_ids(a, cls, source)
    raise MaskError(f"unsupported mask mode {mode!r}", source)
