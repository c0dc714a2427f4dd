"""SegSEM's hybrid: per structure, SAM2's contour when SAM2 is confident, else the
classical fallback's -- and a record of which was used and why.

The pipeline of `HybridExtractor.extract(image)`:

1. **Classical pre-segmentation and fallback** (`extract_classical_contours` with the
   `fallback` settings): the structures (connected patterns and, with
   `hole_structures`, enclosed holes) and each one's refined sub-pixel contours. This
   one call gives both the prompts and the fallback answer, so the fallback costs
   nothing extra.
2. **Prompts**: one box (+ positive point, optional negative points) per classical
   structure of a class in `sam2_classes` (`prompts_from_structures` on the classical
   structure map), so SAM2's answer k belongs to classical structure k.
3. **SAM2**: one image embedding and one batched decoder call for all prompts
   (`Sam2Predictor`); per structure the mask logits at the image's resolution, SAM2's
   predicted IoU and the stability score, combined into a confidence
   (`confidence_score`, or any callable such as a fitted `LogisticConfidence`).
4. **SAM2's contour** of a structure: of the connected components of `logits >
   mask_threshold` the one overlapping the classical structure most (SAM2 may add
   blobs elsewhere in the box; those belong to other structures); the other
   components are masked out and the contour is the level line of the **logits**
   (marching squares with linear interpolation between pixel centres:
   `sam2_refine="none"`, the default). Why not refine it: a fine-tuned SAM2 is trained
   on exact masks, so the zero crossing of its logits is its own edge estimate; moving
   it to the steepest intensity drop (`sam2_refine="gradient"`, the classical
   sub-pixel refinement with the fallback's calibrated edge offset) would reproduce
   the fallback's edge position wherever the image has a clear edge and keep only
   SAM2's topology. Both are available; the experiment uses the default.
5. **Choice** per structure: SAM2 when its confidence >= `threshold`, else the
   fallback. The fallback is also used -- with the reason recorded -- when SAM2 is
   unavailable (no predictor: missing weights, sam2 not installed), when the class is
   not prompted, when SAM2's mask is empty, or when it does not overlap the structure.

Every `HybridStructure` keeps both candidates, so `HybridResult.rechoose(t)` answers
"what would threshold t have given" without running SAM2 again (threshold sweeps and
calibration), and `contours_of("sam2")` / `contours_of("fallback")` give each part
alone (the ablation).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy import ndimage as ndi

from semlab import labels as L
from semlab.contours.classical import (ClassicalContours, ContourSettings, ProfileSampler,
                                       extract_classical_contours, refine_contour)
from semlab.contours.confidence import confidence_score
from semlab.contours.extract import extract_contours, rasterize_contours, to_nm

__all__ = ["HybridExtractor", "HybridResult", "HybridStructure", "SOURCES", "SAM2_REFINERS",
           "sam2_unavailable_reason", "structure_contours_from_logits"]

SOURCES = ("sam2", "fallback")
SAM2_REFINERS = ("none", "gradient")


def _fmt(t: float) -> str:
    return "inf" if not np.isfinite(t) else f"{t:.2f}"


@dataclass
class HybridStructure:
    """One structure of the hybrid result: the chosen contours and both candidates.

    `source` is "sam2" or "fallback", `reason` says why (e.g. "confidence 0.42 < 0.80",
    "SAM2 weights unavailable: sam2.1_hiera_tiny.pt not found ..."). `confidence`,
    `predicted_iou` and `stability` are None when SAM2 did not run on this structure.
    `sam2_contours` is None when SAM2 gave nothing usable (then `sam2_problem` says
    why); `fallback_contours` are the classical structure's refined contours."""

    id: int
    label: int
    source: str
    reason: str
    fallback_contours: list[np.ndarray]
    fallback_mask: np.ndarray
    sam2_contours: list[np.ndarray] | None = None
    sam2_mask: np.ndarray | None = None
    confidence: float | None = None
    predicted_iou: float | None = None
    stability: float | None = None
    sam2_problem: str | None = None  # why there is no usable SAM2 candidate
    touches_frame: bool = False

    @property
    def contours(self) -> list[np.ndarray]:
        return self.sam2_contours if self.source == "sam2" else self.fallback_contours

    @property
    def mask(self) -> np.ndarray:
        return self.sam2_mask if self.source == "sam2" else self.fallback_mask

    def record(self) -> dict[str, Any]:
        """Plain types for tables and JSON."""
        return {"id": int(self.id), "label": int(self.label), "label_name": L.CLASSES[self.label].name
                if 0 <= self.label < len(L.CLASSES) else str(self.label), "source": self.source,
                "reason": self.reason, "confidence": self.confidence, "predicted_iou": self.predicted_iou,
                "stability": self.stability, "area_px": int(np.count_nonzero(self.mask)),
                "touches_frame": bool(self.touches_frame)}


def _choose(st: HybridStructure, threshold: float, unavailable: str | None) -> tuple[str, str]:
    """(source, reason) for one structure at `threshold`."""
    if st.confidence is None:
        return "fallback", st.sam2_problem or unavailable or "SAM2 did not run"
    if st.sam2_contours is None:
        return "fallback", st.sam2_problem or "SAM2 gave no usable mask"
    if st.confidence >= threshold:
        return "sam2", f"confidence {st.confidence:.2f} >= {_fmt(threshold)}"
    return "fallback", f"confidence {st.confidence:.2f} < {_fmt(threshold)}"


@dataclass
class HybridResult:
    """The hybrid's output for one image. `structures` follow the classical structure
    ids (patterns first, then holes); `contours` are the chosen pattern edges (the same
    set `ClassicalContours.contours` and `SimResult.contours` give), in px."""

    structures: list[HybridStructure]
    classical: ClassicalContours
    threshold: float
    sam2_available: bool
    unavailable_reason: str | None = None
    pixel_nm: float | None = None
    sam2_refine: str = "none"
    predictor: dict | None = field(default=None, repr=False)  # the predictor's describe()

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.classical.mask.shape)

    @property
    def contours(self) -> list[np.ndarray]:
        return self.contours_of("chosen")

    def contours_of(self, source: str = "chosen") -> list[np.ndarray]:
        """Pattern edges from the chosen source per structure ("chosen"), from SAM2 only
        ("sam2": structures without a usable SAM2 mask contribute nothing -- SAM2 alone
        misses them) or from the fallback only ("fallback": the classical result)."""
        if source not in ("chosen",) + SOURCES:
            raise KeyError(f"unknown source {source!r}; valid: chosen, sam2, fallback")
        out: list[np.ndarray] = []
        for s in self.structures:
            if s.label != L.PATTERN:
                continue
            cs = s.contours if source == "chosen" else (s.sam2_contours if source == "sam2" else s.fallback_contours)
            out.extend(cs or [])
        return out

    def contours_nm(self) -> list[np.ndarray]:
        if not self.pixel_nm:
            raise ValueError("the pixel size is unknown: pass pixel_nm to HybridExtractor.extract")
        return to_nm(self.contours, self.pixel_nm)

    def _paint(self, dtype, field: str) -> np.ndarray:
        """Each chosen structure's `field` painted into its mask, holes after patterns."""
        out = np.zeros(self.shape, dtype)
        for s in sorted(self.structures, key=lambda s: s.label != L.PATTERN):
            out[s.mask] = getattr(s, field)
        return out

    @property
    def mask(self) -> np.ndarray:
        """uint8 canonical labels of the chosen structures (holes painted after patterns)."""
        return self._paint(np.uint8, "label")

    @property
    def structure_map(self) -> np.ndarray:
        """int32 structure ids (0: none), painted like `mask`."""
        return self._paint(np.int32, "id")

    @property
    def n_sam2(self) -> int:
        return sum(s.source == "sam2" for s in self.structures)

    @property
    def n_fallback(self) -> int:
        return sum(s.source == "fallback" for s in self.structures)

    @property
    def fallback_rate(self) -> float:
        """Share of structures that use the fallback (NaN without structures)."""
        return self.n_fallback / len(self.structures) if self.structures else float("nan")

    def records(self) -> list[dict[str, Any]]:
        return [s.record() for s in self.structures]

    def summary(self) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for s in self.structures:
            if s.source == "fallback":
                key = "low confidence" if s.reason.startswith("confidence") else s.reason
                reasons[key] = reasons.get(key, 0) + 1
        return {"n_structures": len(self.structures), "n_sam2": self.n_sam2, "n_fallback": self.n_fallback,
                "fallback_rate": self.fallback_rate, "threshold": self.threshold,
                "sam2_available": self.sam2_available, "unavailable_reason": self.unavailable_reason,
                "fallback_reasons": reasons}

    def rechoose(self, threshold: float) -> "HybridResult":
        """The same candidates chosen at another threshold (no SAM2 call)."""
        structs = []
        for s in self.structures:
            src, why = _choose(s, float(threshold), self.unavailable_reason)
            structs.append(replace(s, source=src, reason=why))
        return replace(self, structures=structs, threshold=float(threshold))


def structure_contours_from_logits(logits: np.ndarray, structure_mask: np.ndarray, threshold: float = 0.0, *,
                                   box: tuple[float, float, float, float] | None = None, box_margin_px: float = 8.0,
                                   min_hole_px: float = 8.0, min_area_px: float = 2.0
                                   ) -> tuple[list[np.ndarray] | None, np.ndarray | None, str | None]:
    """SAM2's contours of one structure from its logits (step 4 of the module docstring).

    Returns (contours, mask, problem): the level-`threshold` contours of the component of
    `logits > threshold` overlapping `structure_mask` most (other components masked out,
    so their edges do not appear), its pixel mask, and None; or (None, None, reason)
    when the mask is empty or misses the structure. Holes of the component smaller than
    `min_hole_px` px are filled (the classical fallback's `min_hole_px` rule: a speck
    of noise is not a hole in a line), and contours enclosing less than `min_area_px`
    px^2 dropped: a logit map upsampled from SAM2's low-resolution output cannot place
    an edge that small, and a speckled mask (an untrained or confused model) would
    otherwise give thousands of contours. With the prompt's `box` (x0, y0, x1, y1), the
    mask is cut `box_margin_px` outside it: SAM2 was asked for the object in that box,
    and whatever it paints beyond is another structure (or, from a model that has not
    learnt SEM images, the background)."""
    lg = np.asarray(logits, np.float32)
    if box is not None:
        h, w = lg.shape
        x0, y0, x1, y1 = box
        r0, r1 = max(int(np.floor(y0 - box_margin_px)), 0), min(int(np.ceil(y1 + box_margin_px)) + 1, h)
        c0, c1 = max(int(np.floor(x0 - box_margin_px)), 0), min(int(np.ceil(x1 + box_margin_px)) + 1, w)
        low = min(float(threshold) - 1.0, float(lg.min()))
        cut = np.full(lg.shape, np.float32(low))
        cut[r0:r1, c0:c1] = lg[r0:r1, c0:c1]
        lg = cut
    above = lg > threshold
    if not above.any():
        return None, None, "SAM2 mask empty"
    lab, n = ndi.label(above)
    hits = lab[np.asarray(structure_mask, bool) & above]
    if hits.size == 0:
        return None, None, "SAM2 mask does not overlap the pre-segmented structure"
    k = int(np.bincount(hits, minlength=n + 1)[1:].argmax()) + 1
    comp = lab == k
    field = lg
    if n > 1:  # other components below the level: only this component's edges remain
        low = min(float(threshold) - 1.0, float(lg.min()))
        field = np.where(above & ~comp, np.float32(low), lg)
    if min_hole_px > 1:
        from skimage.morphology import remove_small_objects

        filled = ~remove_small_objects(~comp, max_size=int(min_hole_px) - 1)
        if filled.sum() > comp.sum():  # small holes: above the level, no contour there
            field = np.where(filled & ~comp, np.float32(float(threshold) + 1.0), field)
            comp = filled
    cs = extract_contours(field, float(threshold), min_area_px=min_area_px)
    if not cs:
        return None, None, "SAM2 mask too small for a contour"
    return cs, comp, None


def sam2_unavailable_reason(model: str = "sam2.1_hiera_tiny", checkpoint: str | Path | None = None) -> str | None:
    """None if SAM2 `model` can be built here (sam2 installed, weights found without
    downloading), else the reason, e.g. "SAM2 weights unavailable: sam2.1_hiera_tiny.pt
    not found (put it in data/weights/)". Never downloads: a report must not depend on
    the network, and a silent 150 MB download inside an extraction is a surprise."""
    import importlib.util

    from semlab import weights
    from semlab.segment.sam2_model import SAM2_MODELS

    if model not in SAM2_MODELS:
        raise KeyError(f"unknown SAM2 model {model!r}; valid: {', '.join(SAM2_MODELS)}")
    if importlib.util.find_spec("sam2") is None:
        return "sam2 is not installed (pip install sam2)"
    if checkpoint is not None:
        p = Path(checkpoint)
        if p.is_file():
            return None
        if p.is_dir():
            ok, info = weights.status(SAM2_MODELS[model][1], p)
            return None if ok else f"SAM2 weights unavailable: {info}"
        return f"SAM2 weights unavailable: checkpoint {p} does not exist"
    ok, info = weights.status(SAM2_MODELS[model][1])
    return None if ok else f"SAM2 weights unavailable: {info}"


class HybridExtractor:
    """Classical pre-segmentation -> prompts -> SAM2 masks with confidence -> per
    structure SAM2 or the classical fallback (see the module docstring).

    `predictor`: a `Sam2Predictor` (or any object with `set_image(image)` and
    `predict(prompts)` returning `StructureMask`-like objects with `structure_id`,
    `logits`, `predicted_iou`, `stability` and optionally `threshold`), or None: then
    every structure uses the fallback, with `unavailable_reason` (default: "no SAM2
    predictor given") as the reason. `fallback`: the classical `ContourSettings`
    (calibrate its `edge_offset_px` with `calibrate_edge_offset`). `threshold`: SAM2 is
    used where confidence >= threshold (calibrate with
    `semlab.contours.confidence.calibrate_threshold`). `confidence`: callable
    (predicted_iou, stability) -> score in [0, 1]."""

    def __init__(self, predictor=None, fallback: ContourSettings | None = None, threshold: float = 0.8, *,
                 confidence: Callable = confidence_score, sam2_classes: Sequence[int] = (L.PATTERN, L.HOLE),
                 sam2_refine: str = "none", margin_px: float = 4.0, n_negative: int = 0,
                 sam2_min_hole_px: float = 8.0, box_margin_px: float = 8.0, unavailable_reason: str | None = None):
        if sam2_refine not in SAM2_REFINERS:
            raise KeyError(f"unknown sam2_refine {sam2_refine!r}; valid: {', '.join(SAM2_REFINERS)}")
        if predictor is not None and not (hasattr(predictor, "set_image") and hasattr(predictor, "predict")):
            raise TypeError("predictor must have set_image(image) and predict(prompts) (e.g. a Sam2Predictor)")
        if np.isnan(threshold):
            raise ValueError("threshold must be a number (use float('inf') to always fall back)")
        self.predictor = predictor
        self.fallback = fallback or ContourSettings()
        self.threshold = float(threshold)
        self.confidence = confidence
        self.sam2_classes = tuple(int(c) for c in sam2_classes)
        self.sam2_refine = sam2_refine
        self.margin_px = float(margin_px)
        self.n_negative = int(n_negative)
        self.sam2_min_hole_px = float(sam2_min_hole_px)
        self.box_margin_px = float(box_margin_px)
        self.unavailable_reason = None if predictor is not None else (unavailable_reason or "no SAM2 predictor given")

    @classmethod
    def from_weights(cls, model: str = "sam2.1_hiera_tiny", checkpoint: str | Path | None = None,
                     image_size: int = 1024, *, bf16: bool = False, **kwargs) -> "HybridExtractor":
        """A hybrid with a `Sam2Predictor` for `model` (pretrained weights found by
        `semlab.weights`, or a fine-tuned `checkpoint` file), or -- when the weights or
        sam2 are missing, or the file found is not a valid SAM2 checkpoint -- without one,
        every structure falling back with that reason. Never downloads (see
        `sam2_unavailable_reason`)."""
        reason = sam2_unavailable_reason(model, checkpoint)
        if reason is not None:
            return cls(None, unavailable_reason=reason, **kwargs)
        from semlab.contours.predictor import Sam2Predictor
        from semlab.segment.sam2_model import Sam2CheckpointError
        from semlab.weights import WeightsNotFound

        try:
            pred = Sam2Predictor(model, checkpoint, image_size, bf16=bf16)
        except WeightsNotFound as e:  # pragma: no cover - status() said it was there
            return cls(None, unavailable_reason=f"SAM2 weights unavailable: {e}", **kwargs)
        except Sam2CheckpointError as e:  # a truncated, foreign or unsafe file: one line, no traceback
            return cls(None, unavailable_reason=f"SAM2 weights unavailable: {e}", **kwargs)
        return cls(pred, **kwargs)

    def describe(self) -> dict[str, Any]:
        pred = self.predictor.describe() if self.predictor is not None and hasattr(self.predictor, "describe") else None
        return {"backend": "segsem-hybrid", "threshold": self.threshold, "sam2_refine": self.sam2_refine,
                "sam2_classes": list(self.sam2_classes), "margin_px": self.margin_px, "n_negative": self.n_negative,
                "sam2_min_hole_px": self.sam2_min_hole_px, "box_margin_px": self.box_margin_px,
                "confidence": getattr(self.confidence, "__name__", type(self.confidence).__name__),
                "sam2": pred, "sam2_available": self.predictor is not None,
                "unavailable_reason": self.unavailable_reason, "fallback": self.fallback.describe()}

    def _score(self, predicted_iou: float, stability: float) -> float:
        return float(np.asarray(self.confidence(predicted_iou, stability), np.float64).reshape(-1)[0])

    def _sampler(self, image: np.ndarray, cl: ClassicalContours) -> tuple[ProfileSampler, ContourSettings]:
        """The fallback's profile sampler and scaled settings, for refining SAM2 contours."""
        s = cl.settings
        sc = s.scaled(cl.scale)
        src = cl.denoised if s.denoise != "none" else (1.0 - image if s.polarity == "dark" else image)
        prof = ndi.gaussian_filter(np.asarray(src, np.float64), sc.profile_sigma_px) if sc.profile_sigma_px > 0 else src
        return ProfileSampler(prof), sc

    def extract(self, image: np.ndarray, *, pixel_nm: float | None = None, source: str | None = None,
                classical: ClassicalContours | None = None) -> HybridResult:
        """The hybrid contours of one gray float image in [0, 1]. `classical` reuses a
        fallback result already computed with the same settings (e.g. in experiments
        that score the fallback alone too); `source` names the image in errors."""
        from semlab.contours.prompts import prompts_from_structures

        img = np.asarray(image, np.float32)
        cl = classical if classical is not None else extract_classical_contours(img, self.fallback,
                                                                                pixel_nm=pixel_nm, source=source)
        structs = [HybridStructure(id=s.id, label=s.label, source="fallback", reason="",
                                   fallback_contours=list(s.contours), fallback_mask=s.mask,
                                   touches_frame=s.touches_frame) for s in cl.structures]
        by_id = {s.id: s for s in structs}
        if self.predictor is not None:
            for s in structs:
                if s.label not in self.sam2_classes:
                    s.sam2_problem = f"class {L.CLASSES[s.label].name} is not prompted (sam2_classes)"
            wanted = {s.id: s.label for s in structs if s.label in self.sam2_classes}
            if wanted:
                inst = np.where(np.isin(cl.structure_map, list(wanted)), cl.structure_map, 0).astype(np.int32)
                present = set(int(v) for v in np.unique(inst) if v > 0)
                for sid in set(wanted) - present:  # painted over by a later structure: nothing to prompt
                    by_id[sid].sam2_problem = "structure hidden by another in the structure map"
                prompts = prompts_from_structures(inst, {k: v for k, v in wanted.items() if k in present},
                                                  margin_px=self.margin_px, n_negative=self.n_negative)
                self.predictor.set_image(img)
                answers = self.predictor.predict(prompts) if prompts else []
                sampler = None
                for ans in answers:
                    st = by_id[int(ans.structure_id)]
                    st.predicted_iou = float(ans.predicted_iou)
                    st.stability = float(ans.stability)
                    st.confidence = self._score(st.predicted_iou, st.stability)
                    prompt = getattr(ans, "prompt", None)
                    cs, m, problem = structure_contours_from_logits(
                        ans.logits, st.fallback_mask, float(getattr(ans, "threshold", 0.0)),
                        box=prompt.box if prompt is not None else None, box_margin_px=self.box_margin_px,
                        min_hole_px=self.sam2_min_hole_px)
                    if cs is not None and self.sam2_refine == "gradient":
                        if sampler is None:
                            sampler = self._sampler(img, cl)
                        pol = -1 if st.label == L.HOLE else 1
                        cs = [refine_contour(sampler[0], c, sampler[1], shape=img.shape, polarity=pol)[0] for c in cs]
                        m = rasterize_contours(cs, img.shape)
                    st.sam2_contours, st.sam2_mask, st.sam2_problem = cs, m, problem
        for s in structs:
            s.source, s.reason = _choose(s, self.threshold, self.unavailable_reason)
        pred_desc = self.describe()["sam2"]
        return HybridResult(structs, cl, self.threshold, self.predictor is not None, self.unavailable_reason,
                            pixel_nm if pixel_nm is not None else cl.pixel_nm, self.sam2_refine, pred_desc)
