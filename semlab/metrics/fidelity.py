"""Mask fidelity: does a generated SEM image show the structure that was asked for?

Semantic image synthesis is judged by running a segmenter on the generated images and
scoring its masks against the input masks (SPADE, Park et al. 2019; OASIS, Schonfeld et
al. 2021). Here the segmenter is semlab's classical backend (`semlab.segment.pipeline.
segment_image`) with the settings of the set (`settings_for`), and the scores are:

- **IoU per structure class** (background, pattern, hole) from the confusion matrix of
  all scored pixels of all images (as SPADE and OASIS pool it), and **mIoU**, its mean
  over the classes present in the input masks. Particles (`defect`, 1-4 px) are not
  structure: their pixels are left out (notebook 10 scores them as objects) and the
  segmenter runs without its particle detector.
- **EPE (nm)**, the edge placement error of the predicted mask: per structure class
  other than background, the symmetric mean edge distance between the boundaries of the
  input and of the predicted class region. A binary mask's edges lie on pixel
  boundaries, so the boundary points are the midpoints between 4-neighbour pixels of
  which one is inside (the frame is no boundary); every boundary point of either mask
  is taken to the nearest one of the other (exact Euclidean nearest neighbour,
  `scipy.spatial.cKDTree`), pooled over all
  images, then averaged over the classes. A mask shifted by k px has an EPE of exactly
  k px. Both directions count, so a missed structure weighs as much as a spurious one;
  a distance is capped at a quarter of the tile (`cap_px`), which is what an edge with
  no counterpart at all counts as. (`semlab.contours.metrics.nearest_distances` on the
  marching-squares contours measures the same on binary masks, about 10x slower: 78 ms
  against ~2 ms per 128-px image and class.)
- 95% **bootstrap** intervals resample whole images (the pooled ratios are recomputed
  per resample); an interval is widened to contain its point estimate if needed.

The same segmenter on the target images themselves (`CEILING`) is the reference row:
its errors are the segmenter's, so a generator is only as far from perfect as it falls
below that row. On real data the masks were made by this very segmenter from those
tiles, so the ceiling is close to 1 by construction and the scores say how well the
generated image reproduces what the segmenter saw.

`idealise_masks` makes the masks a person paints or a GDS clip gives (straight edges,
sharp corners) and `idealised_experiment` generates from them and from the dataset
masks with one generator, and reports fidelity and realism side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from semlab import labels
from semlab.metrics import keys as K

__all__ = ["STRUCTURE_CLASSES", "CEILING", "FidelityScores", "settings_for", "calibrated_settings", "scoring_args",
           "describe_args", "dataset_pixel_nm", "dataset_polarity", "segment_images", "score_masks",
           "mask_fidelity", "fidelity_table", "fidelity_rows", "add_fidelity", "fidelity_doc_metrics",
           "domain_keys", "fidelity_markdown", "idealise_masks", "PhysicsGenerator", "experiment_generator",
           "IdealisedResult", "idealised_experiment", "experiment_markdown", "experiment_doc_metrics"]

STRUCTURE_CLASSES = ("background", "pattern", "hole")
CEILING = "segmenter on target images (ceiling)"
DATASET_MASKS = "dataset masks"
IDEALISED_MASKS = "idealised masks"


# ----------------------------------------------------------------------------- inputs


def settings_for(preset: str | None = None, pixel_nm: float | None = None, **overrides) -> dict:
    """Classical settings for scoring: the defaults made for uncalibrated frames (what
    notebook 10 segments real sets with), without the particle detector (particles are
    not scored); for the `particles` preset, where particles are the pattern, its
    `particles_settings` at `pixel_nm`. `overrides` win."""
    out: dict[str, Any] = {"blobs": False}
    if preset == "particles" and pixel_nm:
        from semlab.segment.classical import particles_settings

        out.update(particles_settings(float(pixel_nm)), blobs=False)
    out.update(overrides)
    return out


def calibrated_settings(pairs, *, settings: Mapping[str, Any] | None = None, classes=STRUCTURE_CLASSES,
                        polarity: str = "bright") -> dict:
    """`settings` (default `settings_for()`) with the classical segmenter's sub-pixel
    `edge_offset_px` fitted on labelled (image, true mask) `pairs`
    (`semlab.segment.canonical.calibrate_edge_offset`: the offset with the best mean IoU
    of the structure classes), as notebook 10 does on the training split; the
    illumination flattening is kept or switched off, whichever scores better there."""
    from semlab.segment.canonical import CanonicalRules, calibrate_edge_offset
    from semlab.segment.pipeline import make_segmenter

    pairs = list(pairs)
    base = dict(settings if settings is not None else settings_for())
    names = tuple(c if isinstance(c, str) else labels.CLASSES[int(c)].name for c in classes)
    rules = CanonicalRules(classes=names, polarity=polarity)
    best = None
    for flat in dict.fromkeys((base.get("flatten_degree", 2), 0)):
        cand = {**base, "flatten_degree": flat, "edge_offset_px": 0.0}
        offset, scores = calibrate_edge_offset(pairs, rules, make_segmenter("classical", **cand))
        if best is None or scores[offset] > best[0] + 1e-6:
            best = (scores[offset], {**cand, "edge_offset_px": float(offset)})
    return best[1]


def scoring_args(dataset, ids: Sequence[str], real=None, *, n_calibrate: int = 8) -> dict[str, Any]:
    """The keyword arguments of `mask_fidelity` / `fidelity_table` for `ids` of a
    dataset: `pixel_nm` and `polarity` per item, and `settings`. Simulated data (`real`
    None): the preset's settings (`settings_for`) with the edge offset fitted on the
    first `n_calibrate` training pairs (never the test split); a real set (`real`: its
    `RealSplit`): the defaults its masks were segmented with (no offset: no truth to fit
    one on)."""
    ids = list(ids)
    default = None
    if real is not None:
        from semlab.train.realsets import set_pixel_nm

        default = set_pixel_nm(dataset, real.set)
    px = dataset_pixel_nm(dataset, ids, default)
    pol = dataset_polarity(dataset, ids)
    preset = dataset.params(ids[0]).get("preset") if ids else None
    settings = settings_for(preset, float(px[0]) if px is not None and len(px) else None)
    train = [i for i in dataset.split("train") if i not in set(ids)][:n_calibrate]
    if real is None and train and n_calibrate > 0 and dataset.clean(train[0]) is not None:
        settings = calibrated_settings(((dataset.image(i), dataset.mask(i)) for i in train), settings=settings,
                                       polarity=pol[0] if pol and pol[0] != "auto" else "bright")
    return {"pixel_nm": px, "polarity": pol, "settings": settings}


def describe_args(args: Mapping[str, Any]) -> str:
    """One line naming the segmenter settings of `scoring_args` that differ from the
    classical defaults, the pixel size and the polarity."""
    from semlab.segment.classical import ClassicalSettings

    default = ClassicalSettings().describe()
    diff = {k: v for k, v in args["settings"].items() if default.get(k) != v}
    px = (["unknown"] if args["pixel_nm"] is None
          else sorted({round(float(v), 4) for v in np.atleast_1d(args["pixel_nm"])}))
    pols = sorted(set(args["polarity"])) if not isinstance(args["polarity"], str) else [args["polarity"]]
    return (f"classical segmenter, defaults except {diff or 'nothing'}; pixel size "
            f"{', '.join(map(str, px))} nm; polarity {', '.join(pols)}")


def dataset_pixel_nm(dataset, ids: Sequence[str], default: float | None = None) -> np.ndarray | None:
    """Pixel size (nm) of each item: its params' `pixel_nm` / `pixel_size_nm`, else the
    dataset's `pixel_size_nm`, else `default`; None when an item has none (the EPE in
    nm is then unavailable)."""
    out = []
    for i in ids:
        p = dataset.params(i)
        v = p.get("pixel_nm") or p.get("pixel_size_nm") or dataset.info.get("pixel_size_nm") or default
        if not v:
            return None
        out.append(float(v))
    return np.asarray(out)


def dataset_polarity(dataset, ids: Sequence[str]) -> list[str]:
    """The polarity the segmenter is told per item: the one recorded when the target
    tile was segmented (manifest column `polarity`), "bright" on simulated data (pattern
    brighter than background), else "auto" (decided on each image)."""
    simulated = dataset.clean(ids[0]) is not None if len(ids) else False
    out = []
    for i in ids:
        pol = (dataset.row(i).get("polarity") or "").strip()
        out.append(pol if pol in ("bright", "dark") else "bright" if simulated else "auto")
    return out


def _stack(images, masks) -> tuple[np.ndarray, np.ndarray]:
    from semlab.arrays import as_gray_stack

    m = np.asarray(masks)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3 or not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"masks: expected integer label maps (N, H, W), got {m.dtype} {m.shape}")
    if m.size and (m.min() < 0 or m.max() >= labels.NUM_CLASSES):
        raise ValueError(f"masks: labels must be in 0..{labels.NUM_CLASSES - 1}, got {int(m.min())}..{int(m.max())}")
    if images is None:
        return None, m
    x = as_gray_stack(images, what="images")
    if x.shape != m.shape:
        raise ValueError(f"images {x.shape} and masks {m.shape} differ in shape: one mask per image of its size")
    return x, m


def _per_image(value, n: int, what: str) -> list:
    if isinstance(value, (str, float, int)) or value is None:
        return [value] * n
    v = list(value)
    if len(v) != n:
        raise ValueError(f"{what}: {len(v)} values for {n} images")
    return v


def _class_ids(classes, masks: np.ndarray) -> list[int]:
    """The scored class ids: `classes` (names or ids; default the structure classes)
    present in the masks, in label order."""
    want = {labels.class_by_name(c).id if isinstance(c, str) else int(c) for c in (classes or STRUCTURE_CLASSES)}
    present = set(np.unique(masks).tolist())
    ids = sorted(want & present)
    if not ids:
        raise ValueError(f"masks hold none of the scored classes {sorted(want)} (labels present: {sorted(present)})")
    return ids


# --------------------------------------------------------------------------- segmenting


def segment_images(images, *, classes: Sequence[int], settings: Mapping[str, Any] | None = None,
                   polarity="auto", progress: bool = False, desc: str = "segment") -> tuple[np.ndarray, list[str]]:
    """Canonical masks (N, H, W) uint8 of `images` by the classical segmenter
    (`segment_image` with `CanonicalRules(classes=...)`), and the notes of images it
    refused (a blank image: nothing to segment, so everything is background)."""
    from tqdm.auto import tqdm

    from semlab.segment.base import SegmentationError
    from semlab.segment.canonical import CanonicalRules
    from semlab.segment.pipeline import make_segmenter, segment_image

    x = np.asarray(images)
    seg = make_segmenter("classical", **dict(settings or settings_for()))
    names = tuple(labels.CLASSES[c].name for c in classes)
    if "background" not in names and "pattern" not in names:
        names = ("background", "pattern") + names
    pols = _per_image(polarity, len(x), "polarity")
    out, notes = np.zeros(x.shape, np.uint8), []
    rules = {p: CanonicalRules(classes=names, polarity=p) for p in set(pols)}
    for k in tqdm(range(len(x)), desc=desc, disable=not progress, leave=False):
        try:
            out[k] = segment_image(x[k], seg, rules[pols[k]]).mask
        except SegmentationError as e:
            notes.append(f"image {k}: {e}")
    return out, notes


# ------------------------------------------------------------------------------ scoring


def _confusion(pred: np.ndarray, true: np.ndarray, class_ids: Sequence[int]) -> np.ndarray:
    """(K, K) counts of (true, predicted) labels over the pixels whose true label is scored."""
    k = labels.NUM_CLASSES
    keep = np.isin(true, class_ids)
    idx = true[keep].astype(np.int64) * k + np.clip(pred[keep].astype(np.int64), 0, k - 1)
    return np.bincount(idx, minlength=k * k).reshape(k, k)


def _crack_points(region: np.ndarray) -> np.ndarray:
    """(n, 2) (row, col) of the region's boundary points: the midpoints between
    4-neighbour pixels of which one is inside and one outside. The frame is no boundary."""
    r, c = np.nonzero(region[:, 1:] != region[:, :-1])
    r2, c2 = np.nonzero(region[1:, :] != region[:-1, :])
    return np.concatenate([np.stack([r, c + 0.5], 1), np.stack([r2 + 0.5, c2], 1)]).astype(np.float64)


def _edge_sums(pred: np.ndarray, true: np.ndarray, class_ids: Sequence[int], cap_px: float) -> np.ndarray:
    """(n classes, 2): sum and number of the capped symmetric edge distances (px) per
    class: every boundary point of either mask (`_crack_points`) to the nearest one of
    the other (exact Euclidean nearest neighbour, `scipy.spatial.cKDTree`)."""
    from scipy.spatial import cKDTree

    out = np.zeros((len(class_ids), 2))
    for j, c in enumerate(class_ids):
        et, ep = _crack_points(true == c), _crack_points(pred == c)
        if not (len(et) or len(ep)):
            continue
        d = [cKDTree(b).query(a, distance_upper_bound=cap_px)[0] if len(b) else np.full(len(a), np.inf)
             for a, b in ((ep, et), (et, ep)) if len(a)]
        dd = np.minimum(np.concatenate(d), cap_px)
        out[j] = float(dd.sum()), float(dd.size)
    return out


def _iou(conf: np.ndarray, class_ids: Sequence[int]) -> np.ndarray:
    """IoU per scored class from (..., K, K) confusion counts; NaN where a class is in neither."""
    ids = np.asarray(class_ids)
    tp = conf[..., ids, ids]
    fn = conf[..., ids, :].sum(-1) - tp
    fp = conf[..., ids][..., ids, :].sum(-2) - tp  # predicted c among the scored true pixels
    union = tp + fn + fp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def _nanmean(a: np.ndarray, axis=-1) -> np.ndarray:
    ok = np.isfinite(a)
    s = np.where(ok, a, 0.0).sum(axis)
    n = ok.sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def _fmt(t, d: int) -> str:
    """(value, lo, hi) as "v [lo, hi]" with `d` decimals; "-" without a value."""
    if t is None or not np.isfinite(t[0]):
        return "-"
    return f"{t[0]:.{d}f} [{t[1]:.{d}f}, {t[2]:.{d}f}]"


def _ci(point: float, boots: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    b = boots[np.isfinite(boots)]
    if not np.isfinite(point) or not b.size:
        return float(point), float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = (float(v) for v in np.quantile(b, [a, 1 - a]))
    return float(point), min(lo, float(point)), max(hi, float(point))


@dataclass
class FidelityScores:
    """Fidelity of one set of images to their input masks. `iou` and `epe_nm`:
    {class name: (value, ci_low, ci_high)}; `miou`, `epe`: (value, ci_low, ci_high);
    `per_image_miou`, `per_image_epe_nm`: (N,); `predicted`: the segmented masks."""

    n: int
    classes: tuple[str, ...]
    iou: dict[str, tuple[float, float, float]]
    miou: tuple[float, float, float]
    epe_nm: dict[str, tuple[float, float, float]]
    epe: tuple[float, float, float]
    per_image_miou: np.ndarray
    per_image_epe_nm: np.ndarray
    predicted: np.ndarray
    settings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        cls = ", ".join(f"{c} {_fmt(self.iou[c], 3)}" for c in self.classes)
        return f"mIoU {_fmt(self.miou, 3)} ({cls}); EPE {_fmt(self.epe, 2)} nm; n={self.n}"


def score_masks(predicted, masks, *, pixel_nm, classes=None, n_boot: int = 1000, seed: int = 0,
                cap_px: float | None = None, settings: dict | None = None, notes=()) -> FidelityScores:
    """Score predicted label maps against the input `masks` (both (N, H, W) integer):
    per-class IoU, mIoU and EPE in nm with bootstrap CIs (module docstring). `pixel_nm`:
    one size or one per image. `cap_px`: the largest edge distance counted (default a
    quarter of the smaller image side)."""
    _, m = _stack(None, masks)
    _, p = _stack(None, predicted)
    if p.shape != m.shape:
        raise ValueError(f"predicted masks {p.shape} and input masks {m.shape} differ in shape")
    n = len(m)
    notes = list(notes)
    if pixel_nm is None:  # no pixel size known: IoU only
        px = np.full(n, np.nan)
        notes.append("no pixel size known: EPE in nm unavailable")
    else:
        px = np.asarray(_per_image(pixel_nm, n, "pixel_nm"), dtype=np.float64)
        if not (np.isfinite(px).all() and (px > 0).all()):
            raise ValueError(f"pixel_nm must be > 0 nm, got {sorted(set(px.tolist()))[:5]}")
    ids = _class_ids(classes, m)
    cap = float(cap_px) if cap_px else min(m.shape[1:]) / 4.0
    conf = np.stack([_confusion(p[k], m[k], ids) for k in range(n)])
    edge_ids = [c for c in ids if c != labels.BACKGROUND]
    sums = np.stack([_edge_sums(p[k], m[k], edge_ids, cap) for k in range(n)]) if edge_ids else np.zeros((n, 0, 2))
    sums[..., 0] *= px[:, None]  # px -> nm per image

    def epe_of(s):  # (..., classes, 2) -> per class, mean over classes
        with np.errstate(invalid="ignore", divide="ignore"):
            per = np.where(s[..., 1] > 0, s[..., 0] / np.maximum(s[..., 1], 1), np.nan)
        return per, _nanmean(per)

    iou_all = _iou(conf.sum(0), ids)
    epe_cls, epe_all = epe_of(sums.sum(0))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    b_iou = _iou(conf[idx].sum(1), ids)
    b_epe_cls, b_epe = epe_of(sums[idx].sum(1))
    names = tuple(labels.CLASSES[c].name for c in ids)
    return FidelityScores(
        n=n, classes=names,
        iou={c: _ci(iou_all[j], b_iou[:, j]) for j, c in enumerate(names)},
        miou=_ci(float(_nanmean(iou_all)), _nanmean(b_iou)),
        epe_nm={labels.CLASSES[c].name: _ci(epe_cls[j], b_epe_cls[:, j]) for j, c in enumerate(edge_ids)},
        epe=_ci(float(epe_all), b_epe),
        per_image_miou=_nanmean(_iou(conf, ids)), per_image_epe_nm=epe_of(sums)[1],
        predicted=p.astype(np.uint8), settings=dict(settings or {}), notes=notes)


def mask_fidelity(images, masks, *, pixel_nm, segmenter_settings: Mapping[str, Any] | None = None,
                  classes=STRUCTURE_CLASSES, polarity="auto", n_boot: int = 1000, seed: int = 0,
                  progress: bool = False, desc: str = "fidelity") -> FidelityScores:
    """Segment every image (classical backend, `segmenter_settings`, default
    `settings_for()`; `polarity` one for all or one per image) and score the
    segmented masks against the input `masks` (`score_masks`)."""
    x, m = _stack(images, masks)
    ids = _class_ids(classes, m)
    settings = dict(segmenter_settings if segmenter_settings is not None else settings_for())
    pred, notes = segment_images(x, classes=ids, settings=settings, polarity=polarity, progress=progress, desc=desc)
    return score_masks(pred, m, pixel_nm=pixel_nm, classes=ids, n_boot=n_boot, seed=seed,
                       settings={"backend": "classical", **settings}, notes=notes)


def fidelity_table(fakes: Mapping[str, np.ndarray], masks, target=None, *, pixel_nm, settings=None,
                   polarity="auto", n_boot: int = 1000, seed: int = 0,
                   progress: bool = True) -> dict[str, FidelityScores]:
    """`mask_fidelity` of every model's images ({name: (N, H, W)}) against the same
    masks, and with `target` (the target images of the masks) the `CEILING` row: the
    same segmenter on the target images."""
    from tqdm.auto import tqdm

    sets = dict(fakes)
    if target is not None:
        sets[CEILING] = target
    return {name: mask_fidelity(imgs, masks, pixel_nm=pixel_nm, segmenter_settings=settings, polarity=polarity,
                                n_boot=n_boot, seed=seed, desc=name)
            for name, imgs in tqdm(sets.items(), desc="mask fidelity", disable=not progress, leave=False)}


# ------------------------------------------------------------------------- table output


def fidelity_rows(s: FidelityScores) -> list[dict]:
    """`semlab.metrics.evaluate` rows (metric, value, ci_low, ci_high, n, status, note):
    `mask_miou` and `mask_epe_nm`."""
    cls = "/".join(s.classes)
    rows = []
    for metric, v, note in ((K.MASK_MIOU, s.miou, f"classical segmenter on the images vs the input masks, mean IoU "
                                                   f"over {cls}, 95% bootstrap CI over images"),
                            (K.MASK_EPE, s.epe, "symmetric mean edge distance (nm) of the segmented vs the input "
                                                "masks, 95% bootstrap CI over images")):
        ok = np.isfinite(v[0])
        why = "unavailable: no pixel size" if any("no pixel size" in x for x in s.notes) else "unavailable: no edges"
        rows.append({"metric": metric, "value": float(v[0]) if ok else None, "ci_low": v[1] if ok else None,
                     "ci_high": v[2] if ok else None, "n": s.n, "status": "ok" if ok else why, "note": note})
    return rows


def add_fidelity(results: Mapping[str, list[dict]], fid: Mapping[str, FidelityScores]) -> dict[str, list[dict]]:
    """`results` ({model: evaluate rows}) with the fidelity rows of each model appended
    (models without fidelity unchanged; the ceiling is not a model and is not added)."""
    return {name: list(rows) + (fidelity_rows(fid[name]) if name in fid else []) for name, rows in results.items()}


def _m(v: tuple[float, float, float], n: int, unit: str = "", note: str = "") -> dict | None:
    from semlab.runs import metric

    if not np.isfinite(v[0]):
        return None
    lo, hi = (v[1], v[2]) if np.isfinite(v[1]) and np.isfinite(v[2]) else (None, None)
    return metric(v[0], lo, hi, n=n, unit=unit, note=note)


def fidelity_doc_metrics(fid: Mapping[str, FidelityScores], only: Sequence[str] = (CEILING,),
                         entity: str | None = None) -> dict[str, dict]:
    """metrics.json entries `<entity>.mask_miou` / `.mask_epe_nm` (and per class
    `<entity>.<class>_mask_iou`) of the rows in `only` (default the ceiling, entity
    `segmenter_ceiling`; a model's entity is `entity` or its `model_key`); entries
    without a value are left out."""
    out = {}
    for name in only:
        if name not in fid:
            continue
        s = fid[name]
        ent = entity or (K.SEGMENTER_CEILING if name == CEILING else K.model_key(name))
        pairs = [(K.key(ent, K.MASK_MIOU), s.miou, ""), (K.key(ent, K.MASK_EPE), s.epe, "nm")]
        pairs += [(K.key(ent, f"{c}_{K.MASK_IOU}"), v, "") for c, v in s.iou.items()]
        out.update({k: e for k, v, u in pairs if (e := _m(v, s.n, u)) is not None})
    return out


def domain_keys(doc: Mapping[str, Any] | None = None) -> list[str]:
    """The fidelity keys of notebook 30's side-by-side domain table: each translator's and
    the physics baseline's mIoU and EPE, the ceiling and the idealised-mask experiment
    (those of `doc` first)."""
    ents = (K.PIX2PIX, K.CYCLEGAN, K.PHYSICS, K.SEGMENTER_CEILING, K.DATASET_MASKS, K.IDEALISED_MASKS)
    keys = [K.key(e, m) for e in ents for m in (K.MASK_MIOU, K.MASK_EPE)]
    keys += [K.key(e, K.REALISM_BALANCED_ACCURACY) for e in (K.DATASET_MASKS, K.IDEALISED_MASKS)]
    have = (doc or {}).get("metrics", {})
    return [k for k in keys if k in have] + [k for k in keys if k not in have]


def fidelity_markdown(fid: Mapping[str, FidelityScores], label: str = "") -> str:
    """Markdown: one row per model (the ceiling last), IoU per class, mIoU and EPE with
    95% CIs; `label` names the domain, set, n tiles and n frames."""
    from semlab.textfmt import md_escape as esc

    if not fid:
        return "No images to score."
    classes = list(dict.fromkeys(c for s in fid.values() for c in s.classes))
    f = _fmt
    head = ["images segmented"] + [f"IoU {c}" for c in classes] + ["mIoU", "EPE (nm)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in sorted(fid.items(), key=lambda kv: kv[0] == CEILING):
        cells = [esc(name)] + [f(s.iou[c], 3) if c in s.iou else "-" for c in classes] + [f(s.miou, 3), f(s.epe, 2)]
        lines.append("| " + " | ".join(cells) + " |")
    n = next(iter(fid.values())).n
    notes = sorted({x for s in fid.values() for x in s.notes})
    tail = f"\n\n{esc(label)}, n={n} images per row; 95% bootstrap CIs over images." if label else ""
    if notes:
        tail += f"\n\nNot segmentable (scored as all background): {esc('; '.join(notes[:5]))}"
    return "\n".join(lines) + tail


# ---------------------------------------------------------------------- idealised masks


def _outlines(region: np.ndarray, tol_px: float, pad: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(contour, its Douglas-Peucker simplification) of every boundary of `region`
    padded by `pad` px (edge values: a structure cut by the frame runs on, so the frame
    is no edge)."""
    from skimage.measure import approximate_polygon

    from semlab.contours.extract import mask_contours

    big = np.pad(region, pad, mode="edge").astype(np.float32)
    return [(c, approximate_polygon(c, tol_px)) for c in mask_contours(big)]


def _orientation(region: np.ndarray, sigma: float = 1.5, min_share: float = 0.3) -> float:
    """Dominant edge direction mod 90 degrees (radians) of a boolean region: the
    squared-gradient-weighted mean of 4 phi over the gradients of the region smoothed by
    `sigma` px (a structure tensor for Manhattan geometry; the pixel staircase of a
    tilted edge averages out); 0 (the image axes, as a layout has them) when no
    direction dominates (round holes) or it is within 0.5 degrees of the axes."""
    from scipy.ndimage import gaussian_filter

    gy, gx = np.gradient(gaussian_filter(region.astype(np.float64), sigma, mode="nearest"))
    w = gy * gy + gx * gx
    z = np.sum(w * np.exp(4j * np.arctan2(gy, gx)))
    if w.sum() <= 0 or abs(z) < min_share * w.sum():
        return 0.0
    theta = float(np.angle(z) / 4.0)
    return 0.0 if abs(theta) < np.deg2rad(0.5) else theta


def _merge_runs(edges: list[list]) -> list[list]:
    """Consecutive edges [axis, length, length x position] of one axis joined (cyclically)."""
    out: list[list] = []
    for e in edges:
        if out and out[-1][0] == e[0]:
            out[-1][1] += e[1]
            out[-1][2] += e[2]
        else:
            out.append(list(e))
    if len(out) > 1 and out[0][0] == out[-1][0]:
        out[0][1] += out[-1][1]
        out[0][2] += out[-1][2]
        out.pop()
    return out


def _manhattan(contour: np.ndarray, simplified: np.ndarray, theta: float, min_edge_px: float) -> np.ndarray | None:
    """A closed outline as a rectilinear polygon in the frame rotated by `theta`: the
    segments of its Douglas-Peucker simplification classified to the nearer axis, runs
    of one axis merged into one straight edge at the mean position of the outline's own
    points along that run (arc-length weighted: the mean edge, line-edge roughness
    averaged out), edges shorter than `min_edge_px` removed (their neighbours merged),
    consecutive edges meeting in sharp corners. None when fewer than 4 edges remain."""
    cs, sn = np.cos(theta), np.sin(theta)
    rot = np.array([[cs, -sn], [sn, cs]])  # (row, col) -> (v, u): u along (sin, cos) theta, v across
    c = contour @ rot.T
    v = simplified @ rot.T
    # the vertices of the simplification are points of the outline, in order
    idx, j = [], 0
    for p in simplified:
        hits = np.flatnonzero((contour[j:] == p).all(axis=1))
        j = j + int(hits[0]) if hits.size else j
        idx.append(j)
    seg_len = np.hypot(*np.diff(c, axis=0).T)
    seg_mid = 0.5 * (c[:-1] + c[1:])
    edges = []
    for k in range(len(v) - 1):
        dv = v[k + 1] - v[k]
        a = int(abs(dv[0]) > abs(dv[1]))  # 0: runs along u (v constant), 1: along v (u constant)
        sl = slice(idx[k], max(idx[k + 1], idx[k] + 1))
        L = float(seg_len[sl].sum())
        if L > 1e-9:
            edges.append([a, L, float((seg_len[sl] * seg_mid[sl, a]).sum())])
    if len(edges) < 4:
        return None
    edges = _merge_runs(edges)
    while len(edges) >= 4:
        k = int(np.argmin([e[1] for e in edges]))
        if edges[k][1] >= min_edge_px:
            break
        edges = _merge_runs(edges[:k] + edges[k + 1:])
    if len(edges) < 4 or len(edges) % 2:
        return None
    pos = [e[2] / e[1] for e in edges]
    pts = []
    for k, e in enumerate(edges):  # the corner between edge k and edge k + 1
        nxt = (k + 1) % len(edges)
        pts.append((pos[k], pos[nxt]) if e[0] == 0 else (pos[nxt], pos[k]))
    p = np.asarray(pts) @ rot  # back to (row, col)
    return np.vstack([p, p[:1]])


def _idealise_region(region: np.ndarray, outlines, theta: float, min_edge_px: float, pad: int) -> np.ndarray:
    """A boolean region with every outline (`_outlines`, on the padded grid) made
    rectilinear (`_manhattan`); a structure whose polygon degenerates or vanishes keeps
    its own pixels."""
    from scipy import ndimage as ndi

    from semlab.contours.extract import rasterize_contours

    if not region.any() or region.all():
        return region.copy()
    polys = []
    for c, simple in outlines:
        q = _manhattan(c, simple, theta, min_edge_px)
        polys.append(q if q is not None else c)
    h, w = region.shape
    out = rasterize_contours(polys, (h + 2 * pad, w + 2 * pad))[pad:pad + h, pad:pad + w]
    lab, n = ndi.label(region)
    if n:  # a structure that vanished keeps its own pixels (the class set stays)
        hit = np.asarray(ndi.maximum(out, lab, index=np.arange(1, n + 1)), bool)
        lost = np.flatnonzero(~hit) + 1
        if lost.size:
            out = out | np.isin(lab, lost)
    return out


def idealise_masks(masks, *, tol_px: float = 1.0, min_edge_px: float = 3.0, pad: int = 2) -> np.ndarray:
    """Masks as a person paints them or a GDS clip gives them: straight edges and sharp
    corners, no line-edge roughness, no corner rounding. Per mask, the pattern (pattern
    and holes together) and then the holes are made rectilinear (`_manhattan`: each
    boundary simplified by Douglas-Peucker with `tol_px`, its segments snapped to the
    mask's dominant axes (`_orientation`: the image axes unless the pattern is tilted),
    one straight edge per run, jogs shorter than `min_edge_px` removed, sharp corners
    where edges meet); round contacts become squares, rounded line-ends square ends.
    Particles (`defect`) are kept as they are, painted on top. (N, H, W) or (H, W)
    integer label maps in, the same shape out (uint8)."""
    from scipy import ndimage as ndi

    m = np.asarray(masks)
    single = m.ndim == 2
    _, m = _stack(None, m)
    out = np.zeros(m.shape, np.uint8)
    for k, mk in enumerate(m):
        base, dfx = mk, mk == labels.DEFECT
        if dfx.any() and not dfx.all():  # the structure beneath a particle: its nearest non-particle label
            base = mk[tuple(ndi.distance_transform_edt(dfx, return_distances=False, return_indices=True))]
        struct, holes = np.isin(base, (labels.PATTERN, labels.HOLE)), base == labels.HOLE
        lines = _outlines(struct, tol_px, pad) if struct.any() and not struct.all() else []
        theta = _orientation(struct) if lines else 0.0
        o = np.where(_idealise_region(struct, lines, theta, min_edge_px, pad), labels.PATTERN, labels.BACKGROUND)
        if holes.any():
            o[_idealise_region(holes, _outlines(holes, tol_px, pad), theta, min_edge_px, pad)] = labels.HOLE
        o[dfx] = labels.DEFECT
        out[k] = o.astype(np.uint8)
    return out[0] if single else out


# -------------------------------------------------------------------- the experiment


class PhysicsGenerator:
    """The simulator as a generator (`render_mask` with `preset` at `pixel_nm`): the
    physics baseline, callable like `semlab.train.generate.Generator`."""

    def __init__(self, preset: str, pixel_nm: float | None = None):
        self.preset, self.pixel_nm = preset, pixel_nm

    def __call__(self, masks, seed: int = 0) -> np.ndarray:
        from semlab.data.simulate import render_mask

        m = np.asarray(masks)
        return np.stack([render_mask(x, self.preset, (seed, 7, k), pixel_nm=self.pixel_nm).image
                         for k, x in enumerate(m)]).astype(np.float32)


def experiment_generator(generators: Mapping[str, Mapping[str, Any]], physics: tuple[str, float | None]
                         ) -> tuple[str, Callable]:
    """(name, generator) of the idealised-mask experiment: the first trained model found
    (`semlab.metrics.tables.find_generators` output), else the physics baseline (named
    as in `semlab.metrics.tables.model_images`, so its images there can be reused)."""
    for name, g in generators.items():
        if g.get("found"):
            from semlab.train.generate import Generator

            return name, Generator(g["path"])
    return "simulator (physics baseline)", PhysicsGenerator(*physics)


def _realism_stats(target: np.ndarray, fake: np.ndarray, seed: int = 0, n_splits: int = 5) -> dict[str, Any]:
    """The `semlab.realism` stats detector (logistic regression on spectrum, intensity and
    gradient histograms), grouped folds that keep each mask's target and generated
    image together: balanced accuracy and AUC with 95% CIs (0.5: indistinguishable)."""
    from semlab.realism import Side, cross_validate

    n = len(target)
    grid = np.zeros((n, 2), np.int64)
    groups = np.array([f"mask{k}" for k in range(n)])
    a = Side("pair", "target", np.asarray(target, np.float32), groups, grid, None)
    b = Side("pair", "generated", np.asarray(fake, np.float32), groups, grid, None)
    return cross_validate(a, b, grouping="frame", detectors=("stats",), n_splits=n_splits, seed=seed,
                          max_tiles=n)["stats"]


@dataclass
class IdealisedResult:
    """The idealised-mask experiment: per arm (`DATASET_MASKS`, `IDEALISED_MASKS`) the
    input masks, generated images, their fidelity and realism; `change`: the idealised
    masks scored against the dataset masks (how much idealising moved the edges)."""

    generator: str
    masks: dict[str, np.ndarray]
    images: dict[str, np.ndarray]
    fidelity: dict[str, FidelityScores]
    realism: dict[str, dict[str, Any]]
    change: FidelityScores
    fd: dict[str, list[dict]] = field(default_factory=dict)


def idealised_experiment(generator: Callable, masks, target, *, pixel_nm, settings=None, polarity="auto",
                         name: str = "generator", sem_encoder=None, n_boot: int = 1000, seed: int = 0,
                         tol_px: float = 1.0, min_edge_px: float = 3.0, dataset_images=None,
                         dataset_fidelity: FidelityScores | None = None, max_n: int | None = 32) -> IdealisedResult:
    """Generate with `generator` ((masks, seed=) -> images) from the dataset `masks` and
    from `idealise_masks(masks)`; score each arm's fidelity to its own input masks
    (`mask_fidelity`) and its realism against the `target` images (the stats detector
    of `semlab.realism`, and FD_sem / KD_sem with `sem_encoder`). At most `max_n` masks,
    spread evenly over the given ones, take part (one more generator pass costs time).
    `dataset_images` / `dataset_fidelity`: the dataset arm's images / fidelity of all
    the given masks when already at hand (the metric table's), so the dataset arm is
    neither generated nor segmented again (its segmented masks are re-scored)."""
    x, m = _stack(target, masks)
    n = len(m)
    idx = np.unique(np.linspace(0, n - 1, min(n, max_n or n)).round().astype(int))
    per = lambda v: v if v is None or isinstance(v, (str, float, int)) else [v[i] for i in idx]  # noqa: E731
    x, m, pixel_nm, polarity = x[idx], m[idx], per(pixel_nm), per(polarity)
    arms = {DATASET_MASKS: m, IDEALISED_MASKS: idealise_masks(m, tol_px=tol_px, min_edge_px=min_edge_px)}
    images = {a: np.asarray(generator(mk, seed=seed) if a != DATASET_MASKS or dataset_images is None
                            else np.asarray(dataset_images)[idx], np.float32) for a, mk in arms.items()}
    fid = {a: mask_fidelity(images[a], arms[a], pixel_nm=pixel_nm, segmenter_settings=settings,
                            polarity=polarity, n_boot=n_boot, seed=seed) for a in arms
           if a != DATASET_MASKS or dataset_fidelity is None or dataset_images is None}
    if DATASET_MASKS not in fid:
        fid = {DATASET_MASKS: score_masks(dataset_fidelity.predicted[idx], m, pixel_nm=pixel_nm, n_boot=n_boot,
                                          seed=seed, settings=dataset_fidelity.settings), **fid}
    real = {a: _realism_stats(x, images[a], seed=seed) for a in arms}
    fd = {}
    if sem_encoder is not None:
        from semlab.metrics.evaluate import evaluate

        fd = {a: evaluate(list(x), list(images[a]), metrics=(), sem_encoder=sem_encoder, n_boot=200, seed=seed)
              for a in arms}
    change = score_masks(arms[IDEALISED_MASKS], m, pixel_nm=pixel_nm, n_boot=n_boot, seed=seed)
    return IdealisedResult(name, arms, images, fid, real, change, fd)


def experiment_markdown(res: IdealisedResult, label: str = "") -> str:
    """The experiment as Markdown: one row per arm with mIoU, EPE, the stats detector's
    balanced accuracy and AUC (and FD_sem / KD_sem when computed), with 95% CIs."""
    from semlab.textfmt import md_escape as esc

    f = _fmt
    extra = [m for m in ("fd_sem", "kd_sem") if any(r["metric"] == m for rows in res.fd.values() for r in rows)]
    head = ["input masks", "mIoU", "EPE (nm)", "detector bal. acc.", "detector AUC"]
    head += [m.replace("_", " ") for m in extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, s in res.fidelity.items():
        r = res.realism[arm]
        cells = [arm, f(s.miou, 3), f(s.epe, 2), f((r["balanced_accuracy"], r["ci_low"], r["ci_high"]), 2),
                 f((r["auc"], r["auc_ci_low"], r["auc_ci_high"]), 2)]
        for m in extra:
            row = next((x for x in res.fd.get(arm, []) if x["metric"] == m), None)
            ok = row is not None and row["value"] is not None
            cells.append(f((row["value"], row["ci_low"], row["ci_high"]), 3) if ok and row["ci_low"] is not None
                         else f"{row['value']:.3g}" if ok else "-")
        lines.append("| " + " | ".join([esc(cells[0])] + cells[1:]) + " |")
    n = res.change.n
    c = res.change
    lines += ["", f"Generator: {esc(res.generator)}; {esc(label) + ', ' if label else ''}n={n} masks per arm. "
              f"Idealising moved the edges by {c.epe[0]:.2f} nm on average (mIoU of idealised vs dataset masks "
              f"{c.miou[0]:.3f}). Detector: the realism stats detector, 5-fold CV with each mask's target and "
              "generated images in one fold; 0.5 means it cannot tell them from the target images."]
    return "\n".join(lines)


def experiment_doc_metrics(res: IdealisedResult) -> dict[str, dict]:
    """metrics.json entries of the experiment: `<arm>.mask_miou`, `.mask_epe_nm`,
    `.realism_balanced_accuracy` (arms `dataset_masks`, `idealised_masks`)."""
    out = {}
    for arm, ent in ((DATASET_MASKS, K.DATASET_MASKS), (IDEALISED_MASKS, K.IDEALISED_MASKS)):
        s, r = res.fidelity[arm], res.realism[arm]
        for k, v, u in ((K.MASK_MIOU, s.miou, ""), (K.MASK_EPE, s.epe, "nm"),
                        (K.REALISM_BALANCED_ACCURACY, (r["balanced_accuracy"], r["ci_low"], r["ci_high"]), "")):
            e = _m(tuple(float(x) for x in v), s.n, u, note=f"generator: {res.generator}")
            if e is not None:
                out[K.key(ent, k)] = e
    return out
