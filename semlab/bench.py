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


def run(name: str, **opts) -> list[dict]:
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
        rate = r.get("images_per_s")
        opts = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("name", "images_per_s", "python", "numpy", "cpus"))
        lines.append(f"{r['name']}: {rate} images/s ({opts})")
    return "\n".join(lines)
