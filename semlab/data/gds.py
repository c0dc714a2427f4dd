"""Layouts from GDSII: a layout clip -> canonical label masks and exact edge contours.

The entry point chip engineers expect: "what will this clip look like in the SEM?".
`plan_clip` reads a GDSII file (gdstk), checks everything, and returns a `Clip`
whose tiles `Clip.rasterize` turns into label masks for the simulator
(`semlab.data.simulate.render_mask`) or a trained generator
(`semlab.train.generate`). Nothing is written until every check has passed.

- **Cell** (`cell`): default the file's single top cell; several top cells are refused
  with their names, an unknown name with the list of cells. References, arrays
  (repetitions), rotations, magnifications and reflections are flattened, and paths
  (wires) become polygons at their width (gdstk `Cell.get_polygons`).
- **Layer map** (`layers`, `--layers`): comma-separated `LAYER/DATATYPE=CLASS`, class
  one of pattern, hole, defect; default `1/0=pattern,2/0=hole`. Overlapping polygons
  of a class are merged. Hole polygons count only inside the pattern (class `hole`
  where they cover it); outside it they are background (with a warning). Layers of the
  cell that are not in the map are ignored with a warning listing them; a map that
  matches none of them is an error listing the layers found.
- **Window** (`window`, `--window x0,y0,x1,y1`): in um in the layout's coordinates;
  default the cell's bounding box; a window that does not overlap it is refused. The
  pixel grid starts at the window's top-left corner (x0, y1); a window that is not a
  whole number of pixels (or of tiles) grows to the right and downwards, and the grown
  window is what `Clip.window` and dataset.json record.
- **Pixels** (`pixel_nm`, required): a window over `semlab.io.max_image_pixels`
  ($SEMLAB_MAX_IMAGE_PIXELS, else PIL's limit) is refused before anything is written.
- **Tiles** (`tile`, `--tile N`): N x N px tiles, row-major, each with its px offset
  (`Tile.row`, `Tile.col`) and its window in um; `Clip.stitch` puts them back together.

Rasterisation is exact: `polygon_coverage` integrates each polygon's area over each
pixel (a scanline area/cover accumulation, as in font rasterisers: every edge is split
at pixel rows and columns and the signed area right of it is accumulated, then summed
along the rows), so the coverage is the exact area fraction up to float rounding (no
supersampling). The label mask is coverage >= 0.5. The contours ground truth is the
boundary of pattern minus holes, clipped to the tile, in the simulator's format:
closed (N, 2) float32 (row, col) px arrays, pixel centres at integer coordinates (so
the frame is at -0.5 and W - 0.5, where the simulator closes structures cut by it).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from semlab import io, labels

__all__ = ["DEFAULT_LAYERS", "GdsError", "Clip", "Tile", "Raster", "Layout", "parse_layer_map",
           "format_layer_map", "parse_window", "read_layout", "plan_clip", "polygon_coverage",
           "boundary_rings", "demo_clip", "simulate_gds", "generate_gds", "render_with_generator"]

DEFAULT_LAYERS = "1/0=pattern,2/0=hole"
CLASSES = {"pattern": labels.PATTERN, "hole": labels.HOLE, "defect": labels.DEFECT}
GDS_HEADER = b"\x00\x06\x00\x02"  # the HEADER record every GDSII stream starts with
_ENTRY = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*=\s*([A-Za-z_]+)\s*$")


class GdsError(ValueError):
    """A GDSII file, cell, window or layer map that cannot be used as asked."""


# ------------------------------------------------------------------------ options


def parse_layer_map(spec: str | Mapping) -> dict[tuple[int, int], str]:
    """`"1/0=pattern,2/0=hole"` -> {(1, 0): "pattern", (2, 0): "hole"} (checked)."""
    if isinstance(spec, Mapping):
        spec = ",".join(f"{k[0]}/{k[1]}={v}" if isinstance(k, tuple) else f"{k}={v}" for k, v in spec.items())
    out: dict[tuple[int, int], str] = {}
    entries = [e for e in str(spec).split(",") if e.strip()]
    if not entries:
        raise ValueError(f"--layers {spec!r}: empty; expected LAYER/DATATYPE=CLASS pairs, e.g. {DEFAULT_LAYERS}")
    for e in entries:
        m = _ENTRY.match(e)
        if not m:
            raise ValueError(f"--layers: {e.strip()!r} is not LAYER/DATATYPE=CLASS (e.g. {DEFAULT_LAYERS})")
        key, cls = (int(m[1]), int(m[2])), m[3].lower()
        if cls not in CLASSES:
            raise ValueError(f"--layers: unknown class {cls!r} in {e.strip()!r}; valid: {', '.join(CLASSES)}")
        if key[0] > 65535 or key[1] > 65535:
            raise ValueError(f"--layers: {e.strip()!r}: GDSII layers and datatypes are 0..65535")
        if out.get(key, cls) != cls:
            raise ValueError(f"--layers: {key[0]}/{key[1]} is mapped to both {out[key]} and {cls}")
        out[key] = cls
    return out


def format_layer_map(lmap: Mapping[tuple[int, int], str]) -> str:
    return ",".join(f"{k[0]}/{k[1]}={v}" for k, v in sorted(lmap.items()))


def _layers_text(keys) -> str:
    return ", ".join(f"{k[0]}/{k[1]}" for k in sorted(keys)) or "none"


def parse_window(spec) -> tuple[float, float, float, float]:
    """`"x0,y0,x1,y1"` (um) or a 4-sequence -> floats with x0 < x1 and y0 < y1."""
    try:
        vals = [float(v) for v in (spec.split(",") if isinstance(spec, str) else spec)]
    except (TypeError, ValueError):
        vals = []
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals) or vals[0] >= vals[2] or vals[1] >= vals[3]:
        raise ValueError(f"--window {spec!r}: expected x0,y0,x1,y1 in um with x0 < x1 and y0 < y1")
    return tuple(vals)  # type: ignore[return-value]


# ------------------------------------------------------------------------ reading


@dataclass
class Layout:
    """One cell of a GDSII file, flattened: polygons (gdstk.Polygon, um) by (layer, datatype)."""

    path: Path
    cell: str
    polygons: dict[tuple[int, int], list]
    bbox: tuple[float, float, float, float] | None
    sha256: str


def read_layout(path, cell: str | None = None) -> Layout:
    """Read `path` with gdstk (coordinates in um) and flatten `cell` (default: the single
    top cell). Errors name the file: not GDSII, unreadable, unknown or ambiguous cell."""
    import gdstk

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such GDSII file")
    with open(p, "rb") as f:
        head = f.read(4)
    if head != GDS_HEADER:
        raise GdsError(f"{p}: not a GDSII file (it does not start with a GDSII HEADER record)")
    try:
        lib = gdstk.read_gds(str(p), unit=1e-6)
    except (OSError, RuntimeError) as e:
        raise GdsError(f"{p}: not a valid GDSII file (gdstk: {e})") from None
    cells = {c.name: c for c in lib.cells}
    if not cells:
        raise GdsError(f"{p}: the file holds no cells")
    if cell is None:
        tops = sorted(c.name for c in lib.top_level())
        if len(tops) != 1:
            raise GdsError(f"{p}: {len(tops)} top cells ({', '.join(tops)}); choose one with --cell")
        cell = tops[0]
    elif cell not in cells:
        raise GdsError(f"{p}: no cell {cell!r}; cells: {', '.join(sorted(cells))}")
    c = cells[cell]
    polys: dict[tuple[int, int], list] = {}
    for poly in c.get_polygons(apply_repetitions=True, include_paths=True):
        if len(poly.points) >= 3 and poly.area() > 0:
            polys.setdefault((int(poly.layer), int(poly.datatype)), []).append(poly)
    bb = c.bounding_box()
    bbox = None if bb is None else (float(bb[0][0]), float(bb[0][1]), float(bb[1][0]), float(bb[1][1]))
    return Layout(p, cell, polys, bbox, io.sha256_file(p))


# ---------------------------------------------------------------- rasterisation


def polygon_coverage(rings: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Exact area coverage (float32 in [0, 1]) of pixels [c, c+1] x [r, r+1] by polygons
    given as (N, 2) (x, y) px rings inside [0, W] x [0, H] (y pointing down; either
    orientation; a ring may be a keyhole polygon with holes joined by cuts). The rings
    must not overlap each other (merge them first: `gdstk.boolean(..., "or")`)."""
    h, w = shape
    xs0, ys0, xs1, ys1, ws = [], [], [], [], []
    for ring in rings:
        r = np.asarray(ring, np.float64)
        if len(r) < 3:
            continue
        x0, y0 = np.clip(r[:, 0], 0, w), np.clip(r[:, 1], 0, h)
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        area2 = float(np.sum(x0 * y1 - x1 * y0))
        if area2 == 0:
            continue
        xs0.append(x0), ys0.append(y0), xs1.append(x1), ys1.append(y1)
        ws.append(np.full(len(x0), -1.0 if area2 > 0 else 1.0))
    acc_w = w + 2
    if not xs0:
        return np.zeros((h, w), np.float32)
    x0, y0, x1, y1, sgn = (np.concatenate(a) for a in (xs0, ys0, xs1, ys1, ws))
    keep = y0 != y1  # horizontal edges add no area
    x0, y0, x1, y1, sgn = x0[keep], y0[keep], x1[keep], y1[keep], sgn[keep]
    sgn = sgn * np.sign(y1 - y0)
    dxdy = (x1 - x0) / (y1 - y0)
    ya, yb = np.minimum(y0, y1), np.maximum(y0, y1)
    # 1. split every edge at the pixel rows it crosses
    r0 = np.floor(ya).astype(np.int64)
    n = np.maximum(np.ceil(yb).astype(np.int64) - r0, 1)
    e = np.repeat(np.arange(len(x0)), n)
    row = r0[e] + (np.arange(len(e)) - np.repeat(np.cumsum(n) - n, n))
    lo, hi = np.maximum(ya[e], row), np.minimum(yb[e], row + 1)
    xl, xh = x0[e] + (lo - y0[e]) * dxdy[e], x0[e] + (hi - y0[e]) * dxdy[e]
    height = (hi - lo) * sgn[e]
    # 2. split every row piece at the pixel columns it crosses; a piece of height dh with
    # mean x xm in column c covers (c + 1 - xm) dh of pixel c and dh of every pixel right of it
    xa, xb = np.minimum(xl, xh), np.maximum(xl, xh)
    c0 = np.floor(xa).astype(np.int64)
    m = np.maximum(np.ceil(xb).astype(np.int64) - c0, 1)
    q = np.repeat(np.arange(len(xa)), m)
    col = c0[q] + (np.arange(len(q)) - np.repeat(np.cumsum(m) - m, m))
    ca, cb = np.maximum(xa[q], col), np.minimum(xb[q], col + 1)
    span = xb[q] - xa[q]
    frac = np.where(span > 0, (cb - ca) / np.where(span > 0, span, 1.0), 1.0)
    dh = height[q] * frac
    xm = 0.5 * (ca + cb)
    rows = np.clip(row[q], 0, h - 1) * acc_w
    col = np.clip(col, 0, w)
    acc = np.bincount(rows + col, dh * (col + 1 - xm), minlength=h * acc_w)
    acc += np.bincount(rows + col + 1, dh * (xm - col), minlength=h * acc_w)
    cov = np.cumsum(acc.reshape(h, acc_w), axis=1)[:, :w]
    return np.clip(cov, 0.0, 1.0).astype(np.float32)


def boundary_rings(polygons) -> list[np.ndarray]:
    """The boundary rings (closed (N, 2) arrays, first point repeated) of gdstk polygons
    that do not overlap: the cuts gdstk draws to join holes to their outline (an edge
    and its reverse) cancel, and the remaining edges are chained into rings."""
    out_edges: dict[tuple, list[tuple]] = {}
    count: dict[tuple[tuple, tuple], int] = {}
    for poly in polygons:
        pts = [tuple(p) for p in np.asarray(getattr(poly, "points", poly), np.float64).tolist()]
        for a, b in zip(pts, pts[1:] + pts[:1]):
            if a == b:
                continue
            if count.get((b, a), 0) > 0:  # a cut: the reverse edge was seen
                count[(b, a)] -= 1
            else:
                count[(a, b)] = count.get((a, b), 0) + 1
    for (a, b), k in count.items():
        if k > 0:
            out_edges.setdefault(a, []).extend([b] * k)
    rings = []
    while out_edges:
        start = next(iter(out_edges))
        ring, cur = [start], start
        while True:
            nxt = out_edges[cur].pop()
            if not out_edges[cur]:
                del out_edges[cur]
            if nxt == start:
                break
            ring.append(nxt)
            cur = nxt
            if cur not in out_edges:  # open chain (cannot happen for closed input): stop
                break
        if len(ring) >= 3:
            rings.append(np.array(ring + ring[:1], np.float64))
    return rings


@dataclass(frozen=True)
class Tile:
    """One tile of a clip: its id, px offset in the clip (row, col), shape and window (um)."""

    id: str
    row: int
    col: int
    height: int
    width: int
    window: tuple[float, float, float, float]

    def describe(self) -> dict:
        return {"id": self.id, "row": self.row, "col": self.col, "height": self.height, "width": self.width,
                "window_um": list(self.window)}


@dataclass
class Raster:
    """A rasterised tile: label mask, exact coverage per class, contours (row, col) px."""

    tile: Tile
    mask: np.ndarray
    coverage: dict[str, np.ndarray]
    contours: list[np.ndarray]


@dataclass
class Clip:
    """A checked plan: what `plan_clip` read and how it cuts the window into tiles."""

    layout: Layout
    layer_map: dict[tuple[int, int], str]
    window: tuple[float, float, float, float]
    requested_window: tuple[float, float, float, float]
    pixel_nm: float
    tile: int | None
    shape: tuple[int, int]
    tiles: list[Tile]
    classes: dict[str, list] = field(default_factory=dict)
    _boxes: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def precision_um(self) -> float:
        return min(1e-6, self.pixel_nm * 1e-6)

    def _select(self, cls: str, win) -> list:
        """The polygons of class `cls` whose bounding boxes overlap the window `win`."""
        polys = self.classes.get(cls, [])
        if not polys:
            return []
        boxes = self._boxes.get(cls)
        if boxes is None:
            boxes = self._boxes[cls] = np.array([np.ravel(p.bounding_box()) for p in polys], np.float64)
        x0, y0, x1, y1 = win
        hit = (boxes[:, 0] < x1) & (boxes[:, 2] > x0) & (boxes[:, 1] < y1) & (boxes[:, 3] > y0)
        return [polys[i] for i in np.flatnonzero(hit)]

    def _region(self, cls: str, rect, win) -> list:
        import gdstk

        sel = self._select(cls, win)
        return gdstk.boolean(sel, rect, "and", precision=self.precision_um) if sel else []

    def rasterize(self, tile: Tile | int | None = None) -> Raster:
        """The label mask, coverage and contours of one tile (default: the first, which is
        the whole window when the clip is not tiled)."""
        import gdstk

        t = self.tiles[0] if tile is None else (self.tiles[tile] if isinstance(tile, int) else tile)
        x0, y0, x1, y1 = t.window
        rect = gdstk.rectangle((x0, y0), (x1, y1))
        k = 1000.0 / self.pixel_nm
        pat = self._region("pattern", rect, t.window)
        sel = self._select("hole", t.window) if pat else []
        holes = gdstk.boolean(sel, pat, "and", precision=self.precision_um) if sel else []
        defects = self._region("defect", rect, t.window)

        def rings(polys):  # um (gdstk polygons or arrays) -> (x, y) px of the tile, y down
            pts = [np.asarray(getattr(p, "points", p), np.float64) for p in polys]
            return [np.column_stack([(a[:, 0] - x0) * k, (y1 - a[:, 1]) * k]) for a in pts]

        shape = (t.height, t.width)
        cov = {"pattern": polygon_coverage(rings(pat), shape), "hole": polygon_coverage(rings(holes), shape),
               "defect": polygon_coverage(rings(defects), shape)}
        mask = np.zeros(shape, np.uint8)
        mask[cov["pattern"] >= 0.5] = labels.PATTERN
        mask[cov["hole"] >= 0.5] = labels.HOLE
        mask[cov["defect"] >= 0.5] = labels.DEFECT
        region = gdstk.boolean(pat, holes, "not", precision=self.precision_um) if holes else pat
        contours = [(r[:, ::-1] - 0.5).astype(np.float32) for r in rings(boundary_rings(region))]
        return Raster(t, mask, cov, contours)

    def stitch(self, arrays: Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> np.ndarray:
        """Tiles' arrays (in `tiles` order, or {tile id: array}) -> one array of `shape`."""
        if isinstance(arrays, Mapping):
            arrays = [arrays[t.id] for t in self.tiles]
        if len(arrays) != len(self.tiles):
            raise ValueError(f"stitch: {len(arrays)} arrays for {len(self.tiles)} tiles")
        out = np.zeros(self.shape, np.asarray(arrays[0]).dtype)
        for t, a in zip(self.tiles, arrays):
            out[t.row:t.row + t.height, t.col:t.col + t.width] = a
        return out

    def describe(self) -> dict:
        """What dataset.json records: file, cell, layer map, window, pixel size, tiles."""
        return {"path": str(self.layout.path), "sha256": self.layout.sha256, "cell": self.layout.cell,
                "layers": format_layer_map(self.layer_map),
                "layer_map": [{"layer": k[0], "datatype": k[1], "class": v, "class_id": CLASSES[v]}
                              for k, v in sorted(self.layer_map.items())],
                "window_um": list(self.window), "requested_window_um": list(self.requested_window),
                "pixel_nm": self.pixel_nm, "tile": self.tile, "shape_px": list(self.shape),
                "origin": "pixel (0, 0) is the top-left corner (x0, y1) of the window; rows go down (-y)",
                "tiles": [t.describe() for t in self.tiles]}

    def identity(self) -> dict:
        return {"gds_sha256": self.layout.sha256, "cell": self.layout.cell, "layers": format_layer_map(self.layer_map),
                "window_um": list(self.window), "pixel_nm": self.pixel_nm, "tile": self.tile}


def plan_clip(path, *, pixel_nm: float | None, cell: str | None = None, layers: str | Mapping = DEFAULT_LAYERS,
              window=None, tile: int | None = None, max_pixels: int | None = None) -> Clip:
    """Read and check everything (module docstring) and plan the tiles; writes nothing.
    `max_pixels`: the pixel limit (None: `semlab.io.max_image_pixels()`; 0: none)."""
    lmap = parse_layer_map(layers)
    if pixel_nm is None:
        raise ValueError("--pixel-nm is required with --gds: the pixel size in nm of the rendered images")
    if not (isinstance(pixel_nm, (int, float)) and math.isfinite(pixel_nm) and pixel_nm > 0):
        raise ValueError(f"--pixel-nm {pixel_nm!r}: a pixel size must be a positive number of nm")
    if tile is not None and (int(tile) != tile or tile < 1):
        raise ValueError(f"--tile {tile!r}: a tile side must be a positive whole number of px")
    win = parse_window(window) if window is not None else None
    lay = read_layout(path, cell)
    p = lay.path
    found = set(lay.polygons)
    if not found & set(lmap):
        raise GdsError(f"{p}: cell {lay.cell} has no polygons on the mapped layers ({_layers_text(lmap)}); "
                       f"layers found: {_layers_text(found)}")
    if found - set(lmap):
        warnings.warn(f"{p}: layers {_layers_text(found - set(lmap))} of cell {lay.cell} are not in the layer map "
                      f"{format_layer_map(lmap)} and are ignored (layers found: {_layers_text(found)})",
                      io.SemlabWarning, stacklevel=2)
    bx0, by0, bx1, by1 = lay.bbox
    if win is None:
        win = lay.bbox
    elif win[2] <= bx0 or win[0] >= bx1 or win[3] <= by0 or win[1] >= by1:
        raise GdsError(f"{p}: window {','.join(f'{v:g}' for v in win)} um lies outside the layout of cell "
                       f"{lay.cell} (bounding box {bx0:g},{by0:g},{bx1:g},{by1:g} um)")
    px_um = float(pixel_nm) / 1000.0
    w = max(1, math.ceil((win[2] - win[0]) / px_um - 1e-6))
    h = max(1, math.ceil((win[3] - win[1]) / px_um - 1e-6))
    if tile:
        w, h = math.ceil(w / tile) * tile, math.ceil(h / tile) * tile
    limit = io.max_image_pixels(max_pixels)
    if limit is not None and w * h > limit:
        raise GdsError(f"{p}: window {','.join(f'{v:g}' for v in win)} um at {pixel_nm:g} nm/px is {w}x{h} px = "
                       f"{w * h / 1e6:.1f} Mpx, over the limit of {limit / 1e6:.1f} Mpx; choose a smaller window "
                       "or larger pixels, or raise $SEMLAB_MAX_IMAGE_PIXELS")
    x0, y1 = win[0], win[3]
    grown = (x0, y1 - h * px_um, x0 + w * px_um, y1)
    th, tw = (tile, tile) if tile else (h, w)
    tiles = [Tile(f"r{r:06d}_c{c:06d}", r, c, th, tw,
                  (x0 + c * px_um, y1 - (r + th) * px_um, x0 + (c + tw) * px_um, y1 - r * px_um))
             for r in range(0, h, th) for c in range(0, w, tw)]
    classes: dict[str, list] = {}
    for key, cls in lmap.items():
        classes.setdefault(cls, []).extend(lay.polygons.get(key, []))
    clip = Clip(lay, lmap, grown, tuple(win), float(pixel_nm), int(tile) if tile else None, (h, w), tiles, classes)
    _warn_stray_holes(clip)
    return clip


def _warn_stray_holes(clip: Clip) -> None:
    """Hole polygons outside the pattern are background: say so (their area)."""
    import gdstk

    if not clip.classes.get("hole"):
        return
    rect = gdstk.rectangle(clip.window[:2], clip.window[2:])
    holes = gdstk.boolean(clip._select("hole", clip.window), rect, "and", precision=clip.precision_um)
    if not holes:
        return
    stray = gdstk.boolean(holes, clip._select("pattern", clip.window), "not", precision=clip.precision_um)
    area = sum(p.area() for p in stray)
    if area > 1e-9:
        warnings.warn(f"{clip.layout.path}: {area * 1e6:.6g} nm^2 of hole polygons lie outside the pattern and "
                      "are background (a hole is a hole only inside a pattern)", io.SemlabWarning, stacklevel=3)


# ------------------------------------------------------------------ demo layout


def demo_clip(folder=None, name: str = "demo_clip.gds", repeat: int = 1) -> Path:
    """Write a small layout clip (within 0,0,1.024,1.024 um; cell DEMO) with gdstk into `folder`
    (default `data/gds/`): a pad with a 3 x 3 array of contact holes, a rotated (90
    degrees) array of line cells, a line cell rotated by 45 degrees, a bent wire (a
    path 40 nm wide) and an L-shaped polygon; layers 1/0 pattern, 2/0 hole. With
    `repeat` > 1 the top cell DEMO_ARRAY holds a `repeat` x `repeat` array of DEMO at a
    1.024 um pitch (a large layout for `semlab bench gds`)."""
    import os
    import tempfile

    import gdstk

    from semlab.paths import data_dir

    lib = gdstk.Library("SEMLAB_DEMO", unit=1e-6, precision=1e-9)
    line = lib.new_cell("LINE")
    line.add(gdstk.rectangle((0, 0), (0.36, 0.05), layer=1))
    via = lib.new_cell("VIA")
    via.add(gdstk.rectangle((0, 0), (0.05, 0.05), layer=2))
    pad = lib.new_cell("PAD")
    pad.add(gdstk.rectangle((0, 0), (0.34, 0.34), layer=1))
    pad.add(gdstk.Reference(via, (0.045, 0.045), columns=3, rows=3, spacing=(0.1, 0.1)))
    top = lib.new_cell("DEMO")
    top.add(gdstk.Reference(pad, (0.06, 0.06)))
    # gdstk turns an array's lattice with its reference: (0, -0.11) rotated by 90 degrees steps along +x
    top.add(gdstk.Reference(line, (0.56, 0.06), rotation=math.pi / 2, columns=1, rows=4, spacing=(0, -0.11)))
    top.add(gdstk.Reference(line, (0.523, 0.497), rotation=math.pi / 4))
    top.add(gdstk.FlexPath([(0.06, 0.52), (0.4, 0.52), (0.4, 0.96)], 0.04, layer=1))
    top.add(gdstk.Polygon([(0.6, 0.9), (0.98, 0.9), (0.98, 0.6), (0.93, 0.6), (0.93, 0.85), (0.6, 0.85)], layer=1))
    if repeat > 1:
        lib.new_cell("DEMO_ARRAY").add(gdstk.Reference(top, (0, 0), columns=repeat, rows=repeat,
                                                       spacing=(1.024, 1.024)))
    out = Path(folder) if folder else data_dir() / "gds"
    with tempfile.TemporaryDirectory() as tmp:
        lib.write_gds(os.path.join(tmp, "demo.gds"))
        data = Path(tmp, "demo.gds").read_bytes()
    return io.write_bytes_atomic(out / name, data)


# ------------------------------------------------------------- rendering a clip


def _classes_info(clip: Clip) -> list[dict]:
    used = {labels.BACKGROUND} | {CLASSES[v] for v in clip.layer_map.values()}
    return [{"id": c.id, "name": c.name, "meaning": c.meaning, "rgb": list(c.rgb)} for c in labels.CLASSES
            if c.id in used]


def _contours_doc(contours: list[np.ndarray]) -> dict:
    """The simulator's contour file format (`semlab.data.datasets.DatasetWriter`)."""
    return {"units": "px", "order": "row,col", "contours": [np.round(c, 3).tolist() for c in contours]}


def simulate_gds(out, clip: Clip, *, preset: str = "ic-metal", seed: int = 0,
                 splits: dict[str, float] | None = None, progress: bool = True, **overrides) -> Path:
    """A paired dataset folder (`semlab simulate --gds`): one item per tile, the image
    rendered by the simulator from the tile's label mask (`render_mask`, imaging
    parameters drawn from `preset` for (seed, tile index), `overrides` fixed), the mask,
    the noise-free image and the layout's exact edges as contours. dataset.json records
    the layer map and the clip (`Clip.describe`: file, cell, window, tiles); items'
    params hold their tile. Resumable like `simulate_dataset`."""
    from tqdm.auto import tqdm

    import semlab
    from semlab.data.datasets import DEFAULT_SPLITS, DatasetWriter, assign_split
    from semlab.data.simulate import SIMULATOR_VERSION, get_preset, render_mask

    pre = get_preset(preset)
    unknown = set(overrides) - set(pre.params)
    if unknown:
        raise KeyError(f"unknown simulator parameter(s) {sorted(unknown)}; valid: {sorted(pre.params)}")
    splits = dict(splits or DEFAULT_SPLITS)
    identity = {"generator": "semlab.simulate-gds", "simulator_version": SIMULATOR_VERSION, **clip.identity(),
                "preset": preset, "seed": seed, "splits": splits, "overrides": overrides}
    src = f"{clip.layout.path.name}:{clip.layout.cell}"
    info = {"name": Path(out).name, "pixel_size_nm": clip.pixel_nm, "classes": _classes_info(clip),
            "description": f"SEM images rendered by the simulator (preset {preset}) from cell {clip.layout.cell} "
                           f"of {clip.layout.path}", "layers": format_layer_map(clip.layer_map), "gds": clip.describe(),
            "provenance": f"semlab {semlab.__version__} simulator, preset {preset}, seed {seed}, layout {src}"}
    w = DatasetWriter(out, kind="simulated-gds", identity=identity, info=info)
    try:
        for i, t in enumerate(tqdm(clip.tiles, desc=f"simulate {src}", disable=not progress, unit="tile")):
            if w.done(t.id):
                continue
            ras = clip.rasterize(t)
            r = render_mask(ras.mask, preset, (seed, i), pixel_nm=clip.pixel_nm, **overrides)
            w.add(t.id, r.image, split=assign_split(seed, t.id, splits), group=t.id, source=f"gds:{src}:{t.id}",
                  mask=r.mask, clean=r.clean, contours=ras.contours, params={**r.params, "tile": t.describe()})
    except BaseException:
        w.abort()
        raise
    return w.close()


def generate_gds(checkpoint, out, clip: Clip, *, seed: int = 0, progress: bool = True, overwrite: bool = False):
    """`semlab generate --gds`: the clip's tiles through a trained generator. `out` gets
    masks/<tile>.png (the rasterised layout), contours/<tile>.json (its exact edges),
    images/<tile>.png with images/generate.json (`generate_folder` on masks/, so
    `generate --masks OUT/masks` gives the same images) and dataset.json (layer map,
    clip, tiles). Tiles must be square powers of two (`--tile`). A folder holding
    anything else, or another clip, is refused unless `overwrite`. Returns
    `generate_folder`'s result."""
    import json

    import semlab
    from semlab.train.generate import generate_folder

    ck, out = Path(checkpoint), Path(out)
    if not ck.is_file():
        raise FileNotFoundError(f"{ck}: no such generator checkpoint")
    h, w = clip.tiles[0].height, clip.tiles[0].width
    if h != w or h & (h - 1):
        raise GdsError(f"{clip.layout.path}: the clip is cut into {w}x{h} px tiles; a generator needs square "
                       "power-of-two tiles: pass --tile 256 (or another power of two)")
    identity = {"generator": "semlab.generate-gds", **clip.identity()}
    meta = out / "dataset.json"
    old = None
    if meta.is_file():
        try:
            old = json.loads(meta.read_text())
        except ValueError as e:
            raise ValueError(f"{meta}: unreadable ({e}); remove it or pass --overwrite") from None
    if not overwrite:
        if old is None and out.is_dir() and any(out.iterdir()):
            raise ValueError(f"{out} exists, is not empty and holds no `generate --gds` output (no dataset.json); "
                             "choose another --out, or pass --overwrite")
        if old is not None and old.get("identity") != identity:
            raise ValueError(f"{out} holds the rendering of another layout clip ({old.get('identity')}); "
                             "choose another --out, or pass --overwrite")
    if old is not None and old.get("identity") != identity:  # --overwrite: the old clip's tiles go
        new = {t.id for t in clip.tiles}
        for t in (old.get("gds") or {}).get("tiles", []):
            tid = str(t.get("id", ""))
            if tid in new or not re.fullmatch(r"r\d{6}_c\d{6}", tid):
                continue
            for sub, suffix in (("masks", ".png"), ("contours", ".json"), ("images", ".png")):
                io.inside(out, sub, tid + suffix).unlink(missing_ok=True)
    for t in clip.tiles:
        ras = clip.rasterize(t)
        io.write_mask(io.inside(out, "masks", f"{t.id}.png"), ras.mask)
        io.write_json_atomic(io.inside(out, "contours", f"{t.id}.json"), _contours_doc(ras.contours), indent=None)
    io.write_json_atomic(meta, {"kind": "generated-gds", "identity": identity, "semlab_version": semlab.__version__,
                                "pixel_size_nm": clip.pixel_nm, "classes": _classes_info(clip),
                                "layers": format_layer_map(clip.layer_map), "gds": clip.describe(),
                                "checkpoint": str(ck), "seed": int(seed)})
    return generate_folder(ck, out / "masks", out / "images", seed=seed, progress=progress, overwrite=overwrite)


def render_with_generator(generator, mask: np.ndarray, seed: int = 0):
    """A label mask through a trained generator file (`semlab.runs.find_generator`'s
    result); a `semlab.runs.Missing` (falsy) is handed back as is, so a notebook can
    show what is there and say why the rest is not."""
    if not generator:
        return generator
    from semlab.train.generate import Generator

    return Generator(generator)(mask, seed=seed)
