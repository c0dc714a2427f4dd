"""Measure the classical contour fallback on simulated images: the full metric table.

    python tools/measure_contours.py                      # 60 line/space images at 256 and 512 px
    python tools/measure_contours.py --n 20 --sizes 256   # quicker
    python tools/measure_contours.py --json-out reports/contours_classical.json

For each image size the edge offset is calibrated on `--n-calib` images whose seeds
(`(calib_seed, i)`) are disjoint from the evaluation seeds (`(eval_seed, i)`), then
every evaluation image is scored against the simulator's exact contours
(`semlab.contours.metrics.score_contours`): mean EPE (signed), mean |EPE|, 3 sigma,
max |EPE|, Hausdorff 95, CD bias / LWR / LER on cut lines, IoU. The tables give the
mean over images with a 95 % percentile-bootstrap CI, in px and in nm; the
uncalibrated extractor is shown too, so the size of the calibrated bias is visible.
Prints Markdown, then the JSON document (also written to `--json-out` if given).
The issue's MUST-SHOW: mean |EPE| <= 0.5 px at the default noise level.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from semlab.contours.classical import ContourSettings, calibrate_edge_offset, extract_classical_contours  # noqa: E402
from semlab.contours.metrics import format_score_table, score_contours, score_table  # noqa: E402
from semlab.data.simulate import simulate  # noqa: E402

KEYS = ("epe_mean", "epe_mean_abs", "epe_3sigma", "epe_max", "hausdorff95", "cd_bias", "lwr_true", "lwr_pred",
        "iou")


def _score_images(settings: ContourSettings, preset: str, size: int, seeds, progress: bool):
    from tqdm.auto import tqdm

    rows_px, rows_nm = [], []
    t_extract = 0.0
    for seed in tqdm(list(seeds), disable=not progress, desc=f"evaluate {size}px"):
        r = simulate(preset, size, seed)
        t0 = time.perf_counter()
        res = extract_classical_contours(r.image, settings)
        t_extract += time.perf_counter() - t0
        px = r.params["pixel_nm"]
        sc = score_contours(res.contours, r.contours, r.image.shape, units="px")
        rows_px.append(sc)
        rows_nm.append({k: (v * px if k in KEYS and k != "iou" and v is not None else v) for k, v in sc.items()})
    return rows_px, rows_nm, t_extract / max(len(rows_px), 1)


def _overrides(items: list[str], ap: argparse.ArgumentParser) -> dict:
    """FIELD=VALUE strings -> typed ContourSettings overrides (the type of the default)."""
    from dataclasses import fields

    types = {f.name: type(f.default) for f in fields(ContourSettings)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            ap.error(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(types)}")
        if types[key] is bool:
            out[key] = value.lower() in ("1", "true", "yes")
        elif key == "edge_scale" and value != "auto":
            out[key] = float(value)
        else:
            out[key] = types[key](value)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="line-space")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--n", type=int, default=60, help="evaluation images per size")
    ap.add_argument("--n-calib", type=int, default=12, help="calibration images per size")
    ap.add_argument("--eval-seed", type=int, default=7000)
    ap.add_argument("--calib-seed", type=int, default=9000)
    ap.add_argument("--no-uncalibrated", action="store_true", help="skip the uncalibrated rows")
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a ContourSettings field, e.g. --set refine=gradient (repeatable)")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    if args.eval_seed == args.calib_seed:
        ap.error("calibration and evaluation seeds must differ")

    base = ContourSettings(**_overrides(args.set, ap))
    doc = {"preset": args.preset, "n_eval": args.n, "n_calib": args.n_calib,
           "eval_seeds": f"({args.eval_seed}, 0..{args.n - 1})",
           "calib_seeds": f"({args.calib_seed}, 0..{args.n_calib - 1})",
           "settings": base.describe(), "sizes": {}}
    tables_px, tables_nm = {}, {}
    for size in args.sizes:
        calib_pairs = ((r.image, r.contours) for r in
                       (simulate(args.preset, size, (args.calib_seed, i)) for i in range(args.n_calib)))
        calibrated, info = calibrate_edge_offset(calib_pairs, base, progress=args.progress)
        seeds = [(args.eval_seed, i) for i in range(args.n)]
        entry = {"edge_offset_px": calibrated.edge_offset_px, "calibration": info}
        runs = [("calibrated", calibrated)] + ([] if args.no_uncalibrated else [("uncalibrated", base)])
        for name, s in runs:
            rows_px, rows_nm, t_img = _score_images(s, args.preset, size, seeds, args.progress)
            label = f"classical {name}, {size} px"
            tables_px[label] = score_table(rows_px, KEYS)
            tables_nm[label] = score_table(rows_nm, KEYS)
            entry[name] = {"table_px": tables_px[label], "table_nm": tables_nm[label],
                           "extract_s_per_image": t_img,
                           "pixel_nm": rows_px[0]["pixel_nm"] if rows_px and rows_px[0]["pixel_nm"] else None,
                           "per_image_px": [{k: r.get(k) for k in KEYS} for r in rows_px]}
        doc["sizes"][str(size)] = entry
        ok = tables_px[f"classical calibrated, {size} px"]["epe_mean_abs"]["mean"] <= 0.5
        entry["must_show_mean_abs_epe_le_0.5px"] = bool(ok)

    print(f"## Classical contour fallback on `{args.preset}` ({args.n} images per size, "
          f"calibrated on {args.n_calib} other seeds)\n")
    for size in args.sizes:
        e = doc["sizes"][str(size)]
        print(f"- {size} px: edge offset {e['edge_offset_px']:.3f} px (x edge scale), "
              f"extraction {e['calibrated']['extract_s_per_image']:.2f} s/image, "
              f"mean |EPE| <= 0.5 px: {'yes' if e['must_show_mean_abs_epe_le_0.5px'] else 'NO'}")
    print("\n### px\n")
    print(format_score_table(tables_px, units="px"))
    print("\n### nm\n")
    print(format_score_table(tables_nm, units="nm"))
    print("\n### JSON\n")
    text = json.dumps(doc, indent=1, default=float)
    summary = {k: v for k, v in doc.items() if k != "sizes"}
    summary["sizes"] = {s: {k: v for k, v in e.items() if k not in ("calibration",)} for s, e in doc["sizes"].items()}
    for s in summary["sizes"].values():
        for name in ("calibrated", "uncalibrated"):
            if name in s:
                s[name] = {k: v for k, v in s[name].items() if k != "per_image_px"}
    print(json.dumps(summary, indent=1, default=float))
    if args.json_out:
        from semlab.io import write_json_atomic

        write_json_atomic(args.json_out, json.loads(text))
        print(f"\nwritten: {args.json_out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
