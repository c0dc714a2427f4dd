"""`semlab fit-sim REAL_DIR --kind KIND --out my-tool.yaml`: simulator parameters fitted to
real SEM frames (`semlab.data.fit`), written as a preset file (`semlab.data.presetfile`)
that `semlab simulate --preset-file` and the notebooks accept. With 2+ frames the file also
holds one frame look per frame (`semlab.data.looks`): each simulated frame uses one.

    semlab fit-sim semlab/data/sample_frames/cdsem-lines --kind line-space --split train,val \\
        --out cdsem-lines.yaml [--pixel-nm 0.827] [--json] [--overwrite]

Nothing is written on error (no detectable edges, pixel sizes more than 2% apart, an
existing --out without --overwrite); the file itself is written atomically.

`semlab.cli` registers this with `add_parser(subparsers)`; it imports nothing heavy.
"""

from __future__ import annotations

from semlab.argtypes import pixel_size_nm

__all__ = ["add_parser", "cmd_fit_sim"]

KINDS = ("line-space", "contacts")  # semlab.data.fit.KINDS, repeated to keep the parser light


def cmd_fit_sim(a) -> int:
    import json
    import sys
    from pathlib import Path

    from semlab.data import presetfile
    from semlab.data.fit import fit_sim

    out = Path(a.out)
    if out.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise ValueError(f"--out {out}: a preset file ends in .yaml, .yml or .json")
    if out.exists() and not a.overwrite:
        raise ValueError(f"--out {out} exists; not overwritten (use --overwrite)")
    split = tuple(s.strip() for s in a.split.split(",") if s.strip()) if a.split else None
    fit = fit_sim(a.real_dir, a.kind, a.pixel_nm, split=split, progress=not a.json, refine=a.refine)
    presetfile.save_preset_file(fit, out, overwrite=a.overwrite)
    if a.json:
        from semlab.io import json_default

        print(json.dumps({"out": str(out), **fit.summary()}, default=json_default))
    else:
        print(f"fit-sim: {fit.n_frames} real frame(s) of {a.real_dir}, {fit.kind}, {fit.pixel_nm:.4g} nm/px",
              file=sys.stderr)
        for n in fit.notes:
            print(f"  note: {n}", file=sys.stderr)
        for k, v in fit.params.items():
            u = fit.uncertainty.get(k)
            ci = f"  (frames: 95% CI {u[1]:.4g}-{u[2]:.4g})" if u and u[0] > 0 else ""
            val = f"[{v[0]:.4g}, {v[1]:.4g}]" if isinstance(v, (list, tuple)) else f"{v:.4g}"
            print(f"  {k} = {val}{ci}")
        for lk in fit.looks:  # one jointly fitted frame-level set per frame (semlab.data.looks)
            print(f"  look of {lk['source']['name']}: " + ", ".join(f"{k}={v:.4g}" for k, v in lk["params"].items()),
                  file=sys.stderr)
        print(f"preset file written: {out}")
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("fit-sim", help="fit the simulator's parameters to real SEM frames (a preset file)",
                       description="Estimate simulator parameters (gray levels, edge profile, blur, noise, LER, "
                                   "geometry, charging) from real frames, pixels only, and write a preset file for "
                                   "`semlab simulate --preset-file`. Nothing is written on error.")
    s.add_argument("real_dir", help="folder (or image file) of real SEM frames; data bars are cropped")
    s.add_argument("--kind", required=True, choices=KINDS, help="what the frames show")
    s.add_argument("--out", required=True, help="preset file to write (.yaml or .json)")
    s.add_argument("--pixel-nm", type=pixel_size_nm, default=None,
                   help="pixel size in nm (default: from the files' tags; required if they have none)")
    s.add_argument("--split", default=None,
                   help="use only frames of these stored splits, e.g. train,val (never fit on test frames)")
    s.add_argument("--refine", type=int, choices=range(0, 6), default=1, metavar="N",
                   help="closed-loop steps: simulate the fit, measure it the same way, correct (default 1; 0: none)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    s.add_argument("--json", action="store_true", help="print the fit as one JSON object")
    s.set_defaults(fn=cmd_fit_sim)
