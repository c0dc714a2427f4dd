"""Export contours for OPC tools: CSV, JSON and GDSII.

What can be exported (`ContourSet`):

- a `semlab.contours.classical.ClassicalContours` result (its pattern structures; pass
  `labels=None` to `structures_of` for holes too), or any sequence of objects with
  `id`, `label` and `contours` attributes (e.g. its `structures`);
- a mapping {structure id: [contours]} (outer boundary first, then its holes);
- a flat sequence of contours, grouped into structures by nesting
  (`semlab.contours.extract.group_structures`).

Contours are (row, col) px arrays (see `semlab.contours.extract`). Coordinates in the
files:

- **CSV / JSON**: x = column, y = row, origin at the centre of the top-left pixel, y
  pointing down (image coordinates), multiplied by the pixel size when it is known
  (unit "nm"), else in px (unit "px"). Polygons are listed open: the closing point is
  not repeated. CSV rows: structure, label, contour (0 = outer boundary, 1.. holes),
  point, x, y, unit.
- **GDSII** (gdstk): user unit 1 nm, database unit `precision_nm` (default 0.001 nm =
  1 pm), so coordinates keep sub-pixel precision. x = column x pixel size, y = -row x
  pixel size: the image's y axis points down and a layout's up, so the flip keeps the
  layout unmirrored (what looks counter-clockwise on screen is counter-clockwise in
  the layout; the origin is the top-left pixel centre, so the image frame spans
  -0.5 <= x / pixel <= W - 0.5 and -(H - 0.5) <= y / pixel <= 0.5). One
  cell per image; each structure is one polygon on `layer`/`datatype`, holes cut out by
  a boolean difference (GDSII polygons have no holes: gdstk joins each hole to the
  outline by a cut, as layout tools do).

Every writer refuses to replace an existing file unless `overwrite=True`, and writes
atomically (`semlab.io`): a crash never leaves a half-written file.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from semlab import labels as L
from semlab.contours.extract import group_structures, open_contour, orient_contours

__all__ = [
    "ContourFile",
    "structures_of",
    "write_contours_csv",
    "read_contours_csv",
    "write_contours_json",
    "read_contours_json",
    "write_contours_gds",
    "read_contours_gds",
    "CSV_FIELDS",
]

CSV_FIELDS = ("structure", "label", "contour", "point", "x", "y", "unit")
JSON_FORMAT = "semlab-contours"
JSON_VERSION = 1


@dataclass
class ContourFile:
    """Contours read back from a CSV or JSON export: {structure id: [(row, col) arrays]}
    in `unit` (outer boundary first), the structures' labels and the file's metadata."""

    structures: dict[int, list[np.ndarray]]
    labels: dict[int, int]
    unit: str
    pixel_nm: float | None = None
    meta: dict = field(default_factory=dict)

    def contours_px(self) -> dict[int, list[np.ndarray]]:
        """The contours in px (nm files need their pixel size)."""
        if self.unit == "px":
            return self.structures
        if not self.pixel_nm:
            raise ValueError("contours are in nm and the file records no pixel size")
        return {k: [c / self.pixel_nm for c in v] for k, v in self.structures.items()}


# --------------------------------------------------------------------------- inputs


def structures_of(contours, labels: Sequence[int] | None = (L.PATTERN,)) -> list[tuple[int, int, list[np.ndarray]]]:
    """Normalise any `ContourSet` (module docstring) to [(id, label, [contours])], the
    contours oriented (outer counter-clockwise as displayed, holes clockwise). For
    results and structure lists, `labels` selects the classes (None: all)."""
    if hasattr(contours, "structures") and not isinstance(contours, Mapping):
        contours = contours.structures
    if isinstance(contours, Mapping):
        return [(int(k), L.PATTERN, orient_contours(list(v))) for k, v in contours.items()]
    seq = list(contours)
    if seq and all(hasattr(s, "contours") and hasattr(s, "id") for s in seq):
        return [(int(s.id), int(getattr(s, "label", L.PATTERN)), orient_contours(list(s.contours)))
                for s in seq if labels is None or int(getattr(s, "label", L.PATTERN)) in labels]
    arrays = [np.asarray(c, np.float64) for c in seq]
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[1] != 2:
            raise ValueError(f"contour {i} has shape {a.shape}; expected (N, 2) (row, col) points")
    return [(i + 1, L.PATTERN, g) for i, g in enumerate(group_structures(arrays))]


def _target(path, overwrite: bool) -> Path:
    p = Path(path)
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p}: file exists; pass overwrite=True to replace it")
    if p.exists() and p.is_dir():
        raise IsADirectoryError(f"{p}: is a folder, not a file")
    return p


def _scale(pixel_nm: float | None) -> tuple[float, str]:
    if pixel_nm is None:
        return 1.0, "px"
    if not (isinstance(pixel_nm, (int, float)) and math.isfinite(pixel_nm) and pixel_nm > 0):
        raise ValueError(f"pixel size must be a positive number of nm, got {pixel_nm!r}")
    return float(pixel_nm), "nm"


# ------------------------------------------------------------------------------ CSV


def write_contours_csv(path, contours, *, pixel_nm: float | None = None, overwrite: bool = False,
                       labels: Sequence[int] | None = (L.PATTERN,)) -> Path:
    """One row per contour point: structure, label, contour, point, x, y, unit (x, y
    in nm with `pixel_nm`, else px; see the module docstring). Returns the path."""
    from semlab.io import write_csv_atomic

    p = _target(path, overwrite)
    k, unit = _scale(pixel_nm)
    rows = []
    for sid, lab, cs in structures_of(contours, labels):
        for ci, c in enumerate(cs):
            for pi, (r, q) in enumerate(open_contour(c)):
                rows.append({"structure": sid, "label": lab, "contour": ci, "point": pi,
                             "x": repr(float(q) * k), "y": repr(float(r) * k), "unit": unit})
    return write_csv_atomic(p, rows, CSV_FIELDS)


def read_contours_csv(path, *, pixel_nm: float | None = None) -> ContourFile:
    """Read a `write_contours_csv` file back: (row, col) arrays in the file's unit
    (`pixel_nm` is recorded for `contours_px`; CSV files do not store it)."""
    from semlab.io import read_csv

    p = Path(path)
    rows = read_csv(p)
    if rows and set(CSV_FIELDS) - set(rows[0]):
        raise ValueError(f"{p}: not a contour CSV; missing columns {sorted(set(CSV_FIELDS) - set(rows[0]))}")
    units = {r["unit"] for r in rows}
    if len(units) > 1:
        raise ValueError(f"{p}: mixed units {sorted(units)}")
    pts: dict[tuple[int, int], list[tuple[int, float, float]]] = {}
    labs: dict[int, int] = {}
    for r in rows:
        key = (int(r["structure"]), int(r["contour"]))
        pts.setdefault(key, []).append((int(r["point"]), float(r["y"]), float(r["x"])))
        labs[key[0]] = int(r["label"])
    out: dict[int, list[np.ndarray]] = {}
    for (sid, ci) in sorted(pts):
        arr = np.array([(y, x) for _, y, x in sorted(pts[(sid, ci)])], np.float64)
        out.setdefault(sid, []).append(arr)
    return ContourFile(out, labs, units.pop() if units else "px", pixel_nm, {"path": str(p)})


# ----------------------------------------------------------------------------- JSON


def write_contours_json(path, contours, *, pixel_nm: float | None = None, image_path=None,
                        image_sha256: str | None = None, image_shape: tuple[int, int] | None = None,
                        parameters: Mapping[str, Any] | None = None, overwrite: bool = False,
                        labels: Sequence[int] | None = (L.PATTERN,)) -> Path:
    """A self-describing JSON document: format and version, unit, pixel size, the
    coordinate convention, the source image (path, SHA-256 -- computed from
    `image_path` unless given -- and shape), the parameters that made the contours
    (e.g. `ContourSettings.describe()`), and per structure its id, label and contours
    as [[x, y], ...] lists (outer boundary first)."""
    from semlab.io import sha256_file, write_json_atomic

    p = _target(path, overwrite)
    k, unit = _scale(pixel_nm)
    if image_sha256 is None and image_path is not None:
        image_sha256 = sha256_file(image_path)
    structs = []
    for sid, lab, cs in structures_of(contours, labels):
        name = L.CLASSES[lab].name if 0 <= lab < len(L.CLASSES) else str(lab)
        structs.append({"id": sid, "label": lab, "label_name": name,
                        "contours": [(open_contour(c)[:, ::-1] * k).tolist() for c in cs]})
    doc = {
        "format": JSON_FORMAT, "version": JSON_VERSION, "unit": unit,
        "pixel_nm": float(pixel_nm) if pixel_nm else None,
        "coordinates": "x = column, y = row (pointing down), origin at the centre of the top-left pixel; "
                       "polygons closed implicitly; first contour of a structure is its outer boundary",
        "image": {"path": str(image_path) if image_path is not None else None, "sha256": image_sha256,
                  "shape": list(image_shape) if image_shape is not None else None},
        "parameters": dict(parameters or {}),
        "structures": structs,
    }
    return write_json_atomic(p, doc)


def read_contours_json(path) -> ContourFile:
    """Read a `write_contours_json` file back ((row, col) arrays in the file's unit)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from None
    if doc.get("format") != JSON_FORMAT:
        raise ValueError(f"{p}: not a semlab contour file (format {doc.get('format')!r})")
    out, labs = {}, {}
    for s in doc["structures"]:
        out[int(s["id"])] = [np.asarray(c, np.float64).reshape(-1, 2)[:, ::-1] for c in s["contours"]]
        labs[int(s["id"])] = int(s["label"])
    meta = {k: v for k, v in doc.items() if k != "structures"}
    return ContourFile(out, labs, doc["unit"], doc.get("pixel_nm"), meta)


# ---------------------------------------------------------------------------- GDSII


def _cell_name(name: str, used: set[str]) -> str:
    """GDSII-safe cell name: ASCII letters, digits, _ ? $ (at most 32 characters), unique."""
    base = re.sub(r"[^A-Za-z0-9_?$]", "_", str(name))[:32] or "IMAGE"
    out, k = base, 1
    while out in used:
        suffix = f"_{k}"
        out = base[:32 - len(suffix)] + suffix
        k += 1
    used.add(out)
    return out


def _polygons(structs, k: float, layer: int, datatype: int, precision_nm: float):
    import gdstk

    polys = []
    for _, _, cs in structs:
        if not cs:
            continue
        pts = [np.column_stack([open_contour(c)[:, 1] * k, -open_contour(c)[:, 0] * k]) for c in cs]
        outer, holes = pts[0], pts[1:]
        if len(outer) < 3:
            continue
        if holes:
            polys += gdstk.boolean(gdstk.Polygon(outer), [gdstk.Polygon(h) for h in holes if len(h) >= 3], "not",
                                   precision=precision_nm, layer=layer, datatype=datatype)
        else:
            polys.append(gdstk.Polygon(outer, layer=layer, datatype=datatype))
    return polys


def write_contours_gds(path, contours, *, pixel_nm: float, cell_name: str = "IMAGE", layer: int = 1,
                       datatype: int = 0, precision_nm: float = 1e-3, library_name: str = "SEMLAB",
                       overwrite: bool = False, labels: Sequence[int] | None = (L.PATTERN,)) -> Path:
    """Write contours as GDSII polygons (see the module docstring for units and axes).

    `contours` is one image's `ContourSet` (one cell named `cell_name`) or a mapping
    {cell name: ContourSet} for several images (one cell each; names are made
    GDSII-safe and unique). The pixel size is required: a layout has physical units."""
    import os
    import tempfile

    import gdstk

    from semlab.io import write_bytes_atomic

    p = _target(path, overwrite)
    k, unit = _scale(pixel_nm)
    if unit != "nm":
        raise ValueError("write_contours_gds needs the pixel size (pixel_nm): GDSII coordinates are physical")
    if not precision_nm > 0:
        raise ValueError(f"precision_nm must be positive, got {precision_nm!r}")
    if isinstance(contours, Mapping) and contours and all(isinstance(key, str) for key in contours):
        cells = dict(contours)
    else:
        cells = {cell_name: contours}
    lib = gdstk.Library(name=library_name, unit=1e-9, precision=precision_nm * 1e-9)
    used: set[str] = set()
    for name, cs in cells.items():
        cell = lib.new_cell(_cell_name(name, used))
        for poly in _polygons(structures_of(cs, labels), k, layer, datatype, precision_nm):
            cell.add(poly)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = os.path.join(tmp, "out.gds")
        lib.write_gds(tmp_path)
        data = Path(tmp_path).read_bytes()
    return write_bytes_atomic(p, data)


def read_contours_gds(path, *, pixel_nm: float | None = None, layer: int | None = None,
                      datatype: int | None = None) -> dict[str, list[np.ndarray]]:
    """Read polygons back from a GDSII file: {cell name: [(row, col) arrays]} with
    row = -y, col = x in nm, or in px when `pixel_nm` is given (the inverse of
    `write_contours_gds`'s mapping). Optional layer/datatype filters."""
    import gdstk

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such GDSII file")
    lib = gdstk.read_gds(str(p), unit=1e-9)
    k = float(pixel_nm) if pixel_nm else 1.0
    out = {}
    for cell in lib.cells:
        polys = []
        for poly in cell.polygons:
            if layer is not None and poly.layer != layer:
                continue
            if datatype is not None and poly.datatype != datatype:
                continue
            xy = np.asarray(poly.points, np.float64)
            polys.append(np.column_stack([-xy[:, 1], xy[:, 0]]) / k)
        out[cell.name] = polys
    return out
