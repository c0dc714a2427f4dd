"""Residual-noise injection against a retrained detector (notebook 45).

The question: once real SEM noise is put on generated images (`semlab.noise` models),
can a detector that is *retrained* on the injected images still tell them from real
ones? A detector trained before injection proves nothing: it learned the old tells.

The protocol, per domain ("real": the real set's tiles are the real side; "sim": the
simulator's images, "simulated (target)", are the real side and their noise-free images
exist):

1. **Fit** every noise model on the *train* split's real tiles (with the noise-free
   images in the simulated domain, a denoiser's estimate otherwise).
2. **Choose** one model per generator on the *validation* split: inject every model into
   the generator's validation images and score each against the real validation tiles
   with `semlab.realism`'s `stats` detector (grouped cross-validation); the model whose
   balanced accuracy is nearest chance wins. Nothing is chosen on test.
3. **Report** on the *test* split only, before and after injection with the chosen
   model: the CNN detector retrained from scratch (grouped k-fold, as notebook 40), the
   spectrum-only detector and the `stats` detector, each with a 95% CI; PSNR and SSIM
   against the noise-free image where it exists; the log-spectrum distance to the real
   tiles; FD_sem / KD_sem when the run has notebook 30's SEM encoder.

**Reusing notebook 40's images.** Generating the held-out images takes about 20 s per
domain; notebook 40 saves its sets (`save_fake_sets`: `fake_sets.npz`, read back with
``allow_pickle=False``, and `fake_sets.json`) and publishes the folder in the run
manifest. The study's pairs are an even spread of `max_pairs` of notebook 40's pairs
(`study_fake_sets`): taken from the saved sets when the run has them (same dataset and
generators), else generated with notebook 40's settings and seed, so both ways give the
same masks.

`inject` is the one place images get noise: `mode="add"` puts model noise on the
image; `mode="replace"` first removes the image's own pseudo-noise (non-local means with
the noise level estimated from the image) and then adds model noise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from semlab.forensics.study_types import FakeSets

__all__ = ["MODES", "NoiseTrainingData", "InjectionStudy", "noise_training_data", "fit_noise_models", "denoise",
           "inject", "split_sets", "choose_models", "injection_study", "save_fake_sets", "load_fake_sets",
           "study_fake_sets", "subtile_sets", "run_sem_encoder"]

MODES = ("add", "replace")


@dataclass
class NoiseTrainingData:
    """What the noise models are fitted on: the train split's real tiles (and their
    noise-free images in the simulated domain), with the pixel size and provenance."""

    images: np.ndarray
    clean: np.ndarray | None
    pixel_nm: float | None
    label: str
    n_frames: int

    def describe(self) -> str:
        c = "with their noise-free images" if self.clean is not None else "clean images estimated by a denoiser"
        px = f" at {self.pixel_nm:.3g} nm/px" if self.pixel_nm else ""
        return f"{len(self.images)} tiles of {self.n_frames} frame(s) of {self.label}{px}, {c}"


def noise_training_data(dataset, real=None, *, max_images: int = 64, seed: int = 0) -> NoiseTrainingData:
    """The train split of `dataset`: every tile of the real set's train frames (`real`: a
    `semlab.train.realsets.RealSplit`), or in the simulated domain the simulated targets
    and their noise-free images. At most `max_images`, spread evenly."""
    from semlab.data.datasets import load_dataset

    ds = load_dataset(dataset)
    ids = list(real.tiles.get("train", [])) if real is not None else list(ds.split("train"))
    if not ids:
        raise ValueError(f"{dataset}: no train tiles to fit noise models on")
    if len(ids) > max_images:
        keep = np.linspace(0, len(ids) - 1, int(max_images)).round().astype(int)
        ids = [ids[k] for k in keep]
    images = np.stack([ds.image(i) for i in ids]).astype(np.float32)
    clean = None
    if real is None:
        cl = [ds.clean(i) for i in ids]
        clean = np.stack(cl).astype(np.float32) if all(c is not None for c in cl) else None
    if real is not None:
        from semlab.train.realsets import set_pixel_nm

        px, label, nf = set_pixel_nm(ds, real.set), f"{real.set} (real), train split", len(real.frames["train"])
    else:
        px, label, nf = ds.info.get("pixel_size_nm"), f"{Path(dataset).name} (simulated), train split", len(ids)
    return NoiseTrainingData(images, clean, px, label, nf)


def fit_noise_models(kinds: Sequence[str], data: NoiseTrainingData, *, seed: int = 0,
                     options: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """({kind: fitted model}, {kind: why it could not be fitted}) for the registered
    `semlab.noise` models named in `kinds`; `options[kind]` are passed to its `fit`."""
    from semlab.noise import registry

    models, failed = {}, {}
    for kind in kinds:
        try:
            cls = registry.get(kind)
            kw = dict((options or {}).get(kind, {}))
            if kind == "learned":
                kw.setdefault("seed", seed)
            models[kind] = cls.fit(list(data.images), None if data.clean is None else list(data.clean),
                                   pixel_nm=data.pixel_nm, **kw)
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            failed[kind] = f"{type(exc).__name__}: {exc}"
    return models, failed


def denoise(img: np.ndarray) -> np.ndarray:
    """The clean estimate of `replace` mode and of the residual figures
    (`semlab.noise.models.denoise`: non-local means, noise level from the image)."""
    from semlab.noise.models import denoise as nlm

    return nlm(img)


def inject(model, images: np.ndarray, *, mode: str = "add", seed: int = 0, pixel_nm: float | None = None) -> np.ndarray:
    """`images` (N, H, W) in [0, 1] with `model`'s noise (`semlab.noise.inject.inject_images`:
    `add` on top of them, `replace` after removing their own pseudo-noise), as one array.
    Deterministic per seed."""
    from semlab.noise.inject import inject_images

    out = inject_images(model, list(np.asarray(images, dtype=np.float32)), mode=mode, seed=seed, pixel_nm=pixel_nm)
    return np.clip(np.stack(out), 0.0, 1.0).astype(np.float32)


FAKE_SETS_NPZ = "fake_sets.npz"
FAKE_SETS_JSON = "fake_sets.json"


def save_fake_sets(sets: FakeSets, folder, generators: Mapping[str, Any] | None = None) -> Path | None:
    """Write `sets` (images, masks, ids, groups; not the real split) into `folder`
    (`fake_sets.npz` + `fake_sets.json`, atomically); `generators`: {name: checkpoint}
    they were made with, recorded so a reader can check it has the same ones. Returns
    the folder (None when `folder` is None: no run)."""
    if folder is None:
        return None
    from semlab.io import atomic_write, write_json_atomic

    folder = Path(folder)
    names = list(sets.fakes)
    arrays = {"real": sets.real, "masks": sets.masks, **{f"fake_{k}": sets.fakes[n] for k, n in enumerate(names)}}
    with atomic_write(folder / FAKE_SETS_NPZ) as f:
        np.savez(f, **arrays)
    write_json_atomic(folder / FAKE_SETS_JSON, {
        "format": "semlab-fake-sets", "dataset": str(Path(sets.dataset).resolve()), "splits": list(sets.splits),
        "ids": list(sets.ids), "names": names, "sources": dict(sets.sources), "missing": dict(sets.missing),
        "generators": {k: str(Path(v).resolve()) for k, v in (generators or {}).items() if v},
        "fold_groups": None if sets.fold_groups is None else [str(g) for g in sets.fold_groups],
        "grouping": sets.grouping})
    return folder


def load_fake_sets(folder, real=None) -> FakeSets:
    """The `FakeSets` saved by `save_fake_sets` in `folder` (`real`: the RealSplit to
    attach in the real domain). The files are untrusted: the arrays are read with
    ``allow_pickle=False`` and their shapes checked against the record."""
    import json

    folder = Path(folder)
    meta_p, npz_p = folder / FAKE_SETS_JSON, folder / FAKE_SETS_NPZ
    try:
        meta = json.loads(meta_p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{meta_p}: unreadable fake-set record ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != "semlab-fake-sets":
        raise ValueError(f"{meta_p}: not a fake-set record")
    ids, names = [str(i) for i in meta.get("ids", [])], [str(n) for n in meta.get("names", [])]
    try:
        with np.load(npz_p, allow_pickle=False) as z:
            arr = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{npz_p}: unreadable ({exc})") from None
    want = {"real", "masks", *(f"fake_{k}" for k in range(len(names)))}
    if set(arr) != want:
        raise ValueError(f"{npz_p}: arrays {sorted(arr)}, the record names {sorted(want)}")
    shape = (len(ids),) + arr["real"].shape[1:]
    if arr["real"].ndim != 3 or any(a.shape != shape for a in arr.values()):
        raise ValueError(f"{npz_p}: every array must be {shape} (one image per id); got "
                         f"{ {k: a.shape for k, a in arr.items()} }")
    fg = meta.get("fold_groups")
    return FakeSets(dataset=Path(meta["dataset"]), splits=tuple(meta.get("splits", ())), ids=ids,
                    real=arr["real"].astype(np.float32), masks=arr["masks"],
                    fakes={n: arr[f"fake_{k}"].astype(np.float32) for k, n in enumerate(names)},
                    sources=dict(meta.get("sources", {})), missing=dict(meta.get("missing", {})),
                    fold_groups=None if fg is None else list(fg),
                    grouping=str(meta.get("grouping", FakeSets.grouping)), real_split=real)


def _spread(sets: FakeSets, max_pairs: int | None, dataset, real, n_splits: int, profile: str) -> FakeSets:
    """An even spread of at most `max_pairs` of `sets`' pairs (every k-th, so the val and
    test tiles keep their shares), with the real domain's fold groups formed anew."""
    n = sets.n_pairs
    if max_pairs is None or n <= int(max_pairs):
        idx = list(range(n))
    else:
        idx = sorted(set(np.linspace(0, n - 1, int(max_pairs)).round().astype(int).tolist()))
    out = replace(sets, ids=[sets.ids[k] for k in idx], real=sets.real[idx], masks=sets.masks[idx],
                  fakes={g: f[idx] for g, f in sets.fakes.items()})
    if real is None:
        return replace(out, fold_groups=None, grouping=FakeSets.grouping)
    from semlab.config import load_profile
    from semlab.data.datasets import load_dataset
    from semlab.train import realsets

    groups, how = realsets.fold_groups(realsets.tile_index(load_dataset(dataset)), out.ids, int(n_splits),
                                       load_profile(profile).real.block_tiles)
    return replace(out, fold_groups=groups.tolist(), grouping=how, real_split=real)


def study_fake_sets(run_dir, domain: str, dataset, real, generators: Mapping[str, Any], settings: Mapping[str, Any],
                    *, max_pairs: int | None = None, missing: Mapping[str, str] | None = None, seed: int = 0,
                    preset: str = "ic-metal") -> tuple[FakeSets, str]:
    """(sets, where they come from): an even spread of at most `max_pairs` of the pairs
    notebook 40 scores (`domain_fake_sets` with notebook 40's `settings`), taken from its
    saved sets when this run has them (`fake_sets` in the manifest; same dataset and
    generators), generated with the same settings and seed otherwise."""
    from semlab.forensics.study import domain_fake_sets
    from semlab.runs import run_outputs, step_name

    why = "generated here (notebook 40 published no image sets in this run)"
    folder = (run_outputs(run_dir).get(step_name("40_real_vs_fake", domain)) or {}).get("fake_sets")
    base = None
    if folder:
        try:
            saved = load_fake_sets(folder, real)
            gens = {k: str(Path(v).resolve()) for k, v in generators.items() if v}
            rec = _saved_generators(folder)
            if Path(saved.dataset).resolve() != Path(dataset).resolve():
                why = f"generated here (notebook 40's sets are of another dataset, {saved.dataset})"
            elif real is None and tuple(saved.splits) != tuple(settings["splits"]):
                why = f"generated here (notebook 40's sets are of the splits {', '.join(saved.splits)})"
            elif any(rec.get(k) != v or k not in saved.fakes for k, v in gens.items()):
                why = "generated here (notebook 40's sets were made with other generators)"
            else:
                base = replace(saved, fakes={k: v for k, v in saved.fakes.items() if k in gens or k not in rec},
                               missing={**saved.missing, **dict(missing or {})})
                why = f"reused from notebook 40 ({folder})"
        except (OSError, ValueError, KeyError) as exc:
            why = f"generated here (notebook 40's sets could not be read: {exc})"
    if base is None:
        base = domain_fake_sets(dataset, real, generators, settings, missing=missing, seed=seed, preset=preset)
    out = _spread(base, max_pairs, dataset, real, int(settings["n_splits"]), settings["profile"])
    return out, f"{why}: {out.n_pairs} of its {base.n_pairs} pairs"


def _saved_generators(folder) -> dict[str, str]:
    """{name: checkpoint} recorded in a fake-set folder's record ({} when absent)."""
    import json

    try:
        g = json.loads((Path(folder) / FAKE_SETS_JSON).read_text(encoding="utf-8")).get("generators", {})
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return {str(k): str(v) for k, v in g.items()} if isinstance(g, dict) else {}


def split_sets(sets: FakeSets, dataset, real=None) -> dict[str, FakeSets]:
    """`sets` cut into its validation and test parts ({"val": ..., "test": ...}), by the
    split of each tile in the dataset (real domain: the real set's split)."""
    from semlab.data.datasets import load_dataset

    if real is not None:
        of = {i: s for s, ids in real.tiles.items() for i in ids}
    else:
        ds = load_dataset(dataset)
        of = {i: s for s in ("train", "val", "test") for i in ds.split(s)}
    out = {}
    for split in ("val", "test"):
        idx = [k for k, i in enumerate(sets.ids) if of.get(i) == split]
        if not idx:
            continue
        g = None if sets.fold_groups is None else [sets.fold_groups[k] for k in idx]
        out[split] = replace(sets, splits=(split,), ids=[sets.ids[k] for k in idx], real=sets.real[idx],
                             masks=sets.masks[idx], fakes={n: f[idx] for n, f in sets.fakes.items()}, fold_groups=g)
    return out


def subtile_sets(sets: FakeSets, tile: int) -> FakeSets:
    """`sets` with every image cut into non-overlapping `tile`-px sub-tiles (ids
    ``<id>#<k>``), each keeping the fold group of its parent (its mask id, or its block
    of real tiles), so that no two sub-tiles of one image sit on both sides of a fold.
    More pairs for the detectors, but not more independent ones: the sub-tiles of one
    tile share its structure and noise, and the detectors' bootstrap CIs over images
    read them as independent (the CI is narrower than the frames justify)."""
    h, w = sets.real.shape[1:]
    tile = int(tile)
    if tile < 16 or tile > min(h, w):
        raise ValueError(f"subtile: tile must be 16..{min(h, w)} px (the images are {h}x{w}), got {tile}")
    cells = [(y, x) for y in range(0, h - tile + 1, tile) for x in range(0, w - tile + 1, tile)]

    def cut(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a[:, y:y + tile, x:x + tile] for y, x in cells])

    groups = [str(g) for g in sets.groups.tolist()] * len(cells)
    return replace(sets, ids=[f"{i}#{k}" for k in range(len(cells)) for i in sets.ids], real=cut(sets.real),
                   masks=cut(sets.masks), fakes={n: cut(f) for n, f in sets.fakes.items()}, fold_groups=groups,
                   grouping=f"{sets.grouping}; {len(cells)} sub-tiles of {tile} px per image, each in its "
                            "image's group")


def _sides(sets: FakeSets, fake: np.ndarray, name: str):
    """realism Sides (real, generated) whose groups are the study's fold groups."""
    from semlab.realism import Side

    g = sets.groups
    zeros = np.zeros((len(g), 2), np.int64)
    # one side name, so that a real tile and the image generated from its mask share a fold
    real = Side("pair", str(sets.dataset), sets.real, np.asarray(g), zeros, None)
    gen = Side("pair", name, fake, np.asarray(g), zeros, None)
    return real, gen


def _stats(sets: FakeSets, fake: np.ndarray, name: str, *, detectors=("stats", "spectrum"), seed: int = 0,
           n_splits: int = 5, n_boot: int = 500) -> dict[str, dict[str, Any]]:
    from semlab.realism import cross_validate

    real, gen = _sides(sets, fake, name)
    return cross_validate(real, gen, grouping="frame", detectors=detectors, n_splits=n_splits, seed=seed,
                          n_boot=n_boot)


def choose_models(val: FakeSets, models: Mapping[str, Any], *, mode: str = "add", seed: int = 0,
                  n_splits: int = 5, progress: bool = False, tile: int | None = None) -> dict[str, dict[str, Any]]:
    """Per generator of `val`: {"chosen": kind, "scores": {kind: stats-detector result}},
    the model whose injected validation images the `stats` detector separates least from
    the real validation tiles (balanced accuracy nearest chance, `semlab.noise.inject.pick_model`);
    `tile`: scored on sub-tiles of the injected whole images (`subtile_sets`)."""
    out = {}
    items = [(g, k) for g in val.models for k in models]
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="choose noise models (val)")
    scores: dict[str, dict[str, Any]] = {g: {} for g in val.models}
    for g, kind in items:
        fake = inject(models[kind], val.fakes[g], mode=mode, seed=seed)
        v = val if tile is None else subtile_sets(replace(val, fakes={g: fake}), tile)
        scores[g][kind] = _stats(v, v.fakes[g] if tile is not None else fake, g, detectors=("stats",), seed=seed,
                                 n_splits=n_splits)["stats"]
    from semlab.noise.inject import pick_model

    for g, s in scores.items():
        if s:
            out[g] = {"chosen": pick_model(s), "scores": s}
    return out


@dataclass
class InjectionStudy:
    """Everything notebook 45 shows for one domain."""

    domain: str
    data: NoiseTrainingData
    fit_failed: dict[str, str]
    mode: str
    selection: dict[str, dict[str, Any]]
    test: FakeSets
    injected: FakeSets
    before: dict[str, Any]
    after: dict[str, Any]
    stats_before: dict[str, dict[str, Any]]
    stats_after: dict[str, dict[str, Any]]
    quality: dict[str, dict[str, dict[str, float]]]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def chosen(self) -> dict[str, str]:
        return {g: s["chosen"] for g, s in self.selection.items()}


def run_sem_encoder(run_dir, domain: str):
    """(encoder, note): the SEM encoder notebook 30 trained in this run for `domain` (its
    published `sem_encoder` file, read with `weights_only=True`), so that FD_sem / KD_sem
    before and after injection are in the same feature space as notebook 30's tables; None
    with the reason when the run has none or the file is unreadable."""
    from semlab.metrics.sem_encoder import load_sem_encoder
    from semlab.runs import run_outputs, step_name

    step = step_name("30_metric_tables", domain)
    path = run_outputs(run_dir).get(step, {}).get("sem_encoder")
    if not path:
        return None, f"no FD_sem: {step} published no SEM encoder in this run"
    try:
        enc = load_sem_encoder(path)
    except (OSError, ValueError) as exc:
        return None, f"no FD_sem: {exc}"
    return enc, f"FD_sem / KD_sem with {step}'s encoder: {enc.describe()}"


def _quality(test: FakeSets, fake: np.ndarray, clean: np.ndarray | None, encoder=None) -> dict[str, float]:
    from semlab.metrics.pixel import bootstrap_ci, psnr, ssim
    from semlab.metrics.spectral import log_spectrum_distance

    q: dict[str, float] = {"log_spectrum_distance": float(log_spectrum_distance(list(fake), list(test.real)))}
    if clean is not None:
        for name, fn in (("psnr_db", psnr), ("ssim", ssim)):
            v, lo, hi = bootstrap_ci(np.array([fn(f, c) for f, c in zip(fake, clean)]))
            q.update({name: v, f"{name}_ci_low": lo, f"{name}_ci_high": hi})
    if encoder is not None:
        from semlab.metrics.sem_encoder import compute_fd_sem

        r = compute_fd_sem(test.real, fake, encoder, kid_subset_size=min(100, len(fake)))
        q.update({k: float(v) for k, v in r.items() if isinstance(v, (int, float))})
    return q


def injection_study(domain: str, dataset, real, sets: FakeSets, *, kinds: Sequence[str], mode: str = "add",
                    profile: str = "cpu", seed: int = 0, max_fit: int = 64, encoder=None,
                    detector: Mapping[str, Any] | None = None, progress: bool = False,
                    tile: int | None = None) -> InjectionStudy:
    """Fit, choose on validation, report on test (see the module doc). `sets`: the
    generated images of the held-out val and test masks (`domain_fake_sets`); `detector`:
    overrides of the profile's CNN detector settings (n_splits, epochs, ...), the same
    before and after injection; `tile`: the choice and the detectors work on sub-tiles of
    this size (`subtile_sets`; the noise is still injected into the whole images)."""
    from semlab.data.datasets import load_dataset
    from semlab.forensics.study import run_detectors

    t0 = time.perf_counter()
    data = noise_training_data(dataset, real, max_images=max_fit, seed=seed)
    models, failed = fit_noise_models(kinds, data, seed=seed)
    if not models:
        raise ValueError(f"no noise model could be fitted on {data.describe()}: {failed}")
    t_fit = time.perf_counter() - t0
    parts = split_sets(sets, dataset, real)
    if "val" not in parts or "test" not in parts:
        raise ValueError(f"{dataset}: the study needs held-out val and test tiles; it has {sorted(parts)}")
    ds = load_dataset(dataset)
    clean = None
    if real is None:
        cl = [ds.clean(i) for i in parts["test"].ids]
        clean = np.stack(cl).astype(np.float32) if all(c is not None for c in cl) else None
    cut = tile is not None and int(tile) < sets.real.shape[1]
    # noise goes on whole images; with `tile` the detectors see sub-tiles
    selection = choose_models(parts["val"], models, mode=mode, seed=seed, progress=progress,
                              tile=int(tile) if cut else None)
    t_choose = time.perf_counter() - t0 - t_fit
    test = parts["test"]
    injected = replace(test, fakes={g: inject(models[selection[g]["chosen"]], f, mode=mode, seed=seed + 1)
                                    for g, f in test.fakes.items() if g in selection})
    if cut:
        test, injected = subtile_sets(test, int(tile)), subtile_sets(injected, int(tile))
        if clean is not None:
            clean = subtile_sets(replace(parts["test"], real=clean, fakes={}), int(tile)).real
    det = dict(detector or {})
    before = run_detectors(test, profile=profile, seed=seed, progress=progress, **det)
    after = run_detectors(injected, profile=profile, seed=seed, progress=progress, **det)
    stats_before, stats_after, quality = {}, {}, {}
    for g in injected.fakes:
        stats_before[g] = _stats(test, test.fakes[g], g, seed=seed)
        stats_after[g] = _stats(test, injected.fakes[g], g, seed=seed)
        quality[g] = {"before": _quality(test, test.fakes[g], clean, encoder),
                      "after": _quality(test, injected.fakes[g], clean, encoder)}
    if clean is not None:  # what real noise costs: the simulated target against its own noise-free image
        quality["simulated (target)"] = {"before": _quality(test, test.real, clean, encoder)}
    return InjectionStudy(domain, data, failed, mode, selection, test, injected, before, after, stats_before,
                          stats_after, quality, {"fit": t_fit, "choose": t_choose,
                                                 "total": time.perf_counter() - t0})
