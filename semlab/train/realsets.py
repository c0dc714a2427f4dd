"""The real domain of notebooks 20, 21, 30 and 40: real SEM tiles by set and frame.

A real paired dataset (notebook 10 with `DOMAIN="real"`: packaged or user frames
imported, tiled with the stored frame split and segmented) holds tiles of one or more
*sets* (the folder each frame came from, e.g. `cdsem-lines`) and *frames* (the manifest
`group` of a tile). Here:

- `tile_index(ds)`: {tile id: `Tile(set, frame, split, row, col)`};
- `real_split(ds, set)`: the tiles and frames of each split of one set, checked so that no
  frame is in two splits (`check_frames_disjoint` raises ValueError naming the frames);
- `select_sets(ds, wanted)`: which sets get a model (the profile's `real.sets`; none
  present: the first set);
- `set_dataset(ds, set, out)`: a dataset folder holding only one set's tiles (the trainers
  read a whole dataset), reused when complete;
- `set_preset(set, masks)` and `set_pixel_nm(ds, set)`: the simulator's built-in preset of the
  set's kind and the set's pixel size, for the physics baseline;
- `fold_groups(ds, ids, n_splits, block)`: cross-validation groups of the detector: frames
  when there are at least `n_splits` of them, else blocks of `block` x `block` tiles;
- `make_real_dataset(real_dir, out_root, profile)`: import + tile + segment (what
  notebook 10 does for `DOMAIN="real"`), for a notebook run without a run folder;
- `real_dataset` / `domain_dataset`: the dataset a notebook of either domain works on
  (for "real": the run's `10_make_dataset[real]` dataset, cut to its main set).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["Tile", "RealSplit", "CI_CAVEAT", "tile_index", "sets_of", "real_split", "check_frames_disjoint",
           "select_sets", "set_dataset", "set_preset", "set_pixel_nm", "fold_groups", "make_real_dataset",
           "held_out_ids", "domain_dataset", "real_dataset", "other_sets"]

CI_CAVEAT = ("A CI over the tiles of one or two frames describes those frames only: tiles of one frame share "
             "its imaging conditions and are not independent samples of the tool.")
_POS = re.compile(r"_r(\d+)_c(\d+)$")


@dataclass(frozen=True)
class Tile:
    set: str
    frame: str
    split: str
    row: int
    col: int


def _set_of(row: Mapping) -> str:
    src = str(row.get("source") or "")
    name = Path(src).parent.name if src else ""
    return name or "real"


def tile_index(ds) -> dict[str, Tile]:
    """{tile id: Tile} of the usable items of a real dataset: set = the folder of the
    frame it was cut from (manifest `source`), frame = its `group`, row/col = its position
    in the frame (px, from the tile id `<frame>_r<row>_c<col>`; 0 for untiled frames)."""
    out = {}
    for r in ds.rows:
        m = _POS.search(r["id"])
        out[r["id"]] = Tile(_set_of(r), r.get("group") or r["id"], r["split"],
                            int(m.group(1)) if m else 0, int(m.group(2)) if m else 0)
    return out


def sets_of(ds) -> list[str]:
    """The sets of a real dataset, sorted."""
    return sorted({t.set for t in tile_index(ds).values()})


def check_frames_disjoint(index: Mapping[str, Tile], a: Iterable[str], b: Iterable[str], what=("train", "test")) -> None:
    """ValueError naming the frames that hold tiles of both `a` and `b`."""
    fa, fb = {index[i].frame for i in a}, {index[i].frame for i in b}
    both = sorted(fa & fb)
    if both:
        raise ValueError(f"frame(s) {both} hold both {what[0]} and {what[1]} tiles: a {what[1]} score on them "
                         f"would measure memory of the {what[0]} frames, not generalisation")


@dataclass(frozen=True)
class RealSplit:
    """The tiles and frames of each split of one real set (frames disjoint across splits)."""

    set: str
    tiles: dict[str, list[str]]
    frames: dict[str, list[str]]
    frame_of: dict[str, str] = field(default_factory=dict)  # tile id -> frame

    def n(self, split: str) -> tuple[int, int]:
        """(n tiles, n frames) of a split."""
        return len(self.tiles.get(split, [])), len(self.frames.get(split, []))

    def frames_of(self, ids: Iterable[str]) -> list[str]:
        """The frames the tiles `ids` come from, sorted."""
        return sorted({self.frame_of.get(i, i) for i in ids})

    def describe(self) -> str:
        parts = [f"{s} {len(t)} tiles of {len(self.frames[s])} frame(s) ({', '.join(self.frames[s])})"
                 for s, t in self.tiles.items()]
        return f"real set {self.set}: " + "; ".join(parts)

    def label(self, split: str = "test", ids: Sequence[str] | None = None) -> str:
        """"cdsem-lines (real), test split: 70 tiles of 1 frame" (a metrics doc's `set`); with
        `ids`, the tiles scored (a subset of the split) and their frames."""
        nt, nf = self.n(split) if ids is None else (len(ids), len(self.frames_of(ids)))
        return f"{self.set} (real), {split} split: {nt} tiles of {nf} frame{'s' if nf != 1 else ''}"


def real_split(ds, set_name: str | None = None) -> RealSplit:
    """The split of one set (None: the only set; ValueError with several) with its frames;
    ValueError if a frame holds tiles of two splits."""
    index = tile_index(ds)
    names = sorted({t.set for t in index.values()})
    if set_name is None:
        if len(names) != 1:
            raise ValueError(f"{ds.root}: holds the real sets {names}; name one")
        set_name = names[0]
    if set_name not in names:
        raise ValueError(f"{ds.root}: no tiles of the real set {set_name!r}; it holds {names}")
    tiles: dict[str, list[str]] = {}
    for i, t in index.items():
        if t.set == set_name:
            tiles.setdefault(t.split, []).append(i)
    order = [s for s in ("train", "val", "test") if s in tiles] + sorted(set(tiles) - {"train", "val", "test"})
    tiles = {s: tiles[s] for s in order}
    for a in order:
        for b in order:
            if a < b:
                check_frames_disjoint(index, tiles[a], tiles[b], (a, b))
    frames = {s: sorted({index[i].frame for i in ids}) for s, ids in tiles.items()}
    return RealSplit(set_name, tiles, frames, {i: index[i].frame for ids in tiles.values() for i in ids})


def held_out_ids(split: RealSplit, splits: Sequence[str] = ("val", "test"), max_n: int | None = None) -> list[str]:
    """The tiles of the held-out `splits`; with `max_n`, an even spread over them (every
    k-th tile, so every frame keeps its share)."""
    ids = [i for s in splits for i in split.tiles.get(s, [])]
    if max_n is not None and len(ids) > max_n:
        keep = np.linspace(0, len(ids) - 1, int(max_n)).round().astype(int)
        ids = [ids[k] for k in keep]
    return ids


def select_sets(ds, wanted: Sequence[str] = ()) -> list[str]:
    """The sets that get a model: `wanted` (empty: every set) among the dataset's sets;
    none of them present (a user's own folder): the first set."""
    have = sets_of(ds)
    if not wanted:
        return have
    chosen = [s for s in wanted if s in have]
    return chosen or have[:1]


def set_dataset(ds, set_name: str, out) -> Path:
    """A dataset folder with only `set_name`'s tiles (images, masks, splits, groups and
    sources kept); the dataset itself when it holds that set only. Resumable: a complete
    folder of the same identity is reused."""
    from semlab.data.datasets import DatasetWriter

    if sets_of(ds) == [set_name]:
        return Path(ds.root)
    index = tile_index(ds)
    ids = [i for i, t in index.items() if t.set == set_name]
    if not ids:
        raise ValueError(f"{ds.root}: no tiles of the real set {set_name!r}")
    info = {k: v for k, v in ds.info.items() if k in ("classes", "pixel_size_nm", "pixel_size_note")}
    info.update(name=Path(out).name, description=f"the {set_name} tiles of {ds.root}")
    w = DatasetWriter(out, kind="real-set", identity={"generator": "semlab.train.realsets", "source": str(ds.root),
                                                       "set": set_name}, info=info)
    try:
        for i in ids:
            if w.done(i):
                continue
            r = ds.row(i)
            w.add(i, ds.image(i), split=r["split"], group=r.get("group") or i, source=r.get("source") or "",
                  mask=ds.mask(i))
    except BaseException:
        w.abort()
        raise
    return w.close()


_KIND_PRESETS = (("contact", "contacts"), ("hole", "contacts"), ("via", "contacts"), ("line", "line-space"),
                 ("grating", "line-space"))


def set_preset(set_name: str, masks: np.ndarray | None = None) -> str:
    """The simulator's built-in preset of a real set's kind: contacts for contact/hole/via
    sets, line-space for line/grating sets; otherwise contacts when the masks hold holes
    (label 2), else ic-metal."""
    low = set_name.lower()
    for word, preset in _KIND_PRESETS:
        if word in low:
            return preset
    if masks is not None and (np.asarray(masks) == 2).any():
        return "contacts"
    return "ic-metal"


def set_pixel_nm(ds, set_name: str) -> float | None:
    """The pixel size (nm) of a real set: the tiles' recorded size, else dataset.json's,
    else the packaged sample catalogue's."""
    for i, t in tile_index(ds).items():
        if t.set == set_name:
            px = ds.params(i).get("pixel_size_nm")
            if px:
                return float(px)
            break
    if ds.info.get("pixel_size_nm"):
        return float(ds.info["pixel_size_nm"])
    from semlab.data import samples

    try:
        return float(samples.info(set_name)["pixel_nm"])
    except (KeyError, ValueError):
        return None


def fold_groups(index: Mapping[str, Tile], ids: Sequence[str], n_splits: int, block: int = 2,
                tile_px: int | None = None) -> tuple[np.ndarray, str]:
    """(group per tile, how): the frame of each tile when the tiles come from at least
    `n_splits` frames, else blocks of `block` x `block` neighbouring tiles of one frame
    (`tile_px`: the tile stride; by default the smallest nonzero position step), so that
    neighbouring tiles never sit on both sides of a fold."""
    frames = [index[i].frame for i in ids]
    nf = len(set(frames))
    if nf >= n_splits:
        return np.asarray(frames), f"folds grouped by frame ({nf} frames)"
    if tile_px is None:
        steps = sorted({p for i in ids for p in (index[i].row, index[i].col) if p > 0})
        tile_px = steps[0] if steps else 1
    span = max(1, int(tile_px) * int(block))
    groups = [f"{index[i].frame}@{index[i].row // span}x{index[i].col // span}" for i in ids]
    return np.asarray(groups), (f"folds grouped by blocks of {block}x{block} tiles ({len(set(groups))} blocks "
                                f"of {nf} frame{'s' if nf != 1 else ''}: too few frames for {n_splits} "
                                "frame-grouped folds)")


def make_real_dataset(real_dir, out_root, *, tile: int, sets: Sequence[str] = (), seed: int = 0,
                      progress: bool = False) -> Path:
    """Import, tile (`tile` px, the stored frame split) and segment (classical) the real
    frames of `real_dir` (a folder of sets, or one set's folder) into
    `out_root/<name>-<tile>px/`; `sets` limits a folder of sets to those present. The
    same steps as notebook 10 with `DOMAIN="real"`; both are resumable."""
    from semlab.segment.pipeline import import_real_sets, segment_dataset

    imported = import_real_sets(real_dir, out_root, tile=tile, sets=sets, seed=seed, progress=progress)
    name = imported.name.removesuffix("-imported")
    return segment_dataset(imported, Path(out_root) / f"{name}-seg", backend="classical", seed=seed,
                           progress=progress)


def real_dataset(run_dir=None, dataset="", *, profile: str = "cpu", seed: int = 0, real_dir="") -> Path:
    """The whole real paired dataset of a run: `dataset` if given; else the one notebook 10
    published for the real domain (`semlab.runs.find_dataset`); else (no run) one built from
    `real_dir` (empty: the packaged samples) with the profile's real tile size and sets
    (`make_real_dataset`, into `data/real/`). In a run without it: FileNotFoundError."""
    from semlab.config import load_profile
    from semlab.paths import data_dir
    from semlab.runs import find_dataset

    if dataset:
        p = Path(dataset)
        if not (p / "dataset.json").is_file():
            raise FileNotFoundError(f"{p}: not a semlab dataset (no dataset.json)")
        return p
    found = find_dataset("real", run_dir)
    if found:
        return found
    if run_dir:
        raise FileNotFoundError(f"{found}; run notebook 10 with DOMAIN='real' first (semlab run --domain real)")
    from semlab.data import samples

    r = load_profile(profile).real
    src = Path(real_dir) if real_dir else samples.real_dir_default()
    return make_real_dataset(src, data_dir() / "real", tile=r.tile, sets=r.sets, seed=seed)


def _set_folder(full, set_name: str) -> Path:
    import hashlib

    from semlab.paths import data_dir

    tag = hashlib.sha256(str(Path(full.root).resolve()).encode()).hexdigest()[:8]
    return set_dataset(full, set_name, data_dir() / "real" / f"{Path(full.root).name}-{set_name}-{tag}")


def other_sets(domain: str, run_dir=None, dataset="", *, profile: str = "cpu", seed: int = 0,
               real_dir="") -> dict[str, tuple[Path, RealSplit]]:
    """{set: (its dataset folder, its split)} of the real sets after the main one that the
    profile trains (one model per set: every set in `full`; none in `cpu`, which trains
    the line set only); {} in the simulated domain."""
    from semlab.config import load_profile
    from semlab.data.datasets import load_dataset

    if domain != "real":
        return {}
    full = load_dataset(real_dataset(run_dir, dataset, profile=profile, seed=seed, real_dir=real_dir))
    out = {}
    for name in select_sets(full, load_profile(profile).real.sets)[1:]:
        folder = _set_folder(full, name)
        out[name] = (folder, real_split(load_dataset(folder), name))
    return out


def domain_dataset(domain: str, run_dir=None, dataset="", *, preset: str = "ic-metal", profile: str = "cpu",
                   seed: int = 0, real_dir="") -> tuple[Path, RealSplit | None]:
    """(dataset folder, its real split or None) that notebooks 20-40 work on in `domain`.
    "sim": `dataset`, else the profile's default simulated dataset of `preset` (as before
    the domain axis). "real": the real dataset (`real_dataset`) cut to its main set, the
    first of `select_sets` (`set_dataset`, in `data/real/`), and that set's frame split."""
    from semlab.config import load_profile
    from semlab.data.datasets import load_dataset, make_default_dataset

    if domain == "sim":
        src = Path(dataset) if dataset else make_default_dataset(preset, profile, seed=seed, progress=False)
        return src, None
    if domain != "real":
        raise ValueError(f"unknown domain {domain!r}; valid: sim, real")
    full = load_dataset(real_dataset(run_dir, dataset, profile=profile, seed=seed, real_dir=real_dir))
    main = select_sets(full, load_profile(profile).real.sets)[0]
    sub = _set_folder(full, main)
    return sub, real_split(load_dataset(sub), main)
