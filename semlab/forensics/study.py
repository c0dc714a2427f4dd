"""The real-vs-generated study of notebook 40: which features give generated SEM images away?

The seed project's classifier told generated from real SEM images apart with 0.96
(Pix2Pix) and 0.99 (CycleGAN) accuracy although similarity metrics looked good. This
module runs the whole question for one dataset, so the notebook holds only calls:

1. `find_generators` / `resolve_dataset`: the run's trained generators (notebooks 20
   and 21, or their standalone run folders) and the dataset they were trained on; what
   is missing is reported, never silently skipped.
2. `train_upsampling_pair`: two short Pix2Pix trainings that differ *only* in the
   upsampling layer ("transposed" vs "resize" convolution; resumable: a finished run
   folder is reused), sized per profile (`PROFILES`).
3. `fake_sets`: for each model, generated images made from the masks of held-out
   splits, paired with the real image of the same mask (group = mask id, so a detector
   never sees one half of a pair in training and the other in testing); the simulator
   rendering the same masks (`semlab.data.simulate.render_mask`) is the physics
   baseline and is always available.
4. `run_detectors`: grouped cross-validation of the small CNN (and ResNet-18 when the
   profile asks for it) and of the spectrum-only logistic regression, on identical
   folds (`semlab.forensics.detector`, `semlab.forensics.spectrum`).
5. `spectral_study`: radial spectra with bands, 2-D difference maps, band power
   ratios, and narrow peaks of each generator's spectrum relative to the real one.
6. `saliency_study`: attribution maps of the out-of-fold detectors on a few correct and
   wrong predictions (methods chosen by cost per profile), region enrichment against
   the masks, and the attribution spectrum.
7. `results_table`, `format_results_table`, `conclusion`, `write_results`,
   `study_metrics_doc`: one row per model and a conclusion written from the numbers, with
   careful wording when confidence intervals include chance or overlap.

The study is split along its dependencies, and every public name stays importable from
here: `semlab.forensics.study_types` (constants, `PROFILES`, `study_settings` and the
dataclasses), this module (the steps above and `write_results`),
`semlab.forensics.results` (`results_table`, `format_results_table`, `study_metrics_doc`)
and `semlab.forensics.narrative` (`conclusion`). results imports study_types, narrative
imports results and study_types, and this module imports all three; none of them
imports this one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from semlab.forensics.narrative import conclusion
from semlab.forensics.results import (METRIC_COLUMNS, domain_keys, format_results_table, results_table,
                                     study_metrics_doc)
from semlab.forensics.study_types import (BANDS, PROFILES, RUN_GENERATORS, SIMULATOR, UPSAMPLING_MODELS, FakeSets,
                                          ModelDetection, SaliencyStudy, SpectralStudy, StudyResults,
                                          TrainedGenerator, on_upsampling_grid, slug, study_settings)

__all__ = [
    "PROFILES",
    "SIMULATOR",
    "RUN_GENERATORS",
    "UPSAMPLING_MODELS",
    "study_settings",
    "slug",
    "resolve_dataset",
    "resolve_domain",
    "find_generators",
    "TrainedGenerator",
    "upsampling_configs",
    "train_upsampling_pair",
    "FakeSets",
    "fake_sets",
    "domain_fake_sets",
    "ModelDetection",
    "run_detectors",
    "SpectralStudy",
    "spectral_study",
    "on_upsampling_grid",
    "SaliencyStudy",
    "saliency_study",
    "StudyResults",
    "results_table",
    "format_results_table",
    "conclusion",
    "write_results",
    "study_metrics_doc",
    "domain_keys",
    "METRIC_COLUMNS",
    "detection_results",
    "pair_summary",
    "detections_summary",
]


# --------------------------------------------------------------------------- inputs


def resolve_dataset(run_dir: str | Path | None = None, dataset: str | Path | None = None, *,
                    preset: str = "ic-metal", profile: str = "cpu", seed: int = 0) -> tuple[Path, str]:
    """``(folder, how it was chosen)``: `dataset` if given; else the dataset notebook 20
    (or 21) of the run trained on, so the generators are scored on the masks of their
    own held-out splits; else the embedded default dataset of the profile."""
    from semlab.runs import run_outputs, step_name

    if dataset:
        p = Path(dataset)
        if not (p / "dataset.json").is_file():
            raise FileNotFoundError(f"{p}: not a semlab dataset (no dataset.json)")
        return p, "given"
    outs = run_outputs(run_dir)
    for nb, _ in RUN_GENERATORS.values():
        for step in (step_name(nb, "sim"), nb):
            d = outs.get(step, {}).get("dataset")
            if d and (Path(d) / "dataset.json").is_file():
                return Path(d), f"the dataset notebook {step} trained on"
    from semlab.data.datasets import make_default_dataset

    return make_default_dataset(preset, profile, seed=seed, progress=False), f"the default {preset} dataset"


def resolve_domain(domain: str, run_dir: str | Path | None = None, dataset: str | Path | None = None, *,
                   preset: str = "ic-metal", profile: str = "cpu", seed: int = 0,
                   real_dir: str = "") -> tuple[Path, str, Any]:
    """``(folder, how it was chosen, RealSplit or None)``: `resolve_dataset` in the
    simulated domain; in the real domain the run's real dataset cut to its main set
    (`semlab.train.realsets.domain_dataset`), the set the real generators trained on."""
    if domain == "sim":
        return (*resolve_dataset(run_dir, dataset, preset=preset, profile=profile, seed=seed), None)
    from semlab.train.realsets import domain_dataset

    folder, real = domain_dataset(domain, run_dir, dataset or "", preset=preset, profile=profile, seed=seed,
                                  real_dir=real_dir)
    return folder, f"real set {real.set} of {'the given dataset' if dataset else 'notebook 10[real]'}", real


def find_generators(run_dir: str | Path | None, profile: str,
                    domain: str = "sim") -> tuple[dict[str, Path], dict[str, str]]:
    """``(found, missing)``: the generators of `domain` of notebooks 20 (Pix2Pix) and 21
    (CycleGAN) (`semlab.runs.find_generator`); `missing` maps a model name to why it is
    not available (which notebook to run)."""
    from semlab.runs import find_generator

    found: dict[str, Path] = {}
    missing: dict[str, str] = {}
    for name, (_nb, kind) in RUN_GENERATORS.items():
        g = find_generator(kind, domain, run_dir, profile)
        if g:
            found[name] = g
        else:
            missing[name] = str(g)
    return found, missing


# --------------------------------------------------------------------------- upsampling pair


def upsampling_configs(dataset: str | Path, out_root: str | Path, *, profile: str = "cpu", seed: int = 0,
                       **overrides: Any):
    """The two Pix2Pix training configurations, identical except for `upsample`
    ({model name: TrainConfig}); settings from `PROFILES` (upsample_*)."""
    from semlab.train import TrainConfig

    s = study_settings(profile, **overrides)
    prec = s["upsample_precision"]
    return {name: TrainConfig(model="pix2pix", dataset=str(dataset), out=str(Path(out_root) / f"pix2pix-{mode}"),
                              seed=seed, n_epochs=s["upsample_epochs"], n_epochs_decay=s["upsample_epochs_decay"],
                              batch_size=s["upsample_batch"], precision=prec, channels_last=prec == "bf16",
                              ngf=s["upsample_ngf"], ndf=s["upsample_ngf"], upsample=mode, checkpoint_every=1000)
            for name, mode in UPSAMPLING_MODELS.items()}


def _read_log(path: Path) -> list[dict]:
    from semlab.io import read_csv

    if not path.is_file():
        return []
    rows = []
    for r in read_csv(path):
        row = {}
        for k, v in r.items():
            try:
                row[k] = float(v) if v not in ("", None) else None
            except ValueError:
                row[k] = v
        rows.append(row)
    return rows


def train_upsampling_pair(dataset: str | Path, out_root: str | Path, *, profile: str = "cpu", seed: int = 0,
                          progress: bool = False, **overrides: Any) -> dict[str, TrainedGenerator]:
    """Train the transposed-conv and the resize-conv Pix2Pix (same data, seed, schedule,
    widths; only the upsampling layer differs) into ``out_root/pix2pix-<mode>``.

    Resumable: a folder whose `config.json` equals the configuration and that holds
    `generator.pt` is reused as is; an interrupted one resumes from its last checkpoint
    (`semlab.train.train`)."""
    import json

    from semlab.train import train

    out: dict[str, TrainedGenerator] = {}
    for name, cfg in upsampling_configs(dataset, out_root, profile=profile, seed=seed, **overrides).items():
        folder = Path(cfg.out)
        gpath = folder / "generator.pt"
        cfg_file = folder / "config.json"
        if gpath.is_file() and cfg_file.is_file() and json.loads(cfg_file.read_text()) == cfg.to_dict():
            log = _read_log(folder / "log.csv")
            secs = float(sum(r.get("seconds") or 0.0 for r in log))
            out[name] = TrainedGenerator(name, cfg.upsample, gpath, len(log), secs, True, log)
            continue
        t0 = time.perf_counter()
        res = train(cfg, progress=progress)
        out[name] = TrainedGenerator(name, cfg.upsample, Path(res.generator_path), res.steps,
                                     time.perf_counter() - t0, False, list(res.log))
    return out


# --------------------------------------------------------------------------- fake sets


def _dataset_preset(ds, fallback: str) -> str:
    return str((ds.info.get("identity") or {}).get("preset") or fallback)


def fake_sets(dataset: str | Path, generators: Mapping[str, str | Path | None], split: str | Sequence[str] = "test",
              *, missing: Mapping[str, str] | None = None, simulator: bool = True, preset: str | None = None,
              seed: int = 0, max_pairs: int | None = None, progress: bool = False, ids: Sequence[str] | None = None,
              pixel_nm: float | None = None, reuse: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> FakeSets:
    """For each generator (name -> generator.pt or checkpoint; None = missing), the images
    it makes from the masks of `split` (one name or several), paired with the dataset's
    real images; plus, with `simulator`, `SIMULATOR`: the simulator's image formation
    applied to the same masks (`render_mask`, the preset of the dataset unless `preset`
    is given, imaging parameters drawn per image from its own seed, as a generator
    would have to choose them). `ids` (instead of the splits' ids) names the items;
    `pixel_nm` the baseline's pixel size (default: the dataset's). `reuse`: images this
    run already generated ({model: {mask sha256: image}}, `semlab.metrics.tables.
    reusable_images`: same generator file and seed), taken instead of generated again.

    A generator that cannot be loaded or was trained at another image size is listed in
    `missing` with the reason instead of stopping the study.
    """
    from semlab.data.datasets import load_dataset
    from semlab.data.simulate import render_mask
    from semlab.metrics.tables import mask_key
    from semlab.train.generate import Generator

    ds = load_dataset(dataset)
    splits = (split,) if isinstance(split, str) else tuple(split)
    if ids is None:
        ids = [i for s in splits for i in ds.split(s)]
    ids = list(ids)
    if max_pairs is not None:
        ids = ids[: int(max_pairs)]
    if not ids:
        raise ValueError(f"{dataset}: no images in split(s) {', '.join(splits)}")
    if not ds.labeled:
        raise ValueError(f"{dataset}: no masks; generated images are made from masks (see `semlab segment`)")
    real = np.stack([ds.image(i) for i in ids]).astype(np.float32)
    masks = np.stack([ds.mask(i) for i in ids])
    size = real.shape[1]
    fakes: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    gone: dict[str, str] = dict(missing or {})
    seconds: dict[str, float] = {}
    for name, path in generators.items():
        if path is None:
            gone.setdefault(name, "no generator given")
            continue
        t0 = time.perf_counter()
        try:
            gen = Generator(path)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            gone[name] = f"{path}: cannot be loaded ({type(exc).__name__}: {exc})"
            continue
        if gen.size != size or real.shape[1] != real.shape[2]:
            gone[name] = f"{path}: trained on {gen.size}-px images, the dataset's are {real.shape[1:]}"
            continue
        known = (reuse or {}).get(name) or {}
        keys = [mask_key(m) for m in masks] if known else []
        todo = [k for k in range(len(masks)) if not known or keys[k] not in known]
        img = np.empty(masks.shape, np.float32)
        if todo:
            img[todo] = gen(masks[todo], seed=seed)
        for k in sorted(set(range(len(masks))) - set(todo)):
            img[k] = known[keys[k]]
        fakes[name] = np.clip(img, 0.0, 1.0).astype(np.float32)
        seconds[name] = time.perf_counter() - t0
        cfg = gen.cfg
        sources[name] = (f"{cfg.model} ({cfg.netG}, {cfg.upsample} upsampling, ngf {cfg.ngf}) from {path}"
                         + (f" ({len(masks) - len(todo)} of {len(masks)} images as notebook 30 generated them)"
                            if len(todo) < len(masks) else ""))
    if simulator:
        t0 = time.perf_counter()
        pre = preset or _dataset_preset(ds, "ic-metal")
        px = pixel_nm or ds.info.get("pixel_size_nm")
        rendered = []
        it = enumerate(masks)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(masks), desc="render masks")
        for k, m in it:
            r = render_mask(m.astype(np.int64), pre, seed=(int(seed), 7919, k), pixel_nm=px)
            rendered.append(r.image)
        fakes[SIMULATOR] = np.clip(np.stack(rendered), 0.0, 1.0).astype(np.float32)
        sources[SIMULATOR] = f"semlab.data.simulate.render_mask(mask, {pre!r}, seed) on the same masks"
        seconds[SIMULATOR] = time.perf_counter() - t0
    return FakeSets(dataset=Path(dataset), splits=splits, ids=list(ids), real=real, masks=masks, fakes=fakes,
                    sources=sources, missing=gone, seconds=seconds)


def domain_fake_sets(dataset: str | Path, real, generators: Mapping[str, str | Path | None],
                     settings: Mapping[str, Any], *, missing: Mapping[str, str] | None = None, seed: int = 0,
                     preset: str = "ic-metal", reuse: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> FakeSets:
    """`fake_sets` of either domain. Simulated (`real` None): the profile's splits and
    `max_pairs`, as before. Real (`real`: the set's `RealSplit`): the held-out val and test
    tiles of the set (frames the generators never saw; at most `settings["max_pairs"]`, else
    the profile's `real.max_pairs`, spread evenly), the physics baseline at the set's built-in preset and
    pixel size, and cross-validation groups by frame when there are at least `n_splits`
    frames, else by blocks of neighbouring tiles (`semlab.train.realsets.fold_groups`).
    `reuse`: images generated earlier in the run (see `fake_sets`)."""
    if real is None:
        return fake_sets(dataset, generators, settings["splits"], missing=missing, seed=seed,
                         max_pairs=settings["max_pairs"], reuse=reuse)
    from dataclasses import replace

    from semlab.config import load_profile
    from semlab.data.datasets import load_dataset
    from semlab.train import realsets

    r = load_profile(settings["profile"]).real
    ds = load_dataset(dataset)
    ids = realsets.held_out_ids(real, ("val", "test"), settings.get("max_pairs") or r.max_pairs)
    masks = np.stack([ds.mask(i) for i in ids[:16]])
    sets = fake_sets(dataset, generators, ("val", "test"), missing=missing, seed=seed, ids=ids, reuse=reuse,
                     preset=realsets.set_preset(real.set, masks), pixel_nm=realsets.set_pixel_nm(ds, real.set))
    groups, how = realsets.fold_groups(realsets.tile_index(ds), sets.ids, int(settings["n_splits"]), r.block_tiles)
    return replace(sets, fold_groups=groups.tolist(), grouping=how, real_split=real)


# --------------------------------------------------------------------------- detectors


def run_detectors(sets: FakeSets, *, profile: str = "cpu", seed: int = 0, models: Sequence[str] | None = None,
                  progress: bool = False, **overrides: Any) -> dict[str, ModelDetection]:
    """Grouped k-fold cross-validation, for each model, of the profile's CNN detectors
    and of the spectrum-only logistic regression (same folds: same groups and seed).
    `overrides` change the profile's detector settings (n_splits, epochs, crop, ...)."""
    from semlab.forensics.detector import cross_validate_detector
    from semlab.forensics.spectrum import cross_validate_spectrum_detector

    s = study_settings(profile, **overrides)
    n_splits = min(int(s["n_splits"]), sets.n_groups)
    out: dict[str, ModelDetection] = {}
    for name in (models or sets.models):
        real, fake, gr, gf = sets.pair(name)
        t0 = time.perf_counter()
        cnn = {}
        for det in s["detectors"]:
            kw = dict(s["detector_kwargs"]) if det == "small_cnn" else {}
            r = cross_validate_detector(real, fake, gr, gf, detector=det, detector_kwargs=kw, n_splits=n_splits,
                                        epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"], crop=s["crop"],
                                        precision=s["precision"], seed=seed, n_boot=s["n_boot"], progress=progress)
            cnn[r.detector] = r
        spec = cross_validate_spectrum_detector(real, fake, gr, gf, n_splits=n_splits, seed=seed, n_boot=s["n_boot"])
        out[name] = ModelDetection(name, cnn, spec, time.perf_counter() - t0)
    return out


def pair_summary(pair: Mapping[str, TrainedGenerator]) -> str:
    """One line per trained upsampling generator: steps, seconds, reused or not."""
    return "\n".join(f"{name}: {g.steps} steps in {g.seconds:.0f} s" + (" (reused a finished run)" if g.reused else "")
                     for name, g in pair.items())


def detections_summary(detections: Mapping[str, ModelDetection]) -> str:
    """One line per model: the CNN's summary, the spectrum-only accuracy and the time."""
    return "\n".join(f"{name}: {d.main.summary()} | spectrum only: accuracy "
                     f"{d.spectrum.metrics['accuracy'].value:.3f} ({d.seconds:.0f} s)" for name, d in detections.items())


def detection_results(detections: Mapping[str, ModelDetection]) -> dict[str, Any]:
    """{"<model>: <detector>": DetectionResult} for the detector figures (CNNs and the
    spectrum-only detector of every model)."""
    out = {}
    for name, d in detections.items():
        for det, r in d.cnn.items():
            out[f"{name}: {det}"] = r
        out[f"{name}: spectrum only"] = d.spectrum
    return out


# --------------------------------------------------------------------------- spectra


def spectral_study(sets: FakeSets, *, n_boot: int = 1000, seed: int = 0, threshold: float = 6.0,
                   bands: Sequence[tuple[float, float]] = BANDS) -> SpectralStudy:
    """Radial spectra (paired bootstrap: every set comes from the same masks), band
    ratios, 2-D difference maps and peaks of each fake set against the real set."""
    from semlab.forensics.spectrum import (compare_radial_spectra, find_spectral_peaks, log_spectrum_difference,
                                           mean_power_spectrum_2d)

    all_sets = {"real": sets.real, **sets.fakes}
    comp = compare_radial_spectra(all_sets, reference="real", n_boot=n_boot, seed=seed, paired=True)
    band_rows = comp.band_summary(bands, n_boot=n_boot, seed=seed)
    fy, fx, p_real = mean_power_spectrum_2d(sets.real)
    diffs, ratios, peaks = {}, {}, {}
    for name, fake in sets.fakes.items():
        diffs[name] = log_spectrum_difference(sets.real, fake)
        _, _, p_fake = mean_power_spectrum_2d(fake)
        ratio = p_fake / np.maximum(p_real, 1e-30)
        ratio[len(fy) // 2, len(fx) // 2] = 1.0
        ratios[name] = (fy, fx, ratio)
        peaks[name] = find_spectral_peaks(fake, reference=sets.real, threshold=threshold)
    return SpectralStudy(comp, band_rows, diffs, ratios, peaks, int(sets.real.shape[1]), float(threshold))


# --------------------------------------------------------------------------- saliency


def _pick_examples(result, n_correct: int, n_wrong: int) -> np.ndarray:
    """Indices of the most confident correct predictions (alternating real / generated)
    and of the most confident wrong ones (alternating too), correct ones first."""
    y, s = result.labels, result.scores
    pred = result.predictions
    conf = np.where(y == 1, s, -s)  # > 0: correct; large: confidently correct

    def take(mask_by_class, key, n):
        pools = [list(np.flatnonzero(m)[np.argsort(key[m])]) for m in mask_by_class]
        out = []
        while len(out) < n and any(pools):
            for pool in pools:
                if pool and len(out) < n:
                    out.append(pool.pop(0))
        return out

    correct = take([(y == c) & (pred == y) for c in (1, 0)], -conf, n_correct)
    wrong = take([(y == c) & (pred != y) for c in (1, 0)], conf, n_wrong)
    return np.asarray(correct + wrong, dtype=np.int64)


def _attribute_out_of_fold(result, images: np.ndarray, idx: np.ndarray, method: str, **kw) -> np.ndarray:
    """Maps of `method` for images[idx], each explained by the fold model that never saw it."""
    from semlab.forensics.saliency import attribute

    maps = np.zeros((len(idx),) + images.shape[1:], np.float32)
    folds = result.fold[idx]
    for k in np.unique(folds):
        sel = np.flatnonzero(folds == k)
        maps[sel] = attribute(result.models[int(k)], images[idx[sel]], method, target="generated", **kw)
    return maps


def saliency_study(sets: FakeSets, detections: Mapping[str, ModelDetection], *, profile: str = "cpu",
                   seed: int = 0, models: Sequence[str] | None = None, **overrides: Any) -> dict[str, SaliencyStudy]:
    """For each model: a few correct and wrong out-of-fold predictions of its first CNN
    explained by the profile's methods (saliency, integrated gradients with the blur
    baseline, Grad-CAM, ...), where |saliency| goes relative to the masks (edge zone,
    pattern, background; `attribution_by_region`) and at which frequencies the saliency
    of real images sits (`attribution_spectrum`). Every image is explained by the fold
    model that did not train on it."""
    from semlab.forensics.attribution_stats import attribution_by_region, attribution_spectrum
    from semlab.forensics.detector import stack_sets

    s = study_settings(profile, **overrides)
    rng = np.random.default_rng(seed)
    size = sets.real.shape[1]
    edge_w = max(1, size // 64)
    # one subset of masks for every model: the region shares and the attribution spectra
    # (on the same real images) then compare the detectors, not the draws
    n = sets.n_pairs
    k = min(int(s["n_attr_per_class"]), n)
    sub = np.sort(rng.choice(n, size=k, replace=False))
    attr_idx = np.concatenate([sub, n + sub])  # the same masks, real and generated
    out: dict[str, SaliencyStudy] = {}
    for name in (models or list(detections)):
        if name not in detections or not detections[name].main.models:
            continue
        t0 = time.perf_counter()
        res = detections[name].main
        real, fake, gr, gf = sets.pair(name)
        images, _, _ = stack_sets(real, fake, gr, gf)
        masks = np.concatenate([sets.masks, sets.masks])
        idx = _pick_examples(res, s["n_correct"], s["n_wrong"])
        maps = {}
        for method in s["saliency_methods"]:
            kw = {"n_steps": s["ig_steps"]} if method in ("integrated_gradients",) else {}
            maps[method] = _attribute_out_of_fold(res, images, idx, method, **kw) if len(idx) else \
                np.zeros((0,) + images.shape[1:], np.float32)
        sal = _attribute_out_of_fold(res, images, attr_idx, "saliency")
        regions = attribution_by_region(sal, masks[attr_idx], edge_width_px=edge_w, seed=seed)
        spectrum = attribution_spectrum(sal[:k], images[sub])
        out[name] = SaliencyStudy(model=name, detector=res.detector, index=idx, images=images[idx],
                                  labels=res.labels[idx], probabilities=res.probabilities[idx],
                                  correct=res.predictions[idx] == res.labels[idx], maps=maps, regions=regions,
                                  spectrum=spectrum, methods=tuple(s["saliency_methods"]),
                                  seconds=time.perf_counter() - t0)
    return out


# --------------------------------------------------------------------------- outputs


def write_results(results: StudyResults, out: str | Path) -> dict[str, Path]:
    """Write the results table (results.csv, results.md), the conclusion
    (conclusion.md), band ratios and peaks (spectral_bands.csv, spectral_peaks.csv),
    and per model and detector the metrics and out-of-fold predictions, atomically."""
    from semlab.io import write_csv_atomic, write_text_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = results_table(results)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    paths = {"csv": write_csv_atomic(out / "results.csv", rows, fields),
             "markdown": write_text_atomic(out / "results.md", format_results_table(rows) + "\n"),
             "conclusion": write_text_atomic(out / "conclusion.md", conclusion(rows) + "\n")}
    sp = results.spectral
    if sp is not None:
        paths["bands"] = write_csv_atomic(out / "spectral_bands.csv", sp.bands,
                                          ["set", "band", "ratio_db", "ratio_db_lo", "ratio_db_hi"])
        peak_rows = [{"model": m, **p.to_dict(), "on_grid": on_upsampling_grid(p.fy, p.fx, sp.size)}
                     for m, pk in sp.peaks.items() for p in pk]
        paths["peaks"] = write_csv_atomic(out / "spectral_peaks.csv", peak_rows,
                                          ["model", "fy", "fx", "freq", "period_px", "period_y", "period_x", "z",
                                           "excess_db", "amplitude", "on_grid"])
    for name, det in results.detections.items():
        for label, r in list(det.cnn.items()) + [("spectrum", det.spectrum)]:
            for k, p in r.write(out / "detectors", f"{slug(name)}__{slug(label)}").items():
                paths[f"{slug(name)}__{slug(label)}_{k}"] = p
    return paths
