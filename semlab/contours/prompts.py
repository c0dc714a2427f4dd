"""Automatic SAM2 prompts (one box and a few points per structure) from a mask.

SegSEM prompts SAM2 with the structures a cheap first guess already found: a classical
pre-segmentation of the image, or the layout / ground-truth mask when one exists. Each
connected component of a class becomes one *structure* and gets

- a **box**: the component's bounding box grown by `margin_px` and clipped to the frame
  (a box slightly larger than the object tells SAM2 where the object is without cutting
  its edges, which a pre-segmentation may have placed a pixel or two too far in);
- a **positive point** at the maximum of the component's distance transform: the pixel
  deepest inside it, the one least likely to be outside the true structure when the
  pre-segmentation's edges are off (ties, e.g. along the ridge of a line, go to the
  pixel nearest the component's centroid, so a line gets its point mid-length);
- optionally **negative points**: the pixels of the box farthest from the structure
  (one per corner region, chosen greedily), which tell SAM2 not to grow into the
  neighbouring space or a neighbouring structure the box also covers.

Coordinates follow SAM2's own convention for the image handed to the predictor:
`x` is the column index, `y` the row index, an integer is a pixel centre, and a box
`(x0, y0, x1, y1)` holds the first and last pixel (inclusive, as
`sam2.utils.amg.batched_mask_to_box` does). The predictor rescales them to the model's
512- or 1024-px input, so prompts never depend on the model size.

**Structures cut by the frame** (touching the image border) are kept by default and
flagged (`cut` lists the sides). Their positive point is placed with the frame counted
as a boundary, so it lies inside both the structure and the image rather than on the
edge where the structure leaves the field of view; `include_cut=False` drops them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "Prompt",
    "label_structures",
    "prompts_from_mask",
    "prompts_from_structures",
    "prompts_from_polygons",
    "transform_prompt",
    "transform_prompts",
    "transform_array",
    "GEOMETRIC_OPS",
    "prompt_arrays",
]

SIDES = ("top", "bottom", "left", "right")


@dataclass(frozen=True)
class Prompt:
    """The prompts for one structure (SAM2 pixel coordinates, see the module docstring).

    `structure_id` indexes the instance map the prompt was made from (1, 2, ... in
    row-major order of the components' first pixels); `label` is the canonical class
    (1 pattern, 2 hole, 3 defect). `points` is (K, 2) float32 (x, y) and
    `point_labels` (K,) int32: 1 positive, 0 negative. `shape` is the image (H, W) the
    coordinates refer to."""

    structure_id: int
    label: int
    box: tuple[float, float, float, float]
    points: np.ndarray
    point_labels: np.ndarray
    shape: tuple[int, int]
    area: int = 0
    cut: tuple[str, ...] = ()

    @property
    def is_cut(self) -> bool:
        """True if the structure touches the frame (it continues outside the image)."""
        return bool(self.cut)

    def as_dict(self) -> dict:
        """Plain types, for JSON and tables."""
        return {"structure_id": int(self.structure_id), "label": int(self.label),
                "box": [float(v) for v in self.box],
                "points": np.asarray(self.points, float).tolist(),
                "point_labels": np.asarray(self.point_labels, int).tolist(),
                "shape": list(self.shape), "area": int(self.area), "cut": list(self.cut)}

    def __eq__(self, other) -> bool:  # numpy fields make the generated __eq__ ambiguous
        if not isinstance(other, Prompt):
            return NotImplemented
        return (self.structure_id == other.structure_id and self.label == other.label
                and tuple(self.box) == tuple(other.box) and tuple(self.shape) == tuple(other.shape)
                and self.area == other.area and tuple(self.cut) == tuple(other.cut)
                and np.array_equal(self.points, other.points)
                and np.array_equal(self.point_labels, other.point_labels))


def _connectivity_structure(connectivity: int) -> np.ndarray:
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 (4-neighbours) or 2 (8-neighbours), got {connectivity}")
    return ndimage.generate_binary_structure(2, connectivity)


def label_structures(mask: np.ndarray, classes: Sequence[int] | None = None, *, min_area: int = 1,
                     connectivity: int = 1) -> tuple[np.ndarray, dict[int, int]]:
    """Instance map of a label mask: every connected component of each class in
    `classes` (default: every non-zero class present) gets its own id 1..N.

    Returns `(instances, class_of)`: an int32 (H, W) map (0 where no structure) and the
    class of each id. Components smaller than `min_area` px are dropped (specks of a
    noisy pre-segmentation are not structures worth a SAM2 query). Ids are assigned in
    row-major order of each component's first pixel, across classes, so the same mask
    always gives the same ids. `connectivity` 1 (default) joins edge neighbours only: a
    one-pixel diagonal touch is not a physical connection between two lines."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    if m.dtype == bool:
        m = m.astype(np.int32)
    if not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"mask must hold integer labels (or bool), got dtype {m.dtype}")
    st = _connectivity_structure(connectivity)
    if classes is None:
        classes = [int(c) for c in np.unique(m) if c != 0]
    comps: list[tuple[int, int, np.ndarray]] = []  # (first flat index, class, flat pixel indices)
    for c in classes:
        lab, n = ndimage.label(m == c, structure=st)
        if n == 0:
            continue
        flat = lab.ravel()
        order = np.argsort(flat, kind="stable")
        counts = np.bincount(flat, minlength=n + 1)
        starts = np.concatenate([[0], np.cumsum(counts)])
        for k in range(1, n + 1):
            idx = order[starts[k]:starts[k + 1]]  # sorted ascending (stable sort of a ravel)
            if idx.size >= max(1, int(min_area)):
                comps.append((int(idx[0]), int(c), idx))
    comps.sort(key=lambda t: t[0])
    inst = np.zeros(m.shape, np.int32)
    flat_inst = inst.reshape(-1)
    class_of: dict[int, int] = {}
    for sid, (_, c, idx) in enumerate(comps, start=1):
        flat_inst[idx] = sid
        class_of[sid] = c
    return inst, class_of


def _argmax_rc(a: np.ndarray) -> tuple[int, int]:
    """Row, column of the first maximum in row-major order (a deterministic tie rule)."""
    i = int(np.argmax(a))
    return divmod(i, a.shape[1])


def _deepest(dt: np.ndarray, cy: float, cx: float) -> tuple[int, int]:
    """Row, column of the distance-transform maximum nearest (cy, cx); then row-major."""
    rr, cc = np.nonzero(dt == dt.max())  # EDT values are square roots of integers: exact ties
    k = int(np.argmin((rr - cy) ** 2 + (cc - cx) ** 2))  # argmin keeps the first (row-major) tie
    return int(rr[k]), int(cc[k])


def _cut_sides(rows: np.ndarray, cols: np.ndarray, h: int, w: int) -> tuple[str, ...]:
    out = []
    if rows.min() == 0:
        out.append("top")
    if rows.max() == h - 1:
        out.append("bottom")
    if cols.min() == 0:
        out.append("left")
    if cols.max() == w - 1:
        out.append("right")
    return tuple(out)


def _one_prompt(inst: np.ndarray, sid: int, label: int, margin: float, n_negative: int,
                negative_spacing: float) -> Prompt:
    h, w = inst.shape
    comp = inst == sid
    rows, cols = np.nonzero(comp)
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
    box = (float(max(0.0, c0 - margin)), float(max(0.0, r0 - margin)),
           float(min(w - 1.0, c1 + margin)), float(min(h - 1.0, r1 + margin)))
    # Positive point: the distance transform with the frame counted as boundary (pad with
    # background), evaluated on the component's bounding box only (cheap and exact: the
    # nearest background pixel of a component pixel can be no farther than the box edge
    # plus one, and the padding provides it).
    sub = np.pad(comp[r0:r1 + 1, c0:c1 + 1], 1)
    dt = ndimage.distance_transform_edt(sub)[1:-1, 1:-1]
    pr, pc = _deepest(dt, rows.mean() - r0, cols.mean() - c0)
    pts = [(float(c0 + pc), float(r0 + pr))]
    lbl = [1]
    if n_negative > 0:
        bx0, by0, bx1, by1 = (int(np.floor(box[0])), int(np.floor(box[1])),
                              int(np.ceil(box[2])), int(np.ceil(box[3])))
        # Distance to the structure, computed on the whole image (the nearest structure
        # pixel may lie outside the box) and restricted to the box.
        dist = ndimage.distance_transform_edt(~comp)[by0:by1 + 1, bx0:bx1 + 1].copy()
        yy, xx = np.mgrid[by0:by1 + 1, bx0:bx1 + 1]
        for _ in range(n_negative):
            if dist.max() <= 0:
                break
            nr, nc = _argmax_rc(dist)
            pts.append((float(bx0 + nc), float(by0 + nr)))
            lbl.append(0)
            # suppress the neighbourhood so the next negative point lands elsewhere
            dist[(yy - (by0 + nr)) ** 2 + (xx - (bx0 + nc)) ** 2 < negative_spacing ** 2] = 0
    return Prompt(structure_id=int(sid), label=int(label), box=box,
                  points=np.asarray(pts, np.float32).reshape(-1, 2),
                  point_labels=np.asarray(lbl, np.int32), shape=(h, w), area=int(rows.size),
                  cut=_cut_sides(rows, cols, h, w))


def prompts_from_structures(instances: np.ndarray, class_of: dict[int, int] | None = None, *,
                            margin_px: float = 4.0, n_negative: int = 0,
                            negative_spacing_px: float = 8.0, include_cut: bool = True) -> list[Prompt]:
    """One `Prompt` per structure of an instance map (ids > 0), in id order.

    `class_of` maps ids to canonical classes (default 1, pattern). See the module
    docstring for the box, point and frame rules."""
    inst = np.asarray(instances)
    if inst.ndim != 2 or not np.issubdtype(inst.dtype, np.integer):
        raise ValueError(f"instances must be a 2-D integer map, got shape {inst.shape} dtype {inst.dtype}")
    if margin_px < 0 or n_negative < 0:
        raise ValueError("margin_px and n_negative must be >= 0")
    out = []
    for sid in (int(v) for v in np.unique(inst) if v > 0):
        p = _one_prompt(inst, sid, (class_of or {}).get(sid, 1), float(margin_px), int(n_negative),
                        float(negative_spacing_px))
        if include_cut or not p.cut:
            out.append(p)
    return out


def prompts_from_mask(mask: np.ndarray, classes: Sequence[int] | None = None, *, margin_px: float = 4.0,
                      n_negative: int = 0, negative_spacing_px: float = 8.0, include_cut: bool = True,
                      min_area: int = 16, connectivity: int = 1) -> list[Prompt]:
    """Prompts for every structure of a label mask (a classical pre-segmentation, a
    rasterised layout or a ground-truth mask; a bool mask means class 1).

    Equivalent to `prompts_from_structures(*label_structures(mask, ...), ...)`; use
    those two directly when you also need the instance map (e.g. as training targets)."""
    inst, class_of = label_structures(mask, classes, min_area=min_area, connectivity=connectivity)
    return prompts_from_structures(inst, class_of, margin_px=margin_px, n_negative=n_negative,
                                   negative_spacing_px=negative_spacing_px, include_cut=include_cut)


def prompts_from_polygons(polygons: Iterable[np.ndarray], shape: tuple[int, int], labels: Sequence[int] | None = None,
                          **kwargs) -> list[Prompt]:
    """Prompts from layout polygons (each an (N, 2) array of (x, y) vertices in image
    pixels, e.g. a GDS clip already transformed into the image frame): each polygon is
    rasterised with `skimage.draw.polygon` into its own structure. Polygons that fall
    outside the image are skipped. Keyword arguments as `prompts_from_structures`."""
    from skimage.draw import polygon as draw_polygon

    h, w = shape
    inst = np.zeros((h, w), np.int32)
    class_of = {}
    sid = 0
    for i, poly in enumerate(polygons):
        poly = np.asarray(poly, float)
        if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
            raise ValueError(f"polygon {i} must be an (N >= 3, 2) array of (x, y) vertices, got shape {poly.shape}")
        rr, cc = draw_polygon(poly[:, 1], poly[:, 0], shape=(h, w))
        if rr.size == 0:
            continue
        sid += 1
        inst[rr, cc] = sid
        class_of[sid] = int(labels[i]) if labels is not None else 1
    return prompts_from_structures(inst, class_of, **kwargs)


# --------------------------------------------------------------------------- geometry
# The eight symmetries of the square used for augmentation: flips and 90-degree
# rotations, applied identically to the image, its masks and its prompts.

GEOMETRIC_OPS = ("identity", "fliplr", "flipud", "rot90", "rot180", "rot270", "transpose", "antitranspose")


def transform_array(a: np.ndarray, op: str) -> np.ndarray:
    """Apply a geometric op to the first two axes of an array (image, mask or (H, W, C))."""
    if op == "identity":
        return a
    if op == "fliplr":
        return a[:, ::-1]
    if op == "flipud":
        return a[::-1]
    if op == "rot90":  # counter-clockwise, as np.rot90
        return np.rot90(a, 1)
    if op == "rot180":
        return np.rot90(a, 2)
    if op == "rot270":
        return np.rot90(a, 3)
    if op == "transpose":
        return np.swapaxes(a, 0, 1)
    if op == "antitranspose":
        return np.rot90(a, 2).swapaxes(0, 1)
    raise KeyError(f"unknown geometric op {op!r}; valid: {', '.join(GEOMETRIC_OPS)}")


def _map_xy(x: np.ndarray, y: np.ndarray, op: str, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Where pixel (x = column, y = row) of an (h, w) image goes under `op`."""
    if op == "identity":
        return x, y
    if op == "fliplr":
        return (w - 1) - x, y
    if op == "flipud":
        return x, (h - 1) - y
    if op == "rot90":  # np.rot90: out[i, j] = in[j, w-1-i]  ->  (r, c) -> (w-1-c, r)
        return y, (w - 1) - x
    if op == "rot180":
        return (w - 1) - x, (h - 1) - y
    if op == "rot270":  # out[i, j] = in[h-1-j, i]  ->  (r, c) -> (c, h-1-r)
        return (h - 1) - y, x
    if op == "transpose":
        return y, x
    if op == "antitranspose":  # (r, c) -> (w-1-c, h-1-r)
        return (h - 1) - y, (w - 1) - x
    raise KeyError(f"unknown geometric op {op!r}; valid: {', '.join(GEOMETRIC_OPS)}")


_SIDE_MAP = {  # where each side of the frame goes
    "identity": {s: s for s in SIDES},
    "fliplr": {"top": "top", "bottom": "bottom", "left": "right", "right": "left"},
    "flipud": {"top": "bottom", "bottom": "top", "left": "left", "right": "right"},
    "rot90": {"top": "left", "bottom": "right", "left": "bottom", "right": "top"},
    "rot180": {"top": "bottom", "bottom": "top", "left": "right", "right": "left"},
    "rot270": {"top": "right", "bottom": "left", "left": "top", "right": "bottom"},
    "transpose": {"top": "left", "bottom": "right", "left": "top", "right": "bottom"},
    "antitranspose": {"top": "right", "bottom": "left", "left": "bottom", "right": "top"},
}


def transform_prompt(p: Prompt, op: str) -> Prompt:
    """The prompt of the same structure in the image `transform_array(image, op)`:
    points and box corners move with the pixels, the box stays (min, min, max, max)."""
    h, w = p.shape
    pts = np.asarray(p.points, np.float64)
    px, py = _map_xy(pts[:, 0], pts[:, 1], op, h, w)
    bx, by = _map_xy(np.array([p.box[0], p.box[2]]), np.array([p.box[1], p.box[3]]), op, h, w)
    new_shape = (w, h) if op in ("rot90", "rot270", "transpose", "antitranspose") else (h, w)
    cut = tuple(s for s in SIDES if s in {_SIDE_MAP[op][c] for c in p.cut})
    return replace(p, box=(float(bx.min()), float(by.min()), float(bx.max()), float(by.max())),
                   points=np.stack([px, py], axis=1).astype(np.float32).reshape(-1, 2),
                   shape=new_shape, cut=cut)


def transform_prompts(prompts: Sequence[Prompt], op: str) -> list[Prompt]:
    return [transform_prompt(p, op) for p in prompts]


def prompt_arrays(prompts: Sequence[Prompt], use_points: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Stack prompts for one batched SAM2 call: boxes (B, 4) float32, point coords
    (B, N, 2) float32 and labels (B, N) int32, where structures with fewer points are
    padded with label -1 (SAM2's "not a point", ignored by the prompt encoder).
    Returns (boxes, None, None) when `use_points` is False or no prompt has points."""
    boxes = np.asarray([p.box for p in prompts], np.float32).reshape(-1, 4)
    n = max((len(p.points) for p in prompts), default=0) if use_points else 0
    if n == 0:
        return boxes, None, None
    coords = np.zeros((len(prompts), n, 2), np.float32)
    labels = -np.ones((len(prompts), n), np.int32)
    for i, p in enumerate(prompts):
        k = len(p.points)
        coords[i, :k] = p.points
        labels[i, :k] = p.point_labels
    return boxes, coords, labels
