"""Labelled real data in, the way users keep it: a folder of images and a folder of masks
matched by name (`semlab import-images SRC --masks DIR`).

    semlab import-images sem/ --masks sem_masks/ --mask-pattern '{stem}_m' --mask-class defect --tile 256 --out ds

Matching: the image `sub/x.jpg` of SRC takes the mask `DIR/sub/<pattern>.<ext>`, else
`DIR/<pattern>.<ext>` (a flat mask folder), with `<pattern>` the `--mask-pattern` with
`{stem}` = `x` (default `{stem}`: the same name) and any image extension (PNG, TIFF, BMP;
JPEG masks are lossy and are refused if their compression added values). Masks in
SRC itself (`x.png` beside `x_m.png`) are never imported as images.

Masks (`read_user_mask`): anything `io.read_mask` accepts, the one validator of user
masks: an indexed image or RGB in the canonical palette, gray 0..K-1 (canonical ids) or
black/white 0/255. A mask holding only background and pattern (0/255, 0/1, black and
white in any mode) is *binary*: its foreground becomes `mask_class` (default pattern; `defect`
for anomaly masks such as MIIC's). Anything else fails that image, with the unexpected
values, their pixel counts and where they are.

Each mask goes through its image's data-bar crop, its resampling (nearest neighbour, so
labels are never blended) and its tiling (the same positions), so image and mask tiles
stay aligned; tiles of a frame share its split (`datasets.import_images` does the work).

Reported by name: an image without a mask is a failed item (manifest status "error",
the mask it looked for; exit code 1, a re-run retries it) -- or, with
`missing="skip"`, left out and listed -- because a labelled dataset with unlabelled items
would be read as labelled and break training and scoring later; a mask that matches no
image is listed (warning, `dataset.json` `masks.extra`) and ignored. A mask folder whose
names match none of the images is refused before anything is written.
"""

from __future__ import annotations

import json
import string
import warnings
from pathlib import Path

import numpy as np

from semlab import io, labels
from semlab.data import sources
from semlab.data.datasets import DatasetError, import_images

__all__ = ["MaskFolder", "read_user_mask", "import_labelled", "mask_report", "check_pattern", "MISSING_POLICIES"]

MISSING_POLICIES = ("error", "skip")
_SHOW = 20  # names listed in a warning or an error


def _names(items, show: int = _SHOW) -> str:
    items = list(items)
    more = f" ... ({len(items) - show} more)" if len(items) > show else ""
    return ", ".join(str(i) for i in items[:show]) + more


def check_pattern(pattern: str) -> str:
    """`pattern` if it is a mask name pattern with the field `{stem}` and no other
    (`{stem}_m`, `mask_{stem}`); ValueError otherwise."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
    except ValueError as e:
        raise ValueError(f"--mask-pattern {pattern!r} is not a valid pattern ({e}); example: '{{stem}}_m'") from None
    if fields != ["stem"] or "/" in pattern or "\\" in pattern:
        raise ValueError(f"--mask-pattern {pattern!r} must hold {{stem}} once and no other field or folder, "
                         "e.g. '{stem}' or '{stem}_m'")
    return pattern


def read_user_mask(path, mask_class: int = labels.PATTERN) -> np.ndarray:
    """A user's mask file as a canonical label map (H, W) uint8: `io.read_mask` (palette,
    RGB, gray ids, 0/255), then a binary mask's foreground (ids {0, 1} only) becomes
    `mask_class`. ValueError (one line, naming the file) for anything else."""
    p = Path(path)
    try:
        lab = io.read_mask(p)
    except labels.MaskError as e:
        hint = ("; JPEG is lossy and its compression adds values: save masks as PNG"
                if p.suffix.lower() in (".jpg", ".jpeg") else "")
        lines = [line.strip() for line in str(e.problem).splitlines() if line.strip()] or ["invalid"]
        problem = lines[0].rstrip(":") + (": " + "; ".join(lines[1:]) if lines[1:] else "")
        raise ValueError(f"{p}: mask refused: {problem}{hint}") from None
    if mask_class != labels.PATTERN and int(lab.max(initial=0)) <= labels.PATTERN:
        lab = np.where(lab == labels.PATTERN, np.uint8(mask_class), lab).astype(np.uint8)
    return lab


class MaskFolder:
    """The masks of an import: which image takes which mask, and each image's label map.

    The `masks` argument of `datasets.import_images`: `identity`, `select(files)`,
    `read(file)`, `source(file)`, `info()`. Built from the image files and the mask
    folder: `matches` {image: mask}, `missing` [images without a mask], `ambiguous`
    {image: [masks]}, `extra` [masks that match no image] (relative names)."""

    def __init__(self, src, root, files, *, pattern: str = "{stem}", mask_class: int | str = labels.PATTERN,
                 missing: str = "error"):
        self.src = Path(src)
        self.root = Path(root)
        self.pattern = check_pattern(pattern)
        if isinstance(mask_class, str):
            mask_class = labels.class_by_name(mask_class).id
        if not labels.BACKGROUND < int(mask_class) < labels.NUM_CLASSES:
            raise ValueError(f"--mask-class must name a foreground class "
                             f"({', '.join(c.name for c in labels.CLASSES[1:])}), got {mask_class!r}")
        self.mask_class = int(mask_class)
        if missing not in MISSING_POLICIES:
            raise ValueError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
        self.missing_policy = missing
        if not self.root.is_dir():
            raise FileNotFoundError(f"mask folder not found: {self.root}")
        mask_files = sources.list_images(self.root)  # ValueError if it holds no image files
        self.n_masks = len(mask_files)
        index: dict[tuple[str, str], list[Path]] = {}
        for p in mask_files:
            rel = p.relative_to(self.root)
            index.setdefault((rel.parent.as_posix(), p.stem), []).append(p)
        found: dict[Path, list[Path]] = {}
        for f in map(Path, files):
            want = self.expected(f)
            cand = index.get((self._rel(f).parent.as_posix(), want)) or index.get((".", want)) or []
            if f.resolve() in {m.resolve() for m in cand}:
                raise ValueError(f"--mask-pattern {pattern!r} makes {f} its own mask: the masks are in the image "
                                 "folder, so give them a pattern such as '{stem}_m'")
            found[f] = cand
        # a file that is another file's mask is a mask, never an image (masks beside their images)
        self.used = {m.resolve() for cand in found.values() for m in cand}
        self.matches: dict[Path, Path] = {}
        self.ambiguous: dict[Path, list[Path]] = {}
        self.missing: list[Path] = []
        images = set()
        for f, cand in found.items():
            if f.resolve() in self.used:
                continue
            images.add(f.resolve())
            if len(cand) == 1:
                self.matches[f] = cand[0]
            elif cand:
                self.ambiguous[f] = sorted(cand)
            else:
                self.missing.append(f)
        self.extra = sorted(p.relative_to(self.root).as_posix() for p in mask_files
                            if p.resolve() not in self.used and p.resolve() not in images)
        self.seen: set[int] = set()
        self.previous: set[int] = set()

    def _rel(self, f) -> Path:
        return Path(f).relative_to(self.src) if self.src.is_dir() else Path(Path(f).name)

    def expected(self, f) -> str:
        """The mask stem image `f` looks for."""
        return self.pattern.format(stem=Path(f).stem)

    @property
    def identity(self) -> dict:
        return {"folder": str(self.root.resolve()), "pattern": self.pattern,
                "mask_class": labels.CLASSES[self.mask_class].name, "missing_policy": self.missing_policy}

    def select(self, files) -> list[Path]:
        """The frames to import: every image (masks in the image folder left out); with
        missing="skip", only those with a mask."""
        keep = [Path(f) for f in files if Path(f).resolve() not in self.used]
        if self.missing_policy == "skip":
            gone = set(self.missing)
            keep = [f for f in keep if f not in gone]
        return keep

    def read(self, f) -> np.ndarray:
        """Image `f`'s label map; ValueError naming the image when it has none, or several,
        or its mask is refused (the item fails, the batch goes on)."""
        f = Path(f)
        if f in self.ambiguous:
            raise ValueError(f"{f}: several masks match it ({_names(str(p) for p in self.ambiguous[f])}); "
                             "keep one")
        mask = self.matches.get(f)
        if mask is None:
            rel_dir = self._rel(f).parent
            where = self.root / rel_dir if rel_dir != Path(".") else self.root
            raise ValueError(f"{f}: no mask: looked for {self.expected(f)}.png (or .tif, .bmp ...) in {where}"
                             + (f" and {self.root}" if where != self.root else ""))
        lab = read_user_mask(mask, self.mask_class)
        self.seen.update(int(v) for v in np.unique(lab))
        return lab

    def source(self, f) -> str:
        """The path of image `f`'s mask ("" if none)."""
        m = self.matches.get(Path(f))
        return str(m) if m is not None else ""

    def info(self) -> dict:
        """dataset.json entries: the classes of the masks read (now and by earlier runs
        into the same folder, plus background and `mask_class`) and what was matched."""
        ids = sorted(self.seen | self.previous | {labels.BACKGROUND, self.mask_class})
        return {"classes": [{"id": c.id, "name": c.name, "meaning": c.meaning, "rgb": list(c.rgb)}
                            for c in labels.CLASSES if c.id in ids],
                "masks": {**self.identity, "n_matched": len(self.matches),
                          "missing": [self._rel(f).as_posix() for f in self.missing],
                          "ambiguous": [self._rel(f).as_posix() for f in self.ambiguous],
                          "extra": self.extra}}

    def report(self) -> list[str]:
        """One line per kind of mismatch, naming the files (empty when all matched)."""
        return mask_report(self.info())


def mask_report(meta: dict) -> list[str]:
    """The mismatch lines of a labelled import from its dataset.json (or `MaskFolder.info`):
    images without a mask, with several, masks matching no image; each naming the files."""
    m = meta.get("masks") or {}
    lines = []
    if m.get("missing"):
        what = "left out" if m.get("missing_policy") == "skip" else "recorded as failed"
        lines.append(f"{len(m['missing'])} image(s) without a mask ({what}): {_names(m['missing'])}")
    if m.get("ambiguous"):
        lines.append(f"{len(m['ambiguous'])} image(s) with several masks (recorded as failed): "
                     f"{_names(m['ambiguous'])}")
    if m.get("extra"):
        lines.append(f"{len(m['extra'])} mask(s) in {m.get('folder')} match no image (ignored): {_names(m['extra'])}")
    return lines


def import_labelled(src, masks, out, *, mask_pattern: str = "{stem}", mask_class: int | str = "pattern",
                    missing: str = "error", **kwargs) -> Path:
    """A labelled dataset from the images of `src` and their masks in `masks` (see the
    module docstring); `kwargs` go to `datasets.import_images` (tile, overlap,
    crop_databar, seed, splits, split_by, native_pixel_nm, pixel_nm, progress).
    DatasetError, before anything is written, when no mask matches any image; the
    mismatches are reported by name (SemlabWarning and dataset.json `masks`)."""
    src = Path(src)
    files = sources.list_images(src)
    mf = MaskFolder(src, masks, files, pattern=mask_pattern, mask_class=mask_class, missing=missing)
    if not mf.matches:
        images = mf.select(files)
        example = (f" (the image {mf._rel(images[0]).as_posix()} wants a mask named "
                   f"{mf.expected(images[0])}.png, .tif ...)") if images else ""
        raise DatasetError(f"{mf.root}: none of its {mf.n_masks} mask(s) matches an image of {src} by the "
                           f"pattern {mask_pattern!r}{example}; masks found: {_names(mf.extra, 5)}; "
                           "check --mask-pattern (nothing written)")
    meta = Path(out) / "dataset.json"
    if meta.is_file():  # a resumed import: the classes its earlier runs found
        try:
            mf.previous = {int(c["id"]) for c in json.loads(meta.read_text()).get("classes", [])}
        except (ValueError, TypeError, KeyError):
            mf.previous = set()
    for line in mf.report():
        warnings.warn(line, io.SemlabWarning, stacklevel=2)
    return import_images(src, out, masks=mf, **kwargs)
