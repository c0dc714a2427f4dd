"""One configuration: a frozen `Profile` with a sub-config per stage (design.md §6, §9).

`smoke` takes seconds (tests, CI); `cpu` is the default main job on a 2-core machine;
`full` is the seed's scale, meant for a GPU. A profile also carries the *domain* axis
(`sim`, `real` or `both`) and the folder of real SEM images (`real_dir`, empty: the
packaged samples or `../shared`).

`load_profile(name, overrides)` is the only way in. Overrides are a dict or a YAML
file, nested by stage (`{"tables": {"n_boot": 100}, "domain": "real"}`) or dotted
(`{"tables.n_boot": 100}`); an unknown name or a value of the wrong type raises an
error naming it and listing the valid ones. Every stage's size, `n_boot` and `progress`
are decided here and nowhere else: functions take them from the profile, not from
defaults repeated in their signatures.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Mapping

__all__ = ["PROFILE_NAMES", "DOMAINS", "DataConfig", "TrainStageConfig", "RealConfig", "TablesConfig",
           "DetectorTrainConfig", "ForensicsConfig", "SegsemConfig", "DownstreamConfig", "Profile", "load_profile", "profile_settings",
           "real_settings", "domain_settings"]

PROFILE_NAMES = ("smoke", "cpu", "full")
DOMAINS = ("sim", "real", "both")


@dataclass(frozen=True)
class DataConfig:
    """The simulated datasets: image size (px), images per preset, samples shown; the
    packaged real sets notebook 00 fits the simulator to (`fit_sets`) and the frames it
    simulates per set (`fit_frames`)."""

    size: int = 128
    n_images: int = 400
    n_show: int = 8
    fit_sets: tuple[str, ...] = ("cdsem-lines", "cdsem-contacts")
    fit_frames: int = 1


@dataclass(frozen=True)
class TrainStageConfig:
    """Notebooks 20/21: Pix2Pix and CycleGAN schedules (epochs at full lr + epochs of
    linear decay, batch); `compare_epochs`: the fp32-vs-bf16 comparison run (0: skip);
    `cyclegan_steps`: a CPU step budget for CycleGAN (None: the whole schedule)."""

    # cpu: 6+6 epochs, a 2-epoch comparison and 300 CycleGAN steps took 406 s and 382 s on an
    # idle 2-core machine, over the caps of design.md §9 (sim 3 and 2 min, the real domain
    # runs beside them): cut to 2+2 epochs, a 1-epoch comparison and 70 CycleGAN steps
    train_epochs: int = 2
    train_epochs_decay: int = 2
    train_batch: int = 8
    compare_epochs: int = 1
    cyclegan_epochs: int = 2
    cyclegan_epochs_decay: int = 2
    cyclegan_steps: int | None = 70


@dataclass(frozen=True)
class RealConfig:
    """The real domain of notebooks 20, 21, 30 and 40 (`DOMAIN="real"`): the real sets that
    get a model (one model per set; empty: every set of the dataset; none present: the
    first set), the tile size of a real dataset built without a run (`tile`), the Pix2Pix
    and CycleGAN schedules on real tiles (epochs at full lr + decay epochs, batch, step
    caps: None = the whole schedule), the most held-out tiles scored per model
    (`max_eval`; None: all), and the detector's fallback grouping (`block_tiles` x
    `block_tiles` tiles per group when a set has too few frames for frame-grouped folds).
    Sized so that each real training fits 2 minutes of the cpu profile (design.md §9)."""

    sets: tuple[str, ...] = ("cdsem-lines",)
    tile: int = 128
    train_epochs: int = 6  # cdsem-lines: 1 training frame = 70 tiles of 128 px, 9 steps per epoch
    train_epochs_decay: int = 6
    train_batch: int = 8
    train_steps: int | None = None
    cyclegan_epochs: int = 1
    cyclegan_epochs_decay: int = 1
    cyclegan_steps: int | None = 64
    max_eval: int | None = None
    max_pairs: int | None = 96
    block_tiles: int = 2


@dataclass(frozen=True)
class TablesConfig:
    """Notebook 30: test images scored per model (None: the whole test split), the
    sample-size study (`curve_ns`, `curve_repeats`), the SEM encoder's training
    (`sem_train` images, `sem_steps`, `sem_width`) and bootstrap resamples."""

    n_eval: int | None = None
    curve_ns: tuple[int, ...] = (50, 100, 200)
    curve_repeats: int = 2
    sem_train: int = 300
    sem_steps: int = 70  # cpu: 100 steps were 16 s per domain of notebook 30 (over its 1.5 min for both)
    sem_width: int = 16
    n_boot: int = 400


@dataclass(frozen=True)
class DetectorTrainConfig:
    """How a real-vs-generated detector is trained and scored: folds, epochs, random
    crops (px; None: whole images), architectures, their keyword arguments, batch, lr,
    bootstrap resamples of the scores."""

    n_splits: int = 5
    epochs: int = 6
    crop: int | None = 64
    detectors: tuple[str, ...] = ("small_cnn",)
    detector_kwargs: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    lr: float = 3e-3
    n_boot: int = 2000
    precision: str = "fp32"  # "bf16": autocast while training (the cpu profile: 0.6x the CPU time of fp32)


@dataclass(frozen=True)
class ForensicsConfig:
    """Notebook 40: the splits compared, the detector, the transposed- vs resize-conv
    Pix2Pix pair (identical budgets) and the saliency study."""

    splits: tuple[str, ...] = ("val", "test")
    max_pairs: int | None = None
    # cpu: bf16 training (0.66x the CPU time, the same accuracy on notebook 40's sets; 4 folds instead
    # of 5 cost Pix2Pix 0.92 -> 0.86 accuracy, so the folds stay): 102 + 59 s were over its 2 min
    detector: DetectorTrainConfig = DetectorTrainConfig(precision="bf16")
    upsample_epochs: int = 1  # cpu: 2+2 took 152 s of notebook 40 (cap 2 min for both domains)
    upsample_epochs_decay: int = 1
    upsample_batch: int = 8
    upsample_ngf: int = 16
    upsample_precision: str = "bf16"
    saliency_methods: tuple[str, ...] = ("saliency", "integrated_gradients", "layer_gradcam")
    ig_steps: int = 16
    n_correct: int = 2
    n_wrong: int = 2
    n_attr_per_class: int = 48
    peak_threshold: float = 6.0


@dataclass(frozen=True)
class SegsemConfig:
    """Notebook 50 / `semlab contours`: the SegSEM experiment's size (px), images per
    preset, folds, validation images, out-of-distribution sets, SAM2 fine-tuning budget,
    threshold sweep and the real-image line study."""

    size: int = 256
    n_per_preset: int = 20
    folds: int = 5
    n_val: int = 8
    ood_n: int = 8  # cpu: 12 per set took notebook 50 to 80 s (cap 1 min); 8: intervals ~1.2x wider
    ood_variants: tuple[str, ...] = ("low_dose", "blur", "noise", "small_features", "large_features")
    sam2_image_size: int = 512
    sam2_steps: int | None = 10
    sam2_epochs: int = 30
    sam2_max_prompts: int = 8
    sam2_bf16: bool = True
    n_boot: int = 1000
    sweep_points: int = 21
    real_tile: int = 512
    real_tiles: int = 2
    gallery: int = 4


@dataclass(frozen=True)
class DownstreamConfig:
    """Notebook 60 / `semlab downstream`: the segmenter (U-Net `width`, `depth`), its budget
    (`steps` x `batch`, the same for every training set; `lr`, validation every `val_every`
    steps), the tile size (px), the seeds, the real-tile counts N (`ns`; 0 = all), the
    synthetic sources of each domain (training-set specs of `semlab.downstream.data`), the
    synthetic tiles rendered per source, the mixes (`best`: real N + the best source on
    validation; `all`; `none`), the simulated domain's preset and split sizes, and
    bootstrap resamples."""

    tile: int = 128
    steps: int = 80
    batch: int = 8
    lr: float = 3e-3
    val_every: int = 40
    width: int = 16
    depth: int = 3
    precision: str = "bf16"
    seeds: tuple[int, ...] = (0, 1)
    ns: tuple[int, ...] = (10, 0)
    # domain randomisation, explicit (not the preset's fitted ranges): moderate; wide geometry,
    # imaging and contrast; the v2 preset's imaging on new layout masks
    sources_sim: tuple[str, ...] = (
        "preset:line-space:pitch_nm=22..32,dose=100..500,psf_sigma_nm=1.2..3",
        "preset:line-space:pitch_nm=17..36,width_frac=0.35..0.65,dose=40..500,psf_sigma_nm=1..4,"
        "pattern_level=0.22..0.5,background_level=0.08..0.2",
        "render:line-space-v2:pitch_nm=17..36,dose=40..500,psf_sigma_nm=1..4")
    # cdsem-lines: pitch 26 nm, CD 14 nm (`semlab.metrology.measure_lines` on Test01)
    sources_real: tuple[str, ...] = ("preset:line-space:pitch_nm=22..32", "render:line-space:pitch_nm=22..32",
                                     "preset:line-space:pitch_nm=22..32,dose=30..400,psf_sigma_nm=1.5..4.5")
    # trained and scored, never a candidate ("test-ranges": the simulator drawn from the held-out
    # test ranges, `semlab.downstream.data.test_range_spec`: the headroom a source could reach)
    references_sim: tuple[str, ...] = ("test-ranges",)
    n_synthetic: int = 160
    mixes: str = "best"
    sim_preset: str = "line-space"
    sim_n_train: int = 160
    sim_n_val: int = 24
    sim_n_test: int = 48
    n_boot: int = 500


@dataclass(frozen=True)
class NoiseStudyConfig:
    """Notebook 45 (residual-noise injection): the `semlab.noise` models fitted on the train
    split (`kinds`), the injection `mode` (add / replace), the most train tiles fitted on
    (`max_fit`), the most held-out val+test pairs (`max_pairs`), the generators studied, and
    the retrained detector's folds and epochs (the forensics detector otherwise)."""

    kinds: tuple[str, ...] = ("poisson-gaussian", "spectral", "patch-bank", "spectrum-match")
    mode: str = "add"
    max_fit: int = 48
    # an even spread of at most max_pairs of notebook 40's held-out val+test pairs (reused
    # when 40 ran); the detectors work on `tile`-px sub-tiles of them (cpu: 4 x ~32 test
    # pairs; sub-tiles of one image share its fold group and are not independent samples)
    max_pairs: int | None = 64
    tile: int | None = 64
    generators: tuple[str, ...] = ("Pix2Pix", "CycleGAN", "simulator (physics baseline)")
    n_splits: int = 4
    epochs: int = 4
    saliency: bool = True


@dataclass(frozen=True)
class Profile:
    """Everything a run's size depends on. Build it with `load_profile`."""

    name: str = "cpu"
    domain: str = "sim"
    real_dir: str = ""
    progress: bool = True
    data: DataConfig = DataConfig()
    train: TrainStageConfig = TrainStageConfig()
    real: RealConfig = RealConfig()
    tables: TablesConfig = TablesConfig()
    forensics: ForensicsConfig = ForensicsConfig()
    segsem: SegsemConfig = SegsemConfig()
    downstream: DownstreamConfig = DownstreamConfig()
    noise: NoiseStudyConfig = NoiseStudyConfig()

    @property
    def domains(self) -> tuple[str, ...]:
        """The domains a run covers: ("sim",), ("real",) or ("sim", "real")."""
        return ("sim", "real") if self.domain == "both" else (self.domain,)


def _smoke() -> Profile:
    return Profile(
        name="smoke", progress=False,
        data=DataConfig(size=64, n_images=24, n_show=4, fit_sets=("cdsem-lines",), fit_frames=1),
        train=TrainStageConfig(train_epochs=1, train_epochs_decay=1, train_batch=4, compare_epochs=1,
                               cyclegan_epochs=1, cyclegan_epochs_decay=0, cyclegan_steps=4),
        real=RealConfig(tile=128, train_epochs=1, train_epochs_decay=0, train_batch=4, train_steps=4,
                        cyclegan_epochs=1, cyclegan_epochs_decay=0, cyclegan_steps=4, max_eval=24, max_pairs=24),
        tables=TablesConfig(curve_ns=(10, 20, 40), curve_repeats=2, sem_train=24, sem_steps=10, sem_width=8,
                            n_boot=100),
        forensics=ForensicsConfig(
            splits=("train", "val", "test"),
            detector=DetectorTrainConfig(n_splits=3, epochs=3, crop=None, detector_kwargs={"width": 8, "depth": 3},
                                         batch_size=16, n_boot=500),
            upsample_epochs=1, upsample_epochs_decay=0, upsample_batch=4, upsample_ngf=16,
            saliency_methods=("saliency", "layer_gradcam"), ig_steps=8, n_attr_per_class=12),
        segsem=SegsemConfig(size=64, n_per_preset=4, folds=2, n_val=2, ood_n=2, ood_variants=("low_dose", "blur"),
                            sam2_steps=1, sam2_epochs=1, sam2_max_prompts=4, n_boot=200, sweep_points=11,
                            real_tile=128, real_tiles=1, gallery=2),
        downstream=DownstreamConfig(tile=64, steps=12, batch=4, val_every=6, width=16, depth=2, seeds=(0,), ns=(10, 0),
                                    n_synthetic=16, sim_n_train=24, sim_n_val=6, sim_n_test=8, n_boot=100,
                                    sources_sim=("preset:line-space",), sources_real=("preset:line-space:pitch_nm=22..32",)),
        noise=NoiseStudyConfig(kinds=("poisson-gaussian", "spectrum-match"), max_fit=12, max_pairs=24, n_splits=3,
                               epochs=2, saliency=False, tile=None),
    )


def _full() -> Profile:
    return Profile(
        name="full",
        data=DataConfig(size=256, n_images=3000, n_show=8),
        train=TrainStageConfig(train_epochs=100, train_epochs_decay=50, train_batch=1, compare_epochs=0,
                               cyclegan_epochs=100, cyclegan_epochs_decay=100, cyclegan_steps=None),
        real=RealConfig(sets=(), tile=256, train_epochs=100, train_epochs_decay=100, train_batch=1,
                        cyclegan_epochs=100, cyclegan_epochs_decay=100, cyclegan_steps=None, max_pairs=None),
        tables=TablesConfig(curve_ns=(100, 200, 500, 1000, 2000, 5000), curve_repeats=5, sem_train=2000,
                            sem_steps=1000, n_boot=1000),
        forensics=ForensicsConfig(
            splits=("test",),
            detector=DetectorTrainConfig(epochs=15, crop=None, detectors=("small_cnn", "resnet18")),
            upsample_epochs=20, upsample_epochs_decay=20, upsample_ngf=64,
            saliency_methods=("saliency", "integrated_gradients", "smoothgrad", "layer_gradcam"), ig_steps=50,
            n_correct=3, n_wrong=3, n_attr_per_class=200),
        segsem=SegsemConfig(size=512, ood_n=60, sam2_image_size=1024, sam2_steps=None, sam2_max_prompts=16,
                            sam2_bf16=False, n_boot=2000, sweep_points=41, real_tile=1024, real_tiles=4, gallery=6),
        downstream=DownstreamConfig(tile=256, steps=2000, batch=16, val_every=200, width=16, depth=4, seeds=(0, 1, 2),
                                    ns=(10, 30, 100, 0), n_synthetic=2000, sim_n_train=2000, sim_n_val=200,
                                    sim_n_test=400, mixes="all", n_boot=2000),
        noise=NoiseStudyConfig(kinds=("poisson-gaussian", "spectral", "patch-bank", "spectrum-match", "learned"),
                               max_fit=256, max_pairs=None, n_splits=5, epochs=15, tile=None),
    )


_BUILDERS = {"smoke": _smoke, "cpu": Profile, "full": _full}


def _type_name(default: Any) -> str:
    return type(default).__name__


def _coerce(path: str, default: Any, value: Any) -> Any:
    """`value` checked against the type of `default` (lists become tuples)."""
    if isinstance(value, list):
        value = tuple(value)
    if default is None or value is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(default, (int, str, tuple)) and isinstance(value, type(default)):
        return value
    elif isinstance(default, Mapping) and isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"profile setting {path} must be {_type_name(default)} (like {default!r}), "
                    f"got {value!r} ({_type_name(value)})")


def _nest(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys (`tables.n_boot`) into nested dicts."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = str(key).split(".")
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
            if not isinstance(d, dict):
                raise KeyError(f"profile setting {key!r} conflicts with a value given for {p!r}")
        if isinstance(value, Mapping) and isinstance(d.get(parts[-1]), dict):
            d[parts[-1]].update(value)
        else:
            d[parts[-1]] = dict(value) if isinstance(value, Mapping) else value
    return out


def _apply(obj: Any, overrides: Mapping[str, Any], prefix: str) -> Any:
    names = {f.name: f for f in fields(obj)}
    changes = {}
    for key, value in overrides.items():
        path = f"{prefix}{key}"
        if key not in names or key == "name":
            valid = ", ".join(f"{prefix}{n}" for n in names if n != "name")
            raise KeyError(f"unknown profile setting {path!r}; valid: {valid}")
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, Mapping):
                raise TypeError(f"profile setting {path} is a section; give a mapping of its settings")
            changes[key] = _apply(current, value, f"{path}.")
        else:
            changes[key] = _coerce(path, current, value)
    return replace(obj, **changes) if changes else obj


def _read_overrides(overrides: Any) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, (str, os.PathLike)):
        import yaml

        p = Path(overrides)
        try:
            data = yaml.safe_load(p.read_text())
        except OSError as exc:
            raise FileNotFoundError(f"{p}: cannot read the profile overrides ({exc.strerror or exc})") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"{p}: not valid YAML ({exc})") from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ValueError(f"{p}: profile overrides must be a mapping of settings, got {_type_name(data)}")
        return data
    if not isinstance(overrides, Mapping):
        raise TypeError(f"profile overrides must be a mapping or a YAML file, got {_type_name(overrides)}")
    return dict(overrides)


def load_profile(name: str | Profile = "cpu", overrides: Any = None) -> Profile:
    """The profile `name` ("smoke", "cpu", "full") with `overrides` (a dict or a YAML
    file; nested by stage or dotted). KeyError lists valid names; TypeError names a
    value of the wrong type; ValueError a bad domain."""
    if isinstance(name, Profile):
        prof = name
    else:
        if name not in _BUILDERS:
            raise KeyError(f"unknown profile {name!r}; valid: {', '.join(PROFILE_NAMES)}")
        prof = _BUILDERS[name]()
    prof = _apply(prof, _nest(_read_overrides(overrides)), "")
    if prof.domain not in DOMAINS:
        raise ValueError(f"unknown domain {prof.domain!r}; valid: {', '.join(DOMAINS)}")
    return prof


def profile_settings(profile: str | Profile) -> dict:
    """The data and training settings of a profile as one flat dict (size, n_images,
    n_show, train_* and cyclegan_*), for notebooks 00-21."""
    prof = load_profile(profile)
    return {**dataclasses.asdict(prof.data), **dataclasses.asdict(prof.train)}


def real_settings(profile: str | Profile) -> dict:
    """The real-domain settings of a profile (`RealConfig`) as a flat dict."""
    return dataclasses.asdict(load_profile(profile).real)


def domain_settings(profile: str | Profile, domain: str = "sim") -> dict:
    """`profile_settings` for notebooks 20/21 in `domain`, plus `train_steps` (a Pix2Pix
    step cap; None: the whole schedule). For "sim" exactly the simulated settings; for
    "real" the schedules of `RealConfig` replace them and the fp32-vs-bf16 comparison is
    off (the real trainings have 2 minutes of the cpu profile each)."""
    out = {**profile_settings(profile), "train_steps": None}
    if domain == "sim":
        return out
    if domain != "real":
        raise ValueError(f"unknown domain {domain!r}; valid: sim, real")
    r = load_profile(profile).real
    out.update(train_epochs=r.train_epochs, train_epochs_decay=r.train_epochs_decay, train_batch=r.train_batch,
               train_steps=r.train_steps, compare_epochs=0, cyclegan_epochs=r.cyclegan_epochs,
               cyclegan_epochs_decay=r.cyclegan_epochs_decay, cyclegan_steps=r.cyclegan_steps)
    return out
