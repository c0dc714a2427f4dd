"""`semlab inject`: put real SEM noise on generated images (issue 20 item 2).

    inject_folder("spectral", fit_dir="real/", in_dir="generated/", out_dir="injected/", mode="add")
    noisy = inject_images(model, images, mode="replace", seed=0)        # in a notebook

**Modes.** ``add`` puts the model's noise on the generated image as it is: a generated
image that already carries its own pseudo-noise of sigma s_own ends with about
``sqrt(s_own^2 + s_model^2)``. ``replace`` first removes the image's own noise with the
same denoiser the models fit with (`semlab.noise.models.denoise`, non-local means), then
adds the model's noise: the result's noise is about the model's level, as far as the
denoiser removes the image's own (white pseudo-noise of 0.03 it removes well, see
tests/test_inject.py; the heavy, correlated noise of the pre-issue-17 `line-space` preset,
16 GL by `noise_sigma`, drops only to 11-12 GL with 6.6 GL of real noise added). (`spectrum-match` draws no noise: it corrects the spectrum of the
image, or of its denoised version under ``replace``.)

**Fitting.** The real side (`fit_dir`: a folder of frames or a semlab dataset) is read
with `semlab.realism.load_side`: data bars cropped, frames of pixel sizes more than 2%
apart resampled to their median, and (only with ``resample=True``) to the generated
images' pixel size; noise is fitted at the real pixel size by default, because resampling
changes the noise's correlation, and a model used at another pixel size warns
(`NoiseModel.check_use`). Frames are cut into tiles of one size (the models need
same-size images; 512 px, or the largest of 256, 128, 64 the frames hold), at most
`max_fit` tiles (seeded). A semlab dataset with ``clean/``
images (simulated targets) gives its images and their exact clean images instead.
`fit_split` keeps only frames of one stored split (the notebook fits on ``val``; nothing
is tuned on test frames). Real frames of different bit depths are refused.

**Output.** `out_dir` gets one image per input, under the input's relative name with the
suffix ``.png`` (8-bit, or 16-bit for 16-bit input), `model/` (the model, with the sha256
of its training data in its metadata) and `inject.json` (model kind, params sha256, data
sha256, mode, seed, input folder, and per output file its sha256). A re-run with the same
settings skips outputs whose file matches the record (resumable); other settings are
refused. The input is never written: `out_dir` may not be `in_dir`, lie inside it or hold
it, nor be the fit folder, and an `out_dir` holding files inject did not write is refused
unless ``overwrite=True`` (which still never deletes them).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from semlab.noise.registry import MODEL_FILE, NoiseModel

__all__ = ["MODES", "RECORD", "inject_images", "inject_folder", "load_fit_images", "read_inputs", "resolve_model",
           "select_model", "pick_model", "bench_inject"]

MODES = ("add", "replace")
RECORD = "inject.json"
MODEL_DIR = "model"


def _rng(seed: int, key: str) -> np.random.Generator:
    k = int(hashlib.sha256(key.encode()).hexdigest()[:16], 16)
    return np.random.default_rng(np.random.SeedSequence([int(seed), k]))


def inject_images(model: NoiseModel, images: Sequence[np.ndarray], *, mode: str = "add", seed: int = 0,
                  names: Sequence[str] | None = None, pixel_nm: float | None = None) -> list[np.ndarray]:
    """`images` (float in [0, 1]) with `model`'s noise, per `mode` (module doc). Image i
    draws from a generator seeded by (seed, names[i] or i): deterministic per seed."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    model.check_use(pixel_nm=pixel_nm, where=f"inject ({model.kind})")
    keys = list(names) if names is not None else [str(i) for i in range(len(images))]
    return [model.sample(_base(img, mode), _rng(seed, key)) for key, img in zip(keys, images)]


# --------------------------------------------------------------------------- reading


def load_fit_images(fit_dir, *, tile: int = 512, pixel_nm: float | None = None, split: str | None = None,
                    max_fit: int = 64, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray] | None, dict]:
    """(images, clean images or None, info{pixel_nm, bit_depth, notes, source}) to fit a model on
    (module doc)."""
    from semlab.realism import load_side

    src = Path(fit_dir)
    if not src.exists():
        raise FileNotFoundError(f"fit folder not found: {src}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 20]))
    if (src / "dataset.json").is_file() and (src / "clean").is_dir():
        from semlab.data.datasets import load_dataset

        ds = load_dataset(src)
        ids = ds.split(split) if split else ds.ids
        ids = [i for i in ids if ds.path("clean", i).is_file()]
        if not ids:
            raise ValueError(f"fit folder {src}: no items with clean images" + (f" in split {split!r}" if split else ""))
        if len(ids) > max_fit:
            ids = [ids[k] for k in np.sort(rng.choice(len(ids), max_fit, replace=False))]
        info = json.loads((src / "dataset.json").read_text())
        return ([ds.image(i) for i in ids], [ds.clean(i) for i in ids],
                {"pixel_nm": info.get("pixel_size_nm"), "bit_depth": 8, "notes": [], "source": str(src)})
    bit_depth = 8
    if not (src / "dataset.json").is_file():
        from semlab import io
        from semlab.data.sources import list_images

        depths: dict[int, list[str]] = {}
        for f in list_images(src):
            depths.setdefault(int(io.read_image_meta(f).get("bit_depth") or 8), []).append(f.name)
        if len(depths) > 1:
            raise ValueError(f"fit folder {src}: frames of different bit depths "
                             + "; ".join(f"{d}-bit: {', '.join(v[:3])}" for d, v in sorted(depths.items()))
                             + "; fit on frames of one bit depth")
        bit_depth = 16 if 16 in depths else 8
    side = None
    for t in sorted({tile, *(t for t in (256, 128, 64) if t < tile)}, reverse=True):
        try:  # the largest tile the frames allow (the calibration needs room: semlab.noise.models)
            side = load_side(src, tile=t, name="fit", pixel_nm=pixel_nm, split=split)
            break
        except ValueError as e:
            if "smaller than one" not in str(e) or t == min(tile, 64):
                raise
    idx = np.arange(side.n)
    if side.n > max_fit:
        idx = np.sort(rng.choice(side.n, max_fit, replace=False))
    return ([side.tiles[i] for i in idx], None,
            {"pixel_nm": side.pixel_nm, "bit_depth": bit_depth, "notes": side.notes, "source": str(src)})


def read_inputs(in_dir) -> tuple[list[tuple[str, Any]], float | None]:
    """[(output name, loader)] of a folder of images or a semlab dataset (its images), and
    its pixel size if recorded. Output names keep the input's relative path, suffix .png."""
    from semlab import io

    src = Path(in_dir)
    if not src.exists():
        raise FileNotFoundError(f"input folder not found: {src}")
    items: list[tuple[str, Any]] = []
    px = None
    if (src / "dataset.json").is_file():
        from semlab.data.datasets import load_dataset

        ds = load_dataset(src)
        px = json.loads((src / "dataset.json").read_text()).get("pixel_size_nm")
        for i in ds.ids:
            items.append((f"{i}.png", (lambda i=i: (ds.image(i), 8))))
    else:
        from semlab.data.sources import list_images

        for f in list_images(src):
            rel = f.relative_to(src).as_posix() if src.is_dir() else f.name
            name = str(Path(rel).with_suffix(".png"))

            def load(f=f):
                bits = io.read_image_meta(f).get("bit_depth") or 8
                return io.read_image(f), 16 if bits == 16 else 8
            items.append((name, load))
        pxs = {io.read_image_meta(f).get("pixel_size_nm") for f in list_images(src)[:8]}
        pxs.discard(None)
        px = float(np.median(list(pxs))) if pxs else None
    names = [n for n, _ in items]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"input folder {src}: several inputs would write {dup[:3]} (same name, other suffix); "
                         "rename them")
    return items, px


def resolve_model(model_or_name, fit_dir=None, *, pixel_nm=None, fit_split=None, tile: int = 512,
                  max_fit: int = 64, seed: int = 0, resample: bool = False, **options) -> tuple[NoiseModel, dict]:
    """A NoiseModel from an instance, a saved model folder (holding model.json), or a
    registered kind fitted on `fit_dir` at its own pixel size (`resample`: resampled to
    `pixel_nm` first). Returns (model, info)."""
    from semlab.noise import registry

    if isinstance(model_or_name, NoiseModel):
        return model_or_name, {"source": "given"}
    spec = str(model_or_name)
    if (Path(spec) / MODEL_FILE).is_file():
        return registry.load(spec), {"source": str(Path(spec))}
    if os.sep in spec or Path(spec).is_dir():
        raise FileNotFoundError(f"{spec}: no noise model here (expected {MODEL_FILE}); or give a model name: "
                                f"{', '.join(registry.names())}")
    cls = registry.get(spec)
    if fit_dir is None:
        raise ValueError(f"noise model {spec!r} needs --fit REAL_DIR to be fitted on (or --model DIR of a saved one)")
    imgs, cleans, info = load_fit_images(fit_dir, tile=tile, pixel_nm=pixel_nm if resample else None,
                                         split=fit_split, max_fit=max_fit,
                                         seed=seed)
    model = cls.fit(imgs, cleans, pixel_nm=info["pixel_nm"], bit_depth=info["bit_depth"], **options)
    return model, {"source": f"fitted on {fit_dir}" + (f" (split {fit_split})" if fit_split else ""),
                   "n_fit": len(imgs), "notes": info["notes"]}


# --------------------------------------------------------------------------- folders


def _inside(a: Path, b: Path) -> bool:
    """a is b or lies inside b."""
    try:
        a.relative_to(b)
        return True
    except ValueError:
        return False


def _check_out(out: Path, in_dir: Path, fit_dir: Path | None) -> None:
    o, i = out.resolve(), in_dir.resolve()
    if _inside(o, i if i.is_dir() else i.parent):
        raise ValueError(f"--out {out} is the input folder or inside it: inject never writes into its input")
    if _inside(i, o):
        raise ValueError(f"--out {out} holds the input {in_dir}: inject never writes over its input")
    if fit_dir is not None and (_inside(o, fit_dir.resolve()) or _inside(fit_dir.resolve(), o)):
        raise ValueError(f"--out {out} is, holds or lies inside the fit folder {fit_dir}: choose another folder")


def _file_sha(p: Path) -> str:
    from semlab.io import sha256_file

    return sha256_file(p)


def inject_folder(model_or_name, fit_dir, in_dir, out_dir, *, mode: str = "add", seed: int = 0,
                  pixel_nm: float | None = None, overwrite: bool = False, fit_split: str | None = None,
                  tile: int = 512, max_fit: int = 64, resample: bool = False, progress: bool = True,
                  **options) -> dict[str, Any]:
    """Inject every image of `in_dir` into `out_dir` (module doc). Returns the record
    (what inject.json holds) plus `written` and `skipped` counts."""
    from semlab.io import write_image, write_json_atomic
    from semlab.noise.models import params_sha256

    if mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    in_dir, out = Path(in_dir), Path(out_dir)
    fit = Path(fit_dir) if fit_dir is not None else None
    if not in_dir.exists():
        raise FileNotFoundError(f"input folder not found: {in_dir}")
    _check_out(out, in_dir, fit)
    items, in_px = read_inputs(in_dir)
    px = pixel_nm if pixel_nm is not None else in_px
    rec_path = out / RECORD
    old = None
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"--out {out} is a file, not a folder")
        if rec_path.is_file():
            try:
                old = json.loads(rec_path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                old = None
            if not isinstance(old, dict) or old.get("format") != "semlab-inject":
                raise ValueError(f"{rec_path}: not an inject record; choose another --out")
        # an interrupted run may have written outputs after its last record update
        ours = set((old or {}).get("items", {})) | {RECORD} | ({n for n, _ in items} if old is not None else set())
        foreign = [p.relative_to(out).as_posix() for p in out.rglob("*")
                   if p.is_file() and not p.name.startswith(".")
                   and p.relative_to(out).parts[0] != MODEL_DIR and p.relative_to(out).as_posix() not in ours]
        if foreign and not overwrite:
            raise ValueError(f"--out {out} holds {len(foreign)} file(s) inject did not write (e.g. {foreign[0]}); "
                             "choose another folder, or --overwrite to write beside them")
    model, minfo = resolve_model(model_or_name, fit, pixel_nm=px, fit_split=fit_split, tile=tile,
                                 max_fit=max_fit, seed=seed, resample=resample, **options)
    model.check_use(pixel_nm=px, where=f"inject {in_dir} ({model.kind})")
    settings = {"model_kind": model.kind, "params_sha256": params_sha256(model),
                "data_sha256": model.meta.data_sha256, "mode": mode, "seed": int(seed),
                "input": str(in_dir.resolve())}
    done: dict[str, str] = {}
    if old is not None:
        if old.get("settings") != settings and not overwrite:
            diff = sorted(k for k in settings if (old.get("settings") or {}).get(k) != settings[k])
            raise ValueError(f"{rec_path}: an injection with other settings ({', '.join(diff)}) is here; "
                             "choose another --out, or --overwrite")
        if old.get("settings") == settings:
            done = {k: v for k, v in (old.get("items") or {}).items() if isinstance(v, str)}
    from semlab.locks import FolderLock

    out.mkdir(parents=True, exist_ok=True)
    with FolderLock(out):  # a second writer of this folder is refused
        model.save(out / MODEL_DIR)
        record = {"format": "semlab-inject", "settings": settings, "fit": str(fit) if fit else None,
                  "fit_split": fit_split, "model_source": minfo.get("source"), "pixel_nm": px,
                  "model_meta": model.meta.to_json(), "items": dict(done)}
        from tqdm.auto import tqdm

        write_json_atomic(rec_path, record)  # from now on the folder is known as inject's
        written = skipped = 0
        last = time.monotonic()
        for name, load in tqdm(items, desc=f"inject {model.kind}", disable=not progress):
            dst = out / name
            if name in done and dst.is_file() and _file_sha(dst) == done[name]:
                skipped += 1
                continue
            img, bits = load()
            write_image(dst, model.sample(_base(img, mode), _rng(seed, name)), bits=bits)
            record["items"][name] = _file_sha(dst)
            written += 1
            if time.monotonic() - last > 5:
                write_json_atomic(rec_path, record)
                last = time.monotonic()
        write_json_atomic(rec_path, record)
    return {**record, "written": written, "skipped": skipped, "out": str(out)}


def _base(img: np.ndarray, mode: str) -> np.ndarray:
    from semlab.noise.models import denoise

    x = np.asarray(img, np.float32)
    return denoise(x) if mode == "replace" else x


# --------------------------------------------------------------------------- choosing a model


def select_model(fit_dir, generated_dir, work_dir, *, kinds: Sequence[str] | None = None, split: str = "val",
                 mode: str = "add", tile: int = 128, fit_tile: int = 512, seed: int = 0, max_tiles: int = 300,
                 n_boot: int = 200, progress: bool = False) -> dict[str, Any]:
    """Fit each model on the `split` frames of `fit_dir`, inject it into `generated_dir`
    (into work_dir/<kind>; fitted on `fit_tile`-px tiles), and score the injected images
    against the same real frames with `semlab.realism`'s stats detector (`tile`-px tiles). The chosen model is the one whose balanced
    accuracy is nearest 0.5. Returns {"scores": {kind: record}, "chosen": kind, "split": split}."""
    from semlab.noise.models import PARAMETRIC
    from semlab.realism import realism

    kinds = list(kinds or PARAMETRIC)
    scores = {}
    for kind in kinds:
        dst = Path(work_dir) / kind
        inject_folder(kind, fit_dir, generated_dir, dst, mode=mode, seed=seed, fit_split=split, tile=fit_tile,
                      progress=progress, overwrite=True)
        res = realism(dst, fit_dir, tile=tile, detectors=("stats",), power=None, real_split=split, seed=seed,
                      max_tiles=max_tiles, n_boot=n_boot)
        scores[kind] = res["records"][0]
    return {"scores": scores, "chosen": pick_model(scores), "split": split, "mode": mode}


def pick_model(scores: Mapping[str, Mapping[str, Any]]) -> str:
    """The model whose detector score (`balanced_accuracy`) is nearest chance (0.5); ties:
    the first in order. The one rule of `select_model` and of notebook 45's choice."""
    if not scores:
        raise ValueError("no noise model was scored")
    return min(scores, key=lambda k: abs(scores[k]["balanced_accuracy"] - 0.5))


# --------------------------------------------------------------------------- bench


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def bench_inject(size: int = 256, n: int = 20, precision: str = "both", seed: int = 0) -> list[dict]:
    """Images/s of injection (mode add) with each parametric model at `size` px, and of
    Pix2Pix generation (an untrained U-Net generator of the default train config: ngf 64,
    batch norm, batch 1, mask to image as numpy) in fp32 and/or bf16 autocast
    (`precision`: fp32, bf16 or both), in one run, with the thread count torch uses;
    each injection record holds its ratio to the fastest generation (target >= 10)."""
    import torch

    from semlab.data.simulate import simulate
    from semlab.labels import NUM_CLASSES
    from semlab.models import build_generator, one_hot
    from semlab.noise import registry
    from semlab.noise.models import PARAMETRIC

    if precision not in ("fp32", "bf16", "both"):
        raise ValueError(f"precision must be fp32, bf16 or both, got {precision!r}")
    sims = [simulate("line-space", size, (seed, k), with_contours=False) for k in range(4)]
    real, cleans, masks = [s.image for s in sims], [s.clean for s in sims], [s.mask for s in sims]
    env = {"cpu": _cpu_name(), "threads": torch.get_num_threads()}
    net = build_generator("unet", in_channels=NUM_CLASSES, out_channels=1, ngf=64, norm="batch", size=size).eval()
    out, rates = [], []
    for prec in (("fp32", "bf16") if precision == "both" else (precision,)):
        def gen(mask, prec=prec):
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
                y = net(one_hot(mask[None].astype(np.int64)))
            return y.float().numpy()[0, 0]
        gen(masks[0])
        t = time.perf_counter()
        for k in range(n):
            gen(masks[k % 4])
        rate = n / (time.perf_counter() - t)
        rates.append(rate)
        out.append({"name": "inject", "what": "pix2pix generation (untrained unet, ngf 64, batch 1)", "size": size,
                    "n": n, "precision": prec, "images_per_s": round(rate, 2), **env})
    gen_rate = max(rates)
    for kind in PARAMETRIC:
        model = registry.get(kind).fit(real, cleans, pixel_nm=None)
        model.sample(cleans[0], np.random.default_rng(0))
        t = time.perf_counter()
        for k in range(n):
            model.sample(cleans[k % 4], np.random.default_rng(k))
        rate = n / (time.perf_counter() - t)
        out.append({"name": "inject", "model": kind, "mode": "add", "size": size, "n": n,
                    "images_per_s": round(rate, 2), "ratio_to_pix2pix": round(rate / gen_rate, 1),
                    "target_ratio": 10.0, **env})
    return out
