"""Measure the re-tuned built-in presets (issue 17 item 4): the realism table and the
ic-metal MIIC statistics, as one JSON document.

    python tools/measure_presets.py                          # all three detectors (the CNN is slow)
    python tools/measure_presets.py --detectors stats,spectrum
    python tools/measure_presets.py --skip-realism           # the ic-metal statistics only
    python tools/measure_presets.py --json-out reports/presets.json --markdown

**Realism** (`semlab.realism.realism`, the protocol of `semlab realism`) on the TEST frames
of the stored split of each real set (the presets were tuned on the train and val frames
only): the re-tuned preset rendered at the real set's pixel size, with the pre-issue preset
(`line-space-v2`, `contacts-v2`) as the power control and real-vs-real (two halves of the
test frame) as the floor. One more control, `other_frames`: the set's own train+val frames
against its test frame, with the same tiles, grouping and detectors: how far apart two
acquisitions of the same tool are (a preset fitted to other frames cannot be expected to
come closer than that). Sets: `cdsem-lines` (line-space), `cdsem-contacts` (contacts; its
test frame Ctest1 shows pillars, so `contacts-pillars` is measured as well) and, when
`../shared` holds it, `dsa-lines` (line-space).

**ic-metal** on `--frames` 512-px frames (seeds (7, k)): noise sigma by
`semlab.metrics.spectral.noise_sigma_estimate`, rim overshoot and halo depth by
`semlab.metrology.edge_overshoot` (plateaus = the label mask's pattern), pitch by
`semlab.metrology.fft_pitch`; medians against the MIIC values (+-25%).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

MIIC = {"noise_sigma": 0.0024, "rim": 0.16, "halo": -0.19, "pitch_px": 51.0}
TOL = 0.25
CASES = (  # (real set, re-tuned preset(s), pre-issue preset)
    ("cdsem-lines", ("line-space",), "line-space-v2"),
    ("cdsem-contacts", ("contacts", "contacts-pillars"), "contacts-v2"),
    ("dsa-lines", ("line-space",), "line-space-v2"),
)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ic_metal_stats(n_frames: int = 3, size: int = 512, preset: str = "ic-metal") -> dict:
    from semlab import labels
    from semlab.data.simulate import SIMULATOR_VERSION, simulate
    from semlab.metrics.spectral import noise_sigma_estimate
    from semlab.metrology import edge_overshoot, fft_pitch

    per = []
    for k in range(n_frames):
        r = simulate(preset, size, (7, k), with_contours=False)
        rim, halo = edge_overshoot(r.image, r.mask == labels.PATTERN)
        per.append({"seed": [7, k], "noise_sigma": noise_sigma_estimate(r.image), "rim": rim, "halo": halo,
                    "pitch_px": fft_pitch(r.image).pitch_px,
                    "plateau_fraction": float((r.mask == labels.PATTERN).mean())})
    med = {k: float(np.median([p[k] for p in per])) for k in MIIC}
    return {"domain": "simulated", "preset": preset, "simulator_version": SIMULATOR_VERSION, "size_px": size,
            "n_frames": n_frames, "median": med, "miic": MIIC, "tolerance": TOL,
            "within": {k: bool(abs(med[k] / MIIC[k] - 1) <= TOL) for k in MIIC},
            "estimators": {"noise_sigma": "semlab.metrics.spectral.noise_sigma_estimate",
                           "rim": "semlab.metrology.edge_overshoot", "halo": "semlab.metrology.edge_overshoot",
                           "pitch_px": "semlab.metrology.fft_pitch"},
            "frames": per}


def _rec(r: dict) -> dict:
    keep = ("detector", "balanced_accuracy", "ci_low", "ci_high", "auc", "auc_ci_low", "auc_ci_high", "n_sim",
            "n_real", "n_frames_real", "tile", "pixel_nm", "grouping", "power", "floor")
    return {k: r.get(k) for k in keep}


def other_frames(real_dir, detectors, *, seed: int, epochs: int, max_tiles: int, n_boot: int) -> dict:
    """The set's train+val frames (label 1) against its test frame (label 0)."""
    from semlab.realism import GROUPINGS, cross_validate, load_side

    test = load_side(real_dir, name="real-test", split="test")
    tr = load_side(real_dir, name="real-train", split="train", pixel_nm=test.pixel_nm)
    va = load_side(real_dir, name="real-val", split="val", pixel_nm=test.pixel_nm)
    both = tr.subset(np.arange(tr.n))
    both.tiles = np.concatenate([tr.tiles, va.tiles])
    both.frame = np.concatenate([tr.frame, va.frame])
    both.grid = np.concatenate([tr.grid, va.grid])
    both.name = "real-train+val"
    grouping = GROUPINGS[1] if test.n_frames < 5 else GROUPINGS[0]
    res = cross_validate(test, both, grouping=grouping, detectors=detectors, seed=seed, epochs=epochs,
                         max_tiles=max_tiles, n_boot=n_boot)
    return {d: {k: v for k, v in m.items()} for d, m in res.items()}


def feature_distance(preset: str, real_dir) -> float:
    """Mean squared standardised difference of the mean `semlab.realism.tile_features` of
    the preset's tiles and the test frame's (128 px): finer than a saturated accuracy."""
    from semlab.realism import load_side, render_preset_side, tile_features

    real = load_side(real_dir, split="test")
    fr = tile_features(real.tiles)
    fs = tile_features(render_preset_side(preset, like=real, n_tiles=len(fr)).tiles[:len(fr)])
    sd = np.sqrt(0.5 * (fr.var(0) + fs.var(0))) + 1e-3
    return float(np.mean(((fs.mean(0) - fr.mean(0)) / sd) ** 2))


def measure_realism(detectors, *, seed: int, epochs: int, max_tiles: int, n_boot: int) -> list[dict]:
    from semlab.data import samples
    from semlab.realism import realism

    sets = samples.shared_sets()
    out = []
    for real_set, presets, old in CASES:
        if real_set not in sets:
            out.append({"real_set": real_set, "skipped": "not found (../shared absent)"})
            continue
        for pre in presets:
            t = time.perf_counter()
            res = realism(f"preset:{pre}", sets[real_set], detectors=detectors, power=f"preset:{old}",
                          real_split="test", seed=seed, epochs=epochs, max_tiles=max_tiles, n_boot=n_boot,
                          progress=True)
            out.append({"real_set": real_set, "real_split": "test", "domain": "real vs simulated",
                        "preset": pre, "power_preset": old, "records": [_rec(r) for r in res["records"]],
                        "notes": res["notes"], "seconds": round(time.perf_counter() - t, 1),
                        "feature_distance": {pre: feature_distance(pre, sets[real_set]),
                                             old: feature_distance(old, sets[real_set])}})
            print(f"measure_presets: {real_set} {pre}: "
                  + ", ".join(f"{r['detector']} {r['balanced_accuracy']:.3f}" for r in res["records"]),
                  file=sys.stderr, flush=True)
        out[-1]["other_frames"] = other_frames(sets[real_set], detectors, seed=seed, epochs=epochs,
                                               max_tiles=max_tiles, n_boot=n_boot)
    return out


def markdown(doc: dict) -> str:
    def ci(v, lo, hi):
        return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"

    lines = ["| real set (test frames) | preset | detector | balanced acc. [95% CI] | power: pre-issue preset | "
             "floor: real vs real | n sim / real | frames | grouping |", "|---|---|---|---|---|---|---|---|---|"]
    for case in doc.get("realism", []):
        if "skipped" in case:
            lines.append(f"| {case['real_set']} | skipped: {case['skipped']} |||||||")
            continue
        for r in case["records"]:
            p, f = r["power"], r["floor"]
            lines.append(f"| {case['real_set']} | {case['preset']} | {r['detector']} | "
                         f"{ci(r['balanced_accuracy'], r['ci_low'], r['ci_high'])} | "
                         f"{ci(p['balanced_accuracy'], p['ci_low'], p['ci_high']) if p else 'not run'} | "
                         f"{ci(f['balanced_accuracy'], f['ci_low'], f['ci_high']) if f else 'not measured'} | "
                         f"{r['n_sim']} / {r['n_real']} | {r['n_frames_real']} | {r['grouping']} |")
        fd = case.get("feature_distance") or {}
        lines.append(f"| {case['real_set']} | {case['preset']} | feature distance (mean z^2) | "
                     + ", ".join(f"{k} {v:.2f}" for k, v in fd.items()) + " ||||||")
        for det, m in (case.get("other_frames") or {}).items():
            lines.append(f"| {case['real_set']} | (real train+val frames) | {det} | "
                         f"{ci(m['balanced_accuracy'], m['ci_low'], m['ci_high'])} | | | {m['n_pos']} / {m['n_neg']} "
                         f"| | |")
    s = doc["ic_metal"]
    lines += ["", f"ic-metal (simulated, {s['n_frames']} frames of {s['size_px']} px): "
              + ", ".join(f"{k} {s['median'][k]:.4g} (MIIC {s['miic'][k]}, {'ok' if s['within'][k] else 'OUT'})"
                          for k in MIIC)]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detectors", default="stats,spectrum,cnn")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--max-tiles", type=int, default=300)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=3, help="ic-metal frames (512 px)")
    ap.add_argument("--skip-realism", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="also print a Markdown table (to stderr)")
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args(argv)
    from semlab.data.simulate import SIMULATOR_VERSION

    dets = tuple(d.strip() for d in a.detectors.split(",") if d.strip())
    doc = {"simulator_version": SIMULATOR_VERSION, "cpu": _cpu(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                         time.gmtime())}
    doc["ic_metal"] = ic_metal_stats(a.frames)
    if not a.skip_realism:
        doc["realism"] = measure_realism(dets, seed=a.seed, epochs=a.epochs, max_tiles=a.max_tiles,
                                         n_boot=a.n_boot)
    if a.json_out:
        from semlab.io import write_json_atomic

        write_json_atomic(a.json_out, doc)
    print(json.dumps(doc, indent=1, default=float))
    if a.markdown:
        print(markdown(doc), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
