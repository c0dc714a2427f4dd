"""Draw and edit masks in the canonical semlab palette, in a notebook.

A mask painted here says *what structure to generate*: a label map (H, W) of the
canonical ids (0 background/black, 1 pattern/white, 2 hole/blue, 3 defect/red; see
:mod:`semlab.labels`) that a trained generator later turns into an SEM image.

In a notebook::

    from semlab.painter import MaskPainter
    p = MaskPainter(shape=(256, 256))   # or MaskPainter("masks/0001.png", image=sem)
    p                                   # the cell output is the painter widget

    ... draw ...

    p.mask                              # uint8 (H, W) label map (a copy)

Tools: brush, eraser (brush with background), rectangle (press, drag, release),
polygon (click the vertices; double-click, click the first vertex, press Enter or
use "close polygon" to finish; Escape cancels, Backspace drops the last vertex) and
flood fill. A drag that leaves the canvas ends there, clipped to the image border
(so dragging past an edge reaches it). With grid 1 the brush is centred on the pixel
under the pointer and a rectangle includes both end pixels. Ctrl+Z / Ctrl+Y (or
Ctrl+Shift+Z) undo and redo while the canvas has the focus; b, e, r, p, f pick a
tool. Load/Save read and write indexed PNGs with semlab's palette; an existing file
is only replaced with "overwrite" ticked. Problems are shown in the status line.

Everything that changes the mask is done by :class:`MaskDocument`, plain numpy with
an undo history, which can also be scripted without any widget::

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
import html
import math
import numbers
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from semlab import labels
from semlab.labels import CLASSES, NUM_CLASSES, MaskError

__all__ = ["MaskDocument", "MaskPainter", "paint", "resolve_label", "mask_rgba", "TOOLS"]

#: The painter's tools, in the order of the tool buttons.
TOOLS = ("brush", "eraser", "rect", "polygon", "fill")

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


# =========================================================================== widget


def _widget_modules():
    try:
        import ipycanvas
        import ipywidgets
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "MaskPainter needs ipywidgets and ipycanvas: pip install 'semlab[notebooks]'"
        ) from e
    return ipywidgets, ipycanvas


def _css(rgb: Sequence[int], alpha: float | None = None) -> str:
    r, g, b = (int(v) for v in rgb)
    return f"rgb({r}, {g}, {b})" if alpha is None else f"rgba({r}, {g}, {b}, {alpha:g})"


def _upscale(a: np.ndarray, zoom: int) -> np.ndarray:
    if zoom == 1:
        return np.ascontiguousarray(a)
    return np.ascontiguousarray(np.repeat(np.repeat(a, zoom, axis=0), zoom, axis=1))


def mask_rgba(mask: np.ndarray, opacity: float = 1.0) -> np.ndarray:
    """Label map -> (H, W, 4) uint8 RGBA in the canonical colours, alpha = opacity * 255."""
    rgb = labels.colorize(mask)
    alpha = np.full(rgb.shape[:2] + (1,), int(round(float(np.clip(opacity, 0.0, 1.0)) * 255)), np.uint8)
    return np.concatenate([rgb, alpha], axis=2)


def _gray_u8(image) -> np.ndarray:
    from semlab import io as sio

    if isinstance(image, (str, Path)):
        image = sio.read_image(Path(image).expanduser())
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2 or 0 in a.shape:
        raise ValueError(f"background image must be a 2-D gray image, got shape {a.shape}")
    return sio.to_uint8(a)


class MaskPainter:
    """Interactive mask painter for Jupyter (ipycanvas + ipywidgets).

    Parameters
    ----------
    mask : array (H, W) of class ids, or a path to a mask file, optional
        Mask to edit; default a blank mask of `shape` (or of the image's shape).
    shape : (H, W)
        Size of a new blank mask.
    image : array (H, W) or path, optional
        SEM image shown in gray under the mask (float in [0, 1] or uint8/uint16);
        must have the mask's shape.
    zoom : int, optional
        Screen pixels per mask pixel; default so the canvas is about 512 px wide.
    grid : int
        Snap step in mask pixels (1 = no snapping).
    opacity : float, optional
        Mask opacity over the image; default 0.5 with an image, 1 without.

    Display the painter by making it the last expression of a cell (or
    ``display(p.widget)``); read the result with :attr:`mask`. Programmatic edits
    through :attr:`document` are shown at once.
    """

    DOUBLE_CLICK_S = 0.4  #: two clicks closer in time than this (and in place) are a double-click
    _CLOSE_PX = 6.0  #: canvas px: clicking this close to the first vertex closes a polygon
    _GRID_MIN_PX = 4  #: grid lines are drawn only if they are at least this far apart on screen

    def __init__(self, mask=None, shape: tuple[int, int] = (256, 256), image=None,
                 zoom: int | None = None, grid: int = 1, opacity: float | None = None):
        widgets, ipycanvas = _widget_modules()
        self._hold = ipycanvas.hold_canvas
        self._clock = time.monotonic
        img = None if image is None else _gray_u8(image)
        path = None
        if isinstance(mask, (str, Path)):
            path = Path(mask).expanduser()
            self._doc = MaskDocument(shape=(1, 1), grid=grid)
            self._doc.load(path)
            self._doc._undo.clear()
        elif mask is None and img is not None:
            self._doc = MaskDocument(shape=img.shape, grid=grid)
        else:
            self._doc = MaskDocument(mask, shape=shape, grid=grid)
        if img is not None and img.shape != self._doc.shape:
            raise ValueError(f"image shape {img.shape} differs from the mask shape {self._doc.shape}")
        self._image = img
        if zoom is not None and (isinstance(zoom, bool) or not isinstance(zoom, numbers.Integral) or zoom < 1):
            raise ValueError(f"zoom must be a positive integer, got {zoom!r}")
        self._fixed_zoom = None if zoom is None else int(zoom)
        self.zoom = self._auto_zoom()

        # interaction state
        self._drawing: str | None = None  # tool of the drag in progress
        self._last_pt: tuple[float, float] | None = None
        self._rect_start: tuple[float, float] | None = None
        self._poly: list[tuple[float, float]] = []
        self._last_click: tuple[float, float, float] | None = None  # (time, x, y)
        self._hover: tuple[float, float] | None = None
        self._shown: np.ndarray | None = None  # mask as last rendered
        self._shown_rgba: np.ndarray | None = None  # the mask layer's pixels (zoomed RGBA)
        self.message = ""  #: last status message (plain text)

        # ---------------------------------------------------------- widgets
        h, w = self._doc.shape
        self.canvas = ipycanvas.MultiCanvas(4, width=w * self.zoom, height=h * self.zoom)
        self._bg_layer, self._mask_layer, self._grid_layer, self._preview_layer = (
            self.canvas[i] for i in range(4)
        )
        self._mask_layer.image_smoothing_enabled = False
        self._bg_layer.image_smoothing_enabled = False

        self.tool = widgets.ToggleButtons(
            options=list(TOOLS), value="brush", description="tool",
            tooltips=["paint with the class", "paint background", "drag a rectangle",
                      "click vertices, double-click to close", "flood-fill a region"],
            style={"button_width": "72px"},
        )
        self.label_select = widgets.ToggleButtons(
            options=[(f"{c.id} {c.name}", c.id) for c in CLASSES], value=labels.PATTERN,
            description="class", style={"button_width": "92px"},
        )
        self.legend = widgets.HTML(self._legend_html())
        self.radius = widgets.IntSlider(value=2, min=0, max=max(8, min(64, max(h, w) // 4)),
                                        description="brush radius", continuous_update=False)
        self.grid = widgets.BoundedIntText(value=self._doc.grid, min=1, max=max(1, max(h, w)),
                                           description="grid snap", layout=widgets.Layout(width="180px"))
        if opacity is None:
            opacity = 0.5 if img is not None else 1.0
        self.opacity = widgets.FloatSlider(value=float(opacity), min=0.0, max=1.0, step=0.05,
                                           description="opacity", continuous_update=False)
        self.undo_button = widgets.Button(description="undo", icon="undo")
        self.redo_button = widgets.Button(description="redo", icon="repeat")
        self.clear_button = widgets.Button(description="clear", icon="trash",
                                           tooltip="set everything to background (undoable)")
        self.close_button = widgets.Button(description="close polygon", icon="check",
                                           tooltip="fill the polygon being drawn")
        self.path = widgets.Text(value=str(path or ""), placeholder="mask.png",
                                 description="file", layout=widgets.Layout(width="420px"))
        self.load_button = widgets.Button(description="load", icon="folder-open")
        self.save_button = widgets.Button(description="save", icon="save")
        self.overwrite = widgets.Checkbox(value=False, description="overwrite", indent=False)
        self.status = widgets.HTML()

        self.widget = widgets.VBox([
            widgets.HBox([self.tool]),
            widgets.HBox([self.label_select]),
            self.legend,
            widgets.HBox([self.radius, self.grid, self.opacity]),
            widgets.HBox([self.undo_button, self.redo_button, self.clear_button, self.close_button]),
            self.canvas,
            widgets.HBox([self.path, self.load_button, self.save_button, self.overwrite]),
            self.status,
        ])

        # ---------------------------------------------------------- events
        self.canvas.on_mouse_down(self._guard(self._on_mouse_down))
        self.canvas.on_mouse_move(self._guard(self._on_mouse_move))
        self.canvas.on_mouse_up(self._guard(self._on_mouse_up))
        self.canvas.on_mouse_out(self._guard(self._on_mouse_out))
        self.canvas.on_key_down(self._guard(self._on_key_down))
        self.canvas.on_client_ready(self._guard(self.refresh))
        self.tool.observe(self._guard(self._on_tool_change), names="value")
        self.grid.observe(self._guard(self._on_grid_change), names="value")
        self.opacity.observe(self._guard(lambda _c: self._draw_mask(full=True)), names="value")
        self.label_select.observe(self._guard(lambda _c: self._draw_preview()), names="value")
        self.undo_button.on_click(self._guard(lambda _b: self.undo()))
        self.redo_button.on_click(self._guard(lambda _b: self.redo()))
        self.clear_button.on_click(self._guard(lambda _b: self._doc.clear()))
        self.close_button.on_click(self._guard(lambda _b: self.close_polygon()))
        self.load_button.on_click(self._guard(lambda _b: self.load(self.path.value)))
        self.save_button.on_click(self._guard(lambda _b: self.save(self.path.value, overwrite=self.overwrite.value)))
        self._doc.observe(self._on_document_change)

        self.refresh()
        self._set_status("ready" if path is None else f"loaded {path.name}")

    # ------------------------------------------------------------------ public API

    @property
    def document(self) -> MaskDocument:
        """The :class:`MaskDocument` being edited (changes through it are shown)."""
        return self._doc

    @property
    def mask(self) -> np.ndarray:
        """A copy of the current label map (uint8 (H, W))."""
        self._doc.commit()
        return self._doc.mask.copy()

    @property
    def image(self) -> np.ndarray | None:
        """The background image as uint8 (H, W), or None."""
        return None if self._image is None else self._image.copy()

    @property
    def label(self) -> int:
        """The selected class id (settable with an id or a class name)."""
        return int(self.label_select.value)

    @label.setter
    def label(self, value) -> None:
        self.label_select.value = resolve_label(value)

    def set_image(self, image) -> None:
        """Show `image` (array or path, the mask's shape) under the mask; None removes it."""
        img = None if image is None else _gray_u8(image)
        if img is not None and img.shape != self._doc.shape:
            raise ValueError(f"image shape {img.shape} differs from the mask shape {self._doc.shape}")
        self._image = img
        self._draw_background()

    def load(self, path) -> None:
        """Load a mask file into the painter (undoable); errors are shown and re-raised."""
        try:
            p = Path(str(path).strip()).expanduser()
            if not str(path).strip():
                raise ValueError("enter the path of a mask file to load")
            self._cancel_interaction()
            self._doc.load(p)
        except Exception as e:
            self._error(e)
            raise
        self.path.value = str(p)
        self._set_status(f"loaded {p}")

    def save(self, path=None, overwrite: bool = False) -> Path:
        """Save the mask as an indexed PNG (never over an existing file unless `overwrite`);
        errors are shown and re-raised."""
        try:
            text = str(self.path.value if path is None else path).strip()
            if not text:
                raise ValueError("enter a file name ending in .png to save the mask")
            p = self._doc.save(Path(text), overwrite=overwrite)
        except Exception as e:
            self._error(e)
            raise
        self.path.value = str(p)
        self._set_status(f"saved {p}")
        return p

    def undo(self) -> None:
        self._cancel_interaction()
        if self._doc.undo() is None:
            self._set_status("nothing to undo")

    def redo(self) -> None:
        self._cancel_interaction()
        if self._doc.redo() is None:
            self._set_status("nothing to redo")

    def close_polygon(self) -> int:
        """Fill the polygon being drawn with the selected class; returns pixels changed."""
        pts, self._poly = self._poly, []
        self._draw_preview()
        if len(pts) < 3:
            self._set_status(f"a polygon needs at least 3 vertices (have {len(pts)})")
            return 0
        n = self._doc.polygon(pts, self.label)
        if not n:
            self._set_status("polygon changed no pixel")
        return n

    def refresh(self, *_args) -> None:
        """Redraw every layer (e.g. after the canvas was shown again)."""
        self._draw_background()
        self._draw_grid()
        self._draw_mask(full=True)
        self._draw_preview()

    def render_rgba(self) -> np.ndarray:
        """The mask layer at mask resolution: (H, W, 4) uint8 in the canonical colours,
        alpha = opacity."""
        return mask_rgba(self._doc.mask, self.opacity.value)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ coordinates

    def _to_image(self, x: float, y: float) -> tuple[float, float]:
        """Canvas (x, y) -> image (row, col), clipped to the image."""
        h, w = self._doc.shape
        return (float(np.clip(y / self.zoom, 0.0, h)), float(np.clip(x / self.zoom, 0.0, w)))

    def _pixel(self, x: float, y: float) -> tuple[int, int]:
        """Index (row, col) of the mask pixel under canvas (x, y)."""
        h, w = self._doc.shape
        r, c = self._to_image(x, y)
        return min(int(r), h - 1), min(int(c), w - 1)

    def _brush_point(self, x: float, y: float) -> tuple[float, float]:
        """Brush centre: the centre of the pixel under the pointer (grid 1) or the
        pointer itself (the document snaps it to the grid)."""
        if self._doc.grid <= 1:
            i, j = self._pixel(x, y)
            return i + 0.5, j + 0.5
        return self._to_image(x, y)

    def _rect_corners(self, start, end) -> tuple[float, float, float, float]:
        """Rectangle corners for the document: with grid 1 both end pixels are included."""
        if self._doc.grid <= 1:
            (i0, j0), (i1, j1) = start, end
            return min(i0, i1), min(j0, j1), max(i0, i1) + 1, max(j0, j1) + 1
        return (*start, *end)

    def _rect_anchor(self, x: float, y: float):
        return self._pixel(x, y) if self._doc.grid <= 1 else self._to_image(x, y)

    # ------------------------------------------------------------------ mouse / keys

    def _on_mouse_down(self, x: float, y: float) -> None:
        tool = self.tool.value
        if tool in ("brush", "eraser"):
            lab = self.label if tool == "brush" else labels.BACKGROUND
            self._doc.begin("erase" if tool == "eraser" else f"brush {CLASSES[lab].name}")
            self._drawing = tool
            self._last_pt = self._brush_point(x, y)
            self._doc.stroke([self._last_pt], self.radius.value, lab)
        elif tool == "rect":
            self._drawing = "rect"
            self._rect_start = self._rect_anchor(x, y)
            self._hover = (x, y)
            self._draw_preview()
        elif tool == "polygon":
            self._polygon_click(x, y)
        elif tool == "fill":
            i, j = self._pixel(x, y)
            if not self._doc.fill(i + 0.5, j + 0.5, self.label):
                self._set_status(f"fill at ({i}, {j}): already {CLASSES[self.label].name}")

    def _on_mouse_move(self, x: float, y: float) -> None:
        self._hover = (x, y)
        if self._drawing in ("brush", "eraser"):
            pt = self._brush_point(x, y)
            lab = self.label if self._drawing == "brush" else labels.BACKGROUND
            self._doc.stroke([self._last_pt, pt], self.radius.value, lab)
            self._last_pt = pt
        self._draw_preview()

    def _on_mouse_up(self, x: float, y: float) -> None:
        self._finish_drag(x, y)

    def _on_mouse_out(self, x: float, y: float) -> None:
        # No mouse-up arrives once the pointer has left the canvas: finish the drag
        # here (with the position clipped to the image, so dragging past the border
        # reaches it).
        self._finish_drag(x, y)
        self._hover = None
        self._draw_preview()

    def _finish_drag(self, x: float, y: float) -> None:
        tool, self._drawing = self._drawing, None
        if tool in ("brush", "eraser"):
            pt = self._brush_point(x, y)
            lab = self.label if tool == "brush" else labels.BACKGROUND
            self._doc.stroke([self._last_pt, pt], self.radius.value, lab)
            self._last_pt = None
            self._doc.commit()
        elif tool == "rect" and self._rect_start is not None:
            start, self._rect_start = self._rect_start, None
            corners = self._rect_corners(start, self._rect_anchor(x, y))
            self._draw_preview()
            if not self._doc.rect(*corners, self.label):
                self._set_status("rectangle changed no pixel")

    def _polygon_click(self, x: float, y: float) -> None:
        now = self._clock()
        last, self._last_click = self._last_click, (now, x, y)
        if self._poly:
            double = (last is not None and now - last[0] <= self.DOUBLE_CLICK_S
                      and math.hypot(x - last[1], y - last[2]) <= 3.0)
            fr, fc = self._poly[0]
            on_first = len(self._poly) >= 3 and math.hypot(
                x - fc * self.zoom, y - fr * self.zoom) <= self._CLOSE_PX
            if double or on_first:
                self._last_click = None
                self.close_polygon()
                return
        self._poly.append(self._doc.snap(self._to_image(x, y)))
        self._set_status(f"polygon: {len(self._poly)} vertex(es); double-click or Enter to close")
        self._draw_preview()

    def _on_key_down(self, key: str, shift: bool = False, ctrl: bool = False, meta: bool = False) -> None:
        k = str(key)
        mod = ctrl or meta
        if mod and k.lower() == "z":
            self.redo() if shift else self.undo()
        elif mod and k.lower() == "y":
            self.redo()
        elif k == "Enter" and self.tool.value == "polygon":
            self.close_polygon()
        elif k == "Escape":
            self._cancel_interaction()
            self._set_status("cancelled")
        elif k == "Backspace" and self._poly:
            self._poly.pop()
            self._draw_preview()
        elif not mod and k in ("b", "e", "r", "p", "f"):
            self.tool.value = {"b": "brush", "e": "eraser", "r": "rect", "p": "polygon", "f": "fill"}[k]

    def _on_tool_change(self, _change) -> None:
        self._cancel_interaction()

    def _on_grid_change(self, change) -> None:
        self._cancel_interaction()
        self._doc.grid = int(change["new"])
        self._draw_grid()
        self._draw_preview()

    def _cancel_interaction(self) -> None:
        if self._drawing in ("brush", "eraser"):
            self._doc.commit()
        self._drawing = None
        self._last_pt = None
        self._rect_start = None
        self._poly = []
        self._last_click = None
        self._draw_preview()

    def _guard(self, fn):
        """Wrap an event handler: exceptions go to the status line, not the kernel log."""
        def handler(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - shown to the user
                self._drawing = None
                self._doc.commit()
                self._error(e)
        handler.__wrapped__ = fn
        return handler

    # ------------------------------------------------------------------ document -> view

    def _on_document_change(self, name: str) -> None:
        if self._shown is None or self._shown.shape != self._doc.shape:
            self._resize()
        else:
            self._draw_mask()
        self._set_status(name)

    def _resize(self) -> None:
        """Adapt canvas size, zoom and controls to a new mask shape."""
        h, w = self._doc.shape
        note = ""
        if self._image is not None and self._image.shape != (h, w):
            self._image = None
            note = " (background image removed: it has another size)"
        self.zoom = self._auto_zoom()
        self.canvas.width, self.canvas.height = w * self.zoom, h * self.zoom
        self.grid.max = max(1, h, w)
        self._poly = []
        self.refresh()
        if note:
            self.message = (self.message or "") + note

    def _auto_zoom(self) -> int:
        if self._fixed_zoom is not None:
            return self._fixed_zoom
        return max(1, int(round(512 / max(self._doc.shape))))

    # ------------------------------------------------------------------ drawing

    @contextlib.contextmanager
    def _batch(self):
        """Send the drawing commands in one message (and always release the hold)."""
        cm = self._hold()
        cm.__enter__()
        try:
            yield
        finally:
            cm.__exit__(None, None, None)

    def _draw_background(self) -> None:
        h, w = self._doc.shape
        z = self.zoom
        layer = self._bg_layer
        data = None if self._image is None else _upscale(self._image, z)
        with self._batch():
            layer.clear()
            if data is None:
                layer.fill_style = "#3a3a3a"
                layer.fill_rect(0, 0, w * z, h * z)
            else:
                layer.put_image_data(data, 0, 0)

    def _draw_mask(self, full: bool = False) -> None:
        """Send the changed part of the mask (everything if `full`) to the mask layer."""
        mask = self._doc.mask
        z = self.zoom
        if full or self._shown is None or self._shown.shape != mask.shape or self._shown_rgba is None:
            box = (0, 0, mask.shape[0], mask.shape[1])
            self._shown_rgba = np.zeros((mask.shape[0] * z, mask.shape[1] * z, 4), np.uint8)
            clear_all = True
        else:
            diff = self._shown != mask
            if not diff.any():
                return
            rows = np.flatnonzero(diff.any(axis=1))
            cols = np.flatnonzero(diff.any(axis=0))
            box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
            clear_all = False
        r0, c0, r1, c1 = box
        patch = _upscale(mask_rgba(mask[r0:r1, c0:c1], self.opacity.value), z)
        self._shown_rgba[r0 * z : r1 * z, c0 * z : c1 * z] = patch
        self._shown = mask.copy()
        layer = self._mask_layer
        with self._batch():
            if clear_all:
                layer.clear()
            else:  # put_image_data composites: clear the box first
                layer.clear_rect(c0 * z, r0 * z, (c1 - c0) * z, (r1 - r0) * z)
            layer.put_image_data(patch, c0 * z, r0 * z)

    def _draw_grid(self) -> None:
        h, w = self._doc.shape
        z, g = self.zoom, self._doc.grid
        layer = self._grid_layer
        with self._batch():
            layer.clear()
            if g <= 1 or g * z < self._GRID_MIN_PX:
                return
            layer.stroke_style = "rgba(0, 200, 255, 0.45)"
            layer.line_width = 1
            layer.begin_path()
            for c in range(g, w, g):
                layer.move_to(c * z + 0.5, 0)
                layer.line_to(c * z + 0.5, h * z)
            for r in range(g, h, g):
                layer.move_to(0, r * z + 0.5)
                layer.line_to(w * z, r * z + 0.5)
            layer.stroke()

    def _draw_preview(self) -> None:
        """Overlay: rectangle being dragged, polygon being drawn, brush outline."""
        layer = self._preview_layer
        z = self.zoom
        tool = self.tool.value
        rgb = CLASSES[self.label].rgb
        with self._batch():
            layer.clear()
            if tool == "rect" and self._rect_start is not None and self._hover is not None:
                corners = self._rect_corners(self._rect_start, self._rect_anchor(*self._hover))
                i0, j0, i1, j1 = self._doc.rect_box(*corners)
                layer.fill_style = _css(rgb, 0.45)
                layer.fill_rect(j0 * z, i0 * z, (j1 - j0) * z, (i1 - i0) * z)
                layer.stroke_style = "#ffcc00"
                layer.line_width = 1
                layer.stroke_rect(j0 * z + 0.5, i0 * z + 0.5, max(0, (j1 - j0) * z - 1), max(0, (i1 - i0) * z - 1))
            elif tool == "polygon" and self._poly:
                pts = [(c * z, r * z) for r, c in self._poly]
                if self._hover is not None:
                    r, c = self._doc.snap(self._to_image(*self._hover))
                    pts.append((c * z, r * z))
                layer.stroke_style = "#ffcc00"
                layer.line_width = 1.5
                if len(pts) > 1:
                    layer.stroke_lines(pts)
                layer.fill_style = _css(rgb)
                layer.fill_circles(np.array([p[0] for p in pts[: len(self._poly)]]),
                                   np.array([p[1] for p in pts[: len(self._poly)]]), 3)
                layer.stroke_circles(np.array([p[0] for p in pts[: len(self._poly)]]),
                                     np.array([p[1] for p in pts[: len(self._poly)]]), 3)
            elif tool in ("brush", "eraser") and self._hover is not None:
                r, c = self._doc.snap(self._brush_point(*self._hover))
                layer.stroke_style = "#ffcc00"
                layer.line_width = 1
                layer.stroke_circle(c * z, r * z, max(0.5, self.radius.value + 0.5) * z)

    # ------------------------------------------------------------------ status

    def _legend_html(self) -> str:
        items = []
        for c in CLASSES:
            items.append(
                f'<span style="display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;'
                f'vertical-align:middle;border:1px solid #888;background:{_css(c.rgb)}"></span>'
                f"{c.id} {html.escape(c.name)}"
            )
        return '<div style="margin-left:90px">' + "".join(items) + "</div>"

    def _set_status(self, message: str, error: bool = False) -> None:
        self.message = ("error: " if error else "") + str(message)
        counts = self._doc.class_counts()
        total = max(1, sum(counts.values()))
        parts = []
        for c in CLASSES:
            n = counts[c.name]
            parts.append(
                f'<span style="display:inline-block;width:10px;height:10px;border:1px solid #888;'
                f'background:{_css(c.rgb)}"></span> {html.escape(c.name)} {n} ({100 * n / total:.1f}%)'
            )
        h, w = self._doc.shape
        info = f"{h}x{w} px, zoom {self.zoom}, grid {self._doc.grid}, undo {len(self._doc.history)}"
        colour = "#c00" if error else "inherit"
        self.status.value = (
            '<div style="font-family:monospace;font-size:12px">'
            + " &nbsp; ".join(parts) + f"<br>{html.escape(info)}"
            + f'<div style="color:{colour};white-space:pre-wrap">{html.escape(self.message)}</div></div>'
        )

    def _error(self, e: BaseException) -> None:
        text = str(e) or type(e).__name__
        self._set_status(f"{type(e).__name__}: {text}", error=True)


def paint(mask=None, *, shape: tuple[int, int] = (256, 256), image=None, zoom: int | None = None,
          grid: int = 1, opacity: float | None = None) -> MaskPainter:
    """Open a :class:`MaskPainter` (a mask array or file, or a blank mask of `shape`)."""
    return MaskPainter(mask, shape=shape, image=image, zoom=zoom, grid=grid, opacity=opacity)
