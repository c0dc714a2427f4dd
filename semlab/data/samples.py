"""Real SEM frames shipped with semlab, and one stored frame split for small real sets.

The packaged sets live in `semlab/data/sample_frames/<set>/` (package data, found through
`importlib.resources`, so they work from a wheel install too), described with their
attribution in `sample_frames/README.md` and machine-readably in `samples.json`:

    cdsem-lines     3 Hitachi SU8200 CD-SEM frames of line/space gratings (public domain)
    cdsem-contacts  4 Zeiss SUPRA 55VP CD-SEM frames of contact-hole arrays (public domain)
    litho-lines     6 desktop-SEM frames of photolithography test patterns (MIT)

The GPL-2.0 DSA frames are never packaged: `shared_sets()` adds them ("dsa-lines") when
`../shared/data/real_sem/dsa_lines` exists (`semlab.paths.shared_real_dir`).

`frame_split` assigns train/val/test per frame so that with fewer than 10 frames every
split holds at least one frame of the set (3 frames: one each, 4: 2/1/1); frames that
show one field of view (`groups`) share a split. Tiles take their frame's split.
"""

from __future__ import annotations

import copy
import hashlib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable, Mapping

from semlab import paths
from semlab.io import sha256_file

SPLITS = ("train", "val", "test")
FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}  # the same as datasets.DEFAULT_SPLITS
SMALL_SET = 10  # below this many frames (or field-of-view groups) the split is allocated, not hashed
SAMPLES_JSON = "samples.json"
DATA_FOLDER = "sample_frames"


class UnknownSampleSet(KeyError, ValueError):
    """A sample set name that is neither packaged nor found in ../shared."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- frame split


def _unit_hash(seed: int, key: str) -> float:
    """sha256 of "seed:key" as a number in [0, 1): the hash of `datasets.assign_split`."""
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2 ** 64


def _hash_split(u: float, fractions: Mapping[str, float]) -> str:
    acc, total = 0.0, sum(fractions.values())
    for name, frac in fractions.items():
        acc += frac / total
        if u < acc:
            return name
    return list(fractions)[-1]


def _small_counts(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Units per split for a small set: every split at least one (when n allows), the
    largest split takes the rest; n < number of splits fills the largest split, then
    the others in decreasing fraction (train, then test, then val by default)."""
    names = sorted(fractions, key=lambda s: (-fractions[s], -list(fractions).index(s)))
    big, rest = names[0], names[1:]
    counts = dict.fromkeys(fractions, 0)
    if n < len(names):
        for s in names[:n]:
            counts[s] = 1
        return counts
    total = sum(fractions.values())
    for s in rest:
        counts[s] = max(1, int(n * fractions[s] / total + 0.5))
    while n - sum(counts[s] for s in rest) < 1:  # the largest split keeps at least one
        s = max(rest, key=lambda k: counts[k])
        counts[s] -= 1
    counts[big] = n - sum(counts[s] for s in rest)
    return counts


def frame_split(frames: Iterable[str], *, seed: int = 0, groups: Mapping[str, str] | None = None,
                fractions: Mapping[str, float] | None = None) -> dict[str, str]:
    """{frame: "train"|"val"|"test"} for the frames of ONE set, deterministic in `seed`.

    Frames mapped to the same `groups` key (repeated scans of one field of view, a crop
    of another frame) form one unit and share a split. With fewer than 10 units the
    units are ordered by a hash of (seed, unit) and allocated so that every split holds
    at least one (3 units: 1/1/1, 4: 2/1/1, 9: 7/1/1); with fewer than 3 units that is
    impossible and train, then test, are filled. With 10 or more units each unit takes
    the hash split of `datasets.assign_split` (stable as the set grows), and a split
    left empty takes the unit of the largest split nearest to it in hash order.
    """
    frames = list(dict.fromkeys(str(f) for f in frames))
    fractions = dict(fractions or FRACTIONS)
    if not fractions or any(v < 0 for v in fractions.values()) or sum(fractions.values()) <= 0:
        raise ValueError(f"split fractions must be >= 0 with a positive sum, got {fractions}")
    groups = dict(groups or {})
    unknown = sorted(set(groups) - set(frames))
    if unknown:
        raise ValueError(f"groups name frames that are not in the set: {unknown[:5]}")
    unit_of = {f: str(groups.get(f, f)) for f in frames}
    units = sorted(set(unit_of.values()), key=lambda u: (_unit_hash(seed, u), u))
    if len(units) < SMALL_SET:
        counts = _small_counts(len(units), fractions)
        order = sorted(fractions, key=lambda s: (fractions[s], list(fractions).index(s)))  # val, test, train
        of_unit, i = {}, 0
        for s in order:
            for u in units[i:i + counts[s]]:
                of_unit[u] = s
            i += counts[s]
    else:
        of_unit = {u: _hash_split(_unit_hash(seed, u), fractions) for u in units}
        for s in fractions:
            if any(v == s for v in of_unit.values()):
                continue
            sizes = {k: sum(v == k for v in of_unit.values()) for k in fractions}
            donor = max(sizes, key=lambda k: sizes[k])
            lo = sum(fractions[k] for k in list(fractions)[:list(fractions).index(s)]) / sum(fractions.values())
            pick = min((u for u in units if of_unit[u] == donor), key=lambda u: (abs(_unit_hash(seed, u) - lo), u))
            of_unit[pick] = s
    return {f: of_unit[unit_of[f]] for f in frames}


def _set_of(rel: Path) -> str:
    parent = rel.parent.as_posix()
    return "" if parent == "." else parent


def _stored_by_sha() -> dict[str, str]:
    """{sha256: stored split} of every catalogued frame (packaged and shared-only)."""
    cat = catalogue()
    return {h: e["split"][f] for e in (*cat["sets"].values(), *cat.get("shared", {}).values())
            for f, h in e.get("sha256", {}).items()}


def import_splits(ids: Mapping[Path, str], root, *, seed: int = 0,
                  fractions: Mapping[str, float] | None = None) -> dict[str, str]:
    """{frame id: split} for `datasets.import_images`: `ids` maps each frame file to its
    item id, `root` is the imported folder (or a single file). Every folder below
    `root` is a set, split on its own by `frame_split` (keyed by the frame ids), so
    every split holds at least one frame of every set with 3 or more frames. A small set
    whose frames are all catalogued (the packaged samples, or their ../shared copies,
    matched by sha256) takes the stored split of samples.json instead. Tiles take their
    frame's split."""
    root = Path(root)
    by_set: dict[str, list[Path]] = {}
    for f in ids:
        f = Path(f)
        rel = f.relative_to(root) if root.is_dir() else Path(f.name)
        by_set.setdefault(_set_of(rel), []).append(f)
    stored = None
    out: dict[str, str] = {}
    for members in by_set.values():
        if len(members) < SMALL_SET:
            stored = _stored_by_sha() if stored is None else stored
            try:
                known = [stored.get(sha256_file(f)) for f in members]
            except OSError:  # an unreadable frame: import_images reports it; split as usual
                known = [None]
            if all(known):
                out.update({ids[f]: s for f, s in zip(members, known)})
                continue
        out.update(frame_split([ids[f] for f in members], seed=seed, fractions=fractions))
    return out


# --------------------------------------------------------------------------- packaged sets


def _root() -> Path:
    """The packaged sample folder (a real directory: semlab is installed unzipped)."""
    return Path(str(resources.files("semlab.data").joinpath(DATA_FOLDER)))


@lru_cache(maxsize=4)
def _catalogue(root: str) -> dict:
    f = Path(root) / SAMPLES_JSON
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RuntimeError(f"{f}: packaged sample catalogue unreadable ({e}); reinstall semlab") from e


def catalogue() -> dict:
    """The whole samples.json: {"sets": {...}, "shared": {...}} (a copy: edit it freely)."""
    return copy.deepcopy(_catalogue(str(_root())))


def list_sets() -> list[str]:
    """Names of the sets packaged with semlab."""
    return sorted(catalogue()["sets"])


def _shared_folder(name: str) -> Path | None:
    entry = catalogue().get("shared", {}).get(name)
    real = paths.shared_real_dir()
    if entry is None or real is None:
        return None
    folder = real / entry["folder"]
    return folder if folder.is_dir() else None


def shared_sets() -> dict[str, Path]:
    """{set: folder} of the packaged sets plus the sets used from ../shared only (the
    GPL DSA frames, "dsa-lines") when their folder exists; never copied."""
    out = {n: path(n) for n in list_sets()}
    for name in sorted(catalogue().get("shared", {})):
        folder = _shared_folder(name)
        if folder is not None:
            out[name] = folder
    return out


def _unknown(name: str) -> UnknownSampleSet:
    shared = catalogue().get("shared", {})
    if name in shared:
        real = paths.shared_real_dir()
        where = real / shared[name]["folder"] if real else "../shared/data/real_sem/" + shared[name]["folder"]
        return UnknownSampleSet(f"sample set {name!r} is not packaged ({shared[name]['licence']}); it is used "
                                f"from {where}, which was not found")
    return UnknownSampleSet(f"unknown sample set {name!r}; packaged sets: {', '.join(list_sets())}")


def info(name: str) -> dict:
    """The samples.json entry of a set (packaged, or shared when present)."""
    cat = catalogue()
    if name in cat["sets"]:
        return cat["sets"][name]
    if _shared_folder(name) is not None:
        return cat["shared"][name]
    raise _unknown(name)


def path(name: str) -> Path:
    """The folder of a set: the packaged one, or ../shared/data/real_sem/<folder> for a
    shared-only set that is present. UnknownSampleSet (a KeyError) names the set."""
    cat = catalogue()
    if name in cat["sets"]:
        folder = _root() / cat["sets"][name]["folder"]
        if not folder.is_dir():
            raise FileNotFoundError(f"packaged sample set {name!r} missing at {folder}; reinstall semlab")
        return folder
    folder = _shared_folder(name)
    if folder is None:
        raise _unknown(name)
    return folder


def frames(name: str) -> list[Path]:
    """The frame files of a set, in samples.json order; FileNotFoundError names a missing one."""
    folder, entry = path(name), info(name)
    out = [folder / f for f in entry["frames"]]
    missing = [p.name for p in out if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"sample set {name!r}: frames missing in {folder}: {missing}")
    return out


def stored_split(name: str) -> dict[str, str]:
    """The stored {frame: split} of a set."""
    return dict(info(name)["split"])


def real_dir_default() -> Path:
    """The folder notebooks use when REAL_DIR is empty: the packaged sample folder, one
    subfolder per set (the layout of ../shared/data/real_sem)."""
    root = _root()
    if not root.is_dir():
        raise FileNotFoundError(f"packaged sample folder missing: {root}; reinstall semlab")
    return root
