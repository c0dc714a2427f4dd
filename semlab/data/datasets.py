"""Dataset folders (design.md section 3): write them resumably, read them back.

Layout of a dataset folder::

    images/<id>.png      8-bit gray SEM images
    masks/<id>.png       indexed PNG in the semlab palette (absent for unlabeled data)
    clean/<id>.png       noise-free images (simulated data only)
    contours/<id>.json   sub-pixel pattern contours in px (simulated data only)
    manifest.csv         id, split, source, sha256, mask_sha256, height, width, params
    dataset.json         kind, label classes used, pixel size, provenance, splits

Splits are drawn once per item from a hash of (seed, group) and stored; tiles of one
frame share a group, so no frame leaks across splits. Writing is resumable: an item
already in the manifest whose image hash still matches is skipped; files are
written atomically, and the manifest is flushed every `flush_every` items. A run
that fails on a folder it created removes the folder, so bad input leaves nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from tqdm.auto import tqdm

import semlab
from semlab import io, labels

MANIFEST_FIELDS = ["id", "split", "group", "source", "sha256", "mask_sha256", "height", "width", "params"]
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
        meta = self.root / meta_name
        if self.root.exists():
            if meta.is_file():
                old = json.loads(meta.read_text())
                if old.get("identity") != self.identity:
                    raise DatasetError(
                        f"{self.root} holds another dataset ({old.get('identity')}); "
                        f"refusing to mix it with {self.identity}: choose another --out folder")
                man = self.root / manifest_name
                if man.is_file():
                    self.rows = {r["id"]: r for r in io.read_manifest(man)}
            elif meta_name == "dataset.json" and any(self.root.iterdir()):
                raise DatasetError(f"{self.root} exists, is not empty and is not a semlab dataset "
                                   "(no dataset.json); refusing to write into it")
        else:
            self.created = True
        self.root.mkdir(parents=True, exist_ok=True)
        self._pending = 0
        self._write_meta(complete=False)

    def done(self, item_id: str) -> bool:
        """True if the item is in the manifest and its image still has the recorded hash."""
        row = self.rows.get(item_id)
        if row is None or not row.get("sha256"):
            return False
        p = io.inside(self.root, "images", f"{item_id}.png")
        return p.is_file() and io.sha256_file(p) == row["sha256"]

    def add(self, item_id: str, image: np.ndarray, *, split: str, group: str, source: str = "",
            mask: np.ndarray | None = None, clean: np.ndarray | None = None,
            contours: list | None = None, params: dict | None = None, extra: dict | None = None,
            files: dict[str, tuple[str, np.ndarray]] | None = None) -> dict:
        """Write one item. `extra` fills the writer's extra manifest columns; `files` maps
        a sub-folder to (kind, array) with kind "image" (8-bit gray PNG) or "labels16"
        (a 16-bit PNG of integer ids, e.g. raw segment maps)."""
        io.validate_id(item_id, f"{self.root}: new item")
        ip = io.write_image(io.inside(self.root, "images", f"{item_id}.png"), image)
        row = {"id": item_id, "split": split, "group": group, "source": source,
               "sha256": io.sha256_file(ip), "mask_sha256": "",
               "height": int(image.shape[0]), "width": int(image.shape[1]),
               "params": json.dumps(params, sort_keys=True, default=io.json_default) if params else ""}
        if mask is not None:
            if mask.shape != image.shape:
                raise DatasetError(f"{item_id}: mask shape {mask.shape} != image shape {image.shape}")
            mp = io.write_mask(io.inside(self.root, "masks", f"{item_id}.png"), mask)
            row["mask_sha256"] = io.sha256_file(mp)
        if clean is not None:
            io.write_image(io.inside(self.root, "clean", f"{item_id}.png"), clean)
        if contours is not None:
            io.write_json_atomic(io.inside(self.root, "contours", f"{item_id}.json"),
                                 {"units": "px", "order": "row,col",
                                  "contours": [np.round(c, 3).tolist() for c in contours]}, indent=None)
        for sub, (kind, arr) in (files or {}).items():
            target = io.inside(self.root, sub, f"{item_id}.png")
            if kind == "labels16":
                io.write_image(target, np.asarray(arr, np.uint16), bits=16)
            else:
                io.write_image(target, arr)
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
        io.write_csv_atomic(self.root / self.manifest_name, rows, self.fields)
        self._pending = 0

    def _write_meta(self, complete: bool) -> None:
        counts: dict[str, int] = {}
        for r in self.rows.values():
            counts[r["split"]] = counts.get(r["split"], 0) + 1
        meta = {"kind": self.kind, "identity": self.identity, "semlab_version": semlab.__version__,
                "complete": complete, "n_items": len(self.rows), "split_counts": counts,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **self.info}
        io.write_json_atomic(self.root / self.meta_name, meta)

    def close(self) -> Path:
        self.flush()
        self._write_meta(complete=True)
        return self.root

    def abort(self) -> None:
        """After an error: remove the folder if this writer created it, else keep what is done."""
        if self.created and self.remove_on_abort:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            self.flush()
            self._write_meta(complete=False)


def _run(writer: DatasetWriter, items: Iterable, n: int | None, desc: str, work: Callable, progress: bool) -> Path:
    try:
        for it in tqdm(items, total=n, desc=desc, disable=not progress, unit="img"):
            work(it)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def simulate_dataset(out, *, preset: str = "ic-metal", n: int = 2000, size: int = 256, seed: int = 0,
                     pixel_nm: float | None = None, splits: dict[str, float] | None = None,
                     progress: bool = True, **overrides: Any) -> Path:
    """Write `n` simulated items into `out` (resumable; re-running skips finished items)."""
    from semlab.data.simulate import SIMULATOR_VERSION, get_preset, simulate

    pre = get_preset(preset)
    splits = dict(splits or DEFAULT_SPLITS)
    px = float(pixel_nm) if pixel_nm else pre.field_of_view_nm / size
    identity = {"generator": "semlab.simulate", "simulator_version": SIMULATOR_VERSION,
                "preset": preset, "size": size, "seed": seed,
                "pixel_nm": px, "splits": splits, "overrides": overrides}
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
        r = simulate(preset, size, (seed, i), pixel_nm=px, **overrides)
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


def import_images(src, out, *, tile: int | None = None, overlap: int = 0, crop_databar="auto",
                  seed: int = 0, splits: dict[str, float] | None = None, progress: bool = True) -> Path:
    """Build an unlabeled dataset from a folder of real SEM images (MIIC layout included).

    Each frame is read (TIFF/PNG/JPEG, 8/16-bit, palette), its data bar cropped
    (`crop_databar`: "auto", "none" or rows to keep) and optionally cut into
    `tile`-px tiles with `overlap`. All tiles of a frame go to the same split.
    """
    from semlab.data import sources

    src = Path(src)
    files = sources.list_images(src)
    splits = dict(splits or DEFAULT_SPLITS)
    identity = {"generator": "semlab.import-images", "source": str(src.resolve()), "tile": tile,
                "overlap": overlap, "crop_databar": crop_databar, "seed": seed, "splits": splits}
    info = {"name": Path(out).name, "description": f"real SEM images imported from {src}",
            "classes": [], "pixel_size_nm": None, "provenance": str(src.resolve())}
    w = DatasetWriter(out, kind="imported", identity=identity, info=info)
    pixel_sizes: set = set()

    def work(f: Path) -> None:
        group = safe_id(f.relative_to(src) if src.is_dir() else Path(f.name))  # a single file as the source
        meta = io.read_image_meta(f)
        if meta.get("pixel_size_nm"):
            pixel_sizes.add(round(float(meta["pixel_size_nm"]), 4))
        w.info["pixel_size_nm"] = next(iter(pixel_sizes)) if len(pixel_sizes) == 1 else None
        img = io.read_image(f)
        img, bar = sources.crop_databar(img, crop_databar)
        pieces = sources.tile_image(img, tile, overlap) if tile else [(0, 0, img)]
        split = assign_split(seed, group, splits)
        digest = io.sha256_file(f)
        for (r, c, t) in pieces:
            item_id = f"{group}_r{r:05d}_c{c:05d}" if tile else group
            if w.done(item_id):
                continue
            w.add(item_id, t, split=split, group=group, source=str(f),
                  params={"source_sha256": digest, "row": r, "col": c, "databar_row": bar,
                          "pixel_size_nm": meta.get("pixel_size_nm")})

    return _run(w, files, len(files), "import", work, progress)


class Dataset:
    """A dataset folder opened for reading."""

    def __init__(self, root):
        self.root = Path(root)
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
        return io.read_image(self.path("images", item_id))

    def mask(self, item_id: str) -> np.ndarray | None:
        p = self.path("masks", item_id)
        return io.read_mask(p) if p.is_file() else None

    def clean(self, item_id: str) -> np.ndarray | None:
        p = self.path("clean", item_id)
        return io.read_image(p) if p.is_file() else None

    def contours(self, item_id: str) -> list[np.ndarray] | None:
        p = self.path("contours", item_id, ".json")
        if not p.is_file():
            return None
        return [np.asarray(c, np.float32) for c in json.loads(p.read_text())["contours"]]

    def arrays(self, split: str | None = None, *, masks: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """All images of a split as one uint8 array (N, H, W), and the masks if present."""
        ids = self.split(split) if split else self.ids
        imgs = np.stack([io.to_uint8(self.image(i)) for i in ids]) if ids else np.zeros((0, 0, 0), np.uint8)
        if not (masks and self.labeled):
            return imgs, None
        return imgs, np.stack([self.mask(i) for i in ids])


def load_dataset(path) -> Dataset:
    return Dataset(path)
