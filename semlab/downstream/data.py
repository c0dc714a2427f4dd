"""Training and test data of the downstream experiment: domains, training-set specs, the
data-efficiency sampler and the augmentation every training set gets.

A **domain** (`Domain`) is the target: its train, val and test splits of (image, mask)
tiles held in memory as uint8, with each tile's frame, so that no frame is in two splits.

- `real_domain(dataset)`: a labelled semlab dataset (packaged CD-SEM tiles with their
  QA-passed reference masks, or a user's labelled set) with its stored frame split;
  larger images are cut into `tile` px tiles (a frame's tiles stay together).
- `sim_domain(preset)`: the simulated domain: train and val from the preset's parameter
  ranges, and a **test split drawn with held-out ranges** (`SHIFT`, listed by
  `describe_shift`: dose x0.5, beam blur x1.5, pitch scaled by 0.8 or 1.2): a domain
  shift with exact labels. Every image is its own frame.

A **training-set spec** is a string; `+` joins components into a union:

- `real`: the target's train split; `real:N`: N tiles drawn by the data-efficiency
  sampler (`sample_tiles`: from train frames only, nested in N for one seed);
- `preset:NAME[:k=v,k=a..b]`: the simulator rendering NEW layouts (seeds of their own,
  never a test layout) at the target's pixel size and tile size; `k=v` fixes a
  parameter, `k=a..b` draws it uniformly per image (e.g. a widened, domain-randomised preset);
- `render:NAME[:...]`: new layout masks of the target's preset rendered through
  `render_mask` with NAME's imaging (a mask -> SEM translator without LER of its own);
- `gen:CHECKPOINT`: a trained Pix2Pix/CycleGAN generator (`semlab generate`'s
  checkpoints) applied to new layout masks;
- a folder: a semlab dataset or any folder with `images/` and `masks/` of the same names
  (e.g. `semlab generate` output): every item except its `test` split.

Components are sampled **balanced** (each batch item first picks a component uniformly,
then a tile of it), so real:10 + a synthetic set is half real, half synthetic.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from semlab import labels
from semlab.train.realsets import Tile, check_frames_disjoint

__all__ = ["Items", "Domain", "Component", "TrainingSet", "SHIFT", "describe_shift", "real_domain", "sim_domain",
           "parse_spec", "build_training_set", "sample_tiles", "augment", "pixel_hashes", "check_no_overlap",
           "check_classes", "structure_classes", "SpecError", "test_range_spec"]

STRUCTURE = (labels.BACKGROUND, labels.PATTERN, labels.HOLE)
# The held-out ranges of the simulated test split: parameter -> (how, factor)
SHIFT: dict[str, tuple[str, Any]] = {"dose": ("scale", 0.5), "psf_sigma_nm": ("scale", 1.5),
                                      "pitch_nm": ("either", (0.8, 1.2))}
# seed namespaces of the simulator: target train/val, synthetic sources, shifted test
_NS_TARGET, _NS_SOURCE, _NS_TEST = 1, 2, 3


class SpecError(ValueError):
    """A training-set spec or a data set that cannot be used."""


@dataclass
class Items:
    """Tiles held in memory: images and masks (N, H, W) uint8, ids, frames."""

    images: np.ndarray
    masks: np.ndarray
    ids: list[str]
    frames: list[str]
    source: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx: Sequence[int]) -> "Items":
        idx = list(idx)
        return Items(self.images[idx], self.masks[idx], [self.ids[i] for i in idx], [self.frames[i] for i in idx],
                     self.source)

    @property
    def n_frames(self) -> int:
        return len(set(self.frames))

    def classes(self) -> tuple[int, ...]:
        return tuple(int(c) for c in np.unique(self.masks)) if len(self) else ()


@dataclass
class Domain:
    """The target domain: splits, tile size, pixel size, the simulator preset of its kind."""

    kind: str  # "sim" | "real"
    name: str  # "cdsem-lines (real)", "line-space (simulated (target))"
    splits: dict[str, Items]
    tile: int
    pixel_nm: float | None
    preset: str
    declared_classes: tuple[int, ...] = ()
    notes: list[str] = field(default_factory=list)
    shift: dict[str, str] = field(default_factory=dict)

    @property
    def index(self) -> dict[str, Tile]:
        return {i: Tile(self.name, f, s, 0, 0) for s, it in self.splits.items() for i, f in zip(it.ids, it.frames)}

    def split(self, name: str) -> Items:
        if name not in self.splits or not len(self.splits[name]):
            raise SpecError(f"{self.name}: no tiles in the {name} split (splits: "
                            f"{', '.join(f'{k} {len(v)}' for k, v in self.splits.items())})")
        return self.splits[name]

    @property
    def layout(self) -> str:
        """"lines", "contacts" or "other": which metrology applies."""
        return {"line-space": "lines", "contacts": "contacts"}.get(self.preset, "other")

    def label(self, split: str = "test") -> str:
        it = self.splits.get(split)
        nt, nf = (len(it), it.n_frames) if it is not None else (0, 0)
        return f"{self.name}, {split} split: {nt} tiles of {nf} frame{'s' if nf != 1 else ''}"


def structure_classes(masks: np.ndarray) -> tuple[int, ...]:
    """The structure classes (background, pattern, hole) present in `masks`."""
    present = set(np.unique(masks).tolist())
    return tuple(c for c in STRUCTURE if c in present)


# ------------------------------------------------------------------------- domains


def _tiles(img: np.ndarray, mask: np.ndarray, tile: int) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    h, w = img.shape
    if h < tile or w < tile:
        raise SpecError(f"a {w}x{h} px image is smaller than one {tile} px tile")
    return [(r, c, img[r:r + tile, c:c + tile], mask[r:r + tile, c:c + tile])
            for r in range(0, h - tile + 1, tile) for c in range(0, w - tile + 1, tile)]


def _load_dataset_items(path, *, tile: int | None, exclude_test: bool = False) -> tuple[dict[str, Items], dict, Any]:
    """{split: Items} of a labelled semlab dataset, tiles cut to `tile` px (None: the
    images' own size, which must then be one size)."""
    from semlab import io
    from semlab.data.datasets import DatasetError, load_dataset
    from semlab.train.realsets import tile_index

    try:
        ds = load_dataset(path)
    except DatasetError as e:
        raise SpecError(str(e)) from None
    if not ds.labeled:
        raise SpecError(f"{path}: the dataset has no masks (masks/ is empty); the downstream segmenter needs "
                        "labelled tiles (e.g. `semlab segment` or `semlab import-images --masks`)")
    index = tile_index(ds)
    out: dict[str, dict[str, list]] = {}
    for r in ds.rows:
        if exclude_test and r["split"] == "test":
            continue
        if not r.get("mask_sha256"):
            continue
        img, m = io.to_uint8(ds.image(r["id"])), ds.mask(r["id"])
        t = tile or min(img.shape)
        pieces = [(0, 0, img, m)] if img.shape == (t, t) else _tiles(img, m, t)
        d = out.setdefault(r["split"], {"images": [], "masks": [], "ids": [], "frames": []})
        for (rr, cc, a, b) in pieces:
            d["images"].append(a)
            d["masks"].append(b.astype(np.uint8))
            d["ids"].append(r["id"] if len(pieces) == 1 else f"{r['id']}_t{rr}_{cc}")
            d["frames"].append(index[r["id"]].frame)
    sizes = {a.shape for d in out.values() for a in d["images"]}
    if len(sizes) > 1:
        raise SpecError(f"{path}: images of several sizes {sorted(sizes)[:4]}; pass a tile size")
    splits = {s: Items(np.stack(d["images"]), np.stack(d["masks"]), d["ids"], d["frames"], str(path))
              for s, d in out.items()}
    return splits, ds.info, ds


def real_domain(dataset, *, tile: int | None = None, set_name: str | None = None) -> Domain:
    """The real domain of a labelled dataset (its stored frame split; frames disjoint
    across splits, checked). `set_name` names the set (default: the dataset's main set)."""
    from semlab.train.realsets import real_split, set_pixel_nm, set_preset, sets_of

    splits, info, ds = _load_dataset_items(dataset, tile=tile)
    names = sets_of(ds)
    name = set_name or (names[0] if names else Path(dataset).name)
    if len(names) == 1:
        real_split(ds, names[0])  # raises if a frame holds tiles of two splits
    index = {i: Tile(name, f, s, 0, 0) for s, it in splits.items() for i, f in zip(it.ids, it.frames)}
    keys = list(splits)
    for a in keys:
        for b in keys:
            if a < b:
                check_frames_disjoint(index, splits[a].ids, splits[b].ids, (a, b))
    any_masks = np.concatenate([it.masks[:4] for it in splits.values()])
    declared = tuple(int(c["id"]) for c in info.get("classes", []) if "id" in c)
    size = next(iter(splits.values())).images.shape[1]
    return Domain("real", f"{name} (real)", splits, size, set_pixel_nm(ds, name) if names else info.get("pixel_size_nm"),
                  set_preset(name, any_masks), declared or (),
                  notes=["agreement with reference masks (classical segmentation, QA-passed), not accuracy: it "
                         "favours models trained on the same kind of masks"])


def _ranges(preset: str) -> dict[str, Any]:
    from semlab.data.simulate import get_preset

    return dict(get_preset(preset).params)


def _shifted(preset: str, rng: np.random.Generator, shift: dict) -> dict[str, float]:
    """One test image's held-out parameter values (overrides for `simulate`)."""
    ranges = _ranges(preset)
    out = {}
    for k, (how, f) in shift.items():
        if k not in ranges:
            continue
        v = ranges[k]
        lo, hi = (float(v[0]), float(v[1])) if isinstance(v, tuple) and len(v) == 2 and v[0] != "p" else (v, v)
        base = float(rng.uniform(lo, hi)) if hi > lo else float(lo)
        if how == "scale":
            out[k] = base * float(f)
        elif how == "either":
            out[k] = base * float(f[int(rng.integers(len(f)))])
        else:
            raise ValueError(f"unknown shift kind {how!r} for {k}")
    return out


def describe_shift(preset: str, shift: dict | None = None) -> dict[str, str]:
    """{parameter: "training range a..b -> test range c..d (how)"} of the held-out ranges."""
    shift = SHIFT if shift is None else shift
    ranges = _ranges(preset)
    out = {}
    for k, (how, f) in shift.items():
        if k not in ranges:
            continue
        v = ranges[k]
        lo, hi = (float(v[0]), float(v[1])) if isinstance(v, tuple) and v[0] != "p" else (float(v), float(v))
        if how == "scale":
            out[k] = f"training {lo:g}..{hi:g} -> test {lo * f:g}..{hi * f:g} (x{f:g})"
        else:
            out[k] = (f"training {lo:g}..{hi:g} -> test " + " or ".join(f"{lo * x:g}..{hi * x:g}" for x in f)
                      + f" (x{' or x'.join(f'{x:g}' for x in f)})")
    return out


def test_range_spec(preset: str, shift: dict | None = None) -> str:
    """A training-set spec of `preset` drawn from the held-out **test** ranges (each
    shifted parameter uniform over the hull of its test ranges, e.g. pitch 0.8x..1.2x):
    not a source anyone could build without knowing the shift, but the reference of how
    much a source that covered it could add."""
    shift = SHIFT if shift is None else shift
    ranges = _ranges(preset)
    parts = []
    for k, (how, f) in shift.items():
        if k not in ranges:
            continue
        v = ranges[k]
        lo, hi = (float(v[0]), float(v[1])) if isinstance(v, tuple) and v[0] != "p" else (float(v), float(v))
        fs = [float(f)] if how == "scale" else [float(x) for x in f]
        parts.append(f"{k}={lo * min(fs):.4g}..{hi * max(fs):.4g}")
    return f"preset:{preset}:" + ",".join(parts) if parts else f"preset:{preset}"


def _sim_items(preset: str, n: int, size: int, seed, ns: int, split: str, *, pixel_nm: float | None = None,
               shift: dict | None = None, progress: bool = False) -> Items:
    from tqdm.auto import tqdm

    from semlab import io
    from semlab.data.simulate import simulate

    rng = np.random.default_rng([int(seed), ns, 7])
    imgs, masks, ids = [], [], []
    for i in tqdm(range(n), desc=f"simulate {preset} {split}", disable=not progress, leave=False):
        over = _shifted(preset, rng, shift) if shift else {}
        r = simulate(preset, size, (int(seed), ns, i), pixel_nm=pixel_nm, with_contours=False, **over)
        imgs.append(io.to_uint8(r.image))
        masks.append(r.mask.astype(np.uint8))
        ids.append(f"{split}-{i:05d}")
    return Items(np.stack(imgs), np.stack(masks), ids, list(ids), f"simulate:{preset}")


def sim_domain(preset: str = "line-space", *, size: int = 128, n_train: int = 200, n_val: int = 24,
               n_test: int = 48, seed: int = 0, shift: dict | None = None, progress: bool = False) -> Domain:
    """The simulated domain of `preset` (see the module docstring): train/val from the
    training ranges, test from the held-out ranges `shift` (default `SHIFT`)."""
    shift = SHIFT if shift is None else shift
    tr = _sim_items(preset, n_train + n_val, size, seed, _NS_TARGET, "train", progress=progress)
    splits = {"train": tr.subset(range(n_train)), "val": tr.subset(range(n_train, n_train + n_val)),
              "test": _sim_items(preset, n_test, size, seed, _NS_TEST, "test", shift=shift, progress=progress)}
    splits["val"].ids = [f"val-{i:05d}" for i in range(n_val)]
    splits["val"].frames = list(splits["val"].ids)
    from semlab.data.simulate import get_preset

    px = get_preset(preset).field_of_view_nm / size
    declared = (labels.BACKGROUND, labels.PATTERN, labels.DEFECT) + ((labels.HOLE,) if preset == "contacts" else ())
    return Domain("sim", f"{preset} (simulated (target))", splits, size, px, preset, tuple(sorted(declared)),
                  notes=["exact labels; the test split is a domain shift (held-out ranges)"],
                  shift=describe_shift(preset, shift))


# ------------------------------------------------------------------------- specs


@dataclass
class Component:
    """One part of a training set: its spec, tiles and kind ("real" or "synthetic")."""

    spec: str
    kind: str
    items: Items
    n_frames: int
    classes: tuple[int, ...]


@dataclass
class TrainingSet:
    """A union of components, sampled balanced (module docstring)."""

    spec: str
    components: list[Component]

    @property
    def n(self) -> int:
        return sum(len(c.items) for c in self.components)

    @property
    def n_real(self) -> int:
        return sum(len(c.items) for c in self.components if c.kind == "real")

    @property
    def n_synthetic(self) -> int:
        return self.n - self.n_real

    @property
    def n_real_frames(self) -> int:
        return len({f for c in self.components if c.kind == "real" for f in c.items.frames})

    @property
    def classes(self) -> tuple[int, ...]:
        return tuple(sorted({k for c in self.components for k in c.classes}))

    @property
    def kind(self) -> str:
        kinds = {c.kind for c in self.components}
        return "real+synthetic" if len(kinds) > 1 else kinds.pop()

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """A batch (images, masks) uint8: per item a component uniformly, then a tile of it."""
        comp = rng.integers(len(self.components), size=batch)
        imgs, masks = [], []
        for c in comp:
            it = self.components[c].items
            j = int(rng.integers(len(it)))
            imgs.append(it.images[j])
            masks.append(it.masks[j])
        return np.stack(imgs), np.stack(masks)

    def describe(self) -> str:
        parts = []
        for c in self.components:
            if c.kind == "real":
                parts.append(f"{c.spec}: {len(c.items)} real tiles of {c.n_frames} frame{'s' if c.n_frames != 1 else ''}")
            else:
                parts.append(f"{c.spec}: {len(c.items)} synthetic tiles")
        return "; ".join(parts)


def _parse_params(text: str, spec: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise SpecError(f"training spec {spec!r}: {part!r} is not NAME=VALUE or NAME=LOW..HIGH")
        k, v = (s.strip() for s in part.split("=", 1))
        try:
            if ".." in v:
                lo, hi = (float(x) for x in v.split(".."))
                out[k] = (min(lo, hi), max(lo, hi))
            else:
                out[k] = float(v)
        except ValueError:
            raise SpecError(f"training spec {spec!r}: {k}={v!r} is not a number or a range a..b") from None
    return out


def parse_spec(spec: str) -> list[tuple[str, str, Any]]:
    """The components of a spec as (kind, name, argument): ("real", "", N or None),
    ("preset" | "render", NAME, {param: value or (lo, hi)}), ("gen", PATH, None),
    ("folder", PATH, None). SpecError on an empty part or a bad count."""
    out = []
    for part in str(spec).split("+"):
        part = part.strip()
        if not part:
            raise SpecError(f"training spec {spec!r}: an empty part (use e.g. real+preset:line-space)")
        if part == "real":
            out.append(("real", "", None))
        elif part.startswith("real:"):
            n = part[5:]
            if not n.isdigit() or int(n) < 1:
                raise SpecError(f"training spec {spec!r}: real:N needs a positive tile count, got {n!r}")
            out.append(("real", "", int(n)))
        elif part.startswith(("preset:", "render:")):
            kind, rest = part.split(":", 1)
            name, _, params = rest.partition(":")
            from semlab.data.simulate import get_preset

            try:
                get_preset(name)
            except KeyError as e:
                raise SpecError(f"training spec {spec!r}: {e.args[0]}") from None
            out.append((kind, name, _parse_params(params, spec)))
        elif part.startswith("gen:"):
            out.append(("gen", part[4:], None))
        else:
            out.append(("folder", part, None))
    return out


def sample_tiles(items: Items, n: int | None, seed: int) -> list[int]:
    """The data-efficiency sampler: indices of `n` tiles of `items` (the target's train
    split; None or n >= len: all), in a fixed random order per `seed`, so the tiles of a
    smaller N are among those of a larger N."""
    order = np.random.default_rng([int(seed), 11]).permutation(len(items))
    if n is None or n >= len(items):
        return sorted(order.tolist())
    return sorted(order[:int(n)].tolist())


def _draw_params(params: dict, rng: np.random.Generator) -> dict[str, float]:
    return {k: (float(rng.uniform(*v)) if isinstance(v, tuple) else v) for k, v in params.items()}


_CACHE: dict[tuple, Items] = {}


def _render_source(kind: str, name: str, params: dict, domain: Domain, n: int, seed: int,
                   progress: bool) -> Items:
    """`n` synthetic tiles of NEW layouts (seed namespace of the sources)."""
    from tqdm.auto import tqdm

    from semlab import io
    from semlab.data.simulate import render_mask, simulate

    key = (kind, name, json.dumps(params, sort_keys=True), domain.tile, domain.pixel_nm, n, seed)
    if key in _CACHE:
        return _CACHE[key]
    rng = np.random.default_rng([int(seed), _NS_SOURCE, 5])
    imgs, masks = [], []
    for i in tqdm(range(n), desc=f"{kind} {name}", disable=not progress, leave=False):
        over = _draw_params(params, rng)
        if kind == "preset":
            r = simulate(name, domain.tile, (int(seed), _NS_SOURCE, i), pixel_nm=domain.pixel_nm,
                         with_contours=False, **over)
        else:
            geo = {k: v for k, v in over.items() if k in _ranges(domain.preset)}  # e.g. pitch_nm
            layout = simulate(domain.preset, domain.tile, (int(seed), _NS_SOURCE, i), pixel_nm=domain.pixel_nm,
                              with_contours=False, **geo).mask
            r = render_mask(layout, name, (int(seed), _NS_SOURCE + 10, i), pixel_nm=domain.pixel_nm, **over)
        imgs.append(io.to_uint8(r.image))
        masks.append(r.mask.astype(np.uint8))
    ids = [f"{kind}-{name}-{i:05d}" for i in range(n)]
    out = Items(np.stack(imgs), np.stack(masks), ids, ids, f"{kind}:{name}")
    _CACHE[key] = out
    return out


def _generated(path: str, domain: Domain, n: int, seed: int) -> Items:
    from semlab import io
    from semlab.data.simulate import simulate
    from semlab.train.generate import Generator

    p = Path(path)
    if not p.is_file():
        raise SpecError(f"gen:{path}: no generator checkpoint at {p}")
    gen = Generator(p)
    masks = np.stack([simulate(domain.preset, domain.tile, (int(seed), _NS_SOURCE, i), pixel_nm=domain.pixel_nm,
                               with_contours=False).mask for i in range(n)])
    imgs = gen(masks, seed=seed)
    ids = [f"gen-{p.stem}-{i:05d}" for i in range(n)]
    return Items(np.stack([io.to_uint8(x) for x in imgs]), masks.astype(np.uint8), ids, ids, f"gen:{p}")


def _folder(path: str, tile: int) -> tuple[Items, tuple[int, ...]]:
    p = Path(path)
    if not p.is_dir():
        raise SpecError(f"training spec part {path!r}: not 'real', 'real:N', 'preset:NAME', 'render:NAME', "
                        "'gen:CHECKPOINT' or an existing folder")
    if (p / "dataset.json").is_file():
        splits, info, _ = _load_dataset_items(p, tile=tile, exclude_test=True)
        if not splits:
            raise SpecError(f"{p}: no labelled items outside its test split")
        its = list(splits.values())
        items = Items(np.concatenate([i.images for i in its]), np.concatenate([i.masks for i in its]),
                      [x for i in its for x in i.ids], [x for i in its for x in i.frames], str(p))
        declared = tuple(int(c["id"]) for c in info.get("classes", []) if "id" in c)
        return items, declared or items.classes()
    from semlab import io
    from semlab.data.sources import list_images

    if not (p / "masks").is_dir():
        raise SpecError(f"{p}: has no masks/ folder; the downstream segmenter needs labelled images "
                        "(images/ and masks/ of the same names)")
    files = list_images(p / "images") if (p / "images").is_dir() else []
    imgs, masks, ids = [], [], []
    for f in files:
        mf = p / "masks" / f"{f.stem}.png"
        if not mf.is_file():
            continue
        img, m = io.to_uint8(io.read_image(f)), io.read_mask(mf)
        if m.shape != img.shape:
            raise SpecError(f"{mf}: mask {m.shape} and image {img.shape} differ in size")
        for (r, c, a, b) in ([(0, 0, img, m)] if img.shape == (tile, tile) else _tiles(img, m, tile)):
            imgs.append(a)
            masks.append(b.astype(np.uint8))
            ids.append(f"{f.stem}_t{r}_{c}")
    if not imgs:
        raise SpecError(f"{p}: no image in images/ has a mask of the same name in masks/")
    items = Items(np.stack(imgs), np.stack(masks), ids, [i.split("_t")[0] for i in ids], str(p))
    return items, items.classes()


def build_training_set(spec: str, domain: Domain, *, seed: int = 0, n_synthetic: int = 200,
                       progress: bool = False) -> TrainingSet:
    """The training set of `spec` for `domain` (module docstring). Synthetic sources are
    rendered with the seed of the experiment (not of the training run), so all seeds of
    one source train on the same images; real:N draws with `seed`."""
    comps = []
    for kind, name, arg in parse_spec(spec):
        if kind == "real":
            train = domain.split("train")
            idx = sample_tiles(train, arg, seed)
            it = train.subset(idx)
            label = "real" if arg is None or arg >= len(train) else f"real:{arg}"
            comps.append(Component(label, "real", it, it.n_frames, domain.declared_classes or it.classes()))
        elif kind in ("preset", "render"):
            it = _render_source(kind, name, arg, domain, n_synthetic, 0, progress)
            declared = (labels.BACKGROUND, labels.PATTERN, labels.DEFECT)
            if (it.masks == labels.HOLE).any() or name == "contacts":
                declared += (labels.HOLE,)
            comps.append(Component(f"{kind}:{name}" + (":" + ",".join(f"{k}={v}" for k, v in arg.items()) if arg
                                                         else ""), "synthetic", it, 0, tuple(sorted(declared))))
        elif kind == "gen":
            it = _generated(name, domain, n_synthetic, 0)
            comps.append(Component(f"gen:{Path(name).name}", "synthetic", it, 0, it.classes()))
        else:
            it, declared = _folder(name, domain.tile)
            if it.images.shape[1:] != (domain.tile, domain.tile):
                raise SpecError(f"{name}: tiles of {it.images.shape[1:]} px, the target's are {domain.tile} px")
            comps.append(Component(Path(name).name, "synthetic", it, 0, tuple(declared)))
    return TrainingSet(spec, comps)


# ------------------------------------------------------------------------- checks


def pixel_hashes(images: np.ndarray) -> list[str]:
    """sha256 of each image's pixels (uint8, with its shape): equal images, equal hashes,
    whatever file format they were read from."""
    out = []
    for a in np.asarray(images):
        h = hashlib.sha256(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
        out.append(h.hexdigest())
    return out


def check_no_overlap(ts: TrainingSet, test: Items, test_name: str) -> None:
    """SpecError if a training image equals a test image (same sha256 of the pixels), or a
    synthetic source's mask with structure equals a test mask (rendered from test masks)."""
    test_img = dict(zip(pixel_hashes(test.images), test.ids))
    mask_ok = [len(np.unique(m)) > 1 for m in test.masks]
    test_mask = {h: i for h, i, ok in zip(pixel_hashes(test.masks), test.ids, mask_ok) if ok}
    for c in ts.components:
        hits = [(i, test_img[h]) for h, i in zip(pixel_hashes(c.items.images), c.items.ids) if h in test_img]
        if hits:
            raise SpecError(f"train/test overlap: {len(hits)} image(s) of {c.spec} are test images of {test_name} "
                            f"(same sha256), e.g. {hits[0][0]} = {hits[0][1]}; a score on them measures memory")
        if c.kind == "synthetic":
            mh = [(i, test_mask[h]) for h, i in zip(pixel_hashes(c.items.masks), c.items.ids) if h in test_mask]
            if mh:
                raise SpecError(f"train/test overlap: {len(mh)} mask(s) of {c.spec} are test masks of {test_name} "
                                f"(same sha256), e.g. {mh[0][0]} = {mh[0][1]}; synthetic sources must render new "
                                "layouts, never test masks")


def check_classes(ts: TrainingSet, test: Items, test_name: str) -> None:
    """SpecError if the test masks hold a class the training set has none of."""
    have = set(ts.classes)
    missing = [c for c in test.classes() if c not in have]
    if missing:
        names = ", ".join(labels.CLASSES[c].name for c in missing)
        raise SpecError(f"{test_name} holds class(es) {names} that the training set {ts.spec!r} lacks "
                        f"(it has {', '.join(labels.CLASSES[c].name for c in sorted(have)) or 'none'}): the "
                        "segmenter could never predict them")


def augment(images: np.ndarray, masks: np.ndarray, rng: np.random.Generator, *, jitter: float = 0.2,
            offset: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """The augmentation of every training set: per tile a random 90-degree rotation, a
    horizontal flip (p = 0.5) and an intensity jitter (gain in [1 - jitter, 1 + jitter],
    offset in [-offset, offset], clipped to [0, 1]). uint8 in, float32 images in [0, 1] out."""
    x = images.astype(np.float32) / 255.0
    m = masks.copy()
    b = len(x)
    k = rng.integers(4, size=b)
    flip = rng.random(b) < 0.5
    gain = rng.uniform(1 - jitter, 1 + jitter, size=b).astype(np.float32)
    off = rng.uniform(-offset, offset, size=b).astype(np.float32)
    xo, mo = np.empty_like(x), np.empty_like(m)
    square = x.shape[1] == x.shape[2]
    for i in range(b):
        xi, mi = x[i], m[i]
        if square and k[i]:
            xi, mi = np.rot90(xi, k[i]), np.rot90(mi, k[i])
        if flip[i]:
            xi, mi = xi[:, ::-1], mi[:, ::-1]
        xo[i] = np.clip(xi * gain[i] + off[i], 0.0, 1.0)
        mo[i] = mi
    return xo, mo
