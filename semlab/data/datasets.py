"""Dataset folders (design.md section 3): write them resumably, read them back.

Layout of a dataset folder::

    images/<id>.png      8-bit gray SEM images
    masks/<id>.png       indexed PNG in the semlab palette (absent for unlabeled data)
    clean/<id>.png       noise-free images (simulated data only)
    contours/<id>.json   sub-pixel pattern contours in px (simulated data only)
    manifest.csv         id, split, source, sha256, mask_sha256, height, width, params,
                         files_sha256 (the other files' hashes, `semlab.integrity`)
    dataset.json         kind, label classes used, pixel size, provenance, splits

Splits are drawn once per item from a hash of (seed, group) and stored; tiles of one
frame share a group, so no frame leaks across splits. Writing is resumable: an item
already in the manifest whose files all still have their recorded hashes is skipped
(others are redone); files are written atomically, stale temp files of a killed writer
are removed on resume, and the manifest is flushed every `flush_every` items. A writer
holds a lock on its output (`semlab.locks`: the folder, or a shard's manifest part), and
a run that fails on a folder it created removes the files it wrote (its journal), never
another writer's. `Dataset` checks each file's hash the first time it is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from tqdm.auto import tqdm

import semlab
from semlab import integrity, io, labels
from semlab.locks import FolderLock, is_lock_file

MANIFEST_FIELDS = ["id", "split", "group", "source", "sha256", "mask_sha256", "height", "width", "params",
                   integrity.FILES_FIELD]
DEFAULT_SPLITS = {"train": 0.8, "val": 0.1, "test": 0.1}


class DatasetError(ValueError):
    """A dataset folder that cannot be used or written as asked."""


def assign_split(seed: int, group: str, fractions: dict[str, float] = DEFAULT_SPLITS) -> str:
    """Deterministic split of a group: stable when the dataset grows."""
    h = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2 ** 64
    acc = 0.0
    total = sum(fractions.values())
    for name, frac in fractions.items():
        acc += frac / total
        if u < acc:
            return name
    return list(fractions)[-1]


class DatasetWriter:
    """Writes items into a dataset folder; resumable; refuses folders that are not its own.

    `identity` holds what defines the dataset (generator, preset, size, seed...): a
    folder whose dataset.json has a different identity is refused, never overwritten.
    The writer locks its output for its lifetime (until `close` or `abort`): the whole
    folder, or with a `manifest_name` other than manifest.csv (a shard) that manifest
    part, so shard writers share the folder. `journal` lists the files it created.
    """

    def __init__(self, root, *, kind: str, identity: dict, info: dict | None = None,
                 flush_every: int = 50, extra_fields: tuple[str, ...] = (),
                 manifest_name: str = "manifest.csv", meta_name: str = "dataset.json",
                 remove_on_abort: bool = True):
        self.root = Path(root)
        self.fields = list(MANIFEST_FIELDS) + [f for f in extra_fields if f not in MANIFEST_FIELDS]
        self.manifest_name = manifest_name
        self.meta_name = meta_name
        self.remove_on_abort = remove_on_abort
        self.identity = json.loads(json.dumps(identity))
        self.kind = kind
        self.info = dict(info or {})
        self.flush_every = flush_every
        self.created = False
        self.rows: dict[str, dict] = {}
        self._journal: dict[str, None] = {}  # files this writer created, in order (abort removes them)
        self.removed_temp: list[Path] = []
        self._pending = 0
        if not self.root.exists():
            with contextlib.suppress(FileExistsError):  # another process may create it at the same moment
                self.root.mkdir(parents=True)
                self.created = True
        self.lock = FolderLock(self.root, None if manifest_name == "manifest.csv" else manifest_name)
        try:
            self.lock.acquire()
        except BaseException:
            if self.created:
                with contextlib.suppress(OSError):
                    self.root.rmdir()
            raise
        try:
            self._open(meta_name, manifest_name)
        except BaseException:
            self._discard()
            raise

    def _open(self, meta_name: str, manifest_name: str) -> None:
        meta = self.root / meta_name
        if meta.is_file():
            old = json.loads(meta.read_text())
            if old.get("identity") != self.identity:
                raise DatasetError(
                    f"{self.root} holds another dataset ({old.get('identity')}); "
                    f"refusing to mix it with {self.identity}: choose another --out folder")
            man = self.root / manifest_name
            if man.is_file():
                self.rows = {r["id"]: r for r in io.read_manifest(man)}
        elif meta_name == "dataset.json" and any(not is_lock_file(p.name) for p in self.root.iterdir()):
            raise DatasetError(f"{self.root} exists, is not empty and is not a semlab dataset "
                               "(no dataset.json); refusing to write into it")
        if not self.created and self.lock.exclusive:  # alone in the folder: a killed writer's temp files
            self.removed_temp = integrity.remove_stale_temp(self.root)
        self.lock.share()
        self._write_meta(complete=False)

    @property
    def journal(self) -> list[Path]:
        """The files this writer created (kept when it may remove them on abort: it created the folder)."""
        return [Path(p) for p in self._journal]

    def _note(self, path: Path) -> Path:
        """Journal `path` if this writer is about to create it (it did not exist)."""
        if self.created and self.remove_on_abort and str(path) not in self._journal and not path.exists():
            self._journal[str(path)] = None
        return path

    def _discard(self) -> None:
        """Remove the files in this writer's journal and, if it created the folder, the
        folders left empty; release the lock. Never touches another writer's files."""
        journal = self.journal
        for p in reversed(journal):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        if self.created and self.lock.folder.try_exclusive():  # no other writer: empty folders can go
            for d in sorted({p.parent for p in journal}, key=lambda d: len(d.parts), reverse=True):
                if d != self.root:
                    with contextlib.suppress(OSError):
                        d.rmdir()
        self.lock.release()
        if self.created:
            with contextlib.suppress(OSError):
                self.root.rmdir()  # only if empty

    def done(self, item_id: str) -> bool:
        """True if the item is in the manifest and every file it records (image, mask, clean
        image, contours, other files) is there with its recorded hash; else it is redone."""
        row = self.rows.get(item_id)
        if row is None or not row.get("sha256"):
            return False
        try:
            return not integrity.item_problems(self.root, row)
        except integrity.IntegrityError:  # an unreadable files_sha256 cell: redo the item
            return False

    def add(self, item_id: str, image: np.ndarray, *, split: str, group: str, source: str = "",
            mask: np.ndarray | None = None, clean: np.ndarray | None = None,
            contours: list | None = None, params: dict | None = None, extra: dict | None = None,
            files: dict[str, tuple[str, np.ndarray]] | None = None) -> dict:
        """Write one item. `extra` fills the writer's extra manifest columns; `files` maps
        a sub-folder to (kind, array) with kind "image" (8-bit gray PNG) or "labels16"
        (a 16-bit PNG of integer ids, e.g. raw segment maps)."""
        io.validate_id(item_id, f"{self.root}: new item")
        if mask is not None and mask.shape != image.shape:
            raise DatasetError(f"{item_id}: mask shape {mask.shape} != image shape {image.shape}")
        ip = io.write_image(self._note(io.inside(self.root, "images", f"{item_id}.png")), image)
        row = {"id": item_id, "split": split, "group": group, "source": source,
               "sha256": integrity.sha256_cached(ip), "mask_sha256": "",
               "height": int(image.shape[0]), "width": int(image.shape[1]),
               "params": json.dumps(params, sort_keys=True, default=io.json_default) if params else ""}
        other: dict[str, str] = {}  # files_sha256: every other file of the item, verified on resume and read
        if mask is not None:
            mp = io.write_mask(self._note(io.inside(self.root, "masks", f"{item_id}.png")), mask)
            row["mask_sha256"] = integrity.sha256_cached(mp)
        if clean is not None:
            cp = io.write_image(self._note(io.inside(self.root, "clean", f"{item_id}.png")), clean)
            other[f"clean/{cp.name}"] = integrity.sha256_cached(cp)
        if contours is not None:
            jp = io.write_json_atomic(self._note(io.inside(self.root, "contours", f"{item_id}.json")),
                                      {"units": "px", "order": "row,col",
                                       "contours": [np.round(c, 3).tolist() for c in contours]}, indent=None)
            other[f"contours/{jp.name}"] = integrity.sha256_cached(jp)
        for sub, (kind, arr) in (files or {}).items():
            target = self._note(io.inside(self.root, sub, f"{item_id}.png"))
            if kind == "labels16":
                io.write_image(target, np.asarray(arr, np.uint16), bits=16)
            else:
                io.write_image(target, arr)
            other[f"{sub}/{target.name}"] = integrity.sha256_cached(target)
        row[integrity.FILES_FIELD] = json.dumps(other, sort_keys=True) if other else ""
        row.update(extra or {})
        self.rows[item_id] = row
        self._pending += 1
        if self._pending >= self.flush_every:
            self.flush()
        return row

    def add_failed(self, item_id: str, *, split: str, group: str, source: str, extra: dict) -> dict:
        """Record an item that could not be processed (no files): the reason goes in
        the manifest and the batch goes on. It is retried when the job is resumed."""
        io.validate_id(item_id, f"{self.root}: new item")
        row = {"id": item_id, "split": split, "group": group, "source": source, "sha256": "",
               "mask_sha256": "", "height": "", "width": "", "params": "", **extra}
        self.rows[item_id] = row
        self._pending += 1
        if self._pending >= self.flush_every:
            self.flush()
        return row

    def flush(self) -> None:
        rows = sorted(self.rows.values(), key=lambda r: r["id"])
        io.write_csv_atomic(self._note(self.root / self.manifest_name), rows, self.fields)
        self._pending = 0

    def _write_meta(self, complete: bool) -> None:
        counts: dict[str, int] = {}
        for r in self.rows.values():
            counts[r["split"]] = counts.get(r["split"], 0) + 1
        meta = {"kind": self.kind, "identity": self.identity, "semlab_version": semlab.__version__,
                "complete": complete, "n_items": len(self.rows), "split_counts": counts,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **self.info}
        io.write_json_atomic(self._note(self.root / self.meta_name), meta)

    def close(self) -> Path:
        try:
            self.flush()
            self._write_meta(complete=True)
        finally:
            self.lock.release()
        return self.root

    def abort(self) -> None:
        """After an error or an interrupt: if this writer created the folder, remove the
        files in its journal (and folders left empty), else keep what is done. Files of
        other writers in the same folder are never touched."""
        if self.created and self.remove_on_abort:
            self._discard()
            return
        try:
            self.flush()
            self._write_meta(complete=False)
        finally:
            self.lock.release()


def _run(writer: DatasetWriter, items: Iterable, n: int | None, desc: str, work: Callable, progress: bool,
         finish: Callable[[], dict] | None = None) -> Path:
    try:
        for it in tqdm(items, total=n, desc=desc, disable=not progress, unit="img"):
            work(it)
        if finish is not None:  # dataset.json entries known only at the end (the classes of imported masks)
            writer.info.update(finish())
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def simulate_dataset(out, *, preset: str = "ic-metal", n: int = 2000, size: int = 256, seed: int = 0,
                     pixel_nm: float | None = None, splits: dict[str, float] | None = None,
                     progress: bool = True, **overrides: Any) -> Path:
    """Write `n` simulated items into `out` (resumable; re-running skips finished items)."""
    from semlab.data.simulate import SIMULATOR_VERSION, get_preset, simulate

    from semlab.data.simulate import PRESETS

    pre = get_preset(preset)
    preset = pre.name  # a Preset object (e.g. from a preset file) is recorded by name and parameters
    splits = dict(splits or DEFAULT_SPLITS)
    px = float(pixel_nm) if pixel_nm else pre.field_of_view_nm / size
    identity = {"generator": "semlab.simulate", "simulator_version": SIMULATOR_VERSION,
                "preset": preset, "size": size, "seed": seed,
                "pixel_nm": px, "splits": splits, "overrides": overrides}
    if PRESETS.get(preset) is not pre:
        identity["preset_params"] = repr(sorted(pre.params.items()))
    used = [labels.BACKGROUND, labels.PATTERN, labels.DEFECT]
    if pre.layout == "contacts":
        used.insert(2, labels.HOLE)
    info = {"name": Path(out).name, "description": pre.description, "pixel_size_nm": px,
            "classes": [{"id": c.id, "name": c.name, "meaning": c.meaning, "rgb": list(c.rgb)}
                        for c in labels.CLASSES if c.id in used],
            "provenance": f"semlab {semlab.__version__} simulator, preset {preset}, seed {seed}"}
    w = DatasetWriter(out, kind="simulated", identity=identity, info=info)

    def work(i: int) -> None:
        item_id = f"{i:06d}"
        if w.done(item_id):
            return
        r = simulate(pre, size, (seed, i), pixel_nm=px, **overrides)
        w.add(item_id, r.image, split=assign_split(seed, item_id, splits), group=item_id,
              source=f"simulate:{preset}:{seed}:{i}", mask=r.mask, clean=r.clean,
              contours=r.contours, params=r.params)

    return _run(w, range(n), n, f"simulate {preset}", work, progress)


def default_sim_dir(preset: str, profile: str) -> Path:
    """Where `semlab make-data` keeps the embedded dataset of a preset and profile."""
    from semlab.paths import data_dir

    return data_dir() / f"sim-{preset}-{profile}"


def make_default_dataset(preset: str, profile: str, *, seed: int = 0, progress: bool = True) -> Path:
    """Build (or finish) the embedded simulated dataset of a profile in `default_sim_dir`.

    The folder is semlab's own: if it holds a dataset made by another simulator version
    or other settings, it is moved aside to `<name>.old-<n>` (never deleted) and rebuilt.
    """
    from semlab.config import profile_settings

    s = profile_settings(profile)
    out = default_sim_dir(preset, profile)
    try:
        return simulate_dataset(out, preset=preset, n=s["n_images"], size=s["size"], seed=seed, progress=progress)
    except DatasetError:
        if not (out / "dataset.json").is_file():
            raise
        k = 1
        while out.with_name(f"{out.name}.old-{k}").exists():
            k += 1
        aside = out.with_name(f"{out.name}.old-{k}")
        out.rename(aside)
        print(f"{out} was made with other settings or simulator version; moved it to {aside} and rebuilding")
        return simulate_dataset(out, preset=preset, n=s["n_images"], size=s["size"], seed=seed, progress=progress)


def safe_id(rel: Path) -> str:
    """A plain item id (`io.validate_id`) made from a file's path relative to its folder:
    parts joined by `__`, other characters replaced by `_`, no `..`, no leading `.` or
    `-`; names over 180 characters are cut and end in 8 hex digits of their hash."""
    s = "__".join(rel.with_suffix("").parts)
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", s)
    s = re.sub(r"\.{2,}", ".", s).lstrip(".-") or "_"
    if len(s) > 180:  # room for the tile suffix (_r00000_c00000) within 200
        s = f"{s[:171]}-{hashlib.sha256(s.encode()).hexdigest()[:8]}"
    return s


def unique_ids(files, root=None) -> tuple[dict[Path, str], dict[str, list[str]]]:
    """Plain ids (`safe_id`) of image files below `root` (or of single files), made unique
    before anything is written. Names that would share an id -- non-ASCII names, `a b`
    beside `a_b`, `x.png` beside `x.tif`, `a/b.png` beside `a__b.png`, names differing only
    in case -- each get `-<8 hex of the sha256 of their relative path>` (`x-3f2a9c01`).
    Returns ({file: id}, {shared id: [relative paths]}) for `clash_warning`."""
    root = Path(root) if root is not None else None
    rels = {Path(f): (Path(f).relative_to(root) if root is not None and root.is_dir() else Path(Path(f).name))
            for f in files}
    base = {f: safe_id(r) for f, r in rels.items()}
    groups: dict[str, list[Path]] = {}
    for f, b in base.items():  # case-insensitive: images/X.png and images/x.png are one file on some systems
        groups.setdefault(b.lower(), []).append(f)
    ids: dict[Path, str] = {}
    clashes: dict[str, list[str]] = {}
    for fs in groups.values():
        if len(fs) == 1:
            ids[fs[0]] = base[fs[0]]
            continue
        clashes[base[fs[0]]] = sorted(rels[f].as_posix() for f in fs)
        for f in fs:
            h = hashlib.sha256(rels[f].as_posix().encode()).hexdigest()[:8]
            ids[f] = f"{base[f][:171]}-{h}"
    if len({i.lower() for i in ids.values()}) != len(ids):  # a renamed id equal to another file's plain id
        dup = sorted(i for i in ids.values() if sum(j.lower() == i.lower() for j in ids.values()) > 1)
        raise DatasetError(f"{root}: file names give the same item id even after renaming: {dup[:5]}; "
                           "rename the files")
    return ids, clashes


def clash_warning(clashes: dict[str, list[str]], ids: dict[Path, str], root=None) -> str:
    """One line listing the renamed files: `x.png -> x-3f2a9c01, x.tif -> x-0b9d7e12`."""
    by_rel = {}
    for f, i in ids.items():
        rel = Path(f).relative_to(root) if root is not None and Path(root).is_dir() else Path(Path(f).name)
        by_rel[rel.as_posix()] = i
    parts = [f"{r} -> {by_rel[r]}" for rels in clashes.values() for r in rels]
    n = len(parts)
    more = f" (and {n - 20} more)" if n > 20 else ""
    return (f"{n} file names would share an item id; each got 8 hex digits of its path "
            f"(manifest column renamed_from): {', '.join(parts[:20])}{more}")


def batch_summary(root, manifest: str = "manifest.csv") -> tuple[str, int]:
    """The closing line of a batch, from a dataset folder's manifest -- "148 ok, 2 failed:
    see <manifest> (status error)" -- and the number of failed items (exit code 1 then)."""
    man = Path(root) / manifest
    rows = io.read_manifest(man) if man.is_file() else []
    status = [r.get("status") or "ok" for r in rows]
    n_ok, n_err = status.count("ok"), status.count("error")
    flagged = len(status) - n_ok - n_err
    text = f"{n_ok} ok" + (f", {flagged} flagged by QA" if flagged else "") + f", {n_err} failed"
    return (text + (f": see {man} (status error, reason)" if n_err else "")), n_err


def _import_pixel_sizes(files: list[Path], src: Path, native_pixel_nm: float | None,
                        pixel_nm: float | None) -> tuple[dict[Path, dict | None], dict[Path, float], dict]:
    """Every frame's header, read before anything is written: ({file: read_image_meta, or
    None if unreadable: the batch records it}, {file: pixel size it is stored at},
    dataset.json info), by the 2% rule per set (folder) of `tiffmeta.plan_pixel_sizes`;
    DatasetError if the sizes cannot be imported together."""
    from semlab import tiffmeta

    metas: dict[Path, dict | None] = {}
    label: dict[str, Path] = {}
    sets: dict[str, list[tuple[str, float, str]]] = {}
    unknown: list[str] = []
    for f in files:
        try:
            metas[f] = m = io.read_image_meta(f, native_pixel_nm=native_pixel_nm)
        except (ValueError, OSError):
            metas[f] = None
            continue
        rel = f.relative_to(src) if src.is_dir() else Path(f.name)
        label[rel.as_posix()] = f
        if m.get("pixel_size_nm"):
            set_name = rel.parent.as_posix() if rel.parent != Path(".") else src.name
            sets.setdefault(set_name, []).append((rel.as_posix(), float(m["pixel_size_nm"]), m["pixel_size_source"]))
        else:
            unknown.append(rel.as_posix())
    try:
        used, info = tiffmeta.plan_pixel_sizes(sets, unknown, target=pixel_nm, where=str(src))
    except tiffmeta.PixelSizeError as e:
        raise DatasetError(str(e)) from None
    return metas, {label[k]: v for k, v in used.items()}, info


def _resample(img: np.ndarray, factor: float) -> np.ndarray:
    """`img` rescaled by `factor` (native / target pixel size) to round(h * factor) x
    round(w * factor) px: bilinear, Gaussian anti-aliasing when shrinking (skimage)."""
    from skimage.transform import resize

    if abs(factor - 1.0) < 1e-9:
        return img
    shape = (max(1, int(round(img.shape[0] * factor))), max(1, int(round(img.shape[1] * factor))))
    out = resize(img, shape, order=1, mode="reflect", anti_aliasing=factor < 1, preserve_range=True)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _resample_labels(lab: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A label map brought to `shape` by nearest neighbour (the frame's resampling;
    labels are never blended)."""
    from skimage.transform import resize

    if lab.shape == tuple(shape):
        return lab
    out = resize(lab, shape, order=0, mode="edge", anti_aliasing=False, preserve_range=True)
    return np.asarray(out).round().astype(np.uint8)


def _refuse_all_too_small(metas: dict, tile, used_nm: dict, src: Path) -> None:
    """DatasetError, before anything is written, when every readable frame is smaller than
    one tile by its header (after resampling to `used_nm`): the files and their sizes."""
    th, tw = (tile, tile) if isinstance(tile, (int, np.integer)) else tile
    sizes = []
    for f, m in metas.items():
        if m is None or not m.get("shape"):
            continue
        h, w = m["shape"][:2]
        native, target = m.get("pixel_size_nm"), used_nm.get(f)
        if native and target:
            h, w = round(h * float(native) / float(target)), round(w * float(native) / float(target))
        if h >= th and w >= tw:
            return
        sizes.append(f"{f.name} {h}x{w} px")
    if sizes:
        listed = ", ".join(sizes[:10]) + (f" ... ({len(sizes) - 10} more)" if len(sizes) > 10 else "")
        raise DatasetError(f"{src}: every image is smaller than one {th}x{tw} tile (height x width): {listed}; "
                           "choose a smaller --tile (nothing written)")


def import_images(src, out, *, tile: int | None = None, overlap: int = 0, crop_databar="auto",
                  seed: int = 0, splits: dict[str, float] | None = None, progress: bool = True,
                  split_by: str = "frame", native_pixel_nm: float | None = None,
                  pixel_nm: float | None = None, masks=None) -> Path:
    """Build an unlabeled dataset from a folder of real SEM images (MIIC layout included).

    Each frame is read (TIFF/PNG/JPEG, 8/16-bit, palette; 16-bit scaled by 65535, never
    clipped, so 8- and 16-bit frames mix; manifest column `bit_depth`), its data bar
    cropped (`crop_databar`: "auto", "none" or rows to keep), resampled to `pixel_nm` nm
    per pixel if given (anti-aliased, after the crop) and optionally cut into `tile`-px
    tiles with `overlap`. The pixel size comes from the Zeiss, Hitachi or FEI tag
    (`io.read_image_meta`) or `native_pixel_nm`, which declares it (and wins over a tag,
    with a warning if they differ by more than 2%). Pixel sizes of one set (folder)
    within 2% count as one, their median (dataset.json `pixel_size_note`); a larger
    spread is refused before anything is written, listing the files and sizes, unless
    `pixel_nm` resamples them. All tiles of a frame go to the same split:
    `split_by="frame"` splits every folder on its own so that each split holds a frame
    of every set of 3 or more frames, and the packaged samples keep their stored split
    (`samples.import_splits`); `split_by="hash"` is the plain per-frame hash.
    File names that would share an id are renamed before anything is written
    (`unique_ids`, with a SemlabWarning; manifest column `renamed_from`). A file that
    cannot be read, or is smaller than one tile, is a failed item (manifest status
    "error" and its reason; see `batch_summary`) and the batch goes on; a re-run retries it.
    When every readable frame is smaller than one tile (by its header, after resampling),
    DatasetError lists the files and sizes before anything is written.

    `masks` makes a labelled dataset (`semlab.data.masks_import.import_labelled`, which
    builds it): an object with `identity` (a dict, part of the dataset's identity),
    `select(files)` (the frames to import), `read(file)` (the frame's label map, the
    frame's size; ValueError makes the item a failed one), `source(file)` (the mask's
    path, item params `mask_source`) and `info()` (dataset.json entries, asked at the
    end). Each mask gets its frame's data-bar crop, is resampled by nearest neighbour to
    the frame's resampled size and tiled at the same positions.
    """
    import warnings

    from semlab.data import samples, sources

    if split_by not in ("frame", "hash"):
        raise ValueError(f"split_by must be 'frame' or 'hash', got {split_by!r}")
    for name, v in (("native_pixel_nm", native_pixel_nm), ("pixel_nm", pixel_nm)):
        if v is not None and not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive number of nm, got {v!r}")
    src = Path(src)
    files = sources.list_images(src)
    if masks is not None:
        files = masks.select(files)
    ids, clashes = unique_ids(files, src)
    if clashes:
        warnings.warn(clash_warning(clashes, ids, src), io.SemlabWarning, stacklevel=2)
    metas, used_nm, px_info = _import_pixel_sizes(files, src, native_pixel_nm, pixel_nm)
    if tile:
        _refuse_all_too_small(metas, tile, used_nm if pixel_nm is not None else {}, src)
    base_of = {r: b for b, rels in clashes.items() for r in rels}
    renamed = {ids[f]: base_of.get((f.relative_to(src) if src.is_dir() else Path(f.name)).as_posix(), "")
               for f in files}
    splits = dict(splits or DEFAULT_SPLITS)
    split_of = samples.import_splits(ids, src, seed=seed, fractions=splits) if split_by == "frame" else {}
    identity = {"generator": "semlab.import-images", "source": str(src.resolve()), "tile": tile,
                "overlap": overlap, "crop_databar": crop_databar, "seed": seed, "splits": splits,
                "split_by": split_by}
    if masks is not None:
        identity["masks"] = masks.identity
    identity.update({k: float(v) for k, v in (("native_pixel_nm", native_pixel_nm), ("pixel_nm", pixel_nm))
                     if v is not None})
    info = {"name": Path(out).name, "description": f"real SEM images imported from {src}",
            "classes": [], "provenance": str(src.resolve()), **px_info}
    if masks is not None:
        info["description"] = f"real SEM images imported from {src} with their masks"
    w = DatasetWriter(out, kind="imported", identity=identity, info=info,
                      extra_fields=("status", "reason", "renamed_from", "bit_depth"))
    th, tw = (tile, tile) if isinstance(tile, (int, np.integer)) else (tile or (0, 0))

    def work(f: Path) -> None:
        group = ids[f]
        split = split_of.get(group) or assign_split(seed, group, splits)
        extra = {"status": "ok", "reason": "", "renamed_from": renamed[group], "bit_depth": ""}
        if not tile and w.done(group):
            return
        try:
            lab = masks.read(f) if masks is not None else None
            meta = metas.get(f) or io.read_image_meta(f)
            extra["bit_depth"] = meta.get("bit_depth", "")
            img = io.read_image(f)
            if lab is not None and lab.shape != img.shape:
                raise ValueError(f"{f}: its mask is {lab.shape[1]}x{lab.shape[0]} px but the image is "
                                 f"{img.shape[1]}x{img.shape[0]} px (width x height)")
            img, bar = sources.crop_databar(img, crop_databar)
            native = meta.get("pixel_size_nm")
            if pixel_nm is not None and native:
                img = _resample(img, float(native) / float(pixel_nm))
            if lab is not None:  # the frame's crop, then nearest-neighbour to the frame's (resampled) size
                lab = _resample_labels(lab[:bar] if bar is not None else lab, img.shape)
            if tile and (img.shape[0] < th or img.shape[1] < tw):
                how = [f"frame {meta['shape'][0]}x{meta['shape'][1]} px"]
                if bar is not None:
                    how.append(f"data bar cropped at row {bar}")
                if pixel_nm is not None and native:
                    how.append(f"resampled from {float(native):.6g} to {float(pixel_nm):g} nm per pixel")
                raise ValueError(f"{f}: {img.shape[0]}x{img.shape[1]} px ({', '.join(how)}) is smaller "
                                 f"than one {th}x{tw} tile")
            pieces = sources.tile_image(img, tile, overlap) if tile else [(0, 0, img)]
            lab_pieces = ([t for _, _, t in sources.tile_image(lab, tile, overlap)] if tile else [lab]) \
                if lab is not None else [None] * len(pieces)
        except (ValueError, OSError) as e:  # ImageReadError (corrupt, too large...), too small: one failed item
            w.add_failed(group, split=split, group=group, source=str(f),
                         extra={**extra, "status": "error", "reason": str(e) if str(f) in str(e) else f"{f}: {e}"})
            return
        if tile and not w.rows.get(group, {}).get("sha256"):
            w.rows.pop(group, None)  # the frame's failure record of an earlier run: its tiles replace it
        digest = io.sha256_file(f)
        params = {"source_sha256": digest, "databar_row": bar, "pixel_size_nm": used_nm.get(f),
                  "native_pixel_size_nm": native, "pixel_size_source": meta.get("pixel_size_source")}
        if pixel_nm is not None and native:
            params["resample_factor"] = float(native) / float(pixel_nm)
        if masks is not None:
            params["mask_source"] = masks.source(f)
        for (r, c, t), m in zip(pieces, lab_pieces):
            item_id = f"{group}_r{r:05d}_c{c:05d}" if tile else group
            if w.done(item_id):
                continue
            w.add(item_id, t, split=split, group=group, source=str(f), extra=extra, mask=m,
                  params={**params, "row": r, "col": c})

    return _run(w, files, len(files), "import", work, progress, finish=masks.info if masks is not None else None)


class Dataset:
    """A dataset folder opened for reading.

    With `verify=True` (the default) every file is checked against the sha256 its manifest
    records the first time it is read in this process (`semlab.integrity.sha256_cached`);
    a tampered or damaged file raises `integrity.IntegrityError` naming it. `verify=False`
    skips the check (e.g. for a folder edited on purpose before `semlab verify --rehash`).
    """

    def __init__(self, root, *, verify: bool = True):
        self.root = Path(root)
        self.verify = verify
        meta = self.root / "dataset.json"
        if not meta.is_file():
            raise DatasetError(f"{self.root} is not a semlab dataset: {meta.name} is missing "
                               "(create one with `semlab simulate` or `semlab import-images`)")
        self.info = json.loads(meta.read_text())
        man = self.root / "manifest.csv"
        self.all_rows = io.read_manifest(man) if man.is_file() else []  # ids checked: plain names
        # items whose mask QA flagged them, or that failed, are kept in the manifest
        # with their reason but left out of the dataset
        self.rows = [r for r in self.all_rows if r.get("status", "ok") in ("", "ok")]
        self._by_id = {r["id"]: r for r in self.all_rows}

    def _check(self, path: Path, item_id: str) -> None:
        """Verify `path` against the hash the manifest records for it (if any)."""
        if not self.verify:
            return
        expected = integrity.recorded_hash(self._by_id.get(item_id, {}), path.parent.name, path.name)
        if expected:
            integrity.check_file(path, expected, item=item_id, manifest=self.root / "manifest.csv")

    @property
    def excluded(self) -> list[dict]:
        """Rows left out (status flagged or error), with their `reason`."""
        return [r for r in self.all_rows if r.get("status", "ok") not in ("", "ok")]

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.rows]

    @property
    def labeled(self) -> bool:
        return any(r.get("mask_sha256") for r in self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def split(self, name: str) -> list[str]:
        return [r["id"] for r in self.rows if r["split"] == name]

    def row(self, item_id: str) -> dict:
        return self._by_id[item_id]

    def params(self, item_id: str) -> dict:
        s = self._by_id[item_id].get("params") or ""
        return json.loads(s) if s else {}

    def path(self, folder: str, item_id: str, suffix: str = ".png") -> Path:
        """`root/folder/<id><suffix>`, checked: the id is a plain name and the path stays
        inside the dataset folder (UnsafePathError otherwise)."""
        io.validate_id(item_id, f"{self.root}: requested item")
        return io.inside(self.root, folder, f"{item_id}{suffix}")

    def image(self, item_id: str) -> np.ndarray:
        p = self.path("images", item_id)
        img = io.read_image(p)
        row = self._by_id.get(item_id, {})
        if row.get("height") and row.get("width") and img.shape != (int(row["height"]), int(row["width"])):
            raise DatasetError(f"{p}: the image of item {item_id} is {img.shape[1]}x{img.shape[0]} px but the "
                               f"manifest records {row['width']}x{row['height']} px (width x height)")
        self._check(p, item_id)
        return img

    def mask(self, item_id: str) -> np.ndarray | None:
        """The item's label map; None for unlabeled items. A mask the manifest records but
        that is missing, or whose size is not its image's, is a DatasetError naming both."""
        p = self.path("masks", item_id)
        row = self._by_id.get(item_id, {})
        if not p.is_file():
            if row.get("mask_sha256"):
                raise DatasetError(f"{p}: the mask of item {item_id} is missing (the manifest records one)")
            return None
        m = io.read_mask(p)
        if row.get("height") and row.get("width") and m.shape != (int(row["height"]), int(row["width"])):
            raise DatasetError(f"{p}: the mask of item {item_id} is {m.shape[1]}x{m.shape[0]} px but its image "
                               f"is {row['width']}x{row['height']} px (width x height)")
        self._check(p, item_id)
        return m

    def clean(self, item_id: str) -> np.ndarray | None:
        p = self.path("clean", item_id)
        if not p.is_file():
            return None
        self._check(p, item_id)
        return io.read_image(p)

    def contours(self, item_id: str) -> list[np.ndarray] | None:
        p = self.path("contours", item_id, ".json")
        if not p.is_file():
            return None
        self._check(p, item_id)
        return [np.asarray(c, np.float32) for c in json.loads(p.read_text())["contours"]]

    def arrays(self, split: str | None = None, *, masks: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """All images of a split as one uint8 array (N, H, W), and the masks if present."""
        ids = self.split(split) if split else self.ids
        imgs = np.stack([io.to_uint8(self.image(i)) for i in ids]) if ids else np.zeros((0, 0, 0), np.uint8)
        if not (masks and self.labeled):
            return imgs, None
        return imgs, np.stack([self.mask(i) for i in ids])


def load_dataset(path, *, verify: bool = True) -> Dataset:
    """`Dataset(path, verify=verify)`: files are checked against their manifest hashes when read."""
    return Dataset(path, verify=verify)
