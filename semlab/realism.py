"""`semlab realism`: the one realism protocol (issue 17 item 1).

Can a detector tell simulated (or generated) SEM tiles from real ones? Both sides are
folders of images or semlab datasets (or, for a simulated side, ``preset:NAME``: the
built-in simulator rendered at the real set's pixel size and frame size). The protocol:

* **Tiles and scale.** Every frame has its burned-in data bar cropped (plain folders) and
  is cut into non-overlapping `tile` x `tile` tiles (default 128 px). A side whose pixel
  size is known and differs from the real set's by more than 2% is resampled
  (anti-aliased) to the real pixel size first, so scale alone cannot give it away; real
  frames whose sizes differ by more than 2% are resampled to their median.
* **Three detectors**, each scored by grouped, stratified k-fold cross-validation
  (`semlab.forensics.detector.grouped_folds`, the same folds for all three):
  ``stats`` (logistic regression on per-tile statistics: log radial spectrum, intensity
  histogram, gradient-magnitude histogram), ``spectrum`` (logistic regression on the log
  radial spectrum only, `semlab.forensics.spectrum.spectral_features`) and ``cnn`` (the
  small CNN of `semlab.forensics`, a few epochs on random crops).
* **Balance.** The larger side is subsampled (seeded) to the smaller one's n (and at most
  `max_tiles`). Balanced accuracy (threshold 0 on the out-of-fold logit) and ROC AUC, each
  with a 95% CI from a bootstrap that resamples *groups* within each class (tiles of one
  group are not independent).
* **Grouping.** Folds are grouped by frame when the real side has at least 5 frames,
  otherwise by spatial blocks of 2x2 tiles of a frame; the output says which.
* **Controls**, reported with every score: *power* (a known-distinguishable simulated side,
  by default the preset that made `--sim`, against the same real tiles: it must reach
  0.90 or the detector cannot tell anything apart at this n) and *floor* (real against
  real: two disjoint halves of the real frames, interleaved by frame, or the left and
  right halves of a single frame).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["DETECTORS", "GROUPINGS", "Side", "load_side", "render_preset_side", "tile_features",
           "cross_validate", "group_bootstrap", "realism", "format_table", "POWER_MIN"]

DETECTORS = ("stats", "spectrum", "cnn")
GROUPINGS = ("frame", "block2x2")
POWER_MIN = 0.90
MIN_FRAMES_FOR_FRAME_GROUPS = 5
SAME_SIZE = 0.02  # pixel sizes within 2% count as one


# --------------------------------------------------------------------------- sides


@dataclass
class Side:
    """The tiles of one side. `frame[i]`: the frame tile i comes from; `grid[i]`: its
    (row, col) index in the frame's tile grid; `pixel_nm`: after resampling (None if
    unknown); `preset`: the simulator preset that made it, if recorded."""

    name: str
    source: str
    tiles: np.ndarray
    frame: np.ndarray
    grid: np.ndarray
    pixel_nm: float | None
    frame_shapes: dict[str, tuple[int, int]] = field(default_factory=dict)
    preset: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(len(self.tiles))

    @property
    def n_frames(self) -> int:
        return int(len(np.unique(self.frame)))

    def groups(self, grouping: str) -> np.ndarray:
        if grouping == "frame":
            return np.array([f"{self.name}:{f}" for f in self.frame])
        return np.array([f"{self.name}:{f}:{r // 2}:{c // 2}" for f, (r, c) in zip(self.frame, self.grid)])

    def subset(self, idx) -> "Side":
        idx = np.asarray(idx, dtype=np.int64)
        return Side(self.name, self.source, self.tiles[idx], self.frame[idx], self.grid[idx], self.pixel_nm,
                    dict(self.frame_shapes), self.preset, list(self.notes))


def _resample(img: np.ndarray, factor: float) -> np.ndarray:
    from skimage.transform import rescale

    return rescale(img.astype(np.float32), factor, order=1, anti_aliasing=factor < 1, preserve_range=True,
                   mode="reflect").astype(np.float32)


def _read_frames(src: Path, what: str, split: str | None) -> tuple[list[tuple[str, np.ndarray, float | None, tuple[int, int]]], str | None, list[str]]:
    """[(frame id, image, pixel nm or None, (row, col) offset in its frame)], preset, notes."""
    from semlab import io
    from semlab.data import sources

    notes: list[str] = []
    if (src / "dataset.json").is_file():
        from semlab.data.datasets import load_dataset

        ds = load_dataset(src)
        info = json.loads((src / "dataset.json").read_text())
        preset = (info.get("identity") or {}).get("preset")
        px = info.get("pixel_size_nm")
        rows = [r for r in ds.rows if split is None or r.get("split") == split]
        if not rows:
            raise ValueError(f"{what} {src}: the dataset has no usable items"
                             + (f" in split {split!r}" if split else ""))
        out = []
        for r in rows:
            p = ds.params(r["id"])
            out.append((r.get("group") or r["id"], ds.image(r["id"]), p.get("pixel_size_nm") or px,
                        (int(p.get("row") or 0), int(p.get("col") or 0))))
        return out, preset, notes
    files = sources.list_images(src)  # FileNotFoundError / "no images found in ..."
    keep = files
    if split is not None:
        from semlab.data.samples import import_splits

        ids = {f: f.relative_to(src).as_posix() if src.is_dir() else f.name for f in files}
        of = import_splits(ids, src)
        keep = [f for f in files if of.get(ids[f]) == split]
        if not keep:
            raise ValueError(f"{what} {src}: no frame in split {split!r} (the stored split of the packaged "
                             f"sets, or a per-folder frame split)")
        notes.append(f"{what}: split {split}: {', '.join(f.name for f in keep)}")
    out = []
    for f in keep:
        img = io.read_image(f)
        img, bar = sources.crop_databar(img, "auto")
        if bar is not None:
            notes.append(f"{what}: {f.name}: data bar cropped at row {bar}")
        px = io.read_image_meta(f).get("pixel_size_nm")
        out.append((f.relative_to(src).as_posix() if src.is_dir() else f.name, img, px, (0, 0)))
    return out, None, notes


def load_side(src, *, tile: int = 128, name: str = "side", pixel_nm: float | None = None,
              split: str | None = None) -> Side:
    """Tiles of a folder of images or a semlab dataset, resampled to `pixel_nm` when both
    sizes are known and differ by more than 2% (see the module doc). `split` keeps only
    frames of that stored split. ValueError (one line, naming the folder or file) for an
    empty folder or when no frame holds one tile."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"{name} side not found: {src}")
    frames, preset, notes = _read_frames(src, name, split)
    sizes = [p for _, _, p, _ in frames if p]
    target = pixel_nm
    if target is None and sizes:
        target = float(np.median(sizes))
        if max(sizes) / min(sizes) > 1 + SAME_SIZE:
            notes.append(f"{name}: pixel sizes {min(sizes):.4g}-{max(sizes):.4g} nm: resampled to their median "
                         f"{target:.4g} nm")
    tiles, frame, grid, shapes, small = [], [], [], {}, []
    resampled = set()
    for fid, img, px, (r0, c0) in frames:
        if px and target and abs(px / target - 1) > SAME_SIZE:
            img = _resample(img, px / target)
            resampled.add(f"{px:.4g}")
        h, w = img.shape
        shapes[fid] = (h, w)
        if h < tile or w < tile:
            small.append(f"{fid} ({h}x{w} px)")
            continue
        for r in range(0, h - tile + 1, tile):
            for c in range(0, w - tile + 1, tile):
                tiles.append(np.ascontiguousarray(img[r:r + tile, c:c + tile], dtype=np.float32))
                frame.append(fid)
                grid.append(((r0 + r) // tile, (c0 + c) // tile))
    if resampled:
        notes.append(f"{name}: resampled from {', '.join(sorted(resampled))} nm to {target:.4g} nm per pixel")
    if small:
        msg = f"{len(small)} image(s) smaller than one {tile}-px tile: {', '.join(small[:5])}"
        if not tiles:
            raise ValueError(f"{name} side {src}: {msg}; nothing to compare (use a smaller --tile)")
        notes.append(f"{name}: skipped {msg}")
    if not tiles:
        raise ValueError(f"{name} side {src}: no tiles")
    unknown = sum(1 for _, _, p, _ in frames if not p)
    if unknown and pixel_nm:
        notes.append(f"{name}: {unknown} frame(s) of unknown pixel size used as they are")
    return Side(name, str(src), np.stack(tiles), np.array(frame, dtype=str), np.array(grid, dtype=np.int64),
                target if sizes else None, shapes, preset, notes)


def render_preset_side(preset, *, like: Side, tile: int = 128, name: str = "sim", seed: int = 0,
                       n_tiles: int | None = None, max_side: int = 1024) -> Side:
    """The simulator's `preset` rendered at the pixel size of `like` (the real side), in
    frames of the real frames' median size (at most `max_side` px a side), enough frames
    for `n_tiles` tiles (default: as many as `like`) and at least as many frames as
    `like` has, and as the preset has looks (frame k uses look k mod n, `semlab.data.looks`)."""
    from semlab.data import looks
    from semlab.data.simulate import SIMULATOR_VERSION, get_preset, simulate

    preset = get_preset(preset)  # KeyError naming the valid presets; a Preset object is used as is
    preset_name, n_looks = preset.name, looks.count(preset)
    shapes = np.array(list(like.frame_shapes.values()) or [(4 * tile, 4 * tile)])
    h = int(min(max(np.median(shapes[:, 0]), tile), max_side)) // tile * tile
    w = int(min(max(np.median(shapes[:, 1]), tile), max_side)) // tile * tile
    per = (h // tile) * (w // tile)
    want = n_tiles or like.n
    n_frames = max(like.n_frames, math.ceil(want / per), n_looks)
    tiles, frame, grid = [], [], []
    for k in range(n_frames):
        img = simulate(looks.pin(preset, k % n_looks) if n_looks else preset, (h, w), (seed, 17, k),
                       pixel_nm=like.pixel_nm, with_contours=False).image
        for r in range(0, h, tile):
            for c in range(0, w, tile):
                tiles.append(img[r:r + tile, c:c + tile])
                frame.append(f"{preset_name}-{k}")
                grid.append((r // tile, c // tile))
    px = f"{like.pixel_nm:.4g} nm" if like.pixel_nm else "the preset's own pixel size (real size unknown)"
    notes = [f"{name}: preset {preset_name} (simulator v{SIMULATOR_VERSION}) rendered in {n_frames} frames of "
             f"{h}x{w} px at {px}" + (f", each of its {n_looks} frame looks in turn" if n_looks else "")]
    return Side(name, f"preset:{preset_name}", np.stack(tiles).astype(np.float32), np.array(frame, dtype=str),
                np.array(grid, dtype=np.int64), like.pixel_nm, {f: (h, w) for f in set(frame)}, preset_name, notes)


# --------------------------------------------------------------------------- features


def tile_features(tiles: np.ndarray, *, kind: str = "stats", bins: int = 32) -> np.ndarray:
    """Per-tile features: "spectrum" = log10 radial power spectrum; "stats" = that plus the
    intensity histogram (`bins` bins on [0, 1]) and the gradient-magnitude histogram
    (`bins` bins on [0, 0.5], the last bin holding everything above), both as square
    roots of frequencies (variance-stabilised)."""
    from semlab.forensics.spectrum import spectral_features

    x = np.asarray(tiles, dtype=np.float32)
    _, spec = spectral_features(x)
    if kind == "spectrum":
        return spec
    if kind != "stats":
        raise ValueError(f"unknown feature kind {kind!r}")
    n = len(x)
    hi = np.stack([np.histogram(t, bins=bins, range=(0.0, 1.0))[0] for t in np.clip(x, 0, 1)]).astype(np.float64)
    gy, gx = np.gradient(x, axis=(1, 2))
    g = np.minimum(np.hypot(gy, gx), 0.5 - 1e-6).reshape(n, -1)
    hg = np.stack([np.histogram(t, bins=bins, range=(0.0, 0.5))[0] for t in g]).astype(np.float64)
    px = x.shape[1] * x.shape[2]
    return np.concatenate([spec, np.sqrt(hi / px), np.sqrt(hg / px)], axis=1)


# --------------------------------------------------------------------------- scoring


def group_bootstrap(labels, scores, groups, *, n_boot: int = 1000, level: float = 0.95,
                    seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """{"balanced_accuracy": (value, lo, hi), "auc": (...)}: point values (threshold 0) and
    percentile CIs from resampling whole groups with replacement within each class."""
    from scipy.stats import rankdata
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    y = np.asarray(labels).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64)
    g = np.asarray(groups)
    point = {"balanced_accuracy": float(balanced_accuracy_score(y, s > 0)), "auc": float(roc_auc_score(y, s))}
    rng = np.random.default_rng(seed)
    members = {c: [np.flatnonzero((y == c) & (g == k)) for k in np.unique(g[y == c])] for c in (0, 1)}
    ba, auc = np.empty(n_boot), np.empty(n_boot)
    for b in range(n_boot):
        pick = {c: np.concatenate([members[c][i] for i in rng.integers(0, len(members[c]), len(members[c]))])
                for c in (0, 1)}
        p0, p1 = s[pick[0]], s[pick[1]]
        ba[b] = ((p1 > 0).mean() + (p0 <= 0).mean()) / 2
        r = rankdata(np.concatenate([p1, p0]))
        n1, n0 = len(p1), len(p0)
        auc[b] = (r[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    a = (1 - level) / 2
    return {"balanced_accuracy": (point["balanced_accuracy"], *map(float, np.quantile(ba, [a, 1 - a]))),
            "auc": (point["auc"], *map(float, np.quantile(auc, [a, 1 - a])))}


def _balanced(a: Side, b: Side, max_tiles: int, rng: np.random.Generator) -> tuple[Side, Side]:
    n = min(a.n, b.n, max_tiles)
    pick = lambda s: s.subset(np.sort(rng.choice(s.n, n, replace=False))) if s.n > n else s  # noqa: E731
    return pick(a), pick(b)


def cross_validate(neg: Side, pos: Side, *, grouping: str, detectors: Sequence[str] = DETECTORS,
                   n_splits: int = 5, seed: int = 0, epochs: int = 4, crop: int | None = 64,
                   max_tiles: int = 300, n_boot: int = 1000) -> dict[str, dict[str, Any]]:
    """{detector: {balanced_accuracy, ci_low, ci_high, auc, auc_ci_low, auc_ci_high, n_pos,
    n_neg, n_splits}} of `pos` (label 1, e.g. simulated) against `neg` (label 0, real),
    balanced and grouped as in the module doc."""
    from semlab.forensics.detector import grouped_folds

    if grouping not in GROUPINGS:
        raise ValueError(f"grouping must be one of {GROUPINGS}, got {grouping!r}")
    bad = [d for d in detectors if d not in DETECTORS]
    if bad or not detectors:
        raise ValueError(f"unknown detector(s) {bad}; valid: {', '.join(DETECTORS)}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    a, b = _balanced(neg, pos, max_tiles, rng)
    x = np.concatenate([a.tiles, b.tiles])
    y = np.concatenate([np.zeros(a.n, np.int64), np.ones(b.n, np.int64)])
    g = np.concatenate([a.groups(grouping), b.groups(grouping)])
    k = min(n_splits, len(np.unique(a.groups(grouping))), len(np.unique(b.groups(grouping))))
    if k < 2:
        raise ValueError(f"{grouping} grouping gives fewer than 2 groups per side ({a.name}: "
                         f"{len(np.unique(a.groups(grouping)))}, {b.name}: {len(np.unique(b.groups(grouping)))}); "
                         "use more frames or a smaller --tile")
    folds = grouped_folds(y, g, n_splits=k, seed=seed)
    feats = {}
    out = {}
    for det in detectors:
        scores = np.full(len(y), np.nan)
        if det in ("stats", "spectrum"):
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            f = feats.setdefault(det, tile_features(x, kind=det))
            for tr, te in folds:
                clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
                clf.fit(f[tr], y[tr])
                scores[te] = clf.decision_function(f[te])
        else:
            from semlab.forensics.detector import predict_logits, train_detector

            for i, (tr, te) in enumerate(folds):
                model, _ = train_detector(x[tr], y[tr], detector="small_cnn", epochs=epochs,
                                          crop=crop if crop and crop < x.shape[1] else None,
                                          seed=seed * 1000 + i)
                scores[te] = predict_logits(model, x[te])
        m = group_bootstrap(y, scores, g, n_boot=n_boot, seed=seed)
        out[det] = {"balanced_accuracy": m["balanced_accuracy"][0], "ci_low": m["balanced_accuracy"][1],
                    "ci_high": m["balanced_accuracy"][2], "auc": m["auc"][0], "auc_ci_low": m["auc"][1],
                    "auc_ci_high": m["auc"][2], "n_pos": b.n, "n_neg": a.n, "n_splits": k}
    return out


# --------------------------------------------------------------------------- the protocol


def _halves(real: Side) -> tuple[Side, Side, str]:
    """Two disjoint halves of the real tiles: frames interleaved (sorted names, even vs
    odd), or a single frame's left and right halves of tile columns."""
    frames = sorted(np.unique(real.frame))
    if len(frames) >= 2:
        a_frames = set(frames[0::2])
        ia = np.flatnonzero(np.isin(real.frame, list(a_frames)))
        ib = np.flatnonzero(~np.isin(real.frame, list(a_frames)))
        how = f"frames {', '.join(frames[0::2])} vs {', '.join(frames[1::2])}"
    else:
        col = real.grid[:, 1]
        mid = (col.max() + 1) / 2
        ia, ib = np.flatnonzero(col < mid), np.flatnonzero(col >= mid)
        how = f"left vs right half of tile columns of {frames[0]}"
    a, b = real.subset(ia), real.subset(ib)
    a.name, b.name = "real-A", "real-B"
    return a, b, how


def _side(spec: str, *, like: Side | None, tile: int, name: str, split: str | None, seed: int) -> Side:
    if spec.startswith("preset:"):
        if like is None:
            raise ValueError(f"{name}: preset:NAME needs a real side to take its pixel and frame size from")
        return render_preset_side(spec.split(":", 1)[1], like=like, tile=tile, name=name, seed=seed)
    return load_side(spec, tile=tile, name=name, pixel_nm=like.pixel_nm if like else None, split=split)


def realism(sim, real, *, tile: int = 128, detectors: Sequence[str] = DETECTORS, power: str | None = "auto",
            real_split: str | None = None, seed: int = 0, epochs: int = 4, max_tiles: int = 300,
            n_splits: int = 5, n_boot: int = 1000, progress: bool = False) -> dict[str, Any]:
    """The realism protocol (module doc): `sim` and `real` are folders or datasets (`sim`
    may be "preset:NAME"). `power`: "auto" (the preset recorded by the sim side, rendered
    at the real pixel size; reused as is when the sim side is that very preset), a folder,
    "preset:NAME", or None (not run). Returns {"records": [one dict per detector], "notes":
    [...], "grouping": ..., ...}."""
    if int(tile) != tile or tile < 16:
        raise ValueError(f"--tile must be an integer >= 16 px, got {tile!r}")
    bad = [d for d in detectors if d not in DETECTORS]
    if bad or not detectors:
        raise ValueError(f"unknown detector(s) {bad}; valid: {', '.join(DETECTORS)}")
    say = print if progress else (lambda *a, **k: None)
    real_side = load_side(real, tile=tile, name="real", split=real_split)
    sim_side = _side(str(sim), like=real_side, tile=tile, name="sim", split=None, seed=seed)
    grouping = "frame" if real_side.n_frames >= MIN_FRAMES_FOR_FRAME_GROUPS else "block2x2"
    notes = real_side.notes + sim_side.notes
    notes.append(f"grouping: {'by frame' if grouping == 'frame' else 'by spatial blocks of 2x2 tiles'} "
                 f"(the real side has {real_side.n_frames} frame(s); frames are used from "
                 f"{MIN_FRAMES_FOR_FRAME_GROUPS})")
    if sim_side.pixel_nm is None or real_side.pixel_nm is None:
        notes.append("scale: a side's pixel size is unknown, tiles are compared at their own pixel sizes")
    kw = dict(grouping=grouping, detectors=detectors, n_splits=n_splits, seed=seed, epochs=epochs,
              max_tiles=max_tiles, n_boot=n_boot)
    say(f"realism: {sim_side.n} sim tiles vs {real_side.n} real tiles ({real_side.n_frames} frames), {grouping}")
    main = cross_validate(real_side, sim_side, **kw)

    power_src = None
    if power == "auto":
        if sim_side.preset:
            power_src = f"preset:{sim_side.preset}"
        else:
            notes.append("power control not run: the sim side records no preset; give --power preset:NAME "
                         "(the pre-issue preset) or a folder")
    elif power:
        power_src = str(power)
    else:
        notes.append("power control not run: none requested")
    pw = None
    if power_src:
        if power_src == str(sim) or (power_src.startswith("preset:") and sim_side.source == power_src):
            pw = main
            notes.append(f"power control: {power_src}, the sim side itself (its scores are the power control)")
        else:
            say(f"realism: power control {power_src}")
            pside = _side(power_src, like=real_side, tile=tile, name="power", split=None, seed=seed + 1)
            notes += pside.notes
            pw = cross_validate(real_side, pside, **kw)
    a, b, how = _halves(real_side)
    notes.append(f"floor: real vs real, {how}")
    say(f"realism: floor {how}")
    try:
        fl = cross_validate(a, b, **kw)
    except ValueError as exc:
        fl = None
        notes.append(f"floor not measured: {exc}")
    records = []
    for det in detectors:
        m = main[det]
        rec = {"detector": det, "balanced_accuracy": m["balanced_accuracy"], "auc": m["auc"],
               "ci_low": m["ci_low"], "ci_high": m["ci_high"], "auc_ci_low": m["auc_ci_low"],
               "auc_ci_high": m["auc_ci_high"], "n_sim": m["n_pos"], "n_real": m["n_neg"],
               "n_frames_real": real_side.n_frames, "tile": int(tile), "pixel_nm": real_side.pixel_nm,
               "grouping": grouping, "n_splits": m["n_splits"], "sim": sim_side.source, "real": real_side.source,
               "real_split": real_split}
        if pw is not None:
            p = pw[det]
            rec["power"] = {"source": power_src, "balanced_accuracy": p["balanced_accuracy"], "ci_low": p["ci_low"],
                            "ci_high": p["ci_high"], "auc": p["auc"], "n": p["n_pos"],
                            "ok": bool(p["balanced_accuracy"] >= POWER_MIN)}
        else:
            rec["power"] = None
        if fl is not None:
            f = fl[det]
            rec["floor"] = {"halves": how, "balanced_accuracy": f["balanced_accuracy"], "ci_low": f["ci_low"],
                            "ci_high": f["ci_high"], "auc": f["auc"], "n": f["n_pos"]}
        else:
            rec["floor"] = None
        records.append(rec)
    for r in records:
        if r["power"] is not None and not r["power"]["ok"]:
            notes.append(f"{r['detector']}: power control {r['power']['balanced_accuracy']:.3f} < {POWER_MIN}: "
                         f"this detector cannot tell a known difference apart at this n; its score says little")
    return {"records": records, "notes": notes, "grouping": grouping, "tile": int(tile),
            "pixel_nm": real_side.pixel_nm}


def _ci(v: float, lo: float, hi: float) -> str:
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def format_table(result: dict[str, Any]) -> str:
    """A Markdown table of the records, then the notes."""
    from semlab.textfmt import md_escape

    lines = ["| detector | balanced accuracy [95% CI] | AUC [95% CI] | power | floor | n sim / real |",
             "|---|---|---|---|---|---|"]
    for r in result["records"]:
        p, f = r.get("power"), r.get("floor")
        ptxt = _ci(p["balanced_accuracy"], p["ci_low"], p["ci_high"]) + ("" if p["ok"] else " (LOW)") if p else "not run"
        ftxt = _ci(f["balanced_accuracy"], f["ci_low"], f["ci_high"]) if f else "not measured"
        lines.append(f"| {md_escape(r['detector'])} | {_ci(r['balanced_accuracy'], r['ci_low'], r['ci_high'])} | "
                     f"{_ci(r['auc'], r['auc_ci_low'], r['auc_ci_high'])} | {ptxt} | {ftxt} | "
                     f"{r['n_sim']} / {r['n_real']} |")
    px = result.get("pixel_nm")
    lines.append("")
    lines.append(f"tile {result['tile']} px at {f'{px:.4g} nm/px' if px else 'unknown pixel size'}; "
                 f"grouping: {result['grouping']}")
    lines += [f"- {n}" for n in result["notes"]]
    return "\n".join(lines)


def _preset_of(spec):
    """A preset name, a `Preset`, or a preset file (.yaml/.yml/.json, `semlab fit-sim`)."""
    if isinstance(spec, (str, Path)) and str(spec).lower().endswith((".yaml", ".yml", ".json")):
        from semlab.data.presetfile import load_preset_file

        return load_preset_file(spec)
    return spec


def compare_presets(real, presets: Mapping[str, Any], *, tile: int = 128, detectors: Sequence[str] = ("stats", "spectrum"),
                    real_split: str | None = "test", seed: int = 0, max_tiles: int = 200, n_splits: int = 5,
                    n_boot: int = 500, epochs: int = 4) -> dict[str, Any]:
    """The realism table of several presets against one real set: for each `presets`
    entry (label -> preset name, `Preset` or preset file) the detectors' balanced accuracy
    with CIs, rendered at the real side's pixel and frame size, then the real-vs-real floor.
    `real_split` keeps the frames of that stored split (default: test)."""
    real_side = load_side(real, tile=tile, name="real", split=real_split)
    grouping = "frame" if real_side.n_frames >= MIN_FRAMES_FOR_FRAME_GROUPS else "block2x2"
    kw = dict(grouping=grouping, detectors=detectors, n_splits=n_splits, seed=seed, epochs=epochs,
              max_tiles=max_tiles, n_boot=n_boot)
    rows, notes = [], list(real_side.notes)
    for label, spec in presets.items():
        side = render_preset_side(_preset_of(spec), like=real_side, tile=tile, name=str(label), seed=seed)
        m = cross_validate(real_side, side, **kw)
        rows.append({"label": str(label), "preset": side.preset, "n_sim": side.n, **{d: m[d] for d in detectors}})
    a, b, how = _halves(real_side)
    try:
        fl = cross_validate(a, b, **kw)
        rows.append({"label": "real vs real (floor)", "preset": None, "n_sim": b.n, **{d: fl[d] for d in detectors}})
        notes.append(f"floor: {how}")
    except ValueError as exc:
        notes.append(f"floor not measured: {exc}")
    return {"rows": rows, "detectors": list(detectors), "grouping": grouping, "tile": int(tile),
            "pixel_nm": real_side.pixel_nm, "n_real": real_side.n, "n_frames": real_side.n_frames,
            "frames": sorted(set(real_side.frame.tolist())), "real": str(real), "real_split": real_split,
            "notes": notes}


def compare_markdown(result: Mapping[str, Any]) -> str:
    """`compare_presets` as a Markdown table: one row per preset and the floor, one column
    per detector (balanced accuracy [95% CI]), then n, frames and grouping."""
    from semlab.textfmt import md_escape

    dets = result["detectors"]
    lines = ["| preset | " + " | ".join(f"{md_escape(d)} balanced accuracy [95% CI]" for d in dets) + " | n sim |",
             "|---|" + "---|" * (len(dets) + 1)]
    for r in result["rows"]:
        cells = [_ci(r[d]["balanced_accuracy"], r[d]["ci_low"], r[d]["ci_high"]) for d in dets]
        lines.append(f"| {md_escape(r['label'])} | " + " | ".join(cells) + f" | {r['n_sim']} |")
    px = result.get("pixel_nm")
    lines.append("")
    lines.append(f"Real side: {md_escape(Path(result['real']).name)}, {result['real_split'] or 'all'} frames "
                 f"({md_escape(', '.join(result['frames']))}): {result['n_real']} tiles of {result['tile']} px of "
                 f"{result['n_frames']} frame(s) at {f'{px:.4g} nm/px' if px else 'unknown pixel size'}; folds "
                 f"grouped by {'frame' if result['grouping'] == 'frame' else 'blocks of 2x2 tiles'}. 0.5 is chance.")
    return "\n".join(lines)
