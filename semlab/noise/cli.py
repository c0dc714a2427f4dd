"""`semlab inject`: real SEM noise on generated images (see `semlab.noise.inject`).

    semlab inject --model NAME|DIR --fit REAL_DIR --in GENERATED_DIR --out DIR [--mode add|replace]
                  [--seed 0] [--pixel-nm NM] [--fit-split val] [--overwrite]

`semlab.cli` registers this with `add_parser(subparsers)`. Building the parser imports
nothing heavy (no torch, pandas or seaborn).
"""

from __future__ import annotations

import argparse

from semlab.argtypes import pixel_size_nm, positive_int

__all__ = ["add_parser", "cmd_inject"]

MODES = ("add", "replace")  # semlab.noise.inject.MODES, repeated to keep the parser light
KINDS = "poisson-gaussian, spectral, patch-bank, spectrum-match, learned"


def cmd_inject(a) -> int:
    from semlab.noise.inject import inject_folder

    rec = inject_folder(a.model, a.fit, a.in_dir, a.out, mode=a.mode, seed=a.seed, pixel_nm=a.pixel_nm,
                        overwrite=a.overwrite, fit_split=a.fit_split, tile=a.tile, max_fit=a.max_fit,
                        resample=a.resample, progress=not a.quiet)
    s = rec["settings"]
    print(f"inject: {rec['written']} written, {rec['skipped']} already done -> {rec['out']} "
          f"(model {s['model_kind']}, {rec['model_source']}, mode {s['mode']}, seed {s['seed']}; "
          f"record {rec['out']}/inject.json)")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `inject` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "inject", help="put real SEM noise (a fitted noise model) on generated images",
        description="Fit a residual-noise model on real frames (or load a saved one) and put its noise on every "
                    "image of a folder. add: noise on top of the image; replace: the image is denoised first. "
                    "Never writes into its input; resumable.")
    p.add_argument("--model", required=True, help=f"a model name ({KINDS}) or a folder holding model.json")
    p.add_argument("--fit", default=None, help="real frames (folder or semlab dataset) to fit the model on")
    p.add_argument("--in", dest="in_dir", required=True, help="generated images (folder or semlab dataset)")
    p.add_argument("--out", required=True, help="output folder (images, model/, inject.json)")
    p.add_argument("--mode", default="add", choices=list(MODES), help="add (default) or replace")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pixel-nm", type=pixel_size_nm, default=None,
                   help="pixel size of the generated images (default: from their dataset or tags)")
    p.add_argument("--fit-split", default=None, choices=["train", "val", "test"],
                   help="fit only on real frames of this stored split")
    p.add_argument("--tile", type=positive_int, default=512,
                   help="side of the real tiles the model is fitted on (px; smaller if the frames are)")
    p.add_argument("--max-fit", type=positive_int, default=64, help="real tiles to fit on at most")
    p.add_argument("--resample", action="store_true",
                   help="resample the real frames to the generated images' pixel size before fitting "
                        "(default: fit at the real pixel size, and warn when the sizes differ)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an --out that holds other files or another injection (never deletes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_inject)
    return p
