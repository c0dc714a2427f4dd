"""The notebook widget of :mod:`semlab.painter`: :class:`MaskPainter` (ipycanvas +
ipywidgets) and its drawing helpers. All editing goes through a
:class:`~semlab.painter.document.MaskDocument`; this module only turns mouse and key
events into document calls and draws the document on a canvas. ipywidgets and
ipycanvas are imported when a painter is made, not when this module is imported.

Tools: brush, eraser (brush with background), rectangle (press, drag, release),
polygon (click the vertices; double-click, click the first vertex, press Enter or
use "close polygon" to finish; Escape cancels, Backspace drops the last vertex) and
flood fill. A drag that leaves the canvas ends there, clipped to the image border
(so dragging past an edge reaches it). With grid 1 the brush is centred on the pixel
under the pointer and a rectangle includes both end pixels. Ctrl+Z / Ctrl+Y (or
Ctrl+Shift+Z) undo and redo while the canvas has the focus; b, e, r, p, f pick a
tool. Load/Save read and write indexed PNGs with semlab's palette; an existing file
is only replaced with "overwrite" ticked. Problems are shown in the status line.
"""

from __future__ import annotations

import contextlib
import html
import math
import numbers
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from semlab import labels
from semlab.labels import CLASSES
from semlab.painter.document import MaskDocument, resolve_label

__all__ = ["MaskPainter", "paint", "mask_rgba", "TOOLS"]

#: The painter's tools, in the order of the tool buttons.
TOOLS = ("brush", "eraser", "rect", "polygon", "fill")


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
            self._doc.clear_history()
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
