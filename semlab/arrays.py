"""Image-stack validation and conversion, written once (floor 0: imports only numpy).

Every function of semlab that takes "a set of gray images" (spectra, FID, LPIPS, the
detectors, attribution statistics) checks and converts it with :func:`as_gray_stack`,
so the rules are the same everywhere:

* **Accepted forms.** A list or tuple of 2-D ``(H, W)`` arrays; one 3-D ``(N, H, W)``
  array; one ``(N, 1, H, W)`` array (a channel axis of one); one 2-D array, read as a
  single image (unless ``single=False``, for functions where a lone image is surely a
  mistake). Torch tensors (and lists of them) are accepted without importing torch:
  they are detached and copied to the CPU.
* **Values.** ``uint8`` is divided by 255 and ``uint16`` by 65535 (the full range of
  the type maps onto [0, 1], as `semlab.io` reads 8- and 16-bit files); ``bool`` becomes
  0/1; every other integer and float type keeps its values. The result has `dtype`.
  With ``value_range=(lo, hi)`` every value must lie in [lo, hi] give or take
  `tol` (a rounding margin; values within it are clipped onto the range); with
  ``value_range=None`` any finite value passes (spectra, signed attribution maps).
* **Refused, with a one-line message naming `what` and the offending image:** an empty
  stack (fewer than `min_count` images), a wrong number of dimensions or channels,
  non-numeric data, NaN or infinity, images of different shapes (unless
  ``same_shape=False``), images smaller than `min_size` px a side, values outside
  `value_range`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_gray_stack", "INT_SCALE"]

#: what each integer type is divided by to land in [0, 1]
INT_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}

_FORMS = "(H, W), (N, H, W), (N, 1, H, W) or a list of (H, W) arrays"


def _numpy(x: Any) -> Any:
    """A torch tensor (recognised by its type's module, torch is not imported) as numpy."""
    if type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return x


def _check_dtype(a: np.ndarray, what: str, where: str) -> None:
    if not (a.dtype == bool or np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{what}: {where}has dtype {a.dtype}; expected gray levels as float, uint8 or uint16")


def _convert(a: np.ndarray, dtype, scale_int: bool) -> np.ndarray:
    scale = INT_SCALE.get(a.dtype) if scale_int else None
    if scale is None:
        return a.astype(dtype, copy=False)
    return a.astype(dtype) / np.asarray(scale, dtype)


def _split(images: Any, what: str, single: bool) -> np.ndarray | list[np.ndarray]:
    """The images as one (N, H, W) array or a list of (H, W) arrays (not yet converted)."""
    images = _numpy(images)
    if isinstance(images, np.ndarray):
        a = images
        if a.ndim == 2:
            if not single:
                raise ValueError(f"{what}: expected a list or (N, H, W) array of images, got one (H, W) array "
                                 f"{a.shape}")
            return a[None]
        if a.ndim == 4:
            if a.shape[1] != 1:
                raise ValueError(f"{what}: expected gray images as {_FORMS}; got shape {a.shape} "
                                 f"({a.shape[1]} channels)")
            return a[:, 0]
        if a.ndim != 3:
            raise ValueError(f"{what}: expected gray images as {_FORMS}; got shape {a.shape}")
        return a
    if isinstance(images, (str, bytes)) or not hasattr(images, "__iter__"):
        raise ValueError(f"{what}: expected gray images as {_FORMS}; got {type(images).__name__}")
    out = []
    for i, im in enumerate(images):
        a = np.asarray(_numpy(im))
        if a.ndim != 2:
            raise ValueError(f"{what}: image {i} has shape {a.shape}; expected a gray (H, W) array")
        out.append(a)
    return out


def as_gray_stack(images: Any, *, what: str = "images", dtype=np.float32, min_count: int = 1,
                  same_shape: bool = True, value_range: tuple[float, float] | None = (0.0, 1.0),
                  single: bool = True, min_size: int = 1, scale_int: bool = True,
                  tol: float = 1e-3) -> np.ndarray | list[np.ndarray]:
    """Gray images in any accepted form (module docstring) -> a checked ``(N, H, W)``
    array of `dtype` (with ``same_shape=False``: a list of N ``(H, W)`` arrays, which
    may differ in size).

    `what` names the images in error messages ("real images: image 3 contains NaN or
    infinity"). `min_count`: the fewest images accepted (1: an empty stack is refused).
    `single`: whether one 2-D array is taken as one image. `min_size`: the smallest
    height and width. `scale_int`: whether uint8 / uint16 are scaled to [0, 1] (see
    `INT_SCALE`; False keeps the integer values, e.g. for label-like maps).
    `value_range`: (lo, hi) that every value must lie in (within `tol`, then clipped),
    or None. The result may share memory with the input when no conversion is needed;
    the input is never modified.
    """
    items = _split(images, what, single)
    n = len(items)
    if n < min_count:
        raise ValueError(f"{what}: no images (an empty stack)" if n == 0 else
                         f"{what}: {n} image(s), at least {min_count} needed")
    if n == 0:
        return np.zeros((0, 0, 0), dtype) if same_shape else []
    if isinstance(items, np.ndarray):
        _check_dtype(items, what, "the stack ")
        shapes = [items.shape[1:]] * n
    else:
        for i, a in enumerate(items):
            _check_dtype(a, what, f"image {i} ")
        shapes = [a.shape for a in items]
        if same_shape:
            for i, s in enumerate(shapes):
                if s != shapes[0]:
                    raise ValueError(f"{what}: image {i} has shape {s} but image 0 has {shapes[0]}; "
                                     "all images must have one (H, W) shape")
    for i, s in enumerate(shapes):
        if min(s) < max(min_size, 1):
            raise ValueError(f"{what}: image {i} of shape {s} is too small (at least {max(min_size, 1)} px a "
                             "side needed)")
    if isinstance(items, np.ndarray):
        stack = _convert(items, dtype, scale_int)
        flat = stack.reshape(n, -1)
        bad = ~np.isfinite(flat).all(axis=1)
        if not bad.any():
            lo_i, hi_i = flat.min(axis=1), flat.max(axis=1)
    else:
        imgs = [_convert(a, dtype, scale_int) for a in items]
        bad = np.array([not np.isfinite(a).all() for a in imgs])
        if not bad.any():
            lo_i, hi_i = np.array([a.min() for a in imgs]), np.array([a.max() for a in imgs])
    if bad.any():
        idx = np.flatnonzero(bad)
        more = " ..." if len(idx) > 10 else ""
        raise ValueError(f"{what}: image(s) {idx[:10].tolist()}{more} contain NaN or infinity")
    if value_range is not None:
        lo, hi = float(value_range[0]), float(value_range[1])
        outside = np.flatnonzero((lo_i < lo - tol) | (hi_i > hi + tol))
        if outside.size:
            i = int(outside[0])
            raise ValueError(f"{what}: values must be in [{lo:g}, {hi:g}] (semlab's image convention; uint8 and "
                             f"uint16 are scaled), image {i} has values in [{lo_i[i]:.6g}, {hi_i[i]:.6g}]")
        if (lo_i < lo).any() or (hi_i > hi).any():  # within the rounding margin
            if isinstance(items, np.ndarray):
                stack = np.clip(stack, lo, hi)
            else:
                imgs = [np.clip(a, lo, hi) for a in imgs]
    if isinstance(items, np.ndarray):
        return stack if same_shape else list(stack)
    return np.stack(imgs) if same_shape else imgs
