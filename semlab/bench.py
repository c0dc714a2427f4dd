"""Benchmarks behind `semlab bench` (design.md section 6): one JSON object per line.

Each record has `name`, the options that matter, and a throughput
(`images_per_s`) or a cost (`s_per_image`). These are the only speed figures to
quote in notes and in the README.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from typing import Callable

import numpy as np


def _env() -> dict:
    return {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count()}


def bench_simulate(preset: str = "ic-metal", size: int = 256, n: int = 500, seed: int = 0,
                   contours: bool = True, write: bool = False,
                   shot_noise_methods: tuple[str, ...] = ("auto", "exact")) -> list[dict]:
    """Simulator throughput in one process (numpy/scipy run single-threaded here), once per
    shot-noise method: "auto" (the default everywhere) and "exact" (numpy's Poisson)."""
    from semlab.data.simulate import simulate

    out = []
    for method in shot_noise_methods:
        simulate(preset, size, (seed, 10**9), shot_noise_method=method)  # warm caches and imports
        t0 = time.perf_counter()
        per = []
        for i in range(n):
            t = time.perf_counter()
            simulate(preset, size, (seed, i), with_contours=contours, shot_noise_method=method)
            per.append(time.perf_counter() - t)
        dt = time.perf_counter() - t0
        out.append({"name": "simulate", "preset": preset, "size": size, "n": n, "contours": contours,
                    "shot_noise_method": method, "images_per_s": round(n / dt, 2),
                    "s_per_image_median": round(float(np.median(per)), 5), **_env()})
    if write:
        from semlab.data.datasets import simulate_dataset

        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            simulate_dataset(f"{d}/ds", preset=preset, n=n, size=size, seed=seed, progress=False)
            dt = time.perf_counter() - t
        out.append({"name": "simulate_dataset", "preset": preset, "size": size, "n": n,
                    "images_per_s": round(n / dt, 2), "writes": "image, mask, clean PNG + contours JSON",
                    **_env()})
    return out


BENCHES: dict[str, Callable[..., list[dict]]] = {"simulate": bench_simulate}


def run(name: str, /, **opts) -> list[dict]:
    try:
        fn = BENCHES[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHES)}") from None
    return fn(**opts)


def format_records(records: list[dict], as_json: bool) -> str:
    if as_json:
        return "\n".join(json.dumps(r, sort_keys=False) for r in records)
    lines = []
    for r in records:
        if "images_per_s" not in r:  # cost records (segsem, metrics): all fields
            lines.append(f"{r['name']}: " + ", ".join(f"{k}={v}" for k, v in r.items()
                                                      if k not in ("name", "python", "numpy", "cpus")))
            continue
        rate = r.get("images_per_s")
        opts = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("name", "images_per_s", "python", "numpy", "cpus"))
        lines.append(f"{r['name']}: {rate} images/s ({opts})")
    return "\n".join(lines)


def bench_segment_sam2(size: int = 512, n: int = 2, points_per_side: tuple[int, ...] = (16, 32),
                       image_size: int = 1024, model: str = "sam2.1_hiera_tiny",
                       bf16: bool = True) -> list[dict]:
    """SAM2 automatic masks on simulated `size`² ic-metal images, one record per
    points_per_side. Uses the real checkpoint if `semlab.weights.status(model)` finds it,
    else a randomly initialised one in a temporary folder (timing only: quality thresholds
    are then set to 0 so that mask decoding and post-processing are counted). Model
    building and a warm-up image encoding are not timed."""
    import torch

    from semlab.data.simulate import simulate
    from semlab.segment.sam2_backend import Sam2Segmenter, Sam2Settings, make_random_checkpoint
    from semlab.segment.sam2_model import to_rgb_uint8
    from semlab.weights import status

    if isinstance(points_per_side, int):
        points_per_side = (points_per_side,)
    images = [simulate("ic-metal", size, (0, i)).image for i in range(n)]
    found, where = status(model)
    with tempfile.TemporaryDirectory() as tmp:
        if found:
            ckpt, label = where, where
            thresholds = {"pred_iou_thresh": Sam2Settings.pred_iou_thresh,
                          "stability_score_thresh": Sam2Settings.stability_score_thresh}
        else:
            ckpt, label = str(make_random_checkpoint(model, tmp, image_size=image_size)), "random (timing only)"
            thresholds = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
        out = []
        for pps in points_per_side:
            seg = Sam2Segmenter(Sam2Settings(model=model, checkpoint=ckpt, image_size=image_size,
                                             points_per_side=pps, bf16=bf16, **thresholds))
            with torch.inference_mode(), seg._autocast():  # warm-up: first encoder call
                seg.generator.predictor.set_image(to_rgb_uint8(images[0]))
                seg.generator.predictor.reset_predictor()
            counts = []
            t0 = time.perf_counter()
            for img in images:
                counts.append(len(seg.segment(img)))
            dt = time.perf_counter() - t0
            out.append({"name": "segment", "backend": "sam2", "model": model, "size": size,
                        "image_size": image_size, "points_per_side": pps, "bf16": bf16, "n": n,
                        "s_per_image": round(dt / n, 3), "images_per_s": round(n / dt, 4),
                        "n_masks_mean": round(float(np.mean(counts)), 2), "weights": label,
                        **thresholds, "torch": torch.__version__,
                        "threads": torch.get_num_threads(), **_env()})
            del seg
    return out


def bench_segment_classical(size: int = 512, n: int = 10, denoise: str = "nlm") -> list[dict]:
    """The classical backend plus canonicalisation and QA (what `semlab segment` runs per
    image) on simulated `size`² ic-metal images."""
    from semlab.data.simulate import simulate
    from semlab.segment.pipeline import make_segmenter, segment_image

    seg = make_segmenter("classical", denoise=denoise)
    images = [simulate("ic-metal", size, (0, i)).image for i in range(n)]
    segment_image(images[0], seg)  # warm-up (imports)
    per = []
    t0 = time.perf_counter()
    for img in images:
        per.append(segment_image(img, seg).seconds)
    dt = time.perf_counter() - t0
    return [{"name": "segment", "backend": "classical", "size": size, "denoise": denoise, "n": n,
             "s_per_image": round(dt / n, 4), "s_per_image_median": round(float(np.median(per)), 4),
             "images_per_s": round(n / dt, 3), **_env()}]


def bench_segment(backend: str = "classical", size: int = 512, n: int | None = None, **opts) -> list[dict]:
    """`semlab bench segment --backend classical|sam2`: seconds per image."""
    if backend == "classical":
        return bench_segment_classical(size=size, n=n or 10, **{k: v for k, v in opts.items() if k == "denoise"})
    if backend == "sam2":
        keep = {k: v for k, v in opts.items() if k in ("points_per_side", "image_size", "model", "bf16")}
        return bench_segment_sam2(size=size, n=n or 2, **keep)
    raise KeyError(f"unknown segmentation backend {backend!r}; valid: classical, sam2")


BENCHES["segment"] = bench_segment


def bench_train(model: str = "pix2pix", size: int = 256, batch_size: int = 1, precision: str = "fp32",
                steps: int = 10, channels_last: bool | None = None, warmup: int = 2, **cfg_kw) -> list[dict]:
    """Training steps per second of Pix2Pix / CycleGAN with the original networks at
    `size` px, on simulated masks and images held in memory (what `semlab train` does)."""
    import torch

    from semlab.data.simulate import simulate
    from semlab.models.flops import count_flops
    from semlab.train.config import TrainConfig
    from semlab.train.data import ArrayData
    from semlab.train.loop import make_trainer, to_tensors

    cl = (precision == "bf16") if channels_last is None else channels_last
    cfg = TrainConfig(model=model, batch_size=batch_size, precision=precision, channels_last=cl,
                      out="unused", **cfg_kw)
    sims = [simulate("ic-metal", size, (0, i)) for i in range(batch_size)]
    data = ArrayData(np.stack([(s.image * 255).round().astype(np.uint8) for s in sims]),
                     np.stack([s.mask for s in sims]), [str(i) for i in range(batch_size)])
    torch.manual_seed(0)
    tr = make_trainer(cfg, size)
    mask, img = to_tensors(data, np.arange(batch_size))
    for _ in range(warmup):
        tr.train_step(mask, img)
    flops = count_flops(tr.train_step, mask, img)
    per = []
    for _ in range(steps):
        t = time.perf_counter()
        tr.train_step(mask, img)
        per.append(time.perf_counter() - t)
    med = float(np.median(per))
    return [{"name": "train", "model": model, "size": size, "batch_size": batch_size, "precision": precision,
             "channels_last": cl, "steps": steps, "images_per_s": round(batch_size / float(np.mean(per)), 3),
             "step_s_median": round(med, 4), "gflop_per_step": round(flops / 1e9, 2),
             "gflop_per_s": round(flops / 1e9 / med, 1), "threads": torch.get_num_threads(),
             "torch": torch.__version__, **_env()}]


BENCHES["train"] = bench_train


def bench_metrics(n: int = 1000, size: int = 256, precision: str = "fp32", seed: int = 0,
                  sem_steps: int = 200, fid_inf: bool = True) -> list[dict]:
    """The whole `semlab evaluate` suite on `n` pairs of `size`² images: PSNR, SSIM,
    MS-SSIM, LPIPS (alex), FID, KID, FID-infinity, FD_sem, KD_sem, spectral distances,
    all with bootstrap CIs. Real images: simulated ic-metal; fakes: the physics baseline
    (`render_mask` of the same masks). The Inception and AlexNet weights are RANDOM (the
    official files are not available offline): the timing is real, the values are not.
    Run twice: cold (real-set Inception features extracted) and warm (read from the
    feature cache, as a second model evaluated against the same real set would)."""
    from semlab.data.simulate import render_mask, simulate
    from semlab.metrics.evaluate import evaluate
    from semlab.metrics.fid import save_random_inception
    from semlab.metrics.lpips import save_random_backbone
    from semlab.metrics.sem_encoder import EncoderConfig, train_sem_encoder

    t = time.perf_counter()
    sims = [simulate("ic-metal", size, (seed, i), with_contours=False) for i in range(n)]
    real = [s.image for s in sims]
    fake = [render_mask(s.mask, "ic-metal", (seed + 1, i)).image for i, s in enumerate(sims)]
    data_s = time.perf_counter() - t
    keys = ("SEMLAB_WEIGHTS", "SEMLAB_OFFLINE", "SEMLAB_ALLOW_UNVERIFIED_WEIGHTS")
    saved = {k: os.environ.get(k) for k in keys}
    out = []
    with tempfile.TemporaryDirectory() as d:
        try:
            os.environ["SEMLAB_WEIGHTS"], os.environ["SEMLAB_OFFLINE"] = f"{d}/weights", "1"
            os.environ["SEMLAB_ALLOW_UNVERIFIED_WEIGHTS"] = "1"  # random weights: labelled unverified
            save_random_inception(f"{d}/weights", seed)
            save_random_backbone("alex", f"{d}/weights", seed)
            t = time.perf_counter()
            enc = train_sem_encoder(real[:min(n, 500)], EncoderConfig(steps=sem_steps, seed=seed), progress=False)
            enc_s = time.perf_counter() - t
            for run in ("cold", "warm"):
                timings: dict = {}
                t = time.perf_counter()
                rows = evaluate(real, fake, paired=True, cache_dir=f"{d}/cache", sem_encoder=enc, fid_inf=fid_inf,
                                precision=precision, seed=seed, timings=timings)
                total = time.perf_counter() - t
                out.append({"name": "metrics", "cache": run, "n": n, "size": size, "precision": precision,
                            "weights": "random (timing only; values meaningless)",
                            "metrics": [r["metric"] for r in rows if r["status"] == "ok"],
                            "total_s": round(total, 2), "pairs_per_s": round(n / total, 2),
                            "timings_s": {k: round(v, 2) for k, v in timings.items()},
                            "sem_encoder_train_s": round(enc_s, 2), "data_s": round(data_s, 2),
                            "threads": _threads(), **_env()})
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return out


def _threads() -> int:
    import torch

    return torch.get_num_threads()


BENCHES["metrics"] = bench_metrics


def bench_segsem(**opts) -> list[dict]:
    """SegSEM costs: SAM2 image embedding and one encoder-only fine-tuning step
    (`semlab.contours.bench.bench_segsem`; randomly initialised weights, real timing)."""
    from semlab.contours.bench import bench_segsem as _bench

    return [{**r, **_env()} for r in _bench(**opts)]


BENCHES["segsem"] = bench_segsem


def bench_gds(window_um: float = 10.0, pixel_nm: float = 1.0, tile: int = 1000, preset: str = "ic-metal",
              seed: int = 0) -> list[dict]:
    """Rasterising a `window_um` x `window_um` window of a GDSII layout at `pixel_nm` (cut
    into `tile` px tiles: masks, exact coverage and contours) against the simulator
    rendering the same tiles (`render_mask` of each tile's mask), alternating tile by tile
    in one run. The layout: `semlab.data.gds.demo_clip` arrayed to cover the window
    (references, arrays, rotations, a path, holes). Target: ratio <= 2."""
    import math

    from semlab.data.gds import demo_clip, plan_clip
    from semlab.data.simulate import render_mask

    with tempfile.TemporaryDirectory() as d:
        path = demo_clip(d, "bench.gds", repeat=max(1, math.ceil(window_um / 1.024)))
        t = time.perf_counter()
        clip = plan_clip(path, pixel_nm=pixel_nm, window=(0.0, 0.0, window_um, window_um), tile=tile, max_pixels=0)
        plan_s = time.perf_counter() - t
        ras_s = sim_s = 0.0
        for i, tl in enumerate(clip.tiles):
            t = time.perf_counter()
            ras = clip.rasterize(tl)
            ras_s += time.perf_counter() - t
            t = time.perf_counter()
            render_mask(ras.mask, preset, (seed, i), pixel_nm=pixel_nm)
            sim_s += time.perf_counter() - t
    px = clip.shape[0] * clip.shape[1]

    def sig(x: float) -> float:  # 4 significant digits
        return float(f"{x:.4g}")

    return [{"name": "gds", "window_um": window_um, "pixel_nm": pixel_nm, "tile": tile, "n_tiles": len(clip.tiles),
             "megapixels": round(px / 1e6, 2), "rasterize_s": sig(plan_s + ras_s), "plan_s": sig(plan_s),
             "simulate_s": sig(sim_s), "ratio": sig((plan_s + ras_s) / sim_s), "target_ratio": 2.0,
             "rasterize_mpx_per_s": sig(px / 1e6 / (plan_s + ras_s)), "simulate_mpx_per_s": sig(px / 1e6 / sim_s),
             "preset": preset, **_env()}]


BENCHES["gds"] = bench_gds


def _bench_inject(**opts) -> list[dict]:
    from semlab.noise.inject import bench_inject

    return bench_inject(**opts)


BENCHES["inject"] = _bench_inject


def _bench_downstream(**opts) -> list[dict]:
    """Downstream segmenter vs Pix2Pix U-Net generator training images/s (`semlab.downstream.bench`)."""
    from semlab.downstream.bench import bench_downstream

    return bench_downstream(**opts)


BENCHES["downstream"] = _bench_downstream
