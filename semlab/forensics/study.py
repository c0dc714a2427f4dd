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
   `study_metrics`: one row per model and a conclusion written from the numbers, with
   careful wording when confidence intervals include chance or overlap.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "PROFILES",
    "SIMULATOR",
    "RUN_GENERATORS",
    "UPSAMPLING_MODELS",
    "study_settings",
    "slug",
    "resolve_dataset",
    "find_generators",
    "TrainedGenerator",
    "upsampling_configs",
    "train_upsampling_pair",
    "FakeSets",
    "fake_sets",
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
    "study_metrics",
    "METRIC_KEYS",
    "detection_results",
]

SIMULATOR = "simulator (physics baseline)"
# name in the study -> (notebook that trains it, model kind / standalone run folder prefix)
RUN_GENERATORS: dict[str, tuple[str, str]] = {
    "Pix2Pix": ("20_train_pix2pix", "pix2pix"),
    "CycleGAN": ("21_train_cyclegan", "cyclegan"),
}
UPSAMPLING_MODELS: dict[str, str] = {
    "Pix2Pix transposed-conv": "transposed",
    "Pix2Pix resize-conv": "resize",
}
HF_BAND = (0.25, 0.5)  # cycles/px: the band of the "high-frequency power" column
BANDS = ((0.0, 0.125), (0.125, 0.25), (0.25, 0.5), (0.5, 0.75))

# Settings per profile. Sizes were chosen so that the cpu profile of notebook 40 runs in
# a few minutes on a 2-core machine (see the notebook's last cell for the measured time):
# - splits: which held-out masks are rendered (the generators train on "train"; smoke has
#   too few images per split and uses all of them, saying so);
# - detector: n_splits folds, epochs, crop (train on random crops of this many px; the
#   detectors pool globally and score whole images), detectors (ResNet-18 is slow on CPU);
# - upsample_*: the transposed-vs-resize Pix2Pix pair, identical budgets (ngf 32: on this
#   CPU the ngf-64 transposed U-Net was ~10-25x slower per step than ngf 32);
# - saliency: methods by cost (integrated gradients ~40x saliency; occlusion more),
#   examples per model, images per class for region enrichment and spectra.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"splits": ("train", "val", "test"), "max_pairs": None, "n_splits": 3, "epochs": 3, "crop": None,
              "detectors": ("small_cnn",), "detector_kwargs": {"width": 8, "depth": 3}, "batch_size": 16,
              "lr": 3e-3, "n_boot": 500, "upsample_epochs": 1, "upsample_epochs_decay": 0, "upsample_batch": 4,
              "upsample_ngf": 16, "upsample_precision": "bf16",
              "saliency_methods": ("saliency", "layer_gradcam"), "ig_steps": 8, "n_correct": 2, "n_wrong": 2,
              "n_attr_per_class": 12, "peak_threshold": 6.0},
    "cpu": {"splits": ("val", "test"), "max_pairs": None, "n_splits": 5, "epochs": 10, "crop": 64,
            "detectors": ("small_cnn",), "detector_kwargs": {}, "batch_size": 32, "lr": 3e-3, "n_boot": 2000,
            "upsample_epochs": 2, "upsample_epochs_decay": 2, "upsample_batch": 8, "upsample_ngf": 32,
            "upsample_precision": "bf16",
            "saliency_methods": ("saliency", "integrated_gradients", "layer_gradcam"), "ig_steps": 16,
            "n_correct": 2, "n_wrong": 2, "n_attr_per_class": 48, "peak_threshold": 6.0},
    "full": {"splits": ("test",), "max_pairs": None, "n_splits": 5, "epochs": 15, "crop": None,
             "detectors": ("small_cnn", "resnet18"), "detector_kwargs": {}, "batch_size": 32, "lr": 3e-3,
             "n_boot": 2000, "upsample_epochs": 20, "upsample_epochs_decay": 20, "upsample_batch": 8,
             "upsample_ngf": 64, "upsample_precision": "bf16",
             "saliency_methods": ("saliency", "integrated_gradients", "smoothgrad", "layer_gradcam"),
             "ig_steps": 50, "n_correct": 3, "n_wrong": 3, "n_attr_per_class": 200, "peak_threshold": 6.0},
}


def study_settings(profile: str, **overrides: Any) -> dict[str, Any]:
    """The settings of a profile (a fresh dict), updated with `overrides` (unknown names
    raise KeyError listing the valid ones, so a typo never silently does nothing)."""
    try:
        s = dict(PROFILES[profile])
    except KeyError:
        raise KeyError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}") from None
    bad = sorted(set(overrides) - set(s))
    if bad:
        raise KeyError(f"unknown study setting(s) {bad}; valid: {sorted(s)}")
    s.update({k: v for k, v in overrides.items() if v is not None})
    s["profile"] = profile
    return s


def slug(name: str) -> str:
    """A file-name-safe version of a model name ("Pix2Pix resize-conv" -> "pix2pix_resize-conv")."""
    return re.sub(r"[^a-z0-9_-]+", "_", name.lower()).strip("_") or "model"


# --------------------------------------------------------------------------- inputs


def resolve_dataset(run_dir: str | Path | None = None, dataset: str | Path | None = None, *,
                    preset: str = "ic-metal", profile: str = "cpu", seed: int = 0) -> tuple[Path, str]:
    """``(folder, how it was chosen)``: `dataset` if given; else the dataset notebook 20
    (or 21) of the run trained on, so the generators are scored on the masks of their
    own held-out splits; else the embedded default dataset of the profile."""
    from semlab.reports import run_outputs

    if dataset:
        p = Path(dataset)
        if not (p / "dataset.json").is_file():
            raise FileNotFoundError(f"{p}: not a semlab dataset (no dataset.json)")
        return p, "given"
    outs = run_outputs(run_dir)
    for nb, _ in RUN_GENERATORS.values():
        d = outs.get(nb, {}).get("dataset")
        if d and (Path(d) / "dataset.json").is_file():
            return Path(d), f"the dataset notebook {nb} trained on"
    from semlab.data.datasets import make_default_dataset

    return make_default_dataset(preset, profile, seed=seed, progress=False), f"the default {preset} dataset"


def _standalone_generator(kind: str, profile: str) -> Path | None:
    """Where a standalone run of notebook 20/21 leaves its generator (as those notebooks
    name it): ``data/runs/<kind>-<profile>/<kind>/generator.pt``, or the latest training
    checkpoint when CycleGAN stopped at its step budget."""
    from semlab.paths import data_dir
    from semlab.train.checkpoint import latest_checkpoint

    root = data_dir() / "runs" / f"{kind}-{profile}" / kind
    if (root / "generator.pt").is_file():
        return root / "generator.pt"
    return latest_checkpoint(root / "checkpoints") if (root / "checkpoints").is_dir() else None


def find_generators(run_dir: str | Path | None, profile: str) -> tuple[dict[str, Path], dict[str, str]]:
    """``(found, missing)``: the generators of notebooks 20 (Pix2Pix) and 21 (CycleGAN),
    from the run's manifest or else from their standalone run folders; `missing` maps a
    model name to why it is not available (which notebook to run)."""
    from semlab.reports import run_outputs

    outs = run_outputs(run_dir)
    found: dict[str, Path] = {}
    missing: dict[str, str] = {}
    for name, (nb, kind) in RUN_GENERATORS.items():
        p = outs.get(nb, {}).get("generator")
        if p and Path(p).is_file():
            found[name] = Path(p)
            continue
        alt = _standalone_generator(kind, profile)
        if alt is not None:
            found[name] = alt
            continue
        where = f"the run {run_dir}" if run_dir else "this standalone run (RUN_DIR is empty)"
        missing[name] = (f"no trained generator: notebook {nb} has not run in {where}, and no standalone "
                         f"run of it with profile {profile!r} exists (data/runs/{kind}-{profile}/)")
    return found, missing


# --------------------------------------------------------------------------- upsampling pair


@dataclass
class TrainedGenerator:
    """One generator trained (or reused) by `train_upsampling_pair`."""

    name: str
    upsample: str
    path: Path
    steps: int
    seconds: float
    reused: bool
    log: list[dict] = field(default_factory=list, repr=False)


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


@dataclass
class FakeSets:
    """Real images of held-out masks and, per model, the images generated from the same
    masks. Image i of every set comes from mask ``ids[i]``; `groups` (the mask ids) keep
    each real/generated pair in one cross-validation fold."""

    dataset: Path
    splits: tuple[str, ...]
    ids: list[str]
    real: np.ndarray
    masks: np.ndarray
    fakes: dict[str, np.ndarray]
    sources: dict[str, str]
    missing: dict[str, str]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def groups(self) -> np.ndarray:
        return np.asarray(self.ids)

    @property
    def models(self) -> list[str]:
        return list(self.fakes)

    @property
    def n_pairs(self) -> int:
        return len(self.ids)

    def pair(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(real, fake, groups_real, groups_fake) for `semlab.forensics.detector`."""
        if name not in self.fakes:
            raise KeyError(f"no fake set {name!r}; available: {', '.join(self.fakes) or 'none'}")
        g = self.groups
        return self.real, self.fakes[name], g, g

    def table(self) -> str:
        """A Markdown table: every model with its source, or why it is missing."""
        lines = ["| model | images | source |", "|---|---|---|"]
        for name in self.fakes:
            lines.append(f"| {name} | {len(self.fakes[name])} | {self.sources.get(name, '')} |")
        for name, why in self.missing.items():
            lines.append(f"| {name} | **missing** | {why} |")
        return "\n".join(lines)


def _dataset_preset(ds, fallback: str) -> str:
    return str((ds.info.get("identity") or {}).get("preset") or fallback)


def fake_sets(dataset: str | Path, generators: Mapping[str, str | Path | None], split: str | Sequence[str] = "test",
              *, missing: Mapping[str, str] | None = None, simulator: bool = True, preset: str | None = None,
              seed: int = 0, max_pairs: int | None = None, progress: bool = False) -> FakeSets:
    """For each generator (name -> generator.pt or checkpoint; None = missing), the images
    it makes from the masks of `split` (one name or several), paired with the dataset's
    real images; plus, with `simulator`, `SIMULATOR`: the simulator's image formation
    applied to the same masks (`render_mask`, the preset of the dataset unless `preset`
    is given, imaging parameters drawn per image from its own seed, as a generator
    would have to choose them).

    A generator that cannot be loaded or was trained at another image size is listed in
    `missing` with the reason instead of stopping the study.
    """
    from semlab.data.datasets import load_dataset
    from semlab.data.simulate import render_mask
    from semlab.train.generate import Generator

    ds = load_dataset(dataset)
    splits = (split,) if isinstance(split, str) else tuple(split)
    ids: list[str] = []
    for s in splits:
        ids.extend(ds.split(s))
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
        fakes[name] = np.clip(gen(masks, seed=seed), 0.0, 1.0).astype(np.float32)
        seconds[name] = time.perf_counter() - t0
        cfg = gen.cfg
        sources[name] = (f"{cfg.model} ({cfg.netG}, {cfg.upsample} upsampling, ngf {cfg.ngf}) from {path}")
    if simulator:
        t0 = time.perf_counter()
        pre = preset or _dataset_preset(ds, "ic-metal")
        px = ds.info.get("pixel_size_nm")
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


# --------------------------------------------------------------------------- detectors


@dataclass
class ModelDetection:
    """Cross-validated detection of one model's images: one `DetectionResult` per CNN
    (label -> result, e.g. "small_cnn") and the spectrum-only detector's, on identical
    folds."""

    model: str
    cnn: dict[str, Any]
    spectrum: Any
    seconds: float = 0.0

    @property
    def main(self):
        """The first CNN's result (the one saliency explains)."""
        return next(iter(self.cnn.values()))


def run_detectors(sets: FakeSets, *, profile: str = "cpu", seed: int = 0, models: Sequence[str] | None = None,
                  progress: bool = False, **overrides: Any) -> dict[str, ModelDetection]:
    """Grouped k-fold cross-validation, for each model, of the profile's CNN detectors
    and of the spectrum-only logistic regression (same folds: same groups and seed).
    `overrides` change the profile's detector settings (n_splits, epochs, crop, ...)."""
    from semlab.forensics.detector import cross_validate_detector
    from semlab.forensics.spectrum import cross_validate_spectrum_detector

    s = study_settings(profile, **overrides)
    n_splits = min(int(s["n_splits"]), sets.n_pairs)
    out: dict[str, ModelDetection] = {}
    for name in (models or sets.models):
        real, fake, gr, gf = sets.pair(name)
        t0 = time.perf_counter()
        cnn = {}
        for det in s["detectors"]:
            kw = dict(s["detector_kwargs"]) if det == "small_cnn" else {}
            r = cross_validate_detector(real, fake, gr, gf, detector=det, detector_kwargs=kw, n_splits=n_splits,
                                        epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"], crop=s["crop"],
                                        seed=seed, n_boot=s["n_boot"], progress=progress)
            cnn[r.detector] = r
        spec = cross_validate_spectrum_detector(real, fake, gr, gf, n_splits=n_splits, seed=seed, n_boot=s["n_boot"])
        out[name] = ModelDetection(name, cnn, spec, time.perf_counter() - t0)
    return out


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


def on_upsampling_grid(fy: float, fx: float, size: int, grid: int = 8) -> bool:
    """Whether a frequency lies on the lattice of multiples of 1/`grid` cycles/px,
    excluding zero: where x2 upsampling layers leave their traces (0.5 from the last
    layer's 2-px period, 0.25 from the one before, 0.125 ...). Tolerance: one frequency
    bin of a `size`-px image, the half-width of the Hann window's main lobe (a pattern
    that is periodic along x only leaks into fy = +-1 bin, and against a reference whose
    axis line is strong the peak of the ratio can sit there)."""
    tol = 1.0 / size + 1e-9
    near = [abs(v * grid - round(v * grid)) / grid <= tol for v in (fy, fx)]
    nonzero = max(abs(fy), abs(fx)) > tol
    return all(near) and nonzero


@dataclass
class SpectralStudy:
    """Spectra of the real set and of each fake set (all from the same masks).

    `comparison`: mean radial spectra with paired bootstrap bands and ratios to real;
    `bands`: band power ratios in dB with CIs (rows of `band_summary`); `differences`:
    generated-minus-real 2-D spectra in dB; `ratios`: (fy, fx, P_fake / P_real) for the
    peak figure; `peaks`: narrow peaks of each set relative to real."""

    comparison: Any
    bands: list[dict[str, Any]]
    differences: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    ratios: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    peaks: dict[str, list[Any]]
    size: int
    threshold: float

    def band(self, model: str, band: tuple[float, float] = HF_BAND) -> dict[str, Any] | None:
        key = f"({band[0]:g}, {band[1]:g}]"
        return next((r for r in self.bands if r["set"] == model and r["band"] == key), None)

    def grid_peaks(self, model: str) -> list[Any]:
        return [p for p in self.peaks.get(model, []) if on_upsampling_grid(p.fy, p.fx, self.size)]

    def band_table(self) -> str:
        """Markdown: models in rows, frequency bands in columns, ratio to real in dB [CI]."""
        names = list(dict.fromkeys(r["set"] for r in self.bands))
        bands = list(dict.fromkeys(r["band"] for r in self.bands))
        lines = ["| model | " + " | ".join(f"{b} c/px" for b in bands) + " |",
                 "|---|" + "---|" * len(bands)]
        for n in names:
            cells = []
            for b in bands:
                r = next((x for x in self.bands if x["set"] == n and x["band"] == b), None)
                cells.append("" if r is None else f"{r['ratio_db']:+.1f} [{r['ratio_db_lo']:+.1f}, "
                                                  f"{r['ratio_db_hi']:+.1f}] dB")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def peak_table(self) -> str:
        """Markdown: the strongest peaks of every model (frequency, period, z, on the grid)."""
        lines = ["| model | peaks | on the upsampling grid | strongest peaks (fy, fx) c/px: period, z |",
                 "|---|---|---|---|"]
        for name, pk in self.peaks.items():
            top = "; ".join(f"({p.fy:.3f}, {p.fx:.3f}): {p.period_px:.2f} px, z={p.z:.0f}"
                            + (" (grid)" if on_upsampling_grid(p.fy, p.fx, self.size) else "") for p in pk[:3])
            lines.append(f"| {name} | {len(pk)} | {len(self.grid_peaks(name))} | {top or '-'} |")
        return "\n".join(lines)


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


@dataclass
class SaliencyStudy:
    """Attributions of one model's out-of-fold CNN detector.

    Examples (`index` into the stacked real-then-generated arrays of the detection
    result): `images`, `labels` (0 real, 1 generated), `probabilities` (P(generated)),
    `correct`, and `maps` {method: (k, H, W)} explaining the "generated" logit.
    `regions`: `attribution_by_region` of |saliency| over `n_attr` images per class;
    `spectrum`: `attribution_spectrum` of the saliency on real images (the same images
    for every model, so the curves compare the detectors)."""

    model: str
    detector: str
    index: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    correct: np.ndarray
    maps: dict[str, np.ndarray]
    regions: dict[str, Any]
    spectrum: dict[str, Any]
    methods: tuple[str, ...]
    seconds: float = 0.0

    @property
    def n_wrong(self) -> int:
        return int((~self.correct).sum())

    def title(self) -> str:
        return (f"{self.model}: {int(self.correct.sum())} correct and {self.n_wrong} wrong out-of-fold "
                f"predictions of {self.detector}")


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
    from semlab.forensics.detector import stack_sets
    from semlab.forensics.saliency import attribution_by_region, attribution_spectrum

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


# --------------------------------------------------------------------------- results


@dataclass
class StudyResults:
    """Everything the conclusion is written from."""

    sets: FakeSets
    detections: dict[str, ModelDetection]
    spectral: SpectralStudy | None = None
    saliency: dict[str, SaliencyStudy] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def _ci(m) -> tuple[float, float, float]:
    return float(m.value), float(m.lo), float(m.hi)


def results_table(results: StudyResults) -> list[dict[str, Any]]:
    """One row per model (flat, numbers only where measured, NaN otherwise): pairs,
    folds, the first CNN's accuracy / balanced accuracy / AUC with CIs, the spectrum-only
    detector's accuracy and AUC with CIs, spectral peaks (all and on the upsampling
    grid, the strongest one), high-frequency power relative to real (dB, CI), edge
    enrichment of |saliency| (CI) and the saliency's high-frequency share."""
    rows = []
    nan = float("nan")
    sp = results.spectral
    for name, det in results.detections.items():
        r = det.main
        row: dict[str, Any] = {"model": name, "n_pairs": results.sets.n_pairs, "n_splits": len(r.folds),
                               "splits": "+".join(results.sets.splits), "level": r.level, "detector": r.detector}
        for key, label in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced_accuracy"), ("roc_auc", "auc")):
            row[label], row[f"{label}_lo"], row[f"{label}_hi"] = _ci(r.metrics[key])
        row["spectrum_accuracy"], row["spectrum_accuracy_lo"], row["spectrum_accuracy_hi"] = \
            _ci(det.spectrum.metrics["accuracy"])
        row["spectrum_auc"], row["spectrum_auc_lo"], row["spectrum_auc_hi"] = _ci(det.spectrum.metrics["roc_auc"])
        for extra, res2 in list(det.cnn.items())[1:]:
            row[f"{slug(extra)}_accuracy"], row[f"{slug(extra)}_accuracy_lo"], row[f"{slug(extra)}_accuracy_hi"] = \
                _ci(res2.metrics["accuracy"])
        row.update(n_peaks=0, n_grid_peaks=0, peak_fy=nan, peak_fx=nan, peak_period_px=nan, peak_z=nan,
                   peak_on_grid=False, grid_peak_fy=nan, grid_peak_fx=nan, grid_peak_period_px=nan, grid_peak_z=nan,
                   hf_db=nan, hf_db_lo=nan, hf_db_hi=nan, hf_band=f"({HF_BAND[0]:g}, {HF_BAND[1]:g}]",
                   top_band="", top_band_db=nan, top_band_db_lo=nan, top_band_db_hi=nan)
        if sp is not None and name in sp.peaks:
            pk = sp.peaks[name]
            grid = sp.grid_peaks(name)
            row["n_peaks"], row["n_grid_peaks"] = len(pk), len(grid)
            if pk:
                row.update(peak_fy=pk[0].fy, peak_fx=pk[0].fx, peak_period_px=pk[0].period_px, peak_z=pk[0].z,
                           peak_on_grid=on_upsampling_grid(pk[0].fy, pk[0].fx, sp.size))
            if grid:
                row.update(grid_peak_fy=grid[0].fy, grid_peak_fx=grid[0].fx, grid_peak_period_px=grid[0].period_px,
                           grid_peak_z=grid[0].z)
            hf = sp.band(name)
            if hf is not None:
                row.update(hf_db=hf["ratio_db"], hf_db_lo=hf["ratio_db_lo"], hf_db_hi=hf["ratio_db_hi"])
            sig = [b for b in sp.bands if b["set"] == name and (b["ratio_db_lo"] > 0 or b["ratio_db_hi"] < 0)]
            if sig:
                top = max(sig, key=lambda b: abs(b["ratio_db"]))
                row.update(top_band=top["band"], top_band_db=top["ratio_db"], top_band_db_lo=top["ratio_db_lo"],
                           top_band_db_hi=top["ratio_db_hi"])
        sal = results.saliency.get(name)
        if sal is not None:
            e = sal.regions["enrichment"]["edge"]
            lo, hi = sal.regions["enrichment_ci"]["edge"]
            row.update(edge_enrichment=e, edge_enrichment_lo=lo, edge_enrichment_hi=hi,
                       attr_high_share=sal.spectrum["high_share"], image_high_share=sal.spectrum["image_high_share"],
                       n_wrong_examples=sal.n_wrong)
        else:
            row.update(edge_enrichment=nan, edge_enrichment_lo=nan, edge_enrichment_hi=nan, attr_high_share=nan,
                       image_high_share=nan, n_wrong_examples=0)
        rows.append(row)
    for name, why in results.sets.missing.items():
        rows.append({"model": name, "missing": why})
    return rows


def _fin(*v) -> bool:
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)


def _fmt_ci(v, lo, hi, digits: int = 2, signed: bool = False, unit: str = "") -> str:
    if not _fin(v):
        return "-"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    s = f.format(v)
    if _fin(lo, hi):
        s += f" [{f.format(lo)}, {f.format(hi)}]"
    return s + unit


def format_results_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The results table in Markdown (values with their CIs; missing models last)."""
    pct = round(100 * next((r["level"] for r in rows if "level" in r), 0.95))
    lines = [f"| model | pairs | CNN accuracy | balanced acc. | AUC | spectrum-only acc. | peaks (on grid) "
             f"| power {HF_BAND[0]:g}-{HF_BAND[1]:g} c/px vs real | edge enrichment | saliency HF share (images) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "missing" in r:
            lines.append(f"| {r['model']} | missing | | | | | | | | |")
            continue
        hs = (f"{r['attr_high_share']:.2f} ({r['image_high_share']:.2f})"
              if _fin(r.get("attr_high_share"), r.get("image_high_share")) else "-")
        lines.append(
            f"| {r['model']} | {r['n_pairs']} | {_fmt_ci(r['accuracy'], r['accuracy_lo'], r['accuracy_hi'])} "
            f"| {_fmt_ci(r['balanced_accuracy'], r['balanced_accuracy_lo'], r['balanced_accuracy_hi'])} "
            f"| {_fmt_ci(r['auc'], r['auc_lo'], r['auc_hi'])} "
            f"| {_fmt_ci(r['spectrum_accuracy'], r['spectrum_accuracy_lo'], r['spectrum_accuracy_hi'])} "
            f"| {r['n_peaks']} ({r['n_grid_peaks']}) "
            f"| {_fmt_ci(r['hf_db'], r['hf_db_lo'], r['hf_db_hi'], 1, True, ' dB')} "
            f"| {_fmt_ci(r.get('edge_enrichment'), r.get('edge_enrichment_lo'), r.get('edge_enrichment_hi'))}x "
            f"| {hs} |")
    lines.append("")
    lines.append(f"Values: out-of-fold estimate [{pct}% bootstrap CI]. Peaks: narrow peaks of the mean spectrum "
                 "relative to the real one (on grid: at multiples of 1/8 cycles/px, where x2 upsampling leaves its "
                 "traces). Edge enrichment: share of |saliency| within the edge zone / its share of the pixels "
                 "(1 = no preference). Saliency HF share: share of the saliency's power above 0.25 cycles/px on "
                 "real images (in brackets: the images' own share).")
    return "\n".join(lines)


# --------------------------------------------------------------------------- conclusion


def _strength(v: float, lo: float, hi: float) -> str:
    """'below', 'chance', 'inconclusive', 'weak', 'clear' or 'near-perfect' (from the CI)."""
    if hi < 0.5:
        return "below"
    if lo <= 0.5:
        return "chance" if v < 0.6 else "inconclusive"
    if v >= 0.95:
        return "near-perfect"
    if v >= 0.8:
        return "clear"
    return "weak"


_STRENGTH_WORDS = {"near-perfect": "almost perfectly", "clear": "reliably", "weak": "better than chance, but weakly"}


def _acc(r: Mapping[str, Any], key: str = "accuracy") -> str:
    return f"{r[key]:.2f} [{r[key + '_lo']:.2f}, {r[key + '_hi']:.2f}]"


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


_DETECTOR_WORDS = {"small_cnn": "small CNN"}


def _model_paragraph(r: Mapping[str, Any], baseline_high_share: float | None = None) -> str:
    name = r["model"]
    det = _DETECTOR_WORDS.get(r.get("detector", ""), r.get("detector") or "CNN")
    cnn = _strength(r["accuracy"], r["accuracy_lo"], r["accuracy_hi"])
    spec = _strength(r["spectrum_accuracy"], r["spectrum_accuracy_lo"], r["spectrum_accuracy_hi"])
    parts = []
    if cnn in ("chance", "below"):
        parts.append(f"**{name}**: the {det} cannot tell these images from real ones: accuracy {_acc(r)} "
                     f"(AUC {_acc(r, 'auc')}) is at chance (the CI includes 0.5)"
                     + (" or below it" if cnn == "below" else "") + ".")
    elif cnn == "inconclusive":
        parts.append(f"**{name}**: inconclusive: the {det} reaches accuracy {_acc(r)} (AUC {_acc(r, 'auc')}), "
                     "but the CI still includes chance (0.5); more images would be needed.")
    else:
        parts.append(f"**{name}**: the {det} separates it from real {_STRENGTH_WORDS[cnn]}: accuracy {_acc(r)}, "
                     f"balanced accuracy {_acc(r, 'balanced_accuracy')}, AUC {_acc(r, 'auc')}.")
    # spectrum-only vs CNN
    cnn_ci = (r["accuracy_lo"], r["accuracy_hi"])
    spec_ci = (r["spectrum_accuracy_lo"], r["spectrum_accuracy_hi"])
    s_acc = _acc(r, "spectrum_accuracy")
    if spec in ("chance", "below"):
        if cnn in ("chance", "below", "inconclusive"):
            parts.append(f"A logistic regression on the radial power spectrum alone is at chance too ({s_acc}).")
        else:
            parts.append(f"A logistic regression on the radial power spectrum alone is at chance ({s_acc}): the "
                         "cue is not how much power there is at each scale but where it is (spatial arrangement: "
                         "edge profiles, textures, layout-dependent artifacts).")
    elif spec == "inconclusive":
        parts.append(f"The radial power spectrum alone gives {s_acc}, a CI that still includes chance.")
    elif cnn in ("chance", "below", "inconclusive"):
        parts.append(f"Yet a logistic regression on the radial power spectrum alone reaches {s_acc}: the "
                     "difference is spectral, and the CNN did not pick it up at this training budget.")
    elif _overlap(cnn_ci, spec_ci):
        parts.append(f"A logistic regression on the radial power spectrum alone reaches {s_acc}, within the CNN's "
                     "CI: most of the signal is spectral (how much power the images have at each scale).")
    elif spec_ci[1] < cnn_ci[0]:
        parts.append(f"The radial power spectrum alone reaches only {s_acc}, clearly below the CNN: part of the "
                     "signal is spectral, the rest lies in the spatial arrangement that a radial spectrum "
                     "discards.")
    else:
        parts.append(f"The radial power spectrum alone does better ({s_acc}) than the CNN: the cue is spectral and "
                     "the CNN is undertrained for it at this budget.")
    # band power
    if _fin(r.get("top_band_db"), r.get("top_band_db_lo"), r.get("top_band_db_hi")) and r.get("top_band"):
        v = r["top_band_db"]
        word = "more" if v > 0 else "less"
        lo, hi = sorted((abs(r["top_band_db_lo"]), abs(r["top_band_db_hi"])))
        high = r["top_band"] in ("(0.25, 0.5]", "(0.5, 0.75]")
        size = "a small but significant difference: " if abs(v) < 1 else ""
        parts.append(f"Its largest spectral difference: {size}{abs(v):.1f} dB [{lo:.1f}, {hi:.1f}] {word} power "
                     f"than real at {r['top_band']} cycles/px"
                     + (" (too smooth: the fine texture and noise grain are missing)" if v <= -3 and high else "")
                     + (" (extra fine-scale structure: noise or artifacts)" if v >= 3 and high else "") + ".")
    elif _fin(r.get("hf_db")):
        parts.append(f"Its band powers match the real ones within their CIs (at {r['hf_band']} cycles/px: "
                     f"{_fmt_ci(r['hf_db'], r['hf_db_lo'], r['hf_db_hi'], 1, True, ' dB')}).")
    # peaks
    n_grid = int(r.get("n_grid_peaks") or 0)
    n_all = int(r.get("n_peaks") or 0)
    if n_grid:
        per = r["grid_peak_period_px"]
        parts.append(f"Its mean spectrum has {n_grid} narrow peak{'s' if n_grid > 1 else ''} on the upsampling grid "
                     f"(multiples of 1/8 cycles/px); the strongest at (fy, fx) = ({r['grid_peak_fy']:.3f}, "
                     f"{r['grid_peak_fx']:.3f}) cycles/px, a {per:.2f}-px period, z = {r['grid_peak_z']:.0f}: the "
                     "periodic fingerprint of x2 upsampling layers"
                     + (f" ({n_all - n_grid} more off the grid)" if n_all > n_grid else "") + ".")
    elif n_all:
        parts.append(f"Its mean spectrum has {n_all} narrow peak{'s' if n_all > 1 else ''} relative to real, none on "
                     f"the upsampling grid (strongest at ({r['peak_fy']:.3f}, {r['peak_fx']:.3f}) cycles/px, "
                     f"z = {r['peak_z']:.0f}).")
    elif "n_peaks" in r:
        parts.append("Its mean spectrum shows no narrow peaks relative to real (no periodic upsampling artifact).")
    # saliency (only meaningful for a detector that works)
    if _fin(r.get("edge_enrichment"), r.get("edge_enrichment_lo"), r.get("edge_enrichment_hi")) \
            and cnn not in ("chance", "below"):
        e, lo, hi = r["edge_enrichment"], r["edge_enrichment_lo"], r["edge_enrichment_hi"]
        if lo > 1:
            where = f"|saliency| is {e:.2f}x [{lo:.2f}, {hi:.2f}] enriched at pattern edges"
        elif hi < 1:
            where = (f"|saliency| is depleted at pattern edges ({e:.2f}x [{lo:.2f}, {hi:.2f}] of an even "
                     "spread): the evidence lies mostly in the flat regions between edges")
        else:
            where = f"|saliency| has no clear preference for pattern edges ({e:.2f}x [{lo:.2f}, {hi:.2f}])"
        hs = ""
        if _fin(r.get("attr_high_share"), r.get("image_high_share")):
            a, b = r["attr_high_share"], r["image_high_share"]
            rel = "more than" if a > b + 0.05 else ("less than" if a < b - 0.05 else "about as much as")
            hs = (f"; {100 * a:.0f}% of the saliency's power lies above 0.25 cycles/px, {rel} the images' own "
                  f"{100 * b:.0f}%")
            if baseline_high_share is not None and r["model"] != SIMULATOR:
                hs += (f" (the chance-level detector of the simulator baseline: {100 * baseline_high_share:.0f}%, "
                       "what the detector's architecture produces by itself)")
        parts.append(f"Where the detector looks: {where}{hs}.")
    return " ".join(parts)


def _upsampling_paragraph(rows: Mapping[str, Mapping[str, Any]]) -> str | None:
    names = list(UPSAMPLING_MODELS)
    if not all(n in rows for n in names):
        return None
    t, r = rows[names[0]], rows[names[1]]
    same = _overlap((t["accuracy_lo"], t["accuracy_hi"]), (r["accuracy_lo"], r["accuracy_hi"]))
    if same:
        acc = (f"CNN accuracy {_acc(t)} (transposed) vs {_acc(r)} (resize): the CIs overlap, so at this budget the "
               "upsampling layer does not measurably change how detectable the generator is.")
    else:
        better = "transposed" if t["accuracy"] > r["accuracy"] else "resize"
        acc = (f"CNN accuracy {_acc(t)} (transposed) vs {_acc(r)} (resize): the CIs do not overlap; the "
               f"{better}-conv generator is the easier one to detect.")
    gt, gr = int(t.get("n_grid_peaks") or 0), int(r.get("n_grid_peaks") or 0)
    if gt and not gr:
        peaks = (f"Spectral peaks on the upsampling grid: {gt} for transposed conv (strongest at "
                 f"({t['grid_peak_fy']:.3f}, {t['grid_peak_fx']:.3f}) cycles/px), none for resize-conv: the "
                 "periodic (checkerboard-type) fingerprint comes from the transposed convolutions, and nearest "
                 "resize + convolution removes it.")
    elif gr and not gt:
        peaks = (f"Spectral peaks on the upsampling grid: none for transposed conv, {gr} for resize-conv "
                 f"(strongest at ({r['grid_peak_fy']:.3f}, {r['grid_peak_fx']:.3f}) cycles/px): here the resize "
                 "path leaves the periodic trace (nearest-neighbour upsampling repeats pixels in 2x2 blocks).")
    elif gt and gr:
        peaks = (f"Both leave peaks on the upsampling grid ({gt} for transposed, {gr} for resize-conv), so the "
                 "periodic fingerprint is not specific to transposed convolutions at this budget.")
    else:
        peaks = ("Neither shows narrow peaks on the upsampling grid: at this budget the difference between the "
                 "two lies elsewhere than in periodic artifacts.")
    return ("**Transposed vs resize-convolution upsampling** (two Pix2Pix trainings with the same budget): "
            f"{acc} {peaks}")


def conclusion(results: StudyResults | Sequence[Mapping[str, Any]]) -> str:
    """A Markdown conclusion written from the numbers: per model how strongly the fakes
    are detected (CI-aware: at chance when the CI includes 0.5), whether the radial
    spectrum alone explains it, the largest band power difference, spectral peaks on
    the upsampling grid, where the detector looks; then the transposed-vs-resize
    comparison, a ranking, and the models that are missing. Accepts a `StudyResults`
    or the rows of `results_table`."""
    rows = results_table(results) if isinstance(results, StudyResults) else list(results)
    done = [r for r in rows if "missing" not in r]
    missing = [r for r in rows if "missing" in r]
    out = []
    if done:
        r0 = done[0]
        pct = round(100 * r0.get("level", 0.95))
        sp_names = str(r0.get("splits", ""))
        held = ("held-out masks" if sp_names and "train" not in sp_names.split("+")
                else "masks that include the generators' training split")
        out.append(f"On {r0['n_pairs']} real/generated pairs made from {held} ({sp_names or '?'}), "
                   f"scored by {r0['n_splits']}-fold cross-validation grouped by mask (the real image and the fake of "
                   f"one mask never fall in different folds), with {pct}% bootstrap confidence intervals:")
        base = next((r.get("attr_high_share") for r in done if r["model"] == SIMULATOR
                     and _fin(r.get("attr_high_share"))
                     and _strength(r["accuracy"], r["accuracy_lo"], r["accuracy_hi"]) in ("chance", "below")), None)
        out.extend(f"- {_model_paragraph(r, base)}" for r in done)
        by = {r["model"]: r for r in done}
        up = _upsampling_paragraph(by)
        if up:
            out.append(up)
        detectable = [r for r in done if _strength(r["accuracy"], r["accuracy_lo"], r["accuracy_hi"])
                      in ("weak", "clear", "near-perfect")]
        chance = [r["model"] for r in done if _strength(r["accuracy"], r["accuracy_lo"], r["accuracy_hi"])
                  in ("chance", "below")]
        summary = []
        if detectable:
            ranked = sorted(detectable, key=lambda r: -r["accuracy"])
            summary.append("Detectable, from easiest to hardest: " + ", ".join(
                f"{r['model']} ({r['accuracy']:.2f})" for r in ranked) + ".")
            spectral = [r["model"] for r in ranked if _strength(r["spectrum_accuracy"], r["spectrum_accuracy_lo"],
                                                                r["spectrum_accuracy_hi"]) in ("weak", "clear",
                                                                                               "near-perfect")
                        and _overlap((r["accuracy_lo"], r["accuracy_hi"]),
                                     (r["spectrum_accuracy_lo"], r["spectrum_accuracy_hi"]))]
            if spectral:
                summary.append("For " + ", ".join(spectral) + " the radial power spectrum alone carries most of the "
                               "signal: what gives them away is how much power they have at each spatial scale "
                               "(smoothness, noise level, periodic artifacts), not the layout.")
            top = ranked[0]
            if len(ranked) > 1 and _overlap((top["accuracy_lo"], top["accuracy_hi"]),
                                            (ranked[-1]["accuracy_lo"], ranked[-1]["accuracy_hi"])):
                summary.append("The CIs of the easiest and the hardest overlap: do not read the order as a "
                               "difference in detectability.")
        if chance:
            summary.append("At chance (indistinguishable from real with this many images): " + ", ".join(chance) + ".")
        if summary:
            out.append("**In short.** " + " ".join(summary))
    else:
        out.append("No model could be evaluated.")
    if missing:
        out.append("**Not compared** (missing): " + "; ".join(f"{r['model']}: {r['missing']}" for r in missing) + ".")
    return "\n\n".join(out)


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


METRIC_KEYS = ("accuracy", "accuracy_lo", "accuracy_hi", "auc", "auc_lo", "auc_hi", "spectrum_accuracy",
               "spectrum_accuracy_lo", "spectrum_accuracy_hi", "n_peaks", "n_grid_peaks", "hf_db", "hf_db_lo",
               "hf_db_hi", "edge_enrichment", "edge_enrichment_lo", "edge_enrichment_hi")


def study_metrics(results: StudyResults) -> dict[str, Any]:
    """The key numbers for metrics.json (`METRIC_KEYS` per model: the CNN's accuracy and
    AUC and the spectrum-only accuracy with CIs, peaks, high-frequency power, edge
    enrichment), the number of pairs, the splits and the missing models with reasons."""
    models = {}
    for r in results_table(results):
        if "missing" in r:
            continue
        models[r["model"]] = {k: (None if isinstance(r.get(k), float) and not math.isfinite(r[k]) else r.get(k))
                              for k in METRIC_KEYS}
    return {"n_pairs": results.sets.n_pairs, "splits": list(results.sets.splits), "models": models,
            "missing": dict(results.sets.missing)}
