"""Statistics of attribution maps: class averages, region enrichment, attribution spectra.

Pure numpy/scipy arithmetic on maps ``(N, H, W)`` that some attribution method has
already produced (:func:`semlab.forensics.saliency.attribute`, or any other source):

* :func:`class_average_maps` averages maps per true class (and per correct / wrong
  prediction): does the detector look at the same places on every image?
* :func:`attribution_by_region` splits |attribution| between pattern edges, flat
  pattern, background, holes and defects (from the canonical label masks) and divides
  by each region's area (an *enrichment*: 1.0 = no preference), with bootstrap CIs over
  images;
* :func:`attribution_spectrum` asks the same question in frequency: is attribution
  concentrated at high spatial frequencies (noise, texture, upsampling artifacts) or at
  low ones (layout, brightness, charging)? (:func:`high_frequency_share` per map.)

:func:`semlab.arrays.as_gray_stack` checks and converts the images (numpy arrays or
torch tensors), as everywhere in semlab, and :func:`as_maps` the attribution maps. This module
does not import torch (a tensor can only reach it once torch is imported) nor the
Captum side: `semlab.forensics.saliency` imports it and re-exports its public names.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from semlab import labels as _labels
from semlab.arrays import as_gray_stack
from semlab.metrics.spectral import power_spectra_2d, radial_power_spectrum

__all__ = [
    "ClassMap",
    "REGIONS",
    "as_maps",
    "attribution_by_region",
    "attribution_spectrum",
    "class_average_maps",
    "edge_zone",
    "high_frequency_share",
]

# --------------------------------------------------------------------------- inputs


def _to_numpy(x: Any) -> Any:
    """A torch tensor as a numpy array (detached, on the CPU); anything else unchanged."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return x


def as_maps(attr: Any, what: str = "attr") -> np.ndarray:
    """Attribution maps (H, W), (N, H, W) or (N, 1, H, W) -> float64 (N, H, W); any sign
    (`semlab.arrays.as_gray_stack` without a value range or integer scaling)."""
    return as_gray_stack(attr, what=what, dtype=np.float64, value_range=None, scale_int=False)


# --------------------------------------------------------------------------- class averages


@dataclass(frozen=True)
class ClassMap:
    """A class-averaged attribution map: group name, the (H, W) map, the number of
    images averaged, their true label (0 real, 1 generated) and whether the group is
    the correctly (True) or wrongly (False) predicted images, or all (None)."""

    name: str
    map: np.ndarray
    n: int
    label: int
    correct: bool | None = None


def class_average_maps(
    attr: Any,
    labels: Sequence[int] | np.ndarray,
    predicted: Sequence[int] | np.ndarray | None = None,
    *,
    absolute: bool = True,
    normalize: bool = True,
    class_names: Sequence[str] = ("real", "generated"),
) -> dict[str, ClassMap]:
    """Mean attribution map per true class (keys "real", "generated"), and with
    `predicted` (0/1 per image) also per correct / wrong prediction ("real/correct",
    "real/wrong", ...). Empty groups are left out.

    `absolute` averages |attribution| (default): signs cancel between images whose
    evidence points the same way but sits on opposite sides of an edge. `normalize`
    first divides each map by its mean |attribution|, so every image counts equally
    (otherwise a few confidently classified images with large gradients dominate).
    Maps must share one size (a class average over different layouts is a statement
    about positions in the frame: useful for fixed-geometry data, tiles, and for
    spotting border or corner artifacts).
    """
    a = as_maps(attr)
    n = a.shape[0]
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    if y.shape != (n,):
        raise ValueError(f"labels must have one entry per map ({n}); got {y.shape[0]}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 (real) or 1 (generated); got {np.unique(y).tolist()}")
    p = None
    if predicted is not None:
        p = np.asarray(predicted).astype(np.int64).reshape(-1)
        if p.shape != (n,):
            raise ValueError(f"predicted must have one entry per map ({n}); got {p.shape[0]}")
        if not np.isin(p, (0, 1)).all():
            raise ValueError(f"predicted must be 0 (real) or 1 (generated); got {np.unique(p).tolist()}")
    if len(class_names) != 2:
        raise ValueError(f"class_names must name 2 classes (real, generated), got {list(class_names)}")
    v = np.abs(a) if absolute else a.copy()
    if normalize:
        scale = np.abs(a).mean(axis=(1, 2), keepdims=True)
        v = v / np.where(scale > 0, scale, 1.0)
    out: dict[str, ClassMap] = {}
    for lab in (0, 1):
        sel = y == lab
        groups = [(str(class_names[lab]), sel, None)]
        if p is not None:
            groups += [(f"{class_names[lab]}/correct", sel & (p == lab), True),
                       (f"{class_names[lab]}/wrong", sel & (p != lab), False)]
        for name, s, corr in groups:
            if s.any():
                out[name] = ClassMap(name, v[s].mean(axis=0).astype(np.float32), int(s.sum()), lab, corr)
    return out


# --------------------------------------------------------------------------- regions

REGIONS: tuple[str, ...] = ("edge", "pattern", "background", "hole", "defect")
_INTERIOR = {"pattern": _labels.PATTERN, "background": _labels.BACKGROUND, "hole": _labels.HOLE,
             "defect": _labels.DEFECT}


def _as_masks(masks: Any, shape: tuple[int, int, int]) -> np.ndarray:
    m = np.asarray(_to_numpy(masks))
    if m.ndim == 2:
        m = m[None]
    elif m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.shape != shape:
        raise ValueError(f"masks must match the attribution maps: expected shape {shape} (or {shape[1:]} for "
                         f"one map), got {np.shape(masks)}")
    if m.dtype == bool:
        m = m.astype(np.uint8)
    if not np.issubdtype(m.dtype, np.integer):
        if not np.all(np.isfinite(m)) or not np.all(m == np.round(m)):
            raise _labels.MaskError(f"masks must hold integer class ids, got dtype {m.dtype}")
        m = m.astype(np.int64)
    bad = np.unique(m[(m < 0) | (m >= _labels.NUM_CLASSES)])
    if bad.size:
        raise _labels.MaskError(f"mask class ids {bad[:10].tolist()} are outside 0..{_labels.NUM_CLASSES - 1}")
    return m.astype(np.int64)


def edge_zone(mask: np.ndarray, edge_width_px: int = 2) -> np.ndarray:
    """Boolean (H, W): pixels with a pixel of another class within `edge_width_px` in
    both x and y (a (2w+1)^2 square). Both sides of a boundary count, so a straight
    edge gives a band 2w px wide; the image border is not a boundary; w = 0: no edge.
    (Within the square, the maximum and minimum label differ exactly when some label
    differs from the centre's.)"""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    w = int(edge_width_px)
    if w != edge_width_px or w < 0:
        raise ValueError(f"edge_width_px must be an integer >= 0, got {edge_width_px}")
    if w == 0:
        return np.zeros(m.shape, bool)
    size = 2 * w + 1
    return ndimage.maximum_filter(m, size=size, mode="nearest") != ndimage.minimum_filter(m, size=size,
                                                                                          mode="nearest")


def _region_sums(a: np.ndarray, m: np.ndarray, edge_width_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image and region: sum of |attr| and pixel count, each (N, len(REGIONS))."""
    n = a.shape[0]
    mass = np.zeros((n, len(REGIONS)))
    area = np.zeros((n, len(REGIONS)))
    for i in range(n):
        edge = edge_zone(m[i], edge_width_px)
        regions = [edge] + [(m[i] == _INTERIOR[r]) & ~edge for r in REGIONS[1:]]
        for j, sel in enumerate(regions):
            mass[i, j] = np.abs(a[i][sel]).sum()
            area[i, j] = sel.sum()
    return mass, area


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def attribution_by_region(
    attr: Any,
    masks: Any,
    *,
    edge_width_px: int = 2,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Where |attribution| goes: edges, flat pattern, background, holes, defects.

    Regions (disjoint, covering every pixel; from canonical masks, 0 background,
    1 pattern, 2 hole, 3 defect): "edge" = :func:`edge_zone` (within `edge_width_px`
    of a label boundary), then the interiors of each class outside the edge zone.

    Returns a dict:
      - ``regions``: the region names (:data:`REGIONS`);
      - ``attribution_share``, ``area_share``, ``enrichment``: {region: float}, pooled
        over all images (sum of |attr| in the region over all images / total; the same
        for pixel counts; enrichment = attribution share / area share, so 1.0 means no
        preference, 3.0 three times more attribution per pixel than average; NaN for a
        region with no pixels);
      - ``enrichment_ci``: {region: (low, high)}: percentile bootstrap over images
        (`n_boot` resamples, level `ci`) of the pooled enrichment;
      - ``per_image``: {"attribution_share", "area_share", "enrichment"}: arrays
        (N, len(regions));
      - ``rows``: one dict per region (region, attribution_share, area_share,
        enrichment, ci_low, ci_high, pixels) for a table;
      - ``edge_width_px``, ``n_images``.
    """
    a = as_maps(attr)
    m = _as_masks(masks, a.shape)
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    mass, area = _region_sums(a, m, edge_width_px)
    total_mass = mass.sum()
    if total_mass <= 0:
        warnings.warn("attribution is zero everywhere: region shares are undefined (NaN)", stacklevel=2)
    share = _ratio(mass.sum(0), np.full(len(REGIONS), total_mass))
    area_share = area.sum(0) / area.sum()
    if area_share[0] > 0.8:
        warnings.warn(f"the edge zone covers {100 * area_share[0]:.0f}% of the pixels (edge_width_px="
                      f"{edge_width_px}): little is left to compare it with; use a smaller edge_width_px "
                      "(small images of fine patterns)", UserWarning, stacklevel=2)
    enrich = _ratio(share, area_share)
    per_share = _ratio(mass, mass.sum(1, keepdims=True))
    per_area = area / area.sum(1, keepdims=True)
    per_enrich = _ratio(per_share, per_area)

    n = a.shape[0]
    rng = np.random.default_rng(seed)
    lo = hi = enrich
    if n > 1 and n_boot > 0:
        idx = rng.integers(0, n, size=(int(n_boot), n))
        bm = mass[idx].sum(1)  # (n_boot, R)
        ba = area[idx].sum(1)
        b_enrich = _ratio(_ratio(bm, bm.sum(1, keepdims=True)), ba / ba.sum(1, keepdims=True))
        alpha = (1 - ci) / 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (absent regions)
            lo, hi = np.nanquantile(b_enrich, [alpha, 1 - alpha], axis=0)
    rows = [
        {"region": r, "attribution_share": float(share[j]), "area_share": float(area_share[j]),
         "enrichment": float(enrich[j]), "ci_low": float(lo[j]), "ci_high": float(hi[j]),
         "pixels": int(area[:, j].sum())}
        for j, r in enumerate(REGIONS)
    ]
    return {
        "regions": list(REGIONS),
        "attribution_share": {r: float(share[j]) for j, r in enumerate(REGIONS)},
        "area_share": {r: float(area_share[j]) for j, r in enumerate(REGIONS)},
        "enrichment": {r: float(enrich[j]) for j, r in enumerate(REGIONS)},
        "enrichment_ci": {r: (float(lo[j]), float(hi[j])) for j, r in enumerate(REGIONS)},
        "per_image": {"attribution_share": per_share, "area_share": per_area, "enrichment": per_enrich},
        "rows": rows,
        "edge_width_px": int(edge_width_px),
        "n_images": int(n),
    }


# --------------------------------------------------------------------------- spectra


def high_frequency_share(x: np.ndarray, cutoff: float = 0.25, *, window: str | None = "hann") -> float:
    """Share of the 2-D power of the mean-subtracted, windowed map `x` (H, W) at radial
    frequencies above `cutoff` cycles/px (DC excluded; the corners beyond Nyquist count
    as high). Computed on the full 2-D spectrum, not on a radial average, so every
    frequency counts once. White noise gives the area share of the frequency square
    beyond the cutoff (about 0.80 at 0.25); NaN for a constant map."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {a.shape}")
    if not 0 < cutoff < np.sqrt(0.5):
        raise ValueError(f"cutoff must be in (0, 0.707) cycles/px, got {cutoff}")
    p = power_spectra_2d(a[None], window=window)[0]
    r = np.hypot(np.fft.fftfreq(a.shape[0])[:, None], np.fft.fftfreq(a.shape[1])[None, :])
    p[0, 0] = 0.0
    tot = p.sum()
    return float(p[r > cutoff].sum() / tot) if tot > 0 else float("nan")


def attribution_spectrum(
    attr: Any,
    images: Any,
    *,
    of: str = "attribution",
    cutoff: float = 0.25,
    window: str | None = "hann",
) -> dict[str, Any]:
    """Attribution-weighted spectra: at which spatial frequencies does attribution sit?

    `of` = "attribution" analyses the signed map itself (where the detector's
    sensitivity oscillates: a detector keyed on checkerboard upsampling artifacts has
    maps that alternate sign pixel to pixel); "product" analyses attribution x image
    (the image content weighted by how much it counts). Each map's and each image's
    radially averaged power spectrum (:func:`semlab.metrics.spectral.radial_power_spectrum`,
    Hann window) is scaled to unit sum before averaging over images, so the curves are
    distributions over frequency that can be compared with the image's own.

    Returns a dict: ``freq`` (cycles/px), ``attribution_power`` and ``image_power``
    (mean normalised radial spectra), ``high_share`` and ``image_high_share`` (mean over
    images of :func:`high_frequency_share` above `cutoff`), ``per_image_high_share`` and
    ``per_image_image_high_share`` (N,), ``cutoff``, ``of``. "Attribution sits at high
    spatial frequencies" means ``high_share`` well above ``image_high_share``.

    Which maps to use: the spectrum of a gradient map (saliency, SmoothGrad over
    saliency) describes the detector. Integrated gradients are ``(x - baseline)`` times
    a path-averaged gradient, so their spectrum inherits that of ``x - baseline``
    (white-ish for noisy SEM images whatever the detector does; high-pass for the blur
    baseline); occlusion maps are box-filtered by the window, hence low-pass; Grad-CAM
    maps are upsampled from a coarse layer. Read those spectra relative to each other,
    not as evidence of what the detector keys on.
    """
    a = as_maps(attr)
    imgs = as_gray_stack(images, dtype=np.float64, min_size=2)
    if imgs.shape != a.shape:
        raise ValueError(f"images must match the attribution maps: {a.shape} maps, images of shape {imgs.shape}")
    if min(a.shape[1:]) < 4:
        raise ValueError(f"maps too small for a spectrum: {a.shape[1:]}")
    if of == "attribution":
        target = a
    elif of == "product":
        target = a * imgs
    else:
        raise ValueError(f"of must be 'attribution' or 'product', got {of!r}")

    def norm_spec(x):
        f, p = radial_power_spectrum(x, window=window)
        s = p.sum()
        return f, (p / s if s > 0 else np.full_like(p, np.nan))

    freq = norm_spec(target[0])[0]
    ap = np.stack([norm_spec(t)[1] for t in target])
    ip = np.stack([norm_spec(im)[1] for im in imgs])
    hs = np.array([high_frequency_share(t, cutoff, window=window) for t in target])
    ihs = np.array([high_frequency_share(im, cutoff, window=window) for im in imgs])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN (constant maps)
        return {
            "freq": freq,
            "attribution_power": np.nanmean(ap, axis=0),
            "image_power": np.nanmean(ip, axis=0),
            "high_share": float(np.nanmean(hs)),
            "image_high_share": float(np.nanmean(ihs)),
            "per_image_high_share": hs,
            "per_image_image_high_share": ihs,
            "cutoff": float(cutoff),
            "of": of,
        }
