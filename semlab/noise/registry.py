"""The residual-noise model interface and registry of `semlab.noise`.

A model learns the noise of real SEM frames and puts it on other images::

    model = semlab.noise.registry.get("poisson-gaussian").fit(real_images, clean_estimates)
    noisy = model.sample(clean_image, rng)          # float32 in [0, 1], same shape
    model.save("model-dir")                          # model.json (+ arrays.npz)
    model = semlab.noise.registry.load("model-dir")  # any registered kind

Images are float arrays in [0, 1] (semlab's convention: 8-bit gray levels / 255).
`clean_estimates` are the noise-free images where the caller has them (the simulator's
`clean` output), else `None`, and the model makes its own (a denoiser).

**Files are untrusted input.** A saved model is `model.json` (kind, version, metadata,
scalar and short-list parameters) plus, optionally, `arrays.npz`, read with
`allow_pickle=False`. Neural models add a state dict read with `weights_only=True`.
Nothing is ever unpickled. Keys are checked: an unknown kind, a wrong version, a missing
or extra parameter, or an array of the wrong shape is refused with a message naming
the file.

**Metadata.** Every model records the pixel size (nm, or None when unknown), the bit
depth and the intensity range of the frames it was fitted on, and the sha256 of its
training data (`data_sha256`). `check_use` warns when a model is applied at another
pixel size (more than 2% off) or bit depth.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from semlab.io import atomic_write, write_json_atomic

__all__ = ["ModelMeta", "NoiseModel", "register", "get", "names", "load", "data_sha256", "MODEL_FILE", "ARRAYS_FILE"]

MODEL_FILE = "model.json"
ARRAYS_FILE = "arrays.npz"
FORMAT_VERSION = 1
SAME_SIZE = 0.02  # pixel sizes within 2% count as one

# modules that register models; imported on demand by `get`/`names`/`load`
_MODULES = ("semlab.noise.models", "semlab.noise.learned")
_REGISTRY: dict[str, type["NoiseModel"]] = {}


@dataclass
class ModelMeta:
    """Where a model was fitted: pixel size (nm or None), bit depth, intensity range [0, 1]."""
    pixel_nm: float | None = None
    bit_depth: int = 8
    intensity_range: tuple[float, float] = (0.0, 1.0)
    data_sha256: str = ""
    n_images: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["intensity_range"] = [float(v) for v in self.intensity_range]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str) -> "ModelMeta":
        known = {"pixel_nm", "bit_depth", "intensity_range", "data_sha256", "n_images", "notes"}
        extra = set(d) - known
        if extra:
            raise ValueError(f"{source}: unknown metadata keys {sorted(extra)}")
        px = d.get("pixel_nm")
        if px is not None and not (isinstance(px, (int, float)) and 0 < float(px) < 1e6):
            raise ValueError(f"{source}: pixel_nm must be a positive number or null, got {px!r}")
        bd = d.get("bit_depth", 8)
        if bd not in (8, 16):
            raise ValueError(f"{source}: bit_depth must be 8 or 16, got {bd!r}")
        rng = d.get("intensity_range", [0.0, 1.0])
        if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng)):
            raise ValueError(f"{source}: intensity_range must be two numbers, got {rng!r}")
        return cls(pixel_nm=None if px is None else float(px), bit_depth=int(bd),
                   intensity_range=(float(rng[0]), float(rng[1])), data_sha256=str(d.get("data_sha256", "")),
                   n_images=int(d.get("n_images", 0)), notes=[str(n) for n in d.get("notes", [])])


def data_sha256(images: Sequence[np.ndarray]) -> str:
    """sha256 over the training images (shape, dtype and bytes, in order)."""
    h = hashlib.sha256()
    for im in images:
        a = np.ascontiguousarray(im)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class NoiseModel:
    """Base class of residual-noise models. Subclasses set `kind` and implement
    `_fit`, `sample`, `params` / `from_params` (JSON-able scalars and lists) and, if they
    have arrays, `arrays` / `from_params(..., arrays)`.
    """
    kind: ClassVar[str] = ""
    min_images: ClassVar[int] = 1

    def __init__(self, meta: ModelMeta | None = None):
        self.meta = meta or ModelMeta()

    # -- fitting ---------------------------------------------------------------
    @classmethod
    def fit(cls, real_images: Sequence[np.ndarray], clean_estimates: Sequence[np.ndarray] | None = None, *,
            pixel_nm: float | None = None, bit_depth: int = 8, **options) -> "NoiseModel":
        """Fit on real frames (float in [0, 1]); `clean_estimates` (same shapes) if known."""
        imgs = check_images(real_images, what=f"{cls.kind} fit", min_images=cls.min_images)
        if clean_estimates is not None:
            cleans = check_images(clean_estimates, what=f"{cls.kind} clean estimates", min_images=len(imgs))
            if len(cleans) != len(imgs) or any(c.shape != i.shape for c, i in zip(cleans, imgs)):
                raise ValueError(f"{cls.kind} fit: clean estimates must match the images one to one in shape")
        else:
            cleans = None
        meta = ModelMeta(pixel_nm=pixel_nm, bit_depth=bit_depth,
                         intensity_range=(float(min(i.min() for i in imgs)), float(max(i.max() for i in imgs))),
                         data_sha256=data_sha256(imgs), n_images=len(imgs))
        model = cls._fit(imgs, cleans, meta, **options)
        return model

    @classmethod
    def _fit(cls, images: list[np.ndarray], cleans: list[np.ndarray] | None, meta: ModelMeta,
             **options) -> "NoiseModel":
        raise NotImplementedError

    # -- use ---------------------------------------------------------------------
    def sample(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return `clean` with this model's noise; float32, same shape, clipped to [0, 1]."""
        raise NotImplementedError

    def check_use(self, *, pixel_nm: float | None = None, bit_depth: int | None = None, where: str = "") -> list[str]:
        """Warn (and return the warnings) when used at another pixel size or bit depth."""
        out = []
        mp = self.meta.pixel_nm
        if pixel_nm is not None and mp is not None and abs(pixel_nm / mp - 1.0) > SAME_SIZE:
            out.append(f"{where or 'noise model'}: fitted at {mp:g} nm/px, used at {pixel_nm:g} nm/px; "
                       "the noise's spatial correlation will be off")
        if bit_depth is not None and bit_depth != self.meta.bit_depth:
            out.append(f"{where or 'noise model'}: fitted on {self.meta.bit_depth}-bit frames, used on {bit_depth}-bit")
        for m in out:
            warnings.warn(m, stacklevel=2)
        return out

    # -- persistence -----------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """JSON-able parameters (scalars and lists)."""
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        """Numeric arrays saved in arrays.npz (no object arrays)."""
        return {}

    @classmethod
    def from_params(cls, params: dict[str, Any], arrays: dict[str, np.ndarray], meta: ModelMeta,
                    folder: Path) -> "NoiseModel":
        raise NotImplementedError

    def save(self, folder) -> Path:
        """Write model.json (+ arrays.npz) into `folder` atomically; returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrs = self.arrays()
        for k, a in arrs.items():
            if not isinstance(a, np.ndarray) or a.dtype == object:
                raise TypeError(f"{self.kind}: array {k!r} must be a numeric numpy array")
        if arrs:
            with atomic_write(folder / ARRAYS_FILE, "wb") as f:
                np.savez(f, **arrs)
        elif (folder / ARRAYS_FILE).exists():
            (folder / ARRAYS_FILE).unlink()
        self._save_extra(folder)
        write_json_atomic(folder / MODEL_FILE, {"format": "semlab-noise-model", "version": FORMAT_VERSION,
                                                "kind": self.kind, "meta": self.meta.to_json(),
                                                "params": self.params(), "arrays": sorted(arrs)})
        return folder

    def _save_extra(self, folder: Path) -> None:
        """Hook for models with more files (a state dict); written before model.json."""


def register(cls: type[NoiseModel]) -> type[NoiseModel]:
    """Class decorator: add a model to the registry under `cls.kind`."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} has no kind")
    _REGISTRY[cls.kind] = cls
    return cls


def _import_all() -> None:
    for mod in _MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a model module not written yet, or torch missing
            if e.name not in (mod, "torch"):
                raise


def names() -> list[str]:
    _import_all()
    return sorted(_REGISTRY)


def get(kind: str) -> type[NoiseModel]:
    _import_all()
    if kind not in _REGISTRY:
        raise KeyError(f"unknown noise model {kind!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[kind]


def load(folder) -> NoiseModel:
    """Load a saved model of any registered kind; refuses anything malformed."""
    folder = Path(folder)
    mf = folder / MODEL_FILE
    if not mf.is_file():
        raise FileNotFoundError(f"{mf}: no noise model here (expected {MODEL_FILE})")
    try:
        doc = json.loads(mf.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{mf}: not a JSON noise model ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != "semlab-noise-model":
        raise ValueError(f"{mf}: not a semlab noise model (format key missing)")
    if doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"{mf}: model format version {doc.get('version')!r}, this semlab reads {FORMAT_VERSION}")
    extra = set(doc) - {"format", "version", "kind", "meta", "params", "arrays"}
    if extra:
        raise ValueError(f"{mf}: unknown keys {sorted(extra)}")
    cls = get(str(doc.get("kind")))
    meta = ModelMeta.from_json(doc.get("meta") or {}, str(mf))
    want = doc.get("arrays") or []
    arrays: dict[str, np.ndarray] = {}
    if want:
        af = folder / ARRAYS_FILE
        if not af.is_file():
            raise FileNotFoundError(f"{af}: missing (model.json lists arrays {want})")
        try:
            with np.load(af, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except ValueError as e:
            raise ValueError(f"{af}: refused ({e}); model arrays must be plain numeric arrays") from None
        if sorted(arrays) != sorted(want):
            raise ValueError(f"{af}: holds {sorted(arrays)}, model.json lists {sorted(want)}")
    params = doc.get("params")
    if not isinstance(params, dict):
        raise ValueError(f"{mf}: params must be an object")
    return cls.from_params(params, arrays, meta, folder)


def check_images(images: Sequence[np.ndarray], *, what: str, min_images: int = 1,
                 min_size: int = 16) -> list[np.ndarray]:
    """Validate a list of 2-D float images in [0, 1] for fitting: same size, enough of
    them, none constant. Returns float32 copies. Raises ValueError saying what is wrong."""
    imgs = [np.asarray(i) for i in images]
    if len(imgs) < min_images:
        raise ValueError(f"{what}: needs at least {min_images} image(s), got {len(imgs)}")
    for k, im in enumerate(imgs):
        if im.ndim != 2:
            raise ValueError(f"{what}: image {k} has shape {im.shape}; expected a 2-D gray image")
        if min(im.shape) < min_size:
            raise ValueError(f"{what}: image {k} is {im.shape[1]}x{im.shape[0]} px, smaller than {min_size} px")
        if not np.isfinite(im).all():
            raise ValueError(f"{what}: image {k} has NaN or inf values")
        if float(im.max()) - float(im.min()) == 0.0:
            raise ValueError(f"{what}: image {k} is constant ({float(im.min()):g}); there is no noise to fit")
        if im.dtype.kind == "f" and (im.min() < -1e-6 or im.max() > 1 + 1e-6):
            raise ValueError(f"{what}: image {k} has values outside [0, 1] ({im.min():g}..{im.max():g})")
        if im.dtype.kind in "ui":
            raise ValueError(f"{what}: image {k} is {im.dtype}; pass float images in [0, 1] "
                             "(semlab.io.read_image gives them)")
    shapes = {i.shape for i in imgs}
    if len(shapes) > 1:
        raise ValueError(f"{what}: images have different sizes {sorted(shapes)}; tile or crop them to one size")
    return [i.astype(np.float32, copy=False) for i in imgs]


SampleFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]
