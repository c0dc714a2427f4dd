"""Pixel size of SEM frames from their tool's TIFF tags, and the 2% rule for comparing sizes.

- Zeiss: the CZ_SEM tag (34118, tifffile ``sem_metadata``), ``ap_image_pixel_size``
  with its unit (pm, nm, um ...).
- Hitachi: the XPComment tag (40092, UTF-16LE text of ``KEY=VALUE`` lines) holds
  ``PixelSize=<value>`` in nm.
- FEI / Thermo Fisher: the FEI metadata tag (tifffile ``fei_metadata``), ``[Scan]
  PixelWidth`` in m.

Sizes are in nm. Two sizes within ``PIXEL_SIZE_TOL`` (2%) of the smaller one count as one
size (:func:`same_pixel_size`).
"""

from __future__ import annotations

import contextlib
import math
import re
from typing import Iterable

PIXEL_SIZE_TOL = 0.02
XPCOMMENT_TAG = 40092

UNIT_TO_NM = {
    "pm": 1e-3,
    "nm": 1.0,
    "um": 1e3,
    "\u00b5m": 1e3,
    "\u03bcm": 1e3,
    "mm": 1e6,
    "m": 1e9,
}

_HITACHI_PIXEL = re.compile(
    r"^[ \t]*PixelSize[ \t]*=[ \t]*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[ \t]*([A-Za-z\u00b5\u03bc]*)",
    re.IGNORECASE | re.MULTILINE)


def _usable(nm) -> float | None:
    """A pixel size that can be used: a finite positive float, else None."""
    try:
        v = float(nm)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def zeiss_pixel_size_nm(sem: dict | None) -> float | None:
    """nm per pixel from Zeiss CZ_SEM metadata (tifffile ``sem_metadata``), or None."""
    if not sem:
        return None
    entry = sem.get("ap_image_pixel_size")
    if not isinstance(entry, (tuple, list)):
        return None
    nums = [v for v in entry if isinstance(v, (int, float)) and not isinstance(v, bool)]
    units = [v for v in entry if isinstance(v, str) and v.strip().lower() in UNIT_TO_NM]
    if not nums:  # value stored as a string like "0.752 nm"
        for v in entry:
            if isinstance(v, str):
                parts = v.split()
                with contextlib.suppress(ValueError, IndexError):
                    nums, units = [float(parts[0])], [parts[1]]
                    break
    if not nums:
        return None
    unit = units[-1].strip().lower() if units else "nm"
    return _usable(float(nums[-1]) * UNIT_TO_NM.get(unit, 1.0))


def fei_pixel_size_nm(fei: dict | None) -> float | None:
    """nm per pixel from FEI metadata (tifffile ``fei_metadata``: ``[Scan] PixelWidth`` in m)."""
    if not fei:
        return None
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return _usable(float(fei["Scan"]["PixelWidth"]) * 1e9)
    return None


def xp_text(value) -> str:
    """The text of a Windows XP* tag (XPComment ...): UTF-16LE bytes by the standard,
    also accepted as a tuple of byte values, UTF-8/Latin-1 bytes or a str."""
    if isinstance(value, str):
        return value.rstrip("\x00")
    if isinstance(value, (tuple, list)):
        try:
            value = bytes(int(v) & 0xFF for v in value)
        except (TypeError, ValueError):
            return ""
    if not isinstance(value, (bytes, bytearray)):
        return ""
    raw = bytes(value)
    if len(raw) >= 2 and raw[1::2].count(0) >= len(raw) // 4:  # UTF-16LE: mostly zero high bytes
        text = raw[: len(raw) // 2 * 2].decode("utf-16-le", errors="replace")
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    return text.replace("\x00", "").strip("\ufeff")


def hitachi_pixel_size_nm(text) -> float | None:
    """nm per pixel from Hitachi comment text: the first ``PixelSize=<value>`` line (nm
    unless a unit follows the number), or None if there is none or it is not a positive
    number."""
    m = _HITACHI_PIXEL.search(xp_text(text))
    if m is None:
        return None
    unit = m.group(2).lower()
    if unit and unit not in UNIT_TO_NM:
        return None
    return _usable(float(m.group(1)) * UNIT_TO_NM.get(unit or "nm", 1.0))


def tiff_pixel_size(tf) -> tuple[float | None, str | None]:
    """(nm per pixel, source) of an open ``tifffile.TiffFile``: the Zeiss, Hitachi or FEI
    tag that states it ("zeiss CZ_SEM", "hitachi XPComment", "fei"), or (None, None)."""
    nm = zeiss_pixel_size_nm(tf.sem_metadata if tf.is_sem else None)
    if nm:
        return nm, "zeiss CZ_SEM"
    tag = tf.pages[0].tags.get(XPCOMMENT_TAG)
    nm = hitachi_pixel_size_nm(tag.value) if tag is not None else None
    if nm:
        return nm, "hitachi XPComment"
    nm = fei_pixel_size_nm(tf.fei_metadata if tf.is_fei else None)
    if nm:
        return nm, "fei"
    return None, None


def same_pixel_size(a: float, b: float, tol: float = PIXEL_SIZE_TOL) -> bool:
    """True if the two sizes differ by at most `tol` (2%) of the smaller one."""
    return abs(a - b) <= tol * min(a, b) * (1 + 1e-9)


def spread(sizes: Iterable[float]) -> float:
    """How far apart a set of sizes is: max / min - 1 (0 for one size or none)."""
    s = [float(x) for x in sizes]
    return max(s) / min(s) - 1.0 if s else 0.0


class PixelSizeError(ValueError):
    """Frames whose pixel sizes cannot be imported together as they are."""


def _size_list(entries: list[tuple[str, float, str]]) -> str:
    """`a.tif 0.9 nm (zeiss CZ_SEM), ...` sorted by size; the 5 smallest and 5 largest of a long list."""
    entries = sorted(entries, key=lambda e: (e[1], e[0]))
    shown = entries if len(entries) <= 10 else entries[:5] + entries[-5:]
    parts = [f"{name} {nm:.6g} nm ({source})" for name, nm, source in shown]
    if len(entries) > 10:
        parts.insert(5, f"... ({len(entries) - 10} more)")
    return ", ".join(parts)


def plan_pixel_sizes(sets: dict[str, list[tuple[str, float, str]]], unknown: list[str], *,
                     target: float | None = None, where: str = "") -> tuple[dict[str, float], dict]:
    """The pixel size each frame of an import is stored at, by the 2% rule.

    `sets` maps a set (folder) name to its frames with a pixel size, as (file name, nm,
    source); `unknown` names the frames without one. Frames of one set within 2% count
    as one size, the set's median; a larger spread raises PixelSizeError listing the
    files and sizes, unless `target` (nm) resamples every frame, which needs every
    frame's size. Returns ({file name: nm}, dataset.json info: `pixel_size_nm` -- the
    one size of the import or None --, `pixel_size_note`, `pixel_sizes` per set)."""
    import statistics

    per_set = {name: {"n_frames": len(e), "pixel_size_nm": statistics.median(nm for _, nm, _ in e),
                      "min_nm": min(nm for _, nm, _ in e), "max_nm": max(nm for _, nm, _ in e),
                      "sources": sorted({s for _, _, s in e})} for name, e in sorted(sets.items()) if e}
    info: dict = {"pixel_sizes": per_set}
    n_all = len(unknown) + sum(s["n_frames"] for s in per_set.values())
    names = ", ".join(unknown[:5]) + (f" ... ({len(unknown) - 5} more)" if len(unknown) > 5 else "")
    prefix = f"{where}: " if where else ""
    if target is not None:
        if unknown:
            raise PixelSizeError(f"{prefix}--pixel-nm resamples to {target:g} nm, but {len(unknown)} of {n_all} "
                                 f"frames have no pixel size in their tags ({names}): declare it with "
                                 "--native-pixel-nm (nothing written)")
        info["pixel_size_nm"] = float(target)
        info["pixel_size_note"] = (f"every frame resampled (anti-aliased) from its native pixel size "
                                   f"({min(s['min_nm'] for s in per_set.values()):.6g}-"
                                   f"{max(s['max_nm'] for s in per_set.values()):.6g} nm) to {target:g} nm"
                                   if per_set else None)
        return {f: float(target) for e in sets.values() for f, _, _ in e}, info
    wide = {name: e for name, e in sorted(sets.items()) if e and not same_pixel_size(
        per_set[name]["min_nm"], per_set[name]["max_nm"])}
    if wide:
        detail = "; ".join(f"{f'set {name}: ' if name else ''}{_size_list(e)} "
                           f"({spread(nm for _, nm, _ in e):.1%} apart)" for name, e in wide.items())
        raise PixelSizeError(f"{prefix}frames of one set differ in pixel size by more than 2%, refusing to mix "
                             f"them (nothing written): {detail}; pass --pixel-nm to resample every frame to "
                             "one size, or import them separately")
    used = {f: per_set[name]["pixel_size_nm"] for name, e in sets.items() for f, _, _ in e}
    notes = [f"{name or 'the frames'}: {s['n_frames']} frames {s['min_nm']:.6g}-{s['max_nm']:.6g} nm "
             f"({s['max_nm'] / s['min_nm'] - 1:.2%} apart, within 2%) count as one size, their median "
             f"{s['pixel_size_nm']:.6g} nm is used" for name, s in per_set.items() if s["max_nm"] > s["min_nm"]]
    medians = [s["pixel_size_nm"] for s in per_set.values()]
    info["pixel_size_nm"] = None
    if medians and not unknown and same_pixel_size(min(medians), max(medians)):
        info["pixel_size_nm"] = statistics.median(used.values())
        if max(medians) > min(medians):
            notes.append(f"the sets' pixel sizes are within 2%: the median {info['pixel_size_nm']:.6g} nm is used")
    elif len(medians) > 1:
        notes.append("the sets have different pixel sizes (" + ", ".join(
            f"{name} {s['pixel_size_nm']:.6g} nm" for name, s in per_set.items())
            + "): see pixel_sizes, and each item's params")
    if unknown:
        notes.append(f"{len(unknown)} of {n_all} frames have no pixel size in their tags ({names}): "
                     "declare it with --native-pixel-nm")
    info["pixel_size_note"] = "; ".join(notes) or None
    return used, info
