"""The SegSEM experiment the reviewers asked for: k-fold CV on 60 simulated images,
out-of-distribution tests, baselines, and ablations of the fallback and its threshold.

**Data** (`build_items`, `build_ood_items`): `n_per_preset` images of each of the
`ic-metal` and `line-space` presets (30 + 30 = 60 at the paper's scale), simulated at
`size` px with their exact pattern contours (`semlab.data.simulate`), seeds
`(seed, 0, preset index, i)`. Folds are drawn per preset (each fold holds the same
number of images of each preset). Out-of-distribution sets use other seeds and move
one imaging or layout parameter outside the training range (`OOD_VARIANTS`; each image
draws its value from the OOD range): low dose (more shot noise), stronger beam blur,
more detector noise, smaller and larger features (pitch).

**Methods** (`METHODS`; rows of every table):

| key | what |
|---|---|
| `classical` | the classical fallback alone, its edge offset calibrated on the fold's training images |
| `sam2_zero_shot` | pretrained SAM2, prompted from the classical pre-segmentation, every structure from SAM2 |
| `sam2_decoder`, `sam2_full`, `sam2_encoder` | SAM2 fine-tuned on the fold's training images (mask decoder only / everything / image encoder only = SegSEM) |
| `hybrid` | SegSEM: the encoder-fine-tuned SAM2 where confident, else the fallback, threshold calibrated on the fold's validation images |
| `hybrid_zero_shot` | the same with zero-shot SAM2 |

`hybrid` vs `sam2_encoder` vs `classical` is the ablation of the fallback (hybrid vs
each part alone); the threshold sweep (`ExperimentResult.sweep`) is the ablation of the
threshold: fallback rate and pooled |EPE| of the hybrid's pattern structures at every
threshold, from the same SAM2 answers (`HybridResult.rechoose`). A SAM2 method runs only
when the SAM2 weights are found (`sam2_unavailable_reason`) and load (`Sam2Arms.check`:
semlab reads them with `weights_only=True` and loads them strictly, so a truncated,
foreign or unsafe file is a reason like a missing one); otherwise its row reads
"unavailable: <reason>" -- never a number from random weights -- and the hybrid rows
are computed honestly as what they are without SAM2: every structure from the
fallback, with that reason.

**Per fold** k: the classical edge offset is fitted on the training images (the
least-squares fit of `calibrate_edge_offset`, computed from per-image sums of one
uncalibrated extraction per image, which every fold reuses); `n_val` of the training
images (stratified by preset) are held out of fine-tuning for early stopping and for
calibrating the hybrid's threshold (`calibrate_threshold`, objective: the mean
per-structure |EPE| in nm); the fold's test images are scored with `score_contours`
(nm). Out-of-distribution sets are scored with fold 0's models (classical offset, SAM2
weights, threshold): the same models whose in-distribution scores are fold 0's.

**Cost.** Without weights the `cpu` profile takes about 1.5 minutes (classical
extraction and scoring of 60 + 100 images at 256 px). With weights every SAM2 method
adds one image embedding per test and validation image (0.25-0.4 s at 512 px on an idle
2-core CPU, `semlab bench segsem`) plus decoding, contour extraction and scoring (about
0.5 s), and every fine-tuned one `sam2_steps` optimizer steps per fold and mode (1.1-1.8 s
each at 512 px, 4-7 s at 1024) plus writing its checkpoint: roughly
`folds x 3 modes x sam2_steps x 1.5 s + (4 models x (60 + OOD images) + 2 x folds x n_val) x 0.9 s`,
about 15-20 minutes for the `cpu` profile at 10 steps on an idle machine. Measured:
fold 0 of the `cpu` profile with a randomly initialised hiera-tiny took 19 minutes (5 of
them fine-tuning) while other jobs kept the 2 cores busy (load ~3.5). `sam2_steps`
bounds the training part; `full` trains to early stopping and is meant for a GPU.

**Resumable**: the per-image uncalibrated statistics, every fold's results and every
OOD set's results are written atomically under `out/` as they finish, each with a key
of the configuration, the simulator version and whether SAM2 was available; a re-run
with the same key reuses them (fine-tuning itself also resumes from its checkpoints).
This module runs it; the pieces live beside it: `experiment_config` (profiles, settings,
the simulated images and folds), `sam2_arms` (pretrained and fine-tuned SAM2 models),
`experiment_result` (`ExperimentResult`: tables, sweeps, re-predictions) and
`real_lines` (line statistics of real images). Their public names are importable from
here too.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from semlab import labels as L
from semlab.contours.classical import ContourSettings, extract_classical_contours
from semlab.contours.experiment_config import (KEYS, METHOD_LABELS, METHODS, MODEL_OF, OOD_VARIANTS, PRESETS,
                                               PROFILES, ExperimentConfig, Item, assign_folds, build_items,
                                               build_ood_items, default_experiment_dir, experiment_config,
                                               ood_examples, test_set_label, val_ids)
from semlab.contours.experiment_result import ExperimentResult, segsem_metrics_doc, stored_threshold, sweep_curve
from semlab.contours.hybrid import HybridExtractor, HybridResult, sam2_unavailable_reason
from semlab.contours.metrics import edge_placement_error, score_contours
from semlab.contours.real_lines import RealLines, measure_real_lines
from semlab.contours.sam2_arms import Sam2Arms

__all__ = ["PROFILES", "PRESETS", "METHODS", "METHOD_LABELS", "MODEL_OF", "OOD_VARIANTS", "KEYS", "ExperimentConfig",
           "Item", "ExperimentResult", "experiment_config", "build_items", "build_ood_items", "ood_examples",
           "assign_folds", "run_experiment", "default_experiment_dir", "RealLines", "measure_real_lines",
           "test_set_label", "sweep_curve", "structure_errors", "segsem_metrics_doc"]


# --------------------------------------------------------------------------- scoring


def _score(contours: Sequence[np.ndarray], item: Item) -> tuple[dict, np.ndarray]:
    """score_contours in nm (plain floats), and the signed per-point EPE in nm."""
    ee = edge_placement_error(contours, item.contours, shape=item.image.shape)  # computed once, used twice
    row = score_contours(contours, item.contours, item.image.shape, pixel_nm=item.pixel_nm, edge_errors=ee)
    keep = {k: (float(v) if isinstance(v, (int, float, np.floating)) and k != "n_points" else v)
            for k, v in row.items() if k not in ("units", "pixel_nm")}
    return keep, (ee.epe * item.pixel_nm).astype(np.float32)


def _per_structure_epe(contour_sets: Sequence[Sequence[np.ndarray] | None], item: Item) -> np.ndarray:
    """(n, 2): sum of |EPE| (nm) and point count per structure, in one EPE call (the
    contours' owners are tracked through `EdgeErrors.contour`). None sets give zeros."""
    flat, owner = [], []
    for j, cs in enumerate(contour_sets):
        for c in cs or []:
            flat.append(c)
            owner.append(j)
    out = np.zeros((len(contour_sets), 2))
    if not flat:
        return out
    ee = edge_placement_error(flat, item.contours, shape=item.image.shape)
    ok = np.isfinite(ee.epe)
    who = np.asarray(owner)[ee.contour[ok].astype(int)]
    out[:, 0] = np.bincount(who, weights=np.abs(ee.epe[ok]) * item.pixel_nm, minlength=len(contour_sets))
    out[:, 1] = np.bincount(who, minlength=len(contour_sets))
    return out


def _structure_records(hr: HybridResult, item: Item, fb: np.ndarray | None = None) -> list[dict]:
    """Per pattern structure: confidence, whether SAM2 gave a contour, and the |EPE| sums
    and counts of both candidates (for threshold calibration and sweeps)."""
    pats = [s for s in hr.structures if s.label == L.PATTERN]
    if fb is None:
        fb = _per_structure_epe([s.fallback_contours for s in pats], item)
    sm = _per_structure_epe([s.sam2_contours for s in pats], item)
    return [{"image": item.id, "id": int(s.id), "confidence": s.confidence, "has_sam2": s.sam2_contours is not None,
             "fb_sum": float(f[0]), "fb_n": int(f[1]), "sam2_sum": float(m[0]), "sam2_n": int(m[1]),
             "px_nm": item.pixel_nm} for s, f, m in zip(pats, fb, sm)]


def structure_errors(recs: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """confidence, SAM2 error and fallback error (mean |EPE| nm) per structure for
    `calibrate_threshold`, mirroring the extractor: without a SAM2 contour the hybrid
    uses the fallback whatever the threshold (SAM2 error := fallback error); a SAM2
    contour without evaluable points costs 10 px. Structures without fallback points
    (nothing to compare) are left out."""
    c, s, f = [], [], []
    for r in recs:
        if r["fb_n"] == 0 or r["confidence"] is None:
            continue
        fe = r["fb_sum"] / r["fb_n"]
        if not r["has_sam2"]:
            se = fe
        elif r["sam2_n"] == 0:
            se = max(10.0 * r["px_nm"], fe)
        else:
            se = r["sam2_sum"] / r["sam2_n"]
        c.append(r["confidence"])
        s.append(se)
        f.append(fe)
    return np.asarray(c, float), np.asarray(s, float), np.asarray(f, float)


def _calibrate(recs: Sequence[dict], default: float) -> dict:
    from semlab.contours.confidence import calibrate_threshold

    c, s, f = structure_errors(recs)
    if c.size == 0:
        return {"threshold": default, "calibrated": False, "n": 0,
                "note": f"no validation structure with a SAM2 answer: default threshold {default}"}
    cal = calibrate_threshold(c, s, f, "min_error")
    return {**cal.as_dict(), "calibrated": True}


# ---------------------------------------------------------------------------- running


def _key(config: ExperimentConfig, sam2_reason: str | None, stage: str) -> str:
    from semlab.data.simulate import SIMULATOR_VERSION

    doc = {"config": config.to_dict(), "sam2": sam2_reason is None, "simulator": SIMULATOR_VERSION,
           "stage": stage, "format": 1}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_stage(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except ValueError:
        return None
    return doc if doc.get("key") == key else None


def _write_epe(path: Path, epe: Mapping[str, list[np.ndarray]]) -> None:
    import io as _io

    from semlab.io import write_bytes_atomic

    buf = _io.BytesIO()
    np.savez_compressed(buf, **{m: (np.concatenate(v) if v else np.zeros(0, np.float32)).astype(np.float32)
                                for m, v in epe.items()})
    write_bytes_atomic(path, buf.getvalue())


def _raw_stats(items: Sequence[Item], base: ContourSettings, out: Path, key: str, progress: bool) -> dict:
    """Per image: sum of the signed EPE (px), count and edge scale of one uncalibrated
    extraction -- all `calibrate_edge_offset` needs, so every fold's offset is a sum over
    its training images."""
    from tqdm.auto import tqdm

    path = out / "classical-raw.json"
    doc = _read_stage(path, key)
    if doc is not None:
        return doc["stats"]
    s0 = replace(base, edge_offset_px=0.0)
    stats = {}
    for it in tqdm(items, desc="uncalibrated classical", disable=not progress):
        res = extract_classical_contours(it.image, s0)
        ee = edge_placement_error(res.contours, it.contours, shape=it.image.shape, spacing_px=0.5,
                                  frame_margin_px=1.0)
        e = ee.epe[np.isfinite(ee.epe)]
        stats[it.id] = {"sum": float(e.sum()), "n": int(e.size), "scale": float(res.scale)}
    from semlab.io import write_json_atomic

    write_json_atomic(path, {"key": key, "stats": stats})
    return stats


def _offset(stats: Mapping[str, dict], ids: Iterable[str]) -> float:
    """The least-squares edge offset of `calibrate_edge_offset` over the images `ids`."""
    num = den = 0.0
    for i in ids:
        s = stats[i]
        num += s["sum"] * s["scale"]
        den += s["n"] * s["scale"] ** 2
    if den == 0:
        raise ValueError("no edge points in the training images: cannot calibrate the edge offset")
    return num / den


def _row(method: str, item: Item, scores: dict, **extra) -> dict:
    return {"method": method, "test_set": item.test_set, "image": item.id, "preset": item.preset,
            "fold": item.fold, **scores, **extra}


def _evaluate(items: Sequence[Item], settings: ContourSettings, config: ExperimentConfig, sam2: Sam2Arms | None,
              models: Mapping[str, Any], thresholds: Mapping[str, float], sam2_reason: str | None,
              progress: bool, desc: str) -> tuple[list[dict], dict[str, list[np.ndarray]], dict[str, list[dict]]]:
    """Score every method on `items`. `models`: {model key: SAM2 model} (empty without
    SAM2); `thresholds`: {model key: hybrid threshold}. Returns per-image rows, signed
    EPE arrays per method and per-structure records per model key."""
    from tqdm.auto import tqdm

    rows: list[dict] = []
    epe: dict[str, list[np.ndarray]] = {m: [] for m in config.methods}
    recs: dict[str, list[dict]] = {k: [] for k in models}
    classical = {}
    fb_struct = {}
    for it in tqdm(items, desc=f"{desc}: classical", disable=not progress):
        cl = extract_classical_contours(it.image, settings, pixel_nm=it.pixel_nm)
        classical[it.id] = cl
        if "classical" in config.methods or not models:
            sc, e = _score(cl.contours, it)
        if "classical" in config.methods:
            rows.append(_row("classical", it, sc, n_structures=len(cl.structures)))
            epe["classical"].append(e)
        if not models:  # no SAM2: the hybrids are the fallback on every structure
            hr = HybridExtractor(None, settings, unavailable_reason=sam2_reason).extract(it.image, classical=cl)
            assert hr.n_sam2 == 0  # so its contours are exactly the classical ones, scored above
            for m in ("hybrid", "hybrid_zero_shot"):
                if m in config.methods:
                    rows.append(_row(m, it, sc, n_structures=len(hr.structures), fallback_rate=hr.fallback_rate))
                    epe[m].append(e)
        else:
            pats = [s for s in cl.structures if s.label == L.PATTERN]
            fb_struct[it.id] = _per_structure_epe([s.contours for s in pats], it)
    for key, net in models.items():
        pred = sam2.predictor(net)
        thr = stored_threshold(thresholds, key, config.default_threshold)
        hy = HybridExtractor(pred, settings, threshold=thr)
        for it in tqdm(items, desc=f"{desc}: SAM2 {key}", disable=not progress):
            hr = hy.extract(it.image, pixel_nm=it.pixel_nm, classical=classical[it.id])
            recs[key] += _structure_records(hr, it, fb_struct[it.id])
            for m in config.sam2_methods:
                if MODEL_OF[m] != key:
                    continue
                if m.startswith("sam2"):
                    sc, e = _score(hr.contours_of("sam2"), it)
                    n_missing = sum(s.sam2_contours is None for s in hr.structures if s.label == L.PATTERN)
                    rows.append(_row(m, it, sc, n_structures=len(hr.structures), sam2_missing=n_missing))
                else:
                    hh = hr.rechoose(thr)
                    sc, e = _score(hh.contours, it)
                    rows.append(_row(m, it, sc, n_structures=len(hh.structures), fallback_rate=hh.fallback_rate,
                                     threshold=hh.threshold))
                epe[m].append(e)
    return rows, epe, recs


def _needed_models(config: ExperimentConfig) -> list[str]:
    out: list[str] = []
    for m in config.sam2_methods:
        if MODEL_OF[m] not in out:
            out.append(MODEL_OF[m])
    return out


def _hybrid_models(config: ExperimentConfig) -> set[str]:
    return {MODEL_OF[m] for m in config.sam2_methods if m.startswith("hybrid")}


def _run_fold(k: int, items: Sequence[Item], stats: dict, config: ExperimentConfig, folder: Path,
              sam2: Sam2Arms | None, sam2_reason: str | None, progress: bool) -> dict:
    t0 = time.perf_counter()
    test = [it for it in items if it.fold == k]
    train = [it for it in items if it.fold != k]
    val_set = set(val_ids(config, items, k))
    offset = _offset(stats, [it.id for it in train])
    settings = replace(config.fallback_settings(), edge_offset_px=offset)
    models, thresholds, calibration, finetune_info = {}, {}, {}, {}
    if sam2 is not None:
        fit = [it for it in train if it.id not in val_set]
        val = [it for it in train if it.id in val_set]
        for key in _needed_models(config):
            net, info = sam2.train(key, k, folder, fit, val)
            finetune_info[key] = info
            if key in _hybrid_models(config):
                _, _, vrecs = _evaluate(val, settings, replace(config, methods=()), sam2, {key: net}, {},
                                        sam2_reason, progress, f"fold {k} validation")
                calibration[key] = _calibrate(vrecs[key], config.default_threshold)
                thresholds[key] = calibration[key]["threshold"]
            models[key] = net
    rows, epe, recs = _evaluate(test, settings, config, sam2, models, thresholds, sam2_reason, progress, f"fold {k}")
    return {"fold": k, "offset_px": offset, "n_test": len(test), "n_train": len(train), "val": sorted(val_set),
            "thresholds": thresholds, "calibration": calibration, "finetune": finetune_info, "rows": rows,
            "structures": recs, "seconds": round(time.perf_counter() - t0, 2)}, epe

def run_experiment(config: ExperimentConfig | str = "cpu", out: str | Path | None = None, *,
                   progress: bool = True) -> ExperimentResult:
    """Run (or finish) the experiment (see the module docstring) into `out` (default
    `default_experiment_dir`). Stages whose results exist with the same key are reused."""
    from tqdm.auto import tqdm

    from semlab.io import write_json_atomic

    t0 = time.perf_counter()
    cfg = experiment_config(config) if isinstance(config, str) else config
    out = Path(out) if out is not None else default_experiment_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    sam2_reason = sam2_unavailable_reason(cfg.sam2_model, cfg.sam2_checkpoint) if cfg.sam2_methods else "not requested"
    sam2 = Sam2Arms(cfg, progress) if sam2_reason is None else None
    if sam2 is not None:
        sam2_reason = sam2.check()  # the file is there: does it load? (else "unavailable: <file> is not ...")
        sam2 = sam2 if sam2_reason is None else None
    write_json_atomic(out / "config.json", {"config": cfg.to_dict(), "sam2_reason": sam2_reason})
    items = build_items(cfg)
    reused: list[str] = []
    stats = _raw_stats(items, cfg.fallback_settings(), out, _key(cfg, sam2_reason, "raw"), progress)
    folds, rows = [], []
    for k in tqdm(range(cfg.folds), desc="folds", disable=not progress):
        folder = out / f"fold-{k}"
        key = _key(cfg, sam2_reason, f"fold-{k}")
        doc = _read_stage(folder / "result.json", key)
        if doc is None or not (folder / "epe.npz").is_file():
            doc, epe = _run_fold(k, items, stats, cfg, folder, sam2, sam2_reason, progress)
            doc["key"] = key
            _write_epe(folder / "epe.npz", epe)
            write_json_atomic(folder / "result.json", doc, indent=None)  # last: marks the fold done
        else:
            reused.append(f"fold-{k}")
        rows += doc.pop("rows")
        folds.append(doc)
    ood: dict[str, dict] = {}
    cache: dict[str, Any] = {}
    fold0 = folds[0]
    settings0 = replace(cfg.fallback_settings(), edge_offset_px=fold0["offset_px"])
    for variant in tqdm(cfg.ood_variants, desc="OOD sets", disable=not progress):
        folder = out / "ood" / variant
        key = _key(cfg, sam2_reason, f"ood-{variant}")
        doc = _read_stage(folder / "result.json", key)
        if doc is None or not (folder / "epe.npz").is_file():
            t1 = time.perf_counter()
            its = build_ood_items(cfg, variant)
            if sam2 is not None:
                for mk in _needed_models(cfg):
                    if mk not in cache:
                        cache[mk] = sam2.load(mk, out / "fold-0")
            vrows, epe, recs = _evaluate(its, settings0, cfg, sam2, cache, fold0["thresholds"], sam2_reason,
                                         progress, f"OOD {variant}")
            doc = {"key": key, "variant": variant, "n": len(its), "rows": vrows, "structures": recs,
                   "params": {it.id: {k: it.params.get(k) for k in ("dose", "psf_sigma_nm", "detector_sigma",
                                                                      "pitch_nm", "pixel_nm")} for it in its},
                   "seconds": round(time.perf_counter() - t1, 2)}
            _write_epe(folder / "epe.npz", epe)
            write_json_atomic(folder / "result.json", doc, indent=None)
        else:
            reused.append(f"ood-{variant}")
        rows += doc.pop("rows")
        ood[variant] = doc
    return ExperimentResult(cfg, out, rows, folds, ood, sam2_reason, reused, round(time.perf_counter() - t0, 2))
