"""Reading and writing images, masks, CSV and JSON; atomic writes; hashing.

Images inside semlab are float32 (H, W) in [0, 1]. On disk: 8-bit PNG by default;
PNG, JPEG and TIFF (8/16-bit, float) are read. RGB input is converted to gray with a
:class:`SemlabWarning`; 16-bit data is scaled, not clipped. Masks are written as
indexed PNGs with the semlab palette (see :mod:`semlab.labels`).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io as _io
import json
import math
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from semlab import tiffmeta
from semlab.labels import NUM_CLASSES, MaskError, labels_from_array, palette_bytes

__all__ = [
    "ImageReadError",
    "SemlabWarning",
    "MaskError",
    "atomic_write",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "sha256_file",
    "read_image",
    "read_image_meta",
    "max_image_pixels",
    "to_uint8",
    "to_float",
    "write_image",
    "read_mask",
    "write_mask",
    "read_pair",
    "write_csv_atomic",
    "read_csv",
    "UnsafePathError",
    "ID_PATTERN",
    "validate_id",
    "inside",
    "read_manifest",
]

TIFF_SUFFIXES = (".tif", ".tiff")
_LUMA = np.array([0.299, 0.587, 0.114])


class ImageReadError(ValueError):
    """An image file that cannot be read as a 2-D gray image."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class SemlabWarning(UserWarning):
    """Something was converted or adjusted while reading or writing data."""


# --------------------------------------------------------------------------- atomic


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(
    path, mode: str = "wb", *, encoding: str | None = None, newline: str | None = None
) -> Iterator[Any]:
    """Open a temp file beside `path`; on success fsync and `os.replace` it onto `path`.

    Missing parent folders are created. If the body raises, the temp file is deleted
    and `path` is left untouched.
    """
    if not any(m in mode for m in "wx") or "+" in mode and "r" in mode:
        raise ValueError(f"atomic_write needs a write mode, got {mode!r}")
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    try:
        with os.fdopen(fd, mode.replace("x", "w"), encoding=encoding, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # persist the rename (not possible everywhere)
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def write_bytes_atomic(path, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text_atomic(path, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically; returns the path."""
    with atomic_write(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def json_default(obj):
    """`json.dumps(default=...)` for numpy scalars and arrays and paths."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite(obj):
    """NaN and infinities -> None, so the file is strict JSON (readable by any tool)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.floating):
        return _finite(float(obj))
    return obj


def write_json_atomic(path, obj, *, indent: int | None = 2) -> Path:
    """Write `obj` as JSON (sorted keys, trailing newline) atomically; `indent=None` writes
    it compactly (and fast: the C encoder) for large numeric payloads such as contours."""
    text = json.dumps(_finite(obj), indent=indent, sort_keys=True, default=json_default,
                      separators=None if indent is not None else (",", ":")) + "\n"
    return write_text_atomic(path, text)


def sha256_file(path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- reading


def _check_file(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise ImageReadError(p, "file not found")
    if not p.is_file():
        raise ImageReadError(p, "not a file")
    if p.stat().st_size == 0:
        raise ImageReadError(p, "empty file (0 bytes)")
    return p


def max_image_pixels(limit: int | None = None) -> int | None:
    """The largest image (in pixels) that is decoded: `limit`, else $SEMLAB_MAX_IMAGE_PIXELS
    ("0" or "none": no limit), else PIL's `Image.MAX_IMAGE_PIXELS` (~89 Mpx by default).
    Decompression bombs (a 400 KB TIFF of 20000x20000 px) are refused from the header."""
    if limit is None:
        env = os.environ.get("SEMLAB_MAX_IMAGE_PIXELS", "").strip().lower()
        if env:
            if env in ("0", "none"):
                return None
            if not env.isdigit():
                raise ValueError(f"$SEMLAB_MAX_IMAGE_PIXELS={env!r}: need a number of pixels, or 0/none for no limit")
            return int(env)
        from PIL import Image

        limit = Image.MAX_IMAGE_PIXELS
    return int(limit) if limit else None


def _check_pixels(p: Path, height: int, width: int, limit: int | None) -> None:
    if limit is not None and height * width > limit:
        raise ImageReadError(p, f"{width}x{height} px = {height * width / 1e6:.0f} Mpx exceeds the limit of "
                                f"{limit / 1e6:.0f} Mpx (a decompression bomb?); set $SEMLAB_MAX_IMAGE_PIXELS "
                                "to allow it")


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of (..., 3) data, in the input's value scale (float32 for float32
    frames: no float64 copy of a whole frame; float64 otherwise)."""
    a = rgb[..., :3]
    a = a if a.dtype == np.float32 else a.astype(np.float64)
    return a @ _LUMA.astype(a.dtype)


def _read_tiff_raw(p: Path, max_pixels: int | None = None) -> tuple[np.ndarray, str, np.ndarray | None, int]:
    """(array, kind, colormap, bit_depth); kind in gray, rgb, palette. The pixel count
    in the header is checked against `max_image_pixels(max_pixels)` before decoding."""
    import tifffile

    limit = max_image_pixels(max_pixels)

    try:
        with tifffile.TiffFile(p) as tf:
            pages = tf.pages
            if len(pages) > 1:
                raise ImageReadError(p, f"3-D stack: {len(pages)} pages (need a single 2-D image)")
            if len(pages) == 0:
                raise ImageReadError(p, "TIFF has no image")
            page = pages[0]
            _check_pixels(p, int(page.imagelength), int(page.imagewidth), limit)
            arr = page.asarray()
            photometric = int(page.photometric)
            cmap = page.colormap if photometric == 3 else None
            bits = int(page.bitspersample)
            spp = int(page.samplesperpixel)
    except ImageReadError:
        raise
    except Exception as e:  # tifffile raises many types for broken files
        raise ImageReadError(p, f"corrupt or unreadable TIFF ({type(e).__name__}: {e})") from e
    if arr.size == 0:
        raise ImageReadError(p, f"zero-size image (shape {arr.shape})")
    if photometric == 3:
        kind = "palette"
    elif spp >= 3 and photometric in (2, 6):  # RGB, YCbCr (decoded to RGB)
        kind = "rgb"
    else:
        kind = "gray"
    if kind == "rgb":
        if arr.ndim == 3 and arr.shape[0] == spp and arr.shape[-1] != spp:  # planar RGB
            arr = np.moveaxis(arr, 0, -1)
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise ImageReadError(p, f"unexpected RGB TIFF shape {arr.shape}")
    elif arr.ndim == 3 and spp > 1 and arr.shape[-1] == spp:
        if photometric in (0, 1):  # gray + extra samples (alpha)
            warnings.warn(f"{p}: dropping {spp - 1} extra sample(s) of a gray TIFF", SemlabWarning, stacklevel=3)
            arr = arr[..., 0]
    if kind != "rgb" and arr.ndim != 2:
        squeezed = np.squeeze(arr)
        if squeezed.ndim == 2 and 0 not in squeezed.shape:
            arr = squeezed
        else:
            raise ImageReadError(p, f"3-D stack: image data has shape {arr.shape} (need 2-D)")
    return arr, kind, cmap, bits


def _open_pil(p: Path, max_pixels: int | None = None):
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(p)
    except UnidentifiedImageError as e:
        raise ImageReadError(p, "unsupported or unrecognised image format") from e
    except Exception as e:
        raise ImageReadError(p, f"cannot open image ({type(e).__name__}: {e})") from e
    try:
        n = getattr(im, "n_frames", 1)
        if n > 1:
            raise ImageReadError(p, f"3-D stack: {n} frames (need a single 2-D image)")
        _check_pixels(p, im.size[1], im.size[0], max_image_pixels(max_pixels))
        im.load()
    except ImageReadError:
        im.close()
        raise
    except Exception as e:
        im.close()
        raise ImageReadError(p, f"corrupt or truncated file ({type(e).__name__}: {e})") from e
    return im


def _read_pil_raw(p: Path, max_pixels: int | None = None) -> tuple[np.ndarray, str, np.ndarray | None, int]:
    im = _open_pil(p, max_pixels)
    with im:
        mode = im.mode
        if mode == "P":
            arr = np.asarray(im)
            pal = np.asarray(im.getpalette() or [], dtype=np.int64)
            cmap = pal[: pal.size // 3 * 3].reshape(-1, 3).T  # (3, N), 8-bit
            return arr, "palette", cmap, 8
        if mode in ("RGB", "RGBA", "RGBX"):
            return np.asarray(im)[..., :3], "rgb", None, 8
        if mode in ("L", "LA"):
            arr = np.asarray(im.getchannel(0))
            if mode == "LA":
                warnings.warn(f"{p}: dropping the alpha channel", SemlabWarning, stacklevel=3)
            return arr, "gray", None, 8
        if mode == "1":
            return np.asarray(im).astype(np.uint8) * 255, "gray", None, 8
        if mode.startswith("I;16"):
            return np.asarray(im).astype(np.uint16), "gray", None, 16
        if mode == "I":
            arr = np.asarray(im)
            if arr.size and arr.min() >= 0 and arr.max() <= 65535:
                return arr.astype(np.uint16), "gray", None, 16
            return arr, "gray", None, 32
        if mode == "F":
            return np.asarray(im).astype(np.float32), "gray", None, 32
        # CMYK, YCbCr, LAB, HSV, PA ...: through RGB
        return np.asarray(im.convert("RGB")), "rgb", None, 8


def _scale(arr: np.ndarray, p: Path, scale16: str) -> np.ndarray:
    """Numeric array -> float32 in [0, 1]."""
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) / 255.0).astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == np.uint16 or (arr.size and arr.min() >= 0 and arr.max() <= 65535):
            a = arr.astype(np.float32)  # exact for 16-bit values; float64 would double a large frame's memory
            if scale16 == "minmax":
                lo, hi = float(a.min()), float(a.max())
                out = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
            elif scale16 == "dtype":
                out = a / 65535.0
            else:
                raise ValueError(f"scale16 must be 'dtype' or 'minmax', got {scale16!r}")
            return out.astype(np.float32)
        a = arr.astype(np.float64)
        lo, hi = float(a.min()), float(a.max())
        warnings.warn(
            f"{p}: {arr.dtype} data stretched from [{lo:g}, {hi:g}] to [0, 1]",
            SemlabWarning,
            stacklevel=3,
        )
        return ((a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)).astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        a = arr.astype(np.float32)
        if not np.all(np.isfinite(a)):
            raise ImageReadError(p, "float image contains NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            warnings.warn(
                f"{p}: float data in [{lo:g}, {hi:g}] clipped to [0, 1]",
                SemlabWarning,
                stacklevel=3,
            )
            a = np.clip(a, 0.0, 1.0)
        return a
    raise ImageReadError(p, f"unsupported pixel type {arr.dtype}")


def _palette_to_gray(idx: np.ndarray, cmap: np.ndarray, p: Path) -> np.ndarray:
    """Palette indices + colormap (3, N) -> raw gray values (the indices, or float32 in [0, 1])."""
    cmap = np.asarray(cmap, dtype=np.int64)
    if cmap.max() > 255:  # TIFF colormaps are 16-bit (i * 257 or i * 256): keep the high byte
        cmap = cmap >> 8
    full = 255
    used = np.unique(idx)
    if used.size and used.max() >= cmap.shape[1]:
        raise ImageReadError(p, f"palette index {int(used.max())} has no palette entry")
    cols = cmap[:, used]  # (3, n)
    if np.all(cols == used[None, :].astype(np.int64)):
        return idx  # identity gray palette: the indices are the gray values
    if np.all(cols[0] == cols[1]) and np.all(cols[0] == cols[2]):
        lut = cmap[0]
    else:
        warnings.warn(
            f"{p}: palette image with non-gray colours converted to gray (ITU-R 601 luma)",
            SemlabWarning,
            stacklevel=3,
        )
        lut = _luma(cmap.T)
    return np.asarray(lut, np.float32)[idx] / np.float32(full)  # float32: no float64 frame


def read_image(path, *, scale16: str = "dtype", max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as float32 (H, W) in [0, 1].

    PNG, JPEG, BMP and TIFF (8/16/32-bit, float). RGB(A) is converted to gray (ITU-R
    601 luma) with a SemlabWarning; palette images with an identity gray palette give
    the raw indices, other palettes go through the palette (with a warning if it has
    colours). 16-bit data is scaled by 65535 (`scale16="dtype"`) or stretched to its
    range (`"minmax"`), never clipped. Unreadable input raises ImageReadError, as does an
    image over `max_image_pixels(max_pixels)` pixels (checked before decoding).
    """
    if scale16 not in ("dtype", "minmax"):
        raise ValueError(f"scale16 must be 'dtype' or 'minmax', got {scale16!r}")
    p = _check_file(path)
    if p.suffix.lower() in TIFF_SUFFIXES:
        arr, kind, cmap, _bits = _read_tiff_raw(p, max_pixels)
    else:
        arr, kind, cmap, _bits = _read_pil_raw(p, max_pixels)
    if 0 in arr.shape[:2]:
        raise ImageReadError(p, f"zero-size image (shape {arr.shape})")
    if kind == "palette":
        g = _palette_to_gray(arr, cmap, p)
        if g.dtype == np.float32:
            return g
        arr = g
    elif kind == "rgb":
        warnings.warn(
            f"{p}: RGB image converted to gray (ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B)",
            SemlabWarning,
            stacklevel=2,
        )
        rgb = _scale(arr[..., :3], p, "dtype" if scale16 == "minmax" and arr.dtype != np.uint16 else scale16)
        return _luma(rgb).astype(np.float32)
    return _scale(arr, p, scale16)


def read_image_meta(path, *, native_pixel_nm: float | None = None) -> dict:
    """Metadata of an image file without decoding it fully.

    Keys: `pixel_size_nm` (nm per pixel or None) and `pixel_size_source`: the tag that
    states it ("zeiss CZ_SEM" `ap_image_pixel_size`, "hitachi XPComment" `PixelSize=`,
    "fei" `PixelWidth`: `semlab.tiffmeta`), "declared" or None; `bit_depth` (8, 16 ...),
    `mode` (PIL-style), `shape` (H, W), `channels`, `format`, `n_pages`.
    `native_pixel_nm` declares the pixel size (for files whose tags hold none, e.g.
    JPEGs): it is used as given, the tag's value kept as `tag_pixel_size_nm` /
    `tag_pixel_size_source`, with a SemlabWarning if the two differ by more than 2%.
    """
    p = _check_file(path)
    meta: dict[str, Any] = {"path": str(p), "pixel_size_nm": None, "pixel_size_source": None}
    if p.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        try:
            with tifffile.TiffFile(p) as tf:
                page = tf.pages[0]
                photometric = int(page.photometric)
                bits = int(page.bitspersample)
                spp = int(page.samplesperpixel)
                shape = tuple(int(s) for s in page.shape)
                nm, source = tiffmeta.tiff_pixel_size(tf)
                n_pages = len(tf.pages)
                floating = page.dtype is not None and np.dtype(page.dtype).kind == "f"
        except Exception as e:
            raise ImageReadError(p, f"corrupt or unreadable TIFF ({type(e).__name__}: {e})") from e
        if photometric == 3:
            mode = "P"
        elif spp >= 3:
            mode = "RGBA" if spp == 4 else "RGB"
        elif floating:
            mode = "F"
        elif bits == 1:
            mode = "1"
        elif bits == 16:
            mode = "I;16"
        elif bits == 8:
            mode = "L"
        else:
            mode = "I"
        meta.update(
            format="TIFF",
            bit_depth=bits,
            mode=mode,
            shape=shape[:2] if spp == 1 or len(shape) == 2 else shape[:2],
            channels=spp,
            n_pages=n_pages,
            pixel_size_nm=nm,
            pixel_size_source=source,
        )
        return _declare_pixel_size(meta, p, native_pixel_nm)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            mode = im.mode
            w, h = im.size
            fmt = im.format
            n_pages = getattr(im, "n_frames", 1)
            dpi = im.info.get("dpi")
    except UnidentifiedImageError as e:
        raise ImageReadError(p, "unsupported or unrecognised image format") from e
    except Exception as e:
        raise ImageReadError(p, f"cannot open image ({type(e).__name__}: {e})") from e
    bits = {"1": 1, "L": 8, "P": 8, "RGB": 8, "RGBA": 8, "LA": 8, "F": 32, "I": 32}.get(mode, 16 if mode.startswith("I;16") else 8)
    channels = {"RGB": 3, "RGBA": 4, "LA": 2, "CMYK": 4}.get(mode, 1)
    meta.update(format=fmt, bit_depth=bits, mode=mode, shape=(h, w), channels=channels, n_pages=n_pages)
    if dpi:
        meta["dpi"] = dpi
    return _declare_pixel_size(meta, p, native_pixel_nm)


def _declare_pixel_size(meta: dict, p: Path, native_pixel_nm: float | None) -> dict:
    """`read_image_meta` with a declared native pixel size: it wins over the tag's."""
    if native_pixel_nm is None:
        return meta
    declared = float(native_pixel_nm)
    if not (math.isfinite(declared) and declared > 0):
        raise ValueError(f"the native pixel size must be a positive number of nm, got {native_pixel_nm!r}")
    tag_nm, tag_source = meta["pixel_size_nm"], meta["pixel_size_source"]
    if tag_nm is not None:
        meta.update(tag_pixel_size_nm=tag_nm, tag_pixel_size_source=tag_source)
        if not tiffmeta.same_pixel_size(tag_nm, declared):
            warnings.warn(f"{p}: its {tag_source} tag says {tag_nm:.6g} nm per pixel, the declared native "
                          f"pixel size is {declared:.6g} nm ({declared / tag_nm - 1:+.1%}): using the declared value",
                          SemlabWarning, stacklevel=3)
    meta.update(pixel_size_nm=declared, pixel_size_source="declared")
    return meta


# --------------------------------------------------------------------------- conversions


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Image -> uint8: float in [0, 1] is clipped and rounded (x 255); uint16 / 257; uint8 as is."""
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16:
        return np.round(a.astype(np.float64) / 257.0).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if a.size and not np.all(np.isfinite(a)):
            raise ValueError("image contains NaN or infinite values")
        return np.round(np.clip(a.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        if a.size and (a.min() < 0 or a.max() > 255):
            raise ValueError(f"integer image of dtype {a.dtype} has values outside 0..255")
        return a.astype(np.uint8)
    raise TypeError(f"cannot convert dtype {a.dtype} to uint8")


def to_float(img_uint8: np.ndarray) -> np.ndarray:
    """uint8 (or uint16) image -> float32 in [0, 1]; float input is returned as float32."""
    a = np.asarray(img_uint8)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    if a.dtype == np.uint16:
        return (a.astype(np.float64) / 65535.0).astype(np.float32)
    if a.dtype == bool:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float32)
    raise TypeError(f"to_float expects uint8/uint16 data, got {a.dtype}")


def _to_bits(img: np.ndarray, bits: int) -> np.ndarray:
    a = np.asarray(img)
    if bits == 8:
        return to_uint8(a)
    if a.dtype == np.uint16:
        return a
    if a.dtype == np.uint8:
        return a.astype(np.uint16) * 257
    if np.issubdtype(a.dtype, np.floating):
        if a.size and not np.all(np.isfinite(a)):
            raise ValueError("image contains NaN or infinite values")
        return np.round(np.clip(a.astype(np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)
    raise TypeError(f"cannot write dtype {a.dtype} as a 16-bit image")


def write_image(path, img: np.ndarray, *, bits: int = 8) -> Path:
    """Write a gray image (float [0, 1], uint8 or uint16; (H, W)) as PNG (or TIFF by suffix), atomically."""
    from PIL import Image

    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2 or 0 in a.shape:
        raise ValueError(f"write_image needs a non-empty 2-D (H, W) image, got shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating) and a.size and np.isfinite(a).all():
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            warnings.warn(
                f"{path}: float image in [{lo:g}, {hi:g}] clipped to [0, 1]", SemlabWarning, stacklevel=2
            )
    data = np.ascontiguousarray(_to_bits(a, bits))
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        import tifffile

        buf = _io.BytesIO()
        tifffile.imwrite(buf, data, photometric="minisblack")
        return write_bytes_atomic(p, buf.getvalue())
    if suffix not in (".png", ""):
        raise ValueError(f"{p}: write_image writes PNG (or TIFF); got suffix {p.suffix!r}")
    im = Image.fromarray(data)  # "L" or "I;16"
    with atomic_write(p, "wb") as f:
        im.save(f, format="PNG", compress_level=3)  # lossless; level 6 is ~2x slower for ~5% smaller files
    return p


# --------------------------------------------------------------------------- masks


def read_mask(path, *, classes: Sequence[int] = (0, 1, 2, 3), tolerance: float = 48) -> np.ndarray:
    """Read a mask file (indexed, RGB or gray) as a uint8 (H, W) label map of semlab ids."""
    p = _check_file(path)
    if p.suffix.lower() in TIFF_SUFFIXES:
        arr, kind, cmap, _ = _read_tiff_raw(p)
        if kind == "palette":
            cm = np.asarray(cmap, dtype=np.int64)
            if cm.max() > 255:
                cm = np.round(cm / 257.0).astype(np.int64)
            return labels_from_array(arr, mode="P", palette=cm.T.ravel(), source=str(p), classes=classes, tolerance=tolerance)
        mode = "RGB" if kind == "rgb" else "L"
        return labels_from_array(arr, mode=mode, source=str(p), classes=classes, tolerance=tolerance)
    im = _open_pil(p)
    with im:
        mode = im.mode
        palette = im.getpalette() if mode in ("P", "PA") else None
        if mode not in ("P", "PA", "L", "LA", "1", "I", "F", "RGB", "RGBA", "RGBX") and not mode.startswith("I;16"):
            im2 = im.convert("RGB")
            mode, arr = "RGB", np.asarray(im2)
        else:
            arr = np.asarray(im)
    if mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        mode = "I;16"
    return labels_from_array(arr, mode=mode, palette=palette, source=str(p), classes=classes, tolerance=tolerance)


def write_mask(path, mask: np.ndarray) -> Path:
    """Write a label map (H, W) of ids 0..3 as an indexed PNG with semlab's palette, atomically."""
    from PIL import Image

    m = np.asarray(mask)
    if m.ndim != 2 or 0 in m.shape:
        raise MaskError(f"mask must be a non-empty 2-D (H, W) array, got shape {m.shape}", str(path))
    if m.dtype != bool and not np.issubdtype(m.dtype, np.integer):
        raise MaskError(f"mask must hold integer class ids, got dtype {m.dtype}", str(path))
    lo, hi = int(m.min()), int(m.max())
    if lo < 0 or hi >= NUM_CLASSES:
        bad = np.unique(m[(m < 0) | (m >= NUM_CLASSES)])
        raise MaskError(
            f"class ids {bad[:10].tolist()} are outside 0..{NUM_CLASSES - 1}; refusing to write",
            str(path),
        )
    im = Image.fromarray(np.ascontiguousarray(m.astype(np.uint8)))  # "L"; putpalette makes it "P"
    im.putpalette(palette_bytes())
    p = Path(path)
    with atomic_write(p, "wb") as f:
        im.save(f, format="PNG", optimize=False)
    return p


def read_pair(image_path, mask_path, **mask_kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Read an image and its mask; MaskError naming both files if their sizes differ."""
    img = read_image(image_path)
    mask = read_mask(mask_path, **mask_kwargs)
    if img.shape != mask.shape:
        raise MaskError(
            f"image {image_path} has shape {img.shape} but mask {mask_path} has shape {mask.shape}"
        )
    return img, mask


# --------------------------------------------------------------------------- CSV


def write_csv_atomic(path, rows: Sequence[dict], fieldnames: Sequence[str]) -> Path:
    """Write dict rows as CSV (header = `fieldnames`) atomically; unknown keys raise ValueError."""
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fieldnames), extrasaction="raise")
        w.writeheader()
        for row in rows:
            w.writerow(row)
    return Path(path)


def read_csv(path) -> list[dict]:
    """Read a CSV with a header row as a list of dicts (all values are strings)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [dict(r) for r in csv.DictReader(f)]


# --------------------------------------------------------------------------- ids and paths

# An item id is a plain file-name stem: it names `images/<id>.png` and friends, so it must
# never reach outside its folder (manifests may come from anyone: design.md section 9).
ID_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")


class UnsafePathError(ValueError):
    """An item id that is not a plain name, or a path that leaves its root folder."""


def _id_problem(item_id: str) -> str:
    if not item_id:
        return "it is empty"
    if item_id.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[\\/]", item_id):
        return "it is an absolute path"
    if "/" in item_id or "\\" in item_id:
        return "it contains a path separator"
    if ".." in item_id:
        return "it contains '..'"
    if len(item_id) > 200:
        return f"it is {len(item_id)} characters long (at most 200)"
    if not ID_PATTERN.match(item_id[0]):
        return f"it starts with {item_id[0]!r}"
    bad = sorted({c for c in item_id if not (c.isascii() and (c.isalnum() or c in "._-"))})
    return f"it contains {''.join(bad)!r}" if bad else "it is not a plain name"


def validate_id(item_id, source: str = "") -> str:
    """Return `item_id` if it is a plain name (letters, digits, `.`, `_`, `-`; starting with a
    letter, digit or `_`; no `..`; 1 to 200 characters), else raise UnsafePathError naming
    `source` (e.g. "data/x/manifest.csv, line 7"), the id and what is wrong with it."""
    where = f"{source}: " if source else ""
    if not isinstance(item_id, str):
        raise UnsafePathError(f"{where}item id {item_id!r} is not a string")
    if ID_PATTERN.fullmatch(item_id) and ".." not in item_id:
        return item_id
    raise UnsafePathError(f"{where}unsafe item id {item_id!r}: {_id_problem(item_id)}; ids must be "
                          "plain names (letters, digits, '.', '_', '-'; no '..', no path separators)")


def inside(root, *parts) -> Path:
    """`root / parts...`, after checking that it resolves (symbolic links and `..`
    included) to a place inside `root`; UnsafePathError otherwise. Returns the joined
    (unresolved) path."""
    root = Path(root)
    path = root.joinpath(*parts)
    base = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != base and not real.startswith(base.rstrip(os.sep) + os.sep):
        rel = os.path.join(*(str(p) for p in parts)) if parts else ""
        raise UnsafePathError(f"{path}: {rel!r} resolves to {real}, outside {base}; refusing to use it")
    return path


def read_manifest(path, id_field: str = "id") -> list[dict]:
    """Read a manifest CSV (as `read_csv`) and check every row's id with `validate_id`; an
    error names the file, the line and the bad id. A missing `id_field` column is an error
    too (an empty file gives no rows)."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is not None and id_field not in reader.fieldnames:
            raise UnsafePathError(f"{path}: not a manifest: no {id_field!r} column "
                                  f"(columns: {', '.join(reader.fieldnames)})")
        for r in reader:
            validate_id(r[id_field], f"{path}, line {reader.line_num}")
            rows.append(dict(r))
    return rows
