"""Unlabeled images -> a paired dataset with canonical masks (`semlab segment`).

`segment_dataset(SRC)` reads a semlab dataset folder or any folder of images, runs a
backend (SAM2 automatic masks or the classical segmenter) on each image, turns the
segments into canonical masks (`semlab.segment.canonical`), checks them
(`semlab.segment.qa`) and writes a new dataset folder:

    images/<id>.png      the input image (8-bit gray)
    masks/<id>.png       canonical mask (indexed PNG, semlab palette)
    segments/<id>.png    raw regions after overlap resolution (16-bit ids, for display)
    manifest.csv         the usual columns plus status, reason, coverage_*, fragments_*...
    dataset.json         backend settings, rules, QA thresholds, fallback notes

It is resumable (finished items are skipped), shows a progress bar, never writes into
the source, and with `shard=(i, n)` processes only the items whose id hashes to i, so
n machines can share a folder; each shard keeps its own manifest under `shards/` and
the last one to finish (or `merge_shards`) writes `manifest.csv`.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import semlab
from semlab import io, labels
from semlab.data.datasets import (MANIFEST_FIELDS, DatasetError, DatasetWriter, assign_split,
                                  clash_warning, safe_id, unique_ids)
from semlab.segment.base import SegmentationError
from semlab.segment.canonical import Canonical, CanonicalRules, canonicalize, decide_polarity
from semlab.segment.classical import ClassicalSegmenter, ClassicalSettings
from semlab.segment.qa import QA_FIELDS, QARules, add_input_flags, check_mask, input_checks

BACKENDS = ("classical", "sam2")


def make_segmenter(backend: str = "classical", **settings):
    """A segmenter by name: "classical" or "sam2" (settings are the backend's dataclass
    fields). SAM2 without its checkpoint raises `semlab.weights.WeightsNotFound`."""
    if backend == "classical":
        return ClassicalSegmenter(ClassicalSettings(**settings))
    if backend == "sam2":
        from semlab.segment.sam2_backend import Sam2Segmenter, Sam2Settings

        return Sam2Segmenter(Sam2Settings(**settings))
    raise KeyError(f"unknown segmentation backend {backend!r}; valid: {', '.join(BACKENDS)}")


def make_segmenter_with_fallback(backend: str, settings: dict | None = None,
                                 fallback: bool = True) -> tuple[object, dict]:
    """Like `make_segmenter`, but if SAM2's weights are missing and `fallback` is set,
    returns the classical segmenter and a note saying so (for reports)."""
    note = {"backend_requested": backend, "backend_used": backend, "fallback_reason": ""}
    try:
        return make_segmenter(backend, **(settings or {})), note
    except FileNotFoundError as e:  # WeightsNotFound
        if not fallback or backend == "classical":
            raise
        note.update(backend_used="classical", fallback_reason=str(e))
        return make_segmenter("classical"), note


@dataclass
class SegmentResult:
    mask: np.ndarray
    canonical: Canonical
    qa: dict
    seconds: float


def segment_image(image: np.ndarray, segmenter, rules: CanonicalRules | None = None,
                  qa_rules: QARules | None = None, source: str | None = None) -> SegmentResult:
    """Segment one image, canonicalise and QA it. Raises SegmentationError for an image
    that cannot be segmented (blank, too small...).

    With `rules.polarity == "auto"` (the default without `rules`) the polarity is decided
    on this image (`semlab.segment.canonical.decide_polarity`; a tile of a frame is judged
    on its own); an inverted one ("dark") is
    segmented as its negative, so the backend finds its particles too. The choice and
    its reason are in `qa["polarity"]` and `qa["polarity_reason"]` (manifest columns).
    The frame as given is checked first (`semlab.segment.qa.input_checks`: no edges, pure
    noise, an uncropped data bar); a bad frame is still segmented but its mask flagged
    (a frame with no edges gets an all-background mask, flagged, without segmenting).
    A classical segmenter that flattens illumination (`flatten_degree`) has the frame
    flattened here already, so the rules and the polarity judge the flattened frame."""
    from dataclasses import replace

    from semlab.segment.base import check_image
    from semlab.segment.classical import flatten_illumination

    t = time.perf_counter()
    checks = input_checks(check_image(image, min_side=1, source=source), qa_rules)  # the frame as given
    if any(r.startswith("no edges") for r in checks["input_reasons"]):  # nothing to segment: all background
        h, w = np.asarray(image).shape
        can = Canonical(np.zeros((h, w), np.uint8), np.zeros((h, w), np.int32), 0.0, 0)
        qa = add_input_flags(check_mask(can.mask, rules=qa_rules), checks)
        qa.update(polarity="", polarity_reason="not decided: no edges")
        return SegmentResult(can.mask, can, qa, time.perf_counter() - t)
    rules = rules or CanonicalRules(polarity="auto")
    polarity, why = rules.polarity, "set by the rules"
    degree = int(getattr(getattr(segmenter, "settings", None), "flatten_degree", 0) or 0)
    if degree > 0:  # the rules judge regions by their brightness: on the flattened image too
        image = flatten_illumination(check_image(image, min_side=1, source=source), degree)[0]
        segmenter = (segmenter.without_flattening() if hasattr(segmenter, "without_flattening")  # flattened once
                     else type(segmenter)(replace(segmenter.settings, flatten_degree=0)))
    if polarity == "auto":
        img = check_image(image, min_side=1, source=source)
        polarity, ev = decide_polarity(img)
        why = ev["reason"]
        if polarity == "dark":
            image = float(img.max()) + float(img.min()) - img
        rules = replace(rules, polarity="bright")
    segs = segmenter.segment(image, source=source)
    can = canonicalize(image, segs, rules)
    can.levels["polarity"] = polarity
    qa = check_mask(can.mask, unlabeled_frac=can.unlabeled_frac, n_segments=can.n_segments, rules=qa_rules)
    add_input_flags(qa, checks)
    qa.update(polarity=polarity, polarity_reason=why)
    return SegmentResult(can.mask, can, qa, time.perf_counter() - t)


# ----------------------------------------------------------------------------------
# items of a source: a semlab dataset or a plain folder of images

@dataclass
class _Item:
    id: str
    split: str
    group: str
    source: str
    path: Path
    renamed_from: str = ""


def source_items(src, seed: int = 0) -> tuple[list[_Item], dict]:
    """The items of a dataset folder (its ids and splits) or of a folder of images (ids
    from the file names, made unique by `unique_ids` with a warning: x.png beside x.tif
    become x-<8 hex> and x-<8 hex>, never one item)."""
    from semlab.data.sources import list_images

    src = Path(src)
    if not src.is_dir():
        raise DatasetError(f"{src}: no such folder")
    meta = src / "dataset.json"
    if meta.is_file():
        info = json.loads(meta.read_text())
        # ids are checked (plain names) and image paths kept inside the source folder
        rows = io.read_manifest(src / "manifest.csv") if (src / "manifest.csv").is_file() else []
        items = [_Item(r["id"], r["split"], r["group"], r.get("source") or r["id"],
                       io.inside(src, "images", f"{r['id']}.png")) for r in rows if r.get("sha256")]
        classes = [c["name"] for c in info.get("classes", []) if "name" in c]
        return items, {"pixel_size_nm": info.get("pixel_size_nm"), "source_kind": info.get("kind"),
                       "classes": classes}
    files = list_images(src)
    if not files:
        raise DatasetError(f"{src}: no images found (looked for PNG, JPEG, TIFF, BMP)")
    ids, clashes = unique_ids(files, src)
    if clashes:
        import warnings

        warnings.warn(clash_warning(clashes, ids, src), io.SemlabWarning, stacklevel=3)
    items = []
    for f in files:
        rel = f.relative_to(src)
        iid = ids[f]
        items.append(_Item(iid, assign_split(seed, iid), iid, rel.as_posix(), f,
                           safe_id(rel) if iid != safe_id(rel) else ""))
    return items, {"pixel_size_nm": None, "source_kind": "folder"}


def shard_of(item_id: str, n: int) -> int:
    """Stable shard of an item: crc32 of its id modulo n (independent of the item order)."""
    return zlib.crc32(item_id.encode()) % n


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return i, n


# Bumped whenever segmentation or canonicalisation changes what a given setting produces:
# part of the output folder's identity, so old masks are never resumed as if current.
ALGORITHM_VERSION = 5  # 5: edges per direction at their own mid-level (edge_method="local"); 4: holes cut by the frame are holes; gradient edges option; polarity rule; 3: per-frame polarity, illumination flattening, noise-set denoising


def default_output(src, backend: str, identity: dict | None = None) -> Path:
    """`<src>-seg-<backend>-<8 hex of the settings>` beside the source: the same
    settings resume the same folder, other settings get a folder of their own."""
    src = Path(src)
    tag = ""
    if identity is not None:
        import hashlib

        text = json.dumps(identity, sort_keys=True, default=io.json_default)
        tag = "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return src.parent / f"{src.name}-seg-{backend}{tag}"


def _meta_path(out: Path, i: int, n: int) -> tuple[str, str]:
    if n == 1:
        return "manifest.csv", "dataset.json"
    return f"shards/manifest-{i}-of-{n}.csv", f"shards/dataset-{i}-of-{n}.json"


def segment_dataset(src, out=None, *, backend="classical", settings: dict | None = None,
                    rules: CanonicalRules | None = None, qa_rules: QARules | None = None,
                    shard: tuple[int, int] = (0, 1), fallback: bool = True, seed: int = 0,
                    progress: bool = True, limit: int | None = None, info_extra: dict | None = None) -> Path:
    """Segment every image of `src` into a new dataset folder (see the module docstring).

    `backend` is a name ("classical", "sam2"; built with `settings`) or a segmenter
    object (for instance one whose edge offset was calibrated). Without `rules`, the
    canonical classes are those the source dataset declares (all
    four for a plain folder). Returns the output folder. `limit` processes only the first items (previews).
    `info_extra` is recorded in the output's dataset.json (e.g. `calibration`: the
    settings `semlab.segment.calibrate` fitted and on which images)."""
    qa_rules = qa_rules or QARules()
    i_shard, n_shard = shard
    items, src_info = source_items(src, seed)
    if rules is None:  # the classes the source dataset declares, else all four; polarity per frame
        rules = CanonicalRules(classes=tuple(src_info.get("classes") or CanonicalRules().classes), polarity="auto")
    if isinstance(backend, str):
        segmenter, note = make_segmenter_with_fallback(backend, settings, fallback)
    else:  # an already built (e.g. calibrated) segmenter
        segmenter = backend
        name = getattr(segmenter, "name", type(segmenter).__name__)
        note = {"backend_requested": name, "backend_used": name, "fallback_reason": ""}
    identity = {"generator": "semlab.segment", "algorithm_version": ALGORITHM_VERSION,
                "source": str(Path(src).resolve()),
                "segmenter": segmenter.describe(), "rules": rules.describe(), "qa": qa_rules.describe()}
    out = Path(out) if out else default_output(src, note["backend_used"], identity)
    if Path(src).resolve() == out.resolve():
        raise DatasetError(f"{out}: the output must be a new folder, not the source")
    if n_shard > 1 and (out / "dataset.json").is_file():
        old = json.loads((out / "dataset.json").read_text())
        if old.get("identity") != json.loads(json.dumps(identity, default=io.json_default)):
            raise DatasetError(f"{out} holds another dataset; refusing to mix shards into it")
    used = [labels.class_by_name(c).id for c in rules.classes]
    info = {"name": out.name, "description": f"{Path(src).name} segmented by {note['backend_used']}",
            "pixel_size_nm": src_info.get("pixel_size_nm"),
            "classes": [{"id": c.id, "name": c.name, "meaning": c.meaning, "rgb": list(c.rgb)}
                        for c in labels.CLASSES if c.id in used],
            "provenance": f"semlab {semlab.__version__} segment ({note['backend_used']})", **note,
            "shard": f"{i_shard}/{n_shard}", **(info_extra or {})}
    man, meta = _meta_path(out, i_shard, n_shard)
    w = DatasetWriter(out, kind="segmented", identity=json.loads(json.dumps(identity, default=io.json_default)),
                      info=info, manifest_name=man, meta_name=meta,
                      extra_fields=QA_FIELDS + ("polarity", "polarity_reason", "backend", "seconds", "renamed_from"),
                      remove_on_abort=n_shard == 1, flush_every=20)
    mine = [it for it in items if shard_of(it.id, n_shard) == i_shard]
    if limit is not None:
        mine = mine[:limit]
    try:
        for it in tqdm(mine, desc=f"segment ({note['backend_used']})", disable=not progress, unit="img"):
            if w.done(it.id):
                continue
            try:
                img = io.read_image(it.path)
                res = segment_image(img, segmenter, rules, qa_rules, source=str(it.path))
            except (io.ImageReadError, SegmentationError, OSError, ValueError) as e:
                w.add_failed(it.id, split=it.split, group=it.group, source=it.source,
                             extra={"status": "error", "reason": str(e), "backend": note["backend_used"],
                                    "renamed_from": it.renamed_from})
                continue
            regions = res.canonical.regions.astype(np.int64) + 1
            w.add(it.id, io.to_uint8(img), split=it.split, group=it.group, source=it.source,
                  mask=res.mask, extra={**res.qa, "backend": note["backend_used"],
                                        "seconds": round(res.seconds, 4), "renamed_from": it.renamed_from},
                  files={"segments": ("labels16", np.minimum(regions, 65535))})
    except BaseException:
        w.abort()
        raise
    w.close()
    if progress:  # say what polarity each frame got (the CLI's default; notebooks print their own)
        print(polarity_summary(out, manifest=man))
    if n_shard > 1:
        io.write_text_atomic(out / "shards" / f"done-{i_shard}-of-{n_shard}", time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
        merge_shards(out)
    return out


def import_real_sets(real_dir, out_root, *, tile: int, sets=(), seed: int = 0, progress: bool = False) -> Path:
    """Import and tile the real frames of `real_dir` (a folder of sets, such as the
    packaged samples, or one set's folder) into `out_root/<name>-<tile>px-imported/`,
    with the stored frame split of the packaged sets (`split_by="frame"`). `sets` names
    the sets wanted; exactly one of them present: only that set's folder; otherwise the
    whole folder. Resumable."""
    from semlab.data.datasets import import_images

    real_dir = Path(real_dir)
    if not real_dir.is_dir():
        raise FileNotFoundError(f"{real_dir}: no such folder of real SEM frames")
    subs = sorted(p.name for p in real_dir.iterdir() if p.is_dir())
    chosen = [s for s in sets if s in subs]
    src = real_dir / chosen[0] if len(chosen) == 1 else real_dir
    return import_images(src, Path(out_root) / f"{src.name}-{tile}px-imported", tile=tile, seed=seed,
                         progress=progress, split_by="frame")


def polarity_summary(out, manifest: str = "manifest.csv", show: int = 20) -> str:
    """One line per polarity of a segmented dataset ("bright": pattern is the bright
    phase; "dark": an inverted frame) with the frames that got the rarer one."""
    from collections import Counter

    path = Path(out) / manifest
    rows = [r for r in io.read_manifest(path) if r.get("polarity")] if path.is_file() else []
    if not rows:
        return "polarity: none recorded"
    count = Counter(r["polarity"] for r in rows)
    text = "polarity per image: " + ", ".join(f"{n} {p}" for p, n in count.most_common())
    if len(count) > 1:
        rare = count.most_common()[-1][0]
        names = [r.get("source") or r["id"] for r in rows if r["polarity"] == rare]
        text += f"; {rare}: " + ", ".join(names[:show]) + (" ..." if len(names) > show else "")
    return text


def merge_shards(out) -> Path:
    """Combine the shard manifests under `out/shards/` into `manifest.csv` and
    `dataset.json` (complete when every shard has finished)."""
    out = Path(out)
    metas = sorted((out / "shards").glob("dataset-*-of-*.json"))
    if not metas:
        raise DatasetError(f"{out}: no shard results under shards/")
    n = int(metas[0].stem.split("-of-")[1])
    rows: dict[str, dict] = {}
    fields = list(MANIFEST_FIELDS)
    for m in sorted((out / "shards").glob(f"manifest-*-of-{n}.csv")):
        for r in io.read_manifest(m):
            rows[r["id"]] = r
            fields += [k for k in r if k not in fields]
    done = [i for i in range(n) if (out / "shards" / f"done-{i}-of-{n}").is_file()]
    info = json.loads(metas[0].read_text())
    counts: dict[str, int] = {}
    for r in rows.values():
        counts[r["split"]] = counts.get(r["split"], 0) + 1
    info.update({"complete": len(done) == n, "n_items": len(rows), "split_counts": counts,
                 "shard": f"{len(done)} of {n} shards done",
                 "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    io.write_csv_atomic(out / "manifest.csv", sorted(rows.values(), key=lambda r: r["id"]), fields)
    io.write_json_atomic(out / "dataset.json", info)
    return out


def read_regions(path) -> np.ndarray:
    """A raw region map written by `segment_dataset` (0 = no region)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im).astype(np.int32)

