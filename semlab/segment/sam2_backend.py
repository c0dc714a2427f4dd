"""SAM2 automatic mask generation as a semlab segmentation backend (CPU).

`Sam2Segmenter(Sam2Settings(...)).segment(image)` returns one `Segment` per mask that
SAM2's `SAM2AutomaticMaskGenerator` proposes. Weights come from `semlab.weights.resolve`
(a missing checkpoint raises `WeightsNotFound` naming the file and where to put it) and
are read by semlab itself through `semlab.segment.sam2_model` (`weights_only=True`; a
file that is not a valid SAM2 checkpoint raises `Sam2CheckpointError` naming it).

On the CPU (see /work/shared/stack-notes.md) the cost is dominated by the mask decoder,
which runs once per grid point on the full image embedding: `image_size=512` (a model
built with `++model.image_size=512`, loading the same 1024-px checkpoint) is ~4x cheaper
than 1024 and `bf16=True` (autocast) helps the image encoder. `min_mask_region_area > 0`
needs OpenCV and sam2's compiled extension (absent from the sdist build: sam2 warns and
skips the hole filling).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from semlab.segment.base import Segment, check_image
from semlab.segment.sam2_model import (SAM2_MODELS, SUPPORTED_IMAGE_SIZES, Sam2CheckpointError, build_sam2_model,
                                       quiet_jit, sam2_config_and_weights, sam2_overrides, to_rgb_uint8)
from semlab.weights import KNOWN, resolve

__all__ = ["SAM2_MODELS", "SUPPORTED_IMAGE_SIZES", "Sam2CheckpointError", "Sam2Settings", "Sam2Segmenter",
           "make_random_checkpoint"]


@dataclass
class Sam2Settings:
    model: str = "sam2.1_hiera_tiny"
    checkpoint: str | None = None  # explicit path (file, or folder holding the official file name)
    image_size: int = 1024  # model input size; 512 is the CPU setting (same checkpoint)
    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0
    bf16: bool = True  # torch.autocast("cpu", bfloat16) around inference
    min_side: int = 64  # smaller images raise SegmentationError


def make_random_checkpoint(model_name: str, folder: str | os.PathLike, image_size: int = 1024,
                           seed: int = 0) -> Path:
    """Save a randomly initialised SAM2 `model_name` as `{"model": state_dict}` under its
    official file name in `folder` (for tests, CI and checking a set-up offline). Random
    weights give meaningless masks: use them for timing and plumbing only."""
    import torch

    _, weights_name = sam2_config_and_weights(model_name)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_sam2_model(model_name, None, image_size)
    from semlab.io import atomic_write

    dst = folder / KNOWN[weights_name].filename
    with atomic_write(dst, "wb") as f:
        torch.save({"model": net.state_dict()}, f)
    return dst


class Sam2Segmenter:
    """SAM2's automatic mask generator on the CPU, returning semlab `Segment`s."""

    name = "sam2"

    def __init__(self, settings: Sam2Settings | None = None):
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        self.settings = s = settings or Sam2Settings()
        config, weights_name = sam2_config_and_weights(s.model)
        sam2_overrides(s.image_size)  # validate before any heavy work
        self.config = config
        self.checkpoint: Path = resolve(weights_name, s.checkpoint)
        self.model = build_sam2_model(s.model, self.checkpoint, s.image_size)  # Sam2CheckpointError if bad
        with quiet_jit():
            self.generator = SAM2AutomaticMaskGenerator(
                self.model,
                points_per_side=s.points_per_side,
                points_per_batch=s.points_per_batch,
                pred_iou_thresh=s.pred_iou_thresh,
                stability_score_thresh=s.stability_score_thresh,
                box_nms_thresh=s.box_nms_thresh,
                crop_n_layers=s.crop_n_layers,
                crop_n_points_downscale_factor=s.crop_n_points_downscale_factor,
                min_mask_region_area=s.min_mask_region_area,
                output_mode="binary_mask",
            )
        # the image predictor assumes 1024-px feature maps (stride 4, 8, 16)
        self.generator.predictor._bb_feat_sizes = [(s.image_size // k,) * 2 for k in (4, 8, 16)]
        self._sha256: str | None = None

    def _autocast(self):
        import torch

        if self.settings.bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def generate_raw(self, rgb: np.ndarray) -> list[dict]:
        """SAM2's own records for a uint8 (H, W, 3) image (no validation, no sorting)."""
        import torch

        with torch.inference_mode(), self._autocast():
            return self.generator.generate(rgb)

    def segment(self, image: np.ndarray, source: str | None = None) -> list[Segment]:
        """Segments of a gray float image in [0, 1], largest first (then by score).

        Raises SegmentationError for unusable images (not 2-D, smaller than
        `settings.min_side`, non-finite, blank). Empty masks are dropped."""
        a = check_image(image, min_side=self.settings.min_side, backend="sam2", source=source)
        records = self.generate_raw(to_rgb_uint8(a))
        out = []
        for r in records:
            mask = np.asarray(r["segmentation"], dtype=bool)
            if not mask.any():
                continue
            out.append(Segment(
                mask=mask,
                score=float(r["predicted_iou"]),
                stability=float(r["stability_score"]),
                source="sam2",
                info={"bbox": [float(v) for v in r["bbox"]],  # x, y, w, h
                      "point_coords": [[float(v) for v in p] for p in r["point_coords"]],
                      "crop_box": [float(v) for v in r["crop_box"]]},
            ))
        out.sort(key=lambda g: (-g.area, -g.score, -g.stability, tuple(g.info["bbox"]),
                                tuple(g.info["point_coords"][0])))
        return out

    def checkpoint_sha256(self) -> str:
        if self._sha256 is None:
            h = hashlib.sha256()
            with open(self.checkpoint, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            self._sha256 = h.hexdigest()
        return self._sha256

    def describe(self) -> dict:
        """What produced the segments, for manifests and reports."""
        import sam2
        import torch

        return {
            "backend": "sam2",
            "model": self.settings.model,
            "config": self.config,
            "image_size": self.settings.image_size,
            "settings": asdict(self.settings),
            "checkpoint": str(self.checkpoint),
            "checkpoint_sha256": self.checkpoint_sha256()[:16],
            "sam2": getattr(sam2, "__version__", None) or _dist_version("sam2"),
            "torch": torch.__version__,
        }


def _dist_version(dist: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return None
