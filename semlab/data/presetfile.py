"""Preset files: simulator parameters fitted to real frames (`semlab fit-sim --out`), as
untrusted input with a schema.

A preset file is YAML (read with `yaml.safe_load`) or JSON::

    version: 1
    units: {length: nm, gray: "[0, 1]"}
    kind: line-space              # a built-in preset: the base whose other parameters are kept
    pixel_nm: 0.827               # the pixel size the parameters were fitted at
    params:                       # simulator parameters (semlab.data.simulate)
      pitch_nm: 25.3              # a number: a constant
      pattern_level: [0.28, 0.34] # [low, high]: drawn uniformly per image
      vertical: 1.0               # on/off keys: the probability of on (or true / false)
    noise_spectrum: [[...], ...]  # optional: a 2-D noise spectrum of at most 64 x 64 numbers
    looks:                        # optional, at most 16: frame-level parameter sets fitted jointly,
      - params: {pattern_level: 0.27, dose: 320, scan_corr_px: 0.0, ...}   # one per real frame
        source: {name: Test03.tif, sha256: ..., pixel_nm: 0.827}          # (semlab.data.looks)
    provenance: {sources: [{name, sha256, pixel_nm}], pixel_nm, semlab_version, date, ...}

Refused, with one line naming the file and the key: unknown keys (at any level of the
schema, and parameters the base preset does not have), values outside `VALID` (each key's
physically valid range, wider than any preset's defaults), wrong types, and anything that
could be pixels of a real frame: a list of more than 64 numbers, an array of more than two
dimensions or a `noise_spectrum` over 64 x 64. Files over 1 MB are refused unread.
Looks: at most `looks.MAX_LOOKS`, each with `params` (only the frame-level keys of
`looks.LOOK_KEYS`, the same valid ranges as `params`) and an optional `source` (the
frame's name, sha256 and pixel size: provenance, never pixels).
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["VERSION", "UNITS", "VALID", "FLAGS", "PresetFileError", "read_preset_file", "validate", "params_to_spec",
           "load_preset_file", "preset_document", "save_preset_file", "pixel_nm_of"]

VERSION = 1
UNITS = {"length": "nm", "gray": "[0, 1]"}
MAX_BYTES = 1 << 20
MAX_LIST = 64
MAX_SPECTRUM = 64
FOV_PX = 1024  # a preset from a file has field_of_view_nm = pixel_nm * FOV_PX

# valid range of every parameter a preset file may set (inclusive)
VALID: dict[str, tuple[float, float]] = {
    "corner_radius_nm": (0.0, 100.0), "ler_sigma_nm": (0.0, 20.0), "ler_corr_nm": (0.1, 1000.0), "ler_across_nm": (0.1, 1000.0),
    "lpr_sigma_nm": (0.0, 20.0), "lpr_corr_nm": (0.1, 1000.0), "bit_depth": (0.0, 16.0),
    "wander_nm": (0.0, 50.0), "wander_corr_nm": (0.1, 1.0e4), "tilt": (-0.2, 0.2),
    "ler_alpha": (0.0, 1.0), "sidewall_nm": (0.0, 50.0), "background_level": (0.0, 1.0),
    "pattern_level": (0.0, 1.0), "hole_level": (0.0, 1.0), "defect_level": (0.0, 1.0), "rim_amp": (0.0, 1.0),
    "rim_width_nm": (0.0, 50.0), "rim_offset_nm": (-20.0, 20.0), "scan_asymmetry": (-1.0, 1.0),
    "halo_amp": (0.0, 1.0), "halo_width_nm": (0.0, 100.0), "texture_amp": (0.0, 0.3),
    "texture_corr_nm": (0.0, 100.0), "psf_sigma_nm": (0.0, 50.0), "charging_amp": (0.0, 0.5),
    "brightness": (-0.5, 0.5), "contrast": (0.05, 20.0), "dose": (1.0, 1e6), "detector_sigma": (0.0, 0.5),
    "noise_corr_px": (0.0, 10.0), "scan_corr_px": (0.0, 10.0), "scanline_sigma": (0.0, 0.2),
    "drift_px": (0.0, 10.0), "defect_prob": (0.0, 1.0), "defect_radius_nm": (0.1, 1000.0),
    "pitch_nm": (1.0, 10000.0), "width_frac": (0.02, 0.98), "fill": (0.0, 1.0), "bend_prob": (0.0, 1.0),
    "line_end_prob": (0.0, 1.0), "tip_gap_nm": (0.0, 10000.0), "hole_jitter": (0.0, 0.5),
    "missing_prob": (0.0, 1.0),
}
# simulator parameters a file may set even where the base preset leaves them out (off by default)
OPTIONAL = ("scan_corr_px", "ler_across_nm", "lpr_sigma_nm", "lpr_corr_nm", "bit_depth", "wander_nm", "wander_corr_nm",
            "tilt")
FLAGS = ("vertical", "horizontal", "stagger", "databar")  # on/off: a probability or a boolean
LIST_CONSTANTS = ("defect_radius_nm",)  # [low, high] is the simulator's own per-particle range
_TOP = {"version", "units", "kind", "pixel_nm", "params", "noise_spectrum", "provenance", "looks"}
_LOOK = {"params", "source"}
_PROVENANCE = {"sources", "pixel_nm", "semlab_version", "date", "n_frames", "fit", "uncertainty", "notes", "split"}
_SOURCE = {"name", "sha256", "pixel_nm"}


class PresetFileError(ValueError):
    """A preset file that does not follow the schema (the message names the file and key)."""


def _err(path, key: str, msg: str) -> PresetFileError:
    return PresetFileError(f"preset file {path}: {key}: {msg}")


def _number(path, key: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _err(path, key, f"expected a number, got {type(v).__name__}")
    if not math.isfinite(float(v)):
        raise _err(path, key, "not a finite number")
    return float(v)


def _count_numbers(v) -> int:
    if isinstance(v, list):
        return sum(_count_numbers(x) for x in v)
    return int(isinstance(v, (int, float)) and not isinstance(v, bool))


def _no_pixels(path, key: str, v, depth: int = 0) -> None:
    """Refuse anything shaped like image data: long numeric lists, deep arrays."""
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                raise _err(path, key, f"keys must be strings, got {k!r}")
            _no_pixels(path, f"{key}.{k}", x, depth)
    elif isinstance(v, list):
        if depth >= 1 and any(isinstance(x, list) for x in v):
            raise _err(path, key, "an array of more than 2 dimensions: a preset file holds parameters, never pixels")
        nums = _count_numbers(v)
        if nums > MAX_LIST:
            raise _err(path, key, f"a list of {nums} numbers (at most {MAX_LIST}): a preset file holds parameters, "
                                  f"never pixels of a frame")
        for i, x in enumerate(v):
            if isinstance(x, (list, dict)):
                _no_pixels(path, f"{key}[{i}]", x, depth + 1 if isinstance(x, list) else depth)
    elif isinstance(v, str) and len(v) > 4096:
        raise _err(path, key, f"a string of {len(v)} characters (at most 4096)")


def _param(path, k: str, v, prefix: str = "params") -> Any:
    """A validated parameter value, converted to the simulator's spec form."""
    key = f"{prefix}.{k}"
    if k in FLAGS:
        if isinstance(v, bool):
            return v
        p = _number(path, key, v)
        if not 0.0 <= p <= 1.0:
            raise _err(path, key, f"{p:g} is not a probability in [0, 1]")
        return True if p == 1.0 else False if p == 0.0 else ("p", p)
    if k not in VALID:
        raise _err(path, key, f"unknown parameter; valid: {', '.join(sorted([*VALID, *FLAGS]))}")
    lo, hi = VALID[k]
    if isinstance(v, list):
        if len(v) != 2:
            raise _err(path, key, f"a range is [low, high], got {len(v)} values")
        a, b = _number(path, key, v[0]), _number(path, key, v[1])
        if a > b:
            raise _err(path, key, f"range [{a:g}, {b:g}] has low > high")
        for x in (a, b):
            if not lo <= x <= hi:
                raise _err(path, key, f"{x:g} is outside the valid range [{lo:g}, {hi:g}]")
        if k in LIST_CONSTANTS:
            return [a, b]
        return a if a == b else (a, b)
    x = _number(path, key, v)
    if not lo <= x <= hi:
        raise _err(path, key, f"{x:g} is outside the valid range [{lo:g}, {hi:g}]")
    if k in LIST_CONSTANTS:
        raise _err(path, key, "expected [low, high]")
    return x


def params_to_spec(params: dict[str, Any], path="<params>") -> dict[str, Any]:
    """Checked parameters of a preset document (numbers, [low, high], flag probabilities)
    in the simulator's spec form (constants, (low, high) ranges, ("p", prob))."""
    return {k: _param(path, k, v) for k, v in params.items() if v is not None}


def _source(path, key: str, s) -> None:
    if not isinstance(s, dict) or set(s) - _SOURCE:
        raise _err(path, key, f"expected a mapping with keys {sorted(_SOURCE)}")
    h = s.get("sha256")
    if h is not None and not (isinstance(h, str) and len(h) == 64 and all(c in "0123456789abcdef" for c in h)):
        raise _err(path, f"{key}.sha256", "not a sha256 hex digest")


def _looks(path, looks, base: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """Validated looks (module doc) in the simulator's spec form."""
    from semlab.data.looks import LOOK_KEYS, MAX_LOOKS

    if not isinstance(looks, list) or not looks:
        raise _err(path, "looks", "expected a non-empty list of {params, source}")
    if len(looks) > MAX_LOOKS:
        raise _err(path, "looks", f"{len(looks)} looks (at most {MAX_LOOKS})")
    out = []
    for i, lk in enumerate(looks):
        key = f"looks[{i}]"
        if not isinstance(lk, dict):
            raise _err(path, key, f"expected a mapping with keys {sorted(_LOOK)}, got {type(lk).__name__}")
        bad = set(lk) - _LOOK
        if bad:
            raise _err(path, f"{key}.{sorted(map(str, bad))[0]}", f"unknown key; valid: {', '.join(sorted(_LOOK))}")
        prm = lk.get("params")
        if not isinstance(prm, dict) or not prm:
            raise _err(path, f"{key}.params", "expected a non-empty mapping of frame-level parameters")
        spec = {}
        for k, v in prm.items():
            if not isinstance(k, str) or k not in LOOK_KEYS or (k not in base and k not in OPTIONAL):
                valid = sorted(k2 for k2 in LOOK_KEYS if k2 in base or k2 in OPTIONAL)
                raise _err(path, f"{key}.params.{k}", f"not a frame-level parameter of kind {kind}; valid: "
                                                      f"{', '.join(valid)}")
            spec[k] = _param(path, k, v, prefix=f"{key}.params")
        if "source" in lk:
            _source(path, f"{key}.source", lk["source"])
        out.append(spec)
    return out


def validate(doc, path="<document>") -> dict[str, Any]:
    """Check a parsed preset document against the schema (module doc); returns
    {"kind", "pixel_nm", "params" (simulator spec form), "noise_spectrum" (or None),
    "provenance", "looks" (a list of spec-form dicts, or None)}. PresetFileError naming
    the file and key otherwise."""
    from semlab.data.simulate import PRESETS

    if not isinstance(doc, dict):
        raise _err(path, "(top level)", f"expected a mapping, got {type(doc).__name__}")
    unknown = set(doc) - _TOP
    if unknown:
        raise _err(path, sorted(map(str, unknown))[0], f"unknown key; valid: {', '.join(sorted(_TOP))}")
    for k in ("version", "units", "kind", "pixel_nm", "params", "provenance"):
        if k not in doc:
            raise _err(path, k, "missing")
    _no_pixels(path, "(file)", {k: v for k, v in doc.items() if k != "noise_spectrum"})
    if doc["version"] != VERSION:
        raise _err(path, "version", f"{doc['version']!r} is not supported (this semlab reads version {VERSION})")
    if doc["units"] != UNITS:
        raise _err(path, "units", f"must be {UNITS}, got {doc['units']!r}")
    kind = doc["kind"]
    if not isinstance(kind, str) or kind not in PRESETS:
        raise _err(path, "kind", f"{kind!r} is not a built-in preset; valid: {', '.join(PRESETS)}")
    px = _number(path, "pixel_nm", doc["pixel_nm"])
    if not 0.01 <= px <= 1000:
        raise _err(path, "pixel_nm", f"{px:g} is outside the valid range [0.01, 1000]")
    params = doc["params"]
    if not isinstance(params, dict) or not params:
        raise _err(path, "params", "expected a non-empty mapping of simulator parameters")
    base = PRESETS[kind].params
    out = {}
    for k, v in params.items():
        if not isinstance(k, str) or (k not in base and k not in OPTIONAL) or (k not in VALID and k not in FLAGS):
            valid = sorted(k2 for k2 in base if k2 in VALID or k2 in FLAGS)
            raise _err(path, f"params.{k}", f"unknown parameter for kind {kind}; valid: {', '.join(valid)}")
        out[k] = _param(path, k, v)
    spec = doc.get("noise_spectrum")
    if spec is not None:
        ok = (isinstance(spec, list) and 0 < len(spec) <= MAX_SPECTRUM
              and all(isinstance(r, list) and len(r) == len(spec[0]) for r in spec) and 0 < len(spec[0]) <= MAX_SPECTRUM)
        if not ok:
            raise _err(path, "noise_spectrum", f"expected a rectangular 2-D array of at most {MAX_SPECTRUM}x"
                                               f"{MAX_SPECTRUM} numbers: a preset file never holds pixels")
        for i, r in enumerate(spec):
            for j, x in enumerate(r):
                if _number(path, f"noise_spectrum[{i}][{j}]", x) < 0:
                    raise _err(path, f"noise_spectrum[{i}][{j}]", "a power spectrum is never negative")
    prov = doc["provenance"]
    if not isinstance(prov, dict):
        raise _err(path, "provenance", "expected a mapping")
    bad = set(prov) - _PROVENANCE
    if bad:
        raise _err(path, f"provenance.{sorted(bad)[0]}", f"unknown key; valid: {', '.join(sorted(_PROVENANCE))}")
    srcs = prov.get("sources", [])
    if not isinstance(srcs, list) or len(srcs) > 10000:
        raise _err(path, "provenance.sources", "expected a list of at most 10000 {name, sha256, pixel_nm}")
    for i, s in enumerate(srcs):
        _source(path, f"provenance.sources[{i}]", s)
    looks = _looks(path, doc["looks"], base, kind) if doc.get("looks") is not None else None
    return {"kind": kind, "pixel_nm": px, "params": out, "noise_spectrum": spec, "provenance": prov, "looks": looks}


def read_preset_file(path) -> dict[str, Any]:
    """Parse (YAML with `yaml.safe_load`, or JSON for *.json) and `validate` a preset file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"preset file not found: {p}")
    size = p.stat().st_size
    if size > MAX_BYTES:
        raise _err(p, "(file)", f"{size} bytes, more than {MAX_BYTES}: a preset file holds parameters only")
    text = p.read_text(encoding="utf-8", errors="strict")
    try:
        if p.suffix.lower() == ".json":
            doc = json.loads(text)
        else:
            import yaml

            doc = yaml.safe_load(text)
    except Exception as e:  # yaml.YAMLError, json.JSONDecodeError: one line
        raise _err(p, "(file)", f"not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'} "
                                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return validate(doc, p)


def load_preset_file(path):
    """A `semlab.data.simulate.Preset` from a preset file: the built-in preset of its kind,
    its parameters overridden by the file's; named "<kind>@<file stem>", field of view
    `pixel_nm * FOV_PX` (render with ``pixel_nm=pixel_nm_of(preset)`` for the fitted size).
    The file's looks, if any, go to ``params["looks"]`` (`semlab.data.looks`)."""
    from semlab.data.simulate import Preset, get_preset

    d = read_preset_file(path)
    base = get_preset(d["kind"])
    p = Path(path)
    return Preset(f"{d['kind']}@{p.stem}", f"{base.description}; fitted parameters from {p.name}", base.layout,
                  d["pixel_nm"] * FOV_PX, {**base.params, **d["params"],
                                           **({"looks": tuple(d["looks"])} if d["looks"] else {})})


def pixel_nm_of(preset) -> float:
    """The fitted pixel size of a preset loaded from a file (its field of view / FOV_PX)."""
    return float(preset.field_of_view_nm) / FOV_PX


def preset_document(fit, *, include_spectrum: bool = False) -> dict[str, Any]:
    """The preset document of a `semlab.data.fit.FitResult` (plain JSON/YAML types)."""
    import semlab

    spec = None
    if include_spectrum and fit.noise.get("spectrum") is not None:
        from numpy.fft import fftshift

        s = fftshift(fit.noise["spectrum"])
        spec = [[float(x) for x in row] for row in s[:MAX_SPECTRUM, :MAX_SPECTRUM]]
    params = {}
    for k, v in fit.params.items():
        if v is None:
            continue
        params[k] = [float(v[0]), float(v[1])] if isinstance(v, (list, tuple)) else (
            bool(v) if isinstance(v, bool) else float(v))
    doc = {"version": VERSION, "units": dict(UNITS), "kind": fit.kind, "pixel_nm": float(fit.pixel_nm),
           "params": params,
           "provenance": {"sources": [{"name": s["name"], "sha256": s["sha256"],
                                       "pixel_nm": float(s["pixel_nm"]) if s["pixel_nm"] else None}
                                      for s in fit.sources],
                          "pixel_nm": float(fit.pixel_nm), "semlab_version": semlab.__version__,
                          "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                          "n_frames": fit.n_frames, "fit": "semlab.data.fit.fit_sim",
                          "uncertainty": {k: [float(x) for x in v] for k, v in fit.uncertainty.items()
                                          if k in params and all(math.isfinite(x) for x in v)},
                          "notes": list(fit.notes)}}
    if spec is not None:
        doc["noise_spectrum"] = spec
    if getattr(fit, "looks", None):  # one jointly fitted look per frame (semlab.data.looks)
        doc["looks"] = [{"params": {k: float(v) for k, v in lk["params"].items()},
                         "source": {k: (float(v) if k == "pixel_nm" and v else v)
                                    for k, v in lk["source"].items() if v is not None}}
                        for lk in fit.looks]
    return doc


def save_preset_file(fit, path, *, overwrite: bool = False, include_spectrum: bool = False) -> Path:
    """Write the preset file of a fit (YAML, or JSON for *.json) atomically, after checking
    that it passes `validate`. An existing file is never replaced unless `overwrite`."""
    from semlab.io import write_text_atomic

    p = Path(path)
    if p.exists() and not overwrite:
        raise FileExistsError(errno.EEXIST, "exists; not overwritten (use --overwrite)", str(p))
    doc = preset_document(fit, include_spectrum=include_spectrum)
    validate(json.loads(json.dumps(doc)), p)  # what we write must read back
    if p.suffix.lower() == ".json":
        text = json.dumps(doc, indent=2) + "\n"
    else:
        import yaml

        text = (f"# semlab preset file: simulator parameters fitted to {fit.n_frames} real frame(s) "
                f"({fit.kind}, {fit.pixel_nm:.4g} nm/px)\n" + yaml.safe_dump(doc, sort_keys=False))
    return write_text_atomic(p, text)
