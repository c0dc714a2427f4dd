"""`semlab checks`: validate the label-free mask checks (`semlab.segment.checks`) on
simulated truth with two seeds (`semlab.segment.checks_validate`: Spearman rho with the
true IoU, bootstrap CIs over frames, the keep rule rho >= 0.5), then score the packaged
real frames (crops) with the kept checks for the old defaults, the new defaults and a
blurred global Otsu.

    semlab checks [--seeds 0 1] [--n-images 12] [--presets ...] [--crop 256] [--out checks.json]

The parser imports nothing heavy (numpy and the segmenter load when the command runs).
"""

from __future__ import annotations

__all__ = ["add_parser"]

# semlab.segment.checks_validate.VALIDATION_PRESETS, repeated so that building the parser stays light
PRESETS = ("line-space", "contacts", "particles", "ic-metal")


def add_parser(sub) -> None:
    """`semlab checks`: validate the label-free checks on simulated truth (two seeds),
    then the real-frame table of the kept checks."""
    from semlab.argtypes import positive_int

    p = sub.add_parser("checks", help="validate the label-free mask checks on simulated truth, then score the "
                                      "real frames with the kept ones",
                       description=__doc__)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="validation seeds (default 0 1)")
    p.add_argument("--n-images", type=positive_int, default=12, help="simulated frames per preset and seed")
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    p.add_argument("--n-boot", type=positive_int, default=500, help="bootstrap resamples for the CIs")
    p.add_argument("--crop", type=positive_int, default=256, help="centred crop of each real frame (px)")
    p.add_argument("--sets", nargs="+", default=None, help="real sets (default: the packaged ones)")
    p.add_argument("--out", default=None, help="write everything as JSON here (refused if it exists)")
    p.set_defaults(fn=_cmd_checks)


def _cmd_checks(a) -> int:
    from pathlib import Path

    from semlab.segment.checks import check_table_markdown, real_check_table, real_crops, write_report
    from semlab.segment.checks_validate import floors, summary_rows, validate_seeds, validation_markdown

    if a.out and Path(a.out).exists():
        raise FileExistsError(f"{a.out}: exists; semlab checks never overwrites (choose another --out)")
    v = validate_seeds(tuple(a.seeds), presets=tuple(a.presets), n_images=a.n_images, n_boot=a.n_boot)
    print(validation_markdown(v))
    table = real_check_table(real_crops(a.sets, crop=a.crop), kept=v["kept"])
    print()
    print(check_table_markdown(table, floors(v)))
    if a.out:
        print("wrote", write_report(a.out, table, {**v, "summary": summary_rows(v)}))
    return 0
