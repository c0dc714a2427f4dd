"""File integrity of dataset folders (issue 15 item 8): hashes, stale temp files, `semlab verify`.

A manifest row records the sha256 of every file of its item: `sha256` (images/<id>.png),
`mask_sha256` (masks/<id>.png) and `files_sha256`, a JSON object {"clean/<id>.png":
sha256, "contours/<id>.json": sha256, ...} for the other files (older manifests lack it:
their clean images and contours are not verifiable). Writers check every recorded file
when they resume and redo items with a missing or damaged one; `Dataset` checks each file
the first time it is read in a process (`sha256_cached`: once per file, path, size and
mtime); `verify_dataset` checks them all and lists missing, damaged and extra files.

`io.atomic_write` writes to `.<name>.<8 random chars>.tmp` beside its target; a killed
writer leaves such files (a partial checkpoint can be 142 MB). `remove_stale_temp` deletes
them when a writer resumes, only while it holds its folder alone.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from semlab import io
from semlab.locks import FolderLock, is_lock_file

__all__ = ["FILES_FIELD", "IntegrityError", "is_temp_file", "remove_stale_temp", "sha256_cached",
           "recorded_files", "recorded_hash", "file_problem", "item_problems", "check_file",
           "VerifyReport", "verify_dataset"]

FILES_FIELD = "files_sha256"
# io.atomic_write: tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp"): 8 characters of [a-z0-9_]
_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
_OTHER = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_-]*)/([^/\\]+)$")
_HASHES: dict[str, tuple[int, int, str]] = {}  # path -> (size, mtime_ns, sha256), this process


class IntegrityError(ValueError):
    """A dataset file that is missing or does not have the hash its manifest records."""


def is_temp_file(name: str) -> bool:
    """True for the temp-file names of `io.atomic_write` (`.x.png.k3j_a9z0.tmp`)."""
    return bool(_TEMP.match(name))


def remove_stale_temp(root) -> list[Path]:
    """Delete the temp files of `io.atomic_write` below `root` (left by a killed writer);
    returns them. Call it only while no other process writes there (hold the folder lock)."""
    removed = []
    for folder, dirs, files in os.walk(root):
        for name in files:
            if is_temp_file(name):
                p = Path(folder) / name
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed


def sha256_cached(path) -> str:
    """sha256 of a file, computed once per process while its size and mtime stay the same."""
    key = os.path.abspath(path)
    st = os.stat(key)
    hit = _HASHES.get(key)
    if hit is not None and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
        return hit[2]
    digest = io.sha256_file(key)
    _HASHES[key] = (st.st_size, st.st_mtime_ns, digest)
    return digest


def recorded_files(root, row: dict) -> list[tuple[Path, str]]:
    """(path, sha256) of every file the manifest row records, paths checked to stay in `root`."""
    root = Path(root)
    item = row["id"]
    out = []
    if row.get("sha256"):
        out.append((io.inside(root, "images", f"{item}.png"), row["sha256"]))
    if row.get("mask_sha256"):
        out.append((io.inside(root, "masks", f"{item}.png"), row["mask_sha256"]))
    for rel, digest in _other_files(root, row).items():
        folder, name = rel.split("/")
        out.append((io.inside(root, folder, name), digest))
    return out


def _other_files(root, row: dict) -> dict[str, str]:
    text = row.get(FILES_FIELD) or ""
    if not text:
        return {}
    try:
        files = json.loads(text)
    except json.JSONDecodeError:
        files = None
    if not isinstance(files, dict):
        raise IntegrityError(f"{root}: item {row['id']}: {FILES_FIELD} is not a JSON object: {text[:80]!r}")
    for rel in files:  # "<folder>/<id>.<ext>": the item's own file, in a plain folder
        m = _OTHER.match(rel)
        if not m or not (m.group(2) == row["id"] or m.group(2).startswith(f"{row['id']}.")):
            raise io.UnsafePathError(f"{root}: item {row['id']}: {FILES_FIELD} names {rel!r}, which is not "
                                     "<folder>/<id>.<ext>; refusing to use it")
    return files


def recorded_hash(row: dict, folder: str, name: str) -> str:
    """The sha256 the row records for `folder/name` ("" if none)."""
    if folder == "images":
        return row.get("sha256") or ""
    if folder == "masks":
        return row.get("mask_sha256") or ""
    text = row.get(FILES_FIELD) or ""
    with contextlib.suppress(json.JSONDecodeError, AttributeError):
        return json.loads(text).get(f"{folder}/{name}", "") if text else ""
    return ""


def file_problem(path, expected: str) -> str:
    """"" if `path` has the sha256 `expected`, else "missing" or "damaged"."""
    try:
        actual = sha256_cached(path)
    except FileNotFoundError:
        return "missing"
    return "" if actual == expected else "damaged"


def item_problems(root, row: dict) -> list[tuple[Path, str]]:
    """[(path, "missing" | "damaged")] for the files of a manifest row."""
    return [(p, prob) for p, h in recorded_files(root, row) if (prob := file_problem(p, h))]


def check_file(path, expected: str, *, item: str, manifest) -> None:
    """IntegrityError naming the file and what to do, unless `path` has the sha256 `expected`."""
    prob = file_problem(path, expected)
    if not prob:
        return
    root = Path(manifest).parent
    detail = "is missing" if prob == "missing" else (
        f"is damaged: its sha256 {sha256_cached(path)[:16]}... is not the {expected[:16]}... that {manifest} "
        "records")
    raise IntegrityError(f"{path}: the file of item {item} {detail}; `semlab verify {root}` lists all damage, "
                         f"`semlab verify {root} --rehash` accepts deliberate edits (or load with verify=False)")


@dataclass
class VerifyReport:
    root: Path
    n_ok: int = 0
    damaged: list[Path] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)
    extra: list[Path] = field(default_factory=list)
    temp: list[Path] = field(default_factory=list)
    unverified: list[Path] = field(default_factory=list)
    rehashed: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No damaged (not rehashed) and no missing file."""
        return not self.missing and not [p for p in self.damaged if p not in self.rehashed]

    def lines(self) -> list[str]:
        out = [f"damaged: {p}" + (" (manifest hash rewritten)" if p in self.rehashed else "") for p in self.damaged]
        out += [f"missing: {p}" for p in self.missing]
        out += [f"extra:   {p} (not in the manifest)" for p in self.extra]
        out += [f"temp:    {p} (left by an interrupted writer; removed when it resumes)" for p in self.temp]
        return out

    def summary(self) -> str:
        text = (f"{self.root}: {self.n_ok} files ok, {len(self.damaged)} damaged, {len(self.missing)} missing, "
                f"{len(self.extra)} extra")
        if self.temp:
            text += f", {len(self.temp)} stale temp"
        if self.unverified:
            text += f", {len(self.unverified)} without a recorded hash"
        if self.rehashed:
            text += f"; {len(self.rehashed)} hashes rewritten in the manifest"
        return text


def _manifest_fields(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(next(csv.reader(f), []))


def verify_dataset(root, *, rehash: bool = False) -> VerifyReport:
    """Check every file a dataset's manifest records (sha256), and list files in its item
    folders that no row records. `rehash=True` accepts the damaged files as deliberate edits:
    their new hashes are written into the manifest (atomically, while holding the folder's
    writer lock). Missing files stay missing."""
    root = Path(root)
    man = root / "manifest.csv"
    if not (root / "dataset.json").is_file() or not man.is_file():
        raise FileNotFoundError(f"{root} is not a semlab dataset: dataset.json or manifest.csv is missing")
    lock = FolderLock(root).acquire() if rehash else None
    try:
        rows = io.read_manifest(man)
        rep = VerifyReport(root)
        expected: set[Path] = set()
        folders = {"images", "masks", "clean", "contours"}
        for row in rows:
            for p, h in recorded_files(root, row):
                expected.add(p)
                folders.add(p.parent.name)
                prob = file_problem(p, h)
                if prob == "missing":
                    rep.missing.append(p)
                elif prob == "damaged":
                    rep.damaged.append(p)
                    if rehash:
                        _rehash(root, row, p)
                        rep.rehashed.append(p)
                else:
                    rep.n_ok += 1
            for sub, suffix in (("clean", ".png"), ("contours", ".json")):  # older manifests: no hash recorded
                p = root / sub / f"{row['id']}{suffix}"
                if p not in expected and p.is_file():
                    expected.add(p)
                    rep.unverified.append(p)
        for sub in sorted(folders):
            d = root / sub
            if not d.is_dir() or d.is_symlink():
                continue
            for p in sorted(d.iterdir()):
                if is_temp_file(p.name):
                    rep.temp.append(p)
                elif p not in expected and not is_lock_file(p.name):
                    rep.extra.append(p)
        rep.temp += sorted(p for p in root.iterdir() if is_temp_file(p.name))
        if rep.rehashed:
            io.write_csv_atomic(man, rows, _manifest_fields(man))
        return rep
    finally:
        if lock is not None:
            lock.release()


def _rehash(root: Path, row: dict, p: Path) -> None:
    digest = sha256_cached(p)
    folder = p.parent.name
    if folder == "images" and p.name == f"{row['id']}.png":
        row["sha256"] = digest
    elif folder == "masks" and p.name == f"{row['id']}.png":
        row["mask_sha256"] = digest
    else:
        files = _other_files(root, row)
        files[f"{folder}/{p.name}"] = digest
        row[FILES_FIELD] = json.dumps(files, sort_keys=True)
