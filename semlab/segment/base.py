"""Types shared by the segmentation backends (SAM2, classical) and canonicalisation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class SegmentationError(ValueError):
    """An image cannot be segmented (unreadable, blank, too small...): the message says
    which file and why; batch jobs record it and go on with the next image."""

    def __init__(self, message: str, source: str | None = None):
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


@dataclass
class Segment:
    """One region proposed by a backend: a boolean mask plus the backend's confidence.

    Segments may overlap (SAM2 proposes wholes and parts); `semlab.segment.canonical`
    resolves them into one label map by documented rules.
    """

    mask: np.ndarray  # bool (H, W)
    score: float = 1.0  # SAM2: predicted IoU; classical: 1.0
    stability: float = 1.0  # SAM2: stability score; classical: 1.0
    source: str = ""  # which backend / rule produced it, e.g. "sam2", "classical:bright"
    info: dict = field(default_factory=dict)

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def check_image(image: np.ndarray, *, min_side: int, source: str | None = None,
                backend: str = "") -> np.ndarray:
    """Validate a gray float image for segmentation; raise SegmentationError if unusable."""
    a = np.asarray(image)
    if a.ndim != 2:
        raise SegmentationError(f"expected a 2-D gray image, got shape {a.shape}", source)
    h, w = a.shape
    if min(h, w) < min_side:
        raise SegmentationError(
            f"image is {h}x{w} px; the {backend or 'segmentation'} backend needs at least {min_side} px per side",
            source)
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise SegmentationError("image contains NaN or infinite values", source)
    if float(a.max()) - float(a.min()) < 1e-3:
        raise SegmentationError(f"image is blank (constant value {float(a.mean()):.3f}): nothing to segment", source)
    return a
