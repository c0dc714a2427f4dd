"""SAM2 prompted masks per structure: `Sam2Predictor` over `SAM2ImagePredictor`.

One image embedding (`set_image`, the expensive part: ~0.4 s at 512 px, ~2.5 s at
1024 px for hiera-tiny on this CPU, see `semlab bench segsem`) serves every structure of
the image: all prompts go through the mask decoder in one batched `predict` call. For
each structure it returns the mask logits at the image's resolution, SAM2's predicted
IoU and a stability score. Calls are split only to bound memory: at most `batch_size`
(64) prompts and `max_chunk_bytes` (256 MiB) of full-resolution float32 logits per call,
since sam2 upsamples every mask of a call to the image size at once. Every result keeps
its (H, W) float32 logits (4 bytes per pixel per structure): tile large frames.

**Model size.** `image_size=512` builds the model with `++model.image_size=512`; the
1024-px checkpoint loads into it unchanged (positional embeddings are interpolated).
`SAM2ImagePredictor` hard-codes 1024-px backbone feature sizes (256, 128, 64), which is
why `set_image` failed with "view size is not compatible with input tensor's size and
stride": here they are set from the model's own size (stride 4, 8, 16).

**Single mask or best of three.** `multimask="single"` (default) asks the decoder for
its single-mask output (`multimask_output=False`): a box, possibly with points, is an
unambiguous prompt and SAM2's authors recommend the single output for it; sam2's
`build_sam2` also enables its "dynamic multimask" fallback, which swaps in the best of
the three candidates when the single mask is unstable. `multimask="best"` asks for three
candidates and keeps the one with the highest predicted IoU (what the automatic mask
generator's users usually do for one-point prompts; three times the decoder output).

**Stability score** (our implementation of the automatic mask generator's definition):
the IoU between the mask thresholded at `mask_threshold + offset` and at
`mask_threshold - offset` (offset 1.0 in logit units, sam2's default). The first mask is
inside the second, so the IoU is a ratio of areas; it is 1 when a +-1 logit change moves
no pixel across the boundary, i.e. when the edge is sharp. An empty low-threshold mask
(nothing predicted at all) scores 0 here (sam2 would give 0/0): for a prompted
structure an empty prediction is a failure, not a stable answer.

**Input.** semlab images are gray float32 (H, W) in [0, 1]; SAM2 takes RGB. The gray
image is replicated into three float channels in [0, 1] (no 8-bit rounding), which
sam2's transforms resize and normalise with the ImageNet mean and std exactly as they do
for a uint8 image divided by 255.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from semlab.contours.prompts import Prompt, prompt_arrays
from semlab.weights import WeightsNotFound

__all__ = ["StructureMask", "Sam2Predictor", "stability_score", "to_sam2_rgb", "MULTIMASK_MODES",
           "feature_sizes", "load_sam2_model"]

MULTIMASK_MODES = ("single", "best")


def stability_score(logits, threshold: float = 0.0, offset: float = 1.0):
    """Stability of masks given as logits (..., H, W): |logits > t + o| / |logits > t - o|.

    Works on numpy arrays and torch tensors; returns a float for one mask, else an
    array of the leading shape. 0 where even the low-threshold mask is empty."""
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    try:
        import torch

        if isinstance(logits, torch.Tensor):
            logits = logits.detach().float().cpu().numpy()
    except ImportError:  # pragma: no cover - numpy input needs no torch
        pass
    a = np.asarray(logits, dtype=np.float32)
    if a.ndim < 2:
        raise ValueError(f"logits must have at least 2 dims (..., H, W), got shape {a.shape}")
    hi = np.count_nonzero(a > threshold + offset, axis=(-2, -1))
    lo = np.count_nonzero(a > threshold - offset, axis=(-2, -1))
    s = np.where(lo > 0, hi / np.maximum(lo, 1), 0.0)
    return float(s) if a.ndim == 2 else s.astype(np.float64)


def to_sam2_rgb(image: np.ndarray, source: str | None = None) -> np.ndarray:
    """Gray float (H, W) in [0, 1] -> float32 (H, W, 3) in [0, 1], what SAM2's transforms
    take without rounding. Values outside [0, 1] are clipped; non-finite values refused."""
    a = np.asarray(image)
    where = f"{source}: " if source else ""
    if a.ndim != 2:
        raise ValueError(f"{where}image must be a 2-D gray array (H, W), got shape {a.shape}")
    a = a.astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{where}image has non-finite values")
    a = np.clip(a, 0.0, 1.0)
    return np.ascontiguousarray(np.repeat(a[:, :, None], 3, axis=2))


def feature_sizes(image_size: int) -> list[tuple[int, int]]:
    """Backbone feature map sizes for a square model input (strides 4, 8 and 16)."""
    return [(image_size // k, image_size // k) for k in (4, 8, 16)]


def load_sam2_model(model: str = "sam2.1_hiera_tiny", checkpoint: str | Path | None = None,
                    image_size: int = 1024):
    """Build SAM2 `model` at `image_size` (512 or 1024) with weights found by
    `semlab.weights.resolve` (an explicit file or folder first, then $SEMLAB_WEIGHTS,
    data/weights/, then a download unless $SEMLAB_OFFLINE=1). Returns (model, path).
    The file is read safely by `semlab.segment.sam2_model.read_sam2_checkpoint`; one that
    is not a valid checkpoint of `model` raises `Sam2CheckpointError` (a ValueError)
    "<file> is not a valid SAM2 checkpoint (<reason>)".

    A fine-tuned model saved by `semlab.contours.finetune` is an official
    `{"model": state_dict}` file: pass its path as `checkpoint`."""
    from semlab.segment.sam2_model import build_sam2_model, sam2_config_and_weights, sam2_overrides
    from semlab.weights import resolve

    _, weights_name = sam2_config_and_weights(model)  # KeyError listing valid names
    sam2_overrides(image_size)  # ValueError for an unsupported size, before any heavy work
    try:
        path = resolve(weights_name, checkpoint)
    except WeightsNotFound as e:
        raise WeightsNotFound(
            f"SAM2 predictor for {model!r}: {e} (a fine-tuned model: pass its .pt file as checkpoint=)",
            e.spec, e.searched, e.reason) from e
    # read by semlab with weights_only=True, loaded strictly: Sam2CheckpointError naming the file
    net = build_sam2_model(model, path, image_size)
    return net, Path(path)


@dataclass
class StructureMask:
    """SAM2's answer for one prompted structure.

    `logits` are float32 (H, W) at the image's resolution; `mask` thresholds them at
    `threshold` (0 by default, SAM2's); `probability` is their sigmoid. `predicted_iou`
    is SAM2's IoU head (a sigmoid output), clipped to [0, 1] against bf16 rounding."""

    structure_id: int
    label: int
    logits: np.ndarray
    predicted_iou: float
    stability: float
    threshold: float = 0.0
    prompt: Prompt | None = field(default=None, repr=False)

    @property
    def mask(self) -> np.ndarray:
        return self.logits > self.threshold

    @property
    def probability(self) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-np.clip(self.logits, -60, 60)))).astype(np.float32)

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))


class Sam2Predictor:
    """SAM2 box/point prompted masks for many structures of one image at a time.

    >>> pred = Sam2Predictor("sam2.1_hiera_tiny", image_size=512)      # doctest: +SKIP
    >>> pred.set_image(image)                                           # doctest: +SKIP
    >>> results = pred.predict(prompts_from_mask(presegmentation))      # doctest: +SKIP
    """

    def __init__(self, model: str = "sam2.1_hiera_tiny", checkpoint: str | Path | None = None,
                 image_size: int = 1024, *, bf16: bool = False, multimask: str = "single",
                 mask_threshold: float = 0.0, stability_offset: float = 1.0, batch_size: int = 64,
                 max_chunk_bytes: int = 256 * 2**20, sam_model=None):
        if multimask not in MULTIMASK_MODES:
            raise KeyError(f"unknown multimask mode {multimask!r}; valid: {', '.join(MULTIMASK_MODES)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if sam_model is None:
            sam_model, self.checkpoint = load_sam2_model(model, checkpoint, image_size)
        else:
            self.checkpoint = Path(checkpoint) if checkpoint else None
            image_size = int(sam_model.image_size)
        self.model_name = model
        self.image_size = int(image_size)
        self.bf16 = bool(bf16)
        self.multimask = multimask
        self.mask_threshold = float(mask_threshold)
        self.stability_offset = float(stability_offset)
        self.batch_size = int(batch_size)
        self.max_chunk_bytes = int(max_chunk_bytes)
        self.model = sam_model
        self._predictor = self._make_image_predictor(sam_model)
        self._shape: tuple[int, int] | None = None

    @classmethod
    def from_model(cls, sam_model, model: str = "sam2.1_hiera_tiny", **kwargs) -> "Sam2Predictor":
        """Wrap an in-memory SAM2 model (e.g. `FinetuneResult.model`) without reloading."""
        return cls(model, sam_model=sam_model, **kwargs)

    def _make_image_predictor(self, sam_model):
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        from semlab.segment.sam2_model import quiet_jit

        sam_model.eval()
        with quiet_jit():
            p = SAM2ImagePredictor(sam_model, mask_threshold=self.mask_threshold)
        p._bb_feat_sizes = feature_sizes(int(sam_model.image_size))  # the 512-px fix
        return p

    def _autocast(self):
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def set_image(self, image: np.ndarray, source: str | None = None) -> None:
        """Compute the image embedding once; every `predict` until the next `set_image`
        reuses it."""
        import torch

        rgb = to_sam2_rgb(image, source)
        with torch.inference_mode(), self._autocast():
            self._predictor.set_image(rgb)
        self._shape = rgb.shape[:2]

    def reset(self) -> None:
        self._predictor.reset_predictor()
        self._shape = None

    def predict(self, prompts: Sequence[Prompt], *, use_points: bool = True,
                use_box: bool = True) -> list[StructureMask]:
        """Masks for all `prompts` (of the image last given to `set_image`), in order."""
        import torch

        if self._shape is None:
            raise RuntimeError("call set_image(image) before predict(prompts)")
        prompts = list(prompts)
        if not prompts:
            return []
        for p in prompts:
            if tuple(p.shape) != tuple(self._shape):
                raise ValueError(f"prompt of structure {p.structure_id} refers to an image of shape "
                                 f"{tuple(p.shape)}, but the image set has shape {tuple(self._shape)}")
        if not use_box and (not use_points or all(len(p.points) == 0 for p in prompts)):
            raise ValueError("nothing to prompt with: use_box=False and no points")
        multi = self.multimask == "best"
        # sam2 upsamples every candidate mask of a call to the image's resolution at once:
        # bound that memory (float32) for large images
        per_prompt = (3 if multi else 1) * self._shape[0] * self._shape[1] * 4
        step = max(1, min(self.batch_size, self.max_chunk_bytes // per_prompt))
        out: list[StructureMask] = []
        for start in range(0, len(prompts), step):
            chunk = prompts[start:start + step]
            boxes, coords, labels = prompt_arrays(chunk, use_points=use_points)
            with torch.inference_mode(), self._autocast():
                masks, ious, _ = self._predictor.predict(
                    point_coords=coords, point_labels=labels, box=boxes if use_box else None,
                    multimask_output=multi, return_logits=True, normalize_coords=True)
            b = len(chunk)
            masks = np.asarray(masks, np.float32).reshape(b, -1, *self._shape)
            ious = np.asarray(ious, np.float32).reshape(b, -1)
            pick = np.argmax(ious, axis=1) if multi else np.zeros(b, int)
            for i, p in enumerate(chunk):
                logits = np.ascontiguousarray(masks[i, pick[i]])
                out.append(StructureMask(
                    structure_id=p.structure_id, label=p.label, logits=logits,
                    predicted_iou=float(np.clip(ious[i, pick[i]], 0.0, 1.0)),
                    stability=stability_score(logits, self.mask_threshold, self.stability_offset),
                    threshold=self.mask_threshold, prompt=p))
        return out

    def predict_image(self, image: np.ndarray, prompts: Sequence[Prompt], **kwargs) -> list[StructureMask]:
        """`set_image(image)` then `predict(prompts)`."""
        self.set_image(image)
        return self.predict(prompts, **kwargs)

    def describe(self) -> dict:
        return {"backend": "sam2-prompted", "model": self.model_name, "image_size": self.image_size,
                "checkpoint": str(self.checkpoint) if self.checkpoint else None, "bf16": self.bf16,
                "multimask": self.multimask, "mask_threshold": self.mask_threshold,
                "stability_offset": self.stability_offset}
