"""The mask model of :mod:`semlab.painter`: :class:`MaskDocument`, plain numpy.

Everything that changes a painted mask is done here, with an undo history, and can
be scripted without any widget (this module needs neither ipywidgets nor ipycanvas)::

    doc = MaskDocument(shape=(128, 128), grid=8)
    doc.rect(0, 0, 128, 64, "pattern")
    doc.stroke([(20, 10), (20, 100)], radius=3, label="defect")
    doc.save("masks/my_mask.png")

Coordinates are (row, col) floats in image pixels with pixel (i, j) covering the
square [i, i+1) x [j, j+1), so its centre is (i + 0.5, j + 0.5) and the corners of
pixels lie on integers. A grid step g snaps vertices to multiples of g (and to the
image border), so grid-aligned shapes cover whole g x g blocks exactly:
``rect(0, 0, 8, 16)`` paints rows 0..7 and columns 0..15.
"""

from __future__ import annotations

import contextlib
import errno
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from semlab import labels
from semlab.labels import CLASSES, NUM_CLASSES, MaskError

__all__ = ["MaskDocument", "resolve_label"]

_EPS = 1e-9  # boundary tolerance of the brush (a pixel centre at exactly `radius` is painted)


def _valid_labels_text() -> str:
    return ", ".join(f"{c.id}={c.name}" for c in CLASSES)


def resolve_label(label) -> int:
    """A canonical class id from an id (0..3) or a class name ("pattern", any case).

    Anything else raises ValueError listing the valid ids and names.
    """
    if isinstance(label, str):
        try:
            return labels.class_by_name(label).id
        except KeyError:
            raise ValueError(
                f"unknown label class {label!r}; valid: {_valid_labels_text()}"
            ) from None
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, numbers.Integral):
        raise ValueError(
            f"label must be a class id or name, got {label!r} ({type(label).__name__}); "
            f"valid: {_valid_labels_text()}"
        )
    i = int(label)
    if not 0 <= i < NUM_CLASSES:
        raise ValueError(f"unknown label id {i}; valid: {_valid_labels_text()}")
    return i


def _as_points(points, *, minimum: int = 1, what: str = "points") -> np.ndarray:
    """(N, 2) float64 array of finite (row, col) points; one (row, col) pair is N = 1."""
    try:
        a = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be (row, col) pairs of numbers: {e}") from None
    if a.ndim == 1 and a.shape == (2,):
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{what} must have shape (N, 2) of (row, col), got {a.shape}")
    if len(a) < minimum:
        raise ValueError(f"{what} needs at least {minimum} point(s), got {len(a)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contain NaN or infinite coordinates")
    return a


def _as_mask(mask, source: str = "<mask>") -> np.ndarray:
    """Validated uint8 (H, W) copy of a label map (same rules as gray mask files)."""
    a = np.asarray(mask)
    if a.ndim != 2 or 0 in a.shape:
        raise MaskError(f"mask must be a non-empty 2-D (H, W) array, got shape {a.shape}", source)
    if a.dtype.kind not in "biuf":
        raise MaskError(f"mask must hold class ids, got dtype {a.dtype}", source)
    return np.array(labels.labels_from_array(a, mode="L", source=source), dtype=np.uint8)


def _check_shape(height, width) -> tuple[int, int]:
    out = []
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or int(v) < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
        out.append(int(v))
    return out[0], out[1]


@dataclass
class _Edit:
    """One undo step: `before`/`after` of the changed box (or the whole mask if box is None)."""

    name: str
    box: tuple[int, int] | None  # top-left (row, col) of the patches; None = whole mask
    before: np.ndarray
    after: np.ndarray


class MaskDocument:
    """A label map being edited, with grid snapping and a bounded undo/redo history.

    Parameters
    ----------
    mask : array (H, W) of class ids, optional
        Initial content (copied and validated); default an all-background mask.
    shape : (H, W)
        Size of the initial blank mask when `mask` is None.
    grid : int
        Snap step in pixels; 1 means no snapping.
    max_history : int
        Number of undo steps kept (older ones are dropped).

    Every editing operation is one undo step and returns the number of pixels it
    changed (an operation that changes nothing leaves no undo step). Several
    operations can be grouped into one step with :meth:`transaction` (or
    :meth:`begin` / :meth:`commit`, which the painter uses for a brush stroke that
    spans many mouse events). Labels are ids 0..3 or class names.
    """

    def __init__(self, mask=None, shape: tuple[int, int] = (256, 256), grid: int = 1, max_history: int = 50):
        if mask is None:
            h, w = _check_shape(*shape)
            self._mask = np.zeros((h, w), dtype=np.uint8)
        else:
            self._mask = _as_mask(mask)
        self.grid = grid
        if isinstance(max_history, bool) or not isinstance(max_history, numbers.Integral) or max_history < 1:
            raise ValueError(f"max_history must be a positive integer, got {max_history!r}")
        self.max_history = int(max_history)
        self._undo: list[_Edit] = []
        self._redo: list[_Edit] = []
        self._txn: tuple[str, np.ndarray] | None = None  # (name, mask at begin)
        self._observers: list[Callable[[str], None]] = []
        self.path: Path | None = None  #: the file last loaded or saved
        self.last_action: str = ""

    # ------------------------------------------------------------------ state

    @property
    def mask(self) -> np.ndarray:
        """The label map as a read-only view (use ``.copy()`` to keep a snapshot)."""
        v = self._mask.view()
        v.flags.writeable = False
        return v

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self._mask.shape)  # type: ignore[return-value]

    @property
    def grid(self) -> int:
        """Snap step in pixels (1 = no snapping)."""
        return self._grid

    @grid.setter
    def grid(self, value) -> None:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or int(value) < 1:
            raise ValueError(f"grid must be a positive integer (1 = no snapping), got {value!r}")
        self._grid = int(value)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo) or self._txn_changed()

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def history(self) -> list[str]:
        """Names of the undoable steps, oldest first."""
        return [e.name for e in self._undo]

    def clear_history(self) -> None:
        """Forget every undo and redo step (the current mask becomes the starting point).

        An open transaction is committed first, so its step is forgotten too."""
        self.commit()
        self._undo.clear()
        self._redo.clear()

    def class_counts(self) -> dict[str, int]:
        """Pixel count per canonical class name (all classes, zeros included)."""
        n = np.bincount(self._mask.ravel(), minlength=NUM_CLASSES)
        return {c.name: int(n[c.id]) for c in CLASSES}

    def observe(self, callback: Callable[[str], None], remove: bool = False) -> None:
        """Call ``callback(action_name)`` after every change of the mask (and undo/redo)."""
        if remove:
            self._observers = [c for c in self._observers if c is not callback]
        elif callback not in self._observers:
            self._observers.append(callback)

    def _notify(self, name: str) -> None:
        self.last_action = name
        for cb in list(self._observers):
            cb(name)

    # ------------------------------------------------------------------ geometry

    def snap(self, point) -> tuple[float, float]:
        """(row, col) snapped to the nearest multiple of `grid` (or the image border,
        if that is nearer); unchanged when grid is 1."""
        r, c = (float(v) for v in _as_points(point, what="point")[0])
        if self._grid <= 1:
            return r, c
        g = self._grid
        out = []
        for v, hi in ((r, self._mask.shape[0]), (c, self._mask.shape[1])):
            best = math.floor(v / g + 0.5) * g
            for b in (0, hi):
                if abs(v - b) < abs(v - best):
                    best = b
            out.append(float(best))
        return out[0], out[1]

    def _snap_all(self, pts: np.ndarray) -> np.ndarray:
        if self._grid <= 1:
            return pts
        return np.array([self.snap(p) for p in pts], dtype=np.float64)

    def rect_box(self, r0, c0, r1, c1) -> tuple[int, int, int, int]:
        """Pixel box (row0, col0, row1, col1), ends exclusive and clipped to the image,
        that :meth:`rect` paints for these corners (after snapping)."""
        (a0, b0), (a1, b1) = self._snap_all(_as_points([(r0, c0), (r1, c1)], what="corners"))
        h, w = self._mask.shape
        top, bottom = min(a0, a1), max(a0, a1)
        left, right = min(b0, b1), max(b0, b1)
        i0 = int(np.clip(math.floor(top), 0, h))
        i1 = int(np.clip(math.ceil(bottom), 0, h))
        j0 = int(np.clip(math.floor(left), 0, w))
        j1 = int(np.clip(math.ceil(right), 0, w))
        return i0, j0, max(i0, i1), max(j0, j1)

    def polygon_region(self, points) -> np.ndarray:
        """Boolean (H, W): pixels whose centre lies inside the (snapped) polygon."""
        from skimage.draw import polygon as _polygon

        pts = self._snap_all(_as_points(points, minimum=3, what="polygon"))
        region = np.zeros(self._mask.shape, dtype=bool)
        rr, cc = _polygon(pts[:, 0] - 0.5, pts[:, 1] - 0.5, shape=self._mask.shape)
        region[rr, cc] = True
        return region

    def stroke_region(self, points, radius: float) -> np.ndarray:
        """Boolean (H, W): pixels whose centre is within `radius` of the (snapped) polyline."""
        pts = self._snap_all(_as_points(points, what="stroke"))
        radius = float(radius)
        if not math.isfinite(radius) or radius < 0:
            raise ValueError(f"brush radius must be a finite number >= 0, got {radius!r}")
        h, w = self._mask.shape
        region = np.zeros((h, w), dtype=bool)
        segs = zip(pts, pts[1:]) if len(pts) > 1 else [(pts[0], pts[0])]
        r2 = radius * radius + _EPS
        for p, q in segs:
            i0 = int(np.clip(math.floor(min(p[0], q[0]) - radius - 0.5), 0, h))
            i1 = int(np.clip(math.ceil(max(p[0], q[0]) + radius + 0.5), 0, h))
            j0 = int(np.clip(math.floor(min(p[1], q[1]) - radius - 0.5), 0, w))
            j1 = int(np.clip(math.ceil(max(p[1], q[1]) + radius + 0.5), 0, w))
            if i0 >= i1 or j0 >= j1:
                continue
            rr = np.arange(i0, i1, dtype=np.float64)[:, None] + 0.5 - p[0]
            cc = np.arange(j0, j1, dtype=np.float64)[None, :] + 0.5 - p[1]
            dr, dc = q[0] - p[0], q[1] - p[1]
            ll = dr * dr + dc * dc
            t = np.clip((rr * dr + cc * dc) / ll, 0.0, 1.0) if ll > 0 else 0.0
            d2 = (rr - t * dr) ** 2 + (cc - t * dc) ** 2
            region[i0:i1, j0:j1] |= d2 <= r2
        return region

    # ------------------------------------------------------------------ operations

    def rect(self, r0, c0, r1, c1, label) -> int:
        """Paint the rectangle with corners (r0, c0) and (r1, c1), any order: every pixel
        it covers (with positive area), clipped to the image. Corners are snapped."""
        lab = resolve_label(label)
        i0, j0, i1, j1 = self.rect_box(r0, c0, r1, c1)
        with self.transaction(f"rect {CLASSES[lab].name}") as name:
            before = self._mask[i0:i1, j0:j1]
            n = int(np.count_nonzero(before != lab))
            before[...] = lab
        return self._done(name, n)

    def polygon(self, points, label) -> int:
        """Fill the polygon (>= 3 (row, col) vertices, snapped): pixels whose centre is inside."""
        lab = resolve_label(label)
        region = self.polygon_region(points)
        return self._paint(region, lab, f"polygon {CLASSES[lab].name}")

    def stroke(self, points, radius: float, label) -> int:
        """Brush along the polyline `points` (one point = a dot) with a round pen of
        `radius` px: pixels whose centre lies within `radius` of the path."""
        lab = resolve_label(label)
        region = self.stroke_region(points, radius)
        return self._paint(region, lab, "erase" if lab == labels.BACKGROUND else f"brush {CLASSES[lab].name}")

    def erase(self, points, radius: float) -> int:
        """A brush stroke with the background class."""
        return self.stroke(points, radius, labels.BACKGROUND)

    def fill(self, r, c, label) -> int:
        """Flood-fill the 4-connected region of equal label containing point (r, c)."""
        from skimage.segmentation import flood_fill

        lab = resolve_label(label)
        (pr, pc), = _as_points((r, c), what="seed point")
        i, j = math.floor(pr), math.floor(pc)
        h, w = self._mask.shape
        if not (0 <= i < h and 0 <= j < w):
            raise ValueError(f"fill seed (row, col) ({r}, {c}) is outside the {h}x{w} mask")
        if self._mask[i, j] == lab:
            return 0
        new = flood_fill(self._mask, (i, j), lab, connectivity=1)
        return self._paint(new != self._mask, lab, f"fill {CLASSES[lab].name}")

    def clear(self, label=labels.BACKGROUND) -> int:
        """Set every pixel to `label` (background by default)."""
        lab = resolve_label(label)
        return self._paint(np.ones(self._mask.shape, dtype=bool), lab, f"clear to {CLASSES[lab].name}")

    def new(self, height: int, width: int) -> None:
        """Start a blank (all background) mask of the given size (undoable)."""
        h, w = _check_shape(height, width)
        self._replace(np.zeros((h, w), dtype=np.uint8), f"new {h}x{w}")

    def set_mask(self, mask, name: str = "set mask") -> None:
        """Replace the whole mask by a (validated) label map (undoable)."""
        self._replace(_as_mask(mask), name)

    def load(self, path) -> np.ndarray:
        """Replace the mask by a mask file (indexed, RGB or gray, as :func:`semlab.io.read_mask`
        accepts); undoable. Unreadable or non-conforming files raise MaskError."""
        from semlab import io as sio

        p = Path(path).expanduser()
        try:
            m = sio.read_mask(p)
        except sio.ImageReadError as e:
            raise MaskError(e.problem, str(p)) from e
        self._replace(np.asarray(m, dtype=np.uint8), f"load {p.name}")
        self.path = p
        return self.mask

    def save(self, path, overwrite: bool = False) -> Path:
        """Write the mask as an indexed PNG with semlab's palette (atomically).

        An existing file is never replaced unless ``overwrite=True``
        (FileExistsError naming it)."""
        from semlab import io as sio

        p = Path(path).expanduser()
        if p.suffix.lower() != ".png":
            raise ValueError(f"{p}: masks are saved as indexed PNG; the name must end in .png")
        if p.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a mask file", str(p))
        if p.exists() and not overwrite:
            raise FileExistsError(
                errno.EEXIST, "file exists; refusing to overwrite it (pass overwrite=True)", str(p)
            )
        self.commit()
        sio.write_mask(p, self._mask)
        self.path = p
        self.last_action = f"saved {p.name}"
        return p

    # ------------------------------------------------------------------ undo / redo

    def undo(self) -> str | None:
        """Undo the last step; returns its name, or None if there was nothing to undo."""
        self.commit()
        if not self._undo:
            return None
        e = self._undo.pop()
        self._apply(e, e.before)
        self._redo.append(e)
        self._notify(f"undo {e.name}")
        return e.name

    def redo(self) -> str | None:
        """Redo the last undone step; returns its name, or None."""
        self.commit()
        if not self._redo:
            return None
        e = self._redo.pop()
        self._apply(e, e.after)
        self._undo.append(e)
        self._notify(f"redo {e.name}")
        return e.name

    def _apply(self, e: _Edit, data: np.ndarray) -> None:
        if e.box is None:
            self._mask = data.copy()
        else:
            r, c = e.box
            self._mask[r : r + data.shape[0], c : c + data.shape[1]] = data

    # ------------------------------------------------------------------ transactions

    def begin(self, name: str) -> None:
        """Start grouping changes into one undo step called `name` (ends at :meth:`commit`).

        A transaction still open is committed first."""
        self.commit()
        self._txn = (str(name), self._mask.copy())

    def commit(self) -> bool:
        """End the open transaction; records one undo step if the mask changed."""
        if self._txn is None:
            return False
        name, base = self._txn
        self._txn = None
        return self._record(name, base)

    def cancel(self) -> None:
        """End the open transaction, restoring the mask as it was at :meth:`begin`."""
        if self._txn is None:
            return
        _, base = self._txn
        self._txn = None
        changed = base.shape != self._mask.shape or not np.array_equal(base, self._mask)
        self._mask = base
        if changed:
            self._notify("cancelled")

    @contextlib.contextmanager
    def transaction(self, name: str) -> Iterator[str]:
        """Group the operations inside the ``with`` block into one undo step.

        Nested inside an open transaction it adds to that one. If the block raises,
        its changes are rolled back."""
        if self._txn is not None:
            yield name
            return
        self.begin(name)
        try:
            yield name
        except BaseException:
            self.cancel()
            raise
        self.commit()

    def _txn_changed(self) -> bool:
        if self._txn is None:
            return False
        base = self._txn[1]
        return base.shape != self._mask.shape or not np.array_equal(base, self._mask)

    def _record(self, name: str, base: np.ndarray) -> bool:
        cur = self._mask
        if base.shape != cur.shape:
            edit = _Edit(name, None, base, cur.copy())
        else:
            diff = base != cur
            if not diff.any():
                return False
            rows = np.flatnonzero(diff.any(axis=1))
            cols = np.flatnonzero(diff.any(axis=0))
            r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            edit = _Edit(name, (int(r0), int(c0)), base[r0:r1, c0:c1].copy(), cur[r0:r1, c0:c1].copy())
        self._undo.append(edit)
        del self._undo[: max(0, len(self._undo) - self.max_history)]
        self._redo.clear()
        return True

    def _paint(self, region: np.ndarray, lab: int, name: str) -> int:
        with self.transaction(name) as name:
            target = region & (self._mask != lab)
            n = int(np.count_nonzero(target))
            self._mask[target] = lab
        return self._done(name, n)

    def _done(self, name: str, n: int) -> int:
        if n:
            self._notify(name)
        return n

    def _replace(self, new: np.ndarray, name: str) -> None:
        with self.transaction(name):
            self._mask = new
        self._notify(name)

