"""`semlab noise-study`: notebook 45's residual-noise study from the command line.

    semlab noise-study --run RUN_DIR --domain real|sim --out DIR [--profile cpu|full] [--tile 64]
                       [--max-pairs N] [--mode add|replace] [--kinds poisson-gaussian,spectral]
                       [--epochs E] [--n-splits K] [--generators Pix2Pix]

The same protocol as the notebook (`semlab.forensics.injection.injection_study`): every
noise model fitted on the train split, one chosen per generator on the validation split,
the retrained CNN (and the stats and spectrum detectors) reported on the test split before
and after injection. The generators are the run's (notebooks 20 and 21); notebook 40's
images are reused when the run has them. `--tile` cuts the pairs into sub-tiles for the
detectors (more pairs, not more independent ones; the report says so). `--max-pairs 0`
takes every held-out tile. The full matrix belongs here, not in the cpu-profile notebook.

Writes into `--out` (a new or empty folder; never over files it did not write):
`metrics.json` (notebook 45's keys), `results.md` (tables and the generated conclusion)
and `detector_before_after.png`. Building the parser imports nothing heavy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from semlab.argtypes import positive_int

__all__ = ["add_parser", "cmd_noise_study"]

MODES = ("add", "replace")  # semlab.forensics.injection.MODES, repeated to keep the parser light
OUT_FILES = ("metrics.json", "results.md", "detector_before_after.png")


def cmd_noise_study(a) -> int:
    import time

    from semlab.config import load_profile
    from semlab.forensics import study
    from semlab.forensics.injection import injection_study, study_fake_sets
    from semlab.forensics.injection_report import (conclusion, injection_metrics_doc, results_markdown,
                                                   selection_markdown)
    from semlab.io import write_text_atomic
    from semlab.runs import save_figure, save_metrics
    from semlab.viz.injection import before_after_figure

    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if out.is_dir():
        foreign = [p.name for p in out.iterdir() if p.name not in OUT_FILES and not p.name.startswith(".")]
        if foreign and not a.overwrite:
            raise ValueError(f"--out {out} holds files noise-study did not write (e.g. {foreign[0]}); "
                             "choose another folder")
        if any((out / f).exists() for f in OUT_FILES) and not a.overwrite:
            raise ValueError(f"--out {out} holds an earlier study; choose another folder or --overwrite")
    run = Path(a.run) if a.run else None
    if run is not None and not run.is_dir():
        raise FileNotFoundError(f"--run {run}: no such run folder")
    t0 = time.perf_counter()
    cfg = load_profile(a.profile).noise
    max_pairs = None if a.max_pairs == 0 else (a.max_pairs or cfg.max_pairs)
    settings = study.study_settings(a.profile)  # notebook 40's pairs; the study takes max_pairs of them
    settings["splits"] = ("val", "test")  # the choice needs the val split in every profile
    if a.max_pairs == 0 and a.domain == "real":
        settings["max_pairs"] = 100000  # every held-out tile, not the profile's real.max_pairs
    dataset, note, real = study.resolve_domain(a.domain, run, a.dataset or "", preset=a.preset, profile=a.profile,
                                               seed=a.seed, real_dir=a.real_dir or "")
    generators, missing = study.find_generators(run, a.profile, a.domain)
    keep = [g.strip() for g in a.generators.split(",") if g.strip()] if a.generators else None
    if keep:
        known = [*generators, *missing, study.SIMULATOR]
        bad = [g for g in keep if g not in known]
        if bad:
            raise ValueError(f"--generators: unknown {bad}; valid: {', '.join(known)}")
        generators = {k: v for k, v in generators.items() if k in keep}
        missing = {k: v for k, v in missing.items() if k in keep}
    sets, sets_note = study_fake_sets(run, a.domain, dataset, real, generators, settings, max_pairs=max_pairs,
                                      missing=missing, seed=a.seed, preset=a.preset)
    if keep:
        from dataclasses import replace

        sets = replace(sets, fakes={k: v for k, v in sets.fakes.items() if k in keep})
    print(f"noise-study: {a.domain} domain, dataset {dataset} ({note}); images {sets_note}; {sets.n_pairs} pairs")
    kinds = tuple(k.strip() for k in a.kinds.split(",") if k.strip()) if a.kinds else cfg.kinds
    tile = a.tile if a.tile is not None else cfg.tile
    det = {"n_splits": a.n_splits or cfg.n_splits, "epochs": a.epochs or cfg.epochs}
    if a.detectors:
        det["detectors"] = tuple(d.strip() for d in a.detectors.split(",") if d.strip())
    res = injection_study(a.domain, dataset, real, sets, kinds=kinds, mode=a.mode or cfg.mode, profile=a.profile,
                          seed=a.seed, max_fit=cfg.max_fit, detector=det, progress=not a.quiet, tile=tile)
    label = (real.label("test", sorted({i.split("#")[0] for i in res.test.ids})) if real is not None
             else f"{Path(dataset).name} (simulated), test split: "
                  f"{len({i.split('#')[0] for i in res.test.ids})} images")
    if tile:
        label += f"; {res.test.n_pairs} pairs of {tile}-px sub-tiles"
    out.mkdir(parents=True, exist_ok=True)
    doc = injection_metrics_doc(res, profile=a.profile, label=label, seconds=time.perf_counter() - t0)
    doc.setdefault("extra", {}).update({"command": "semlab noise-study", "tile": tile, "images": sets_note,
                                        "detector": det, "kinds": list(kinds)})
    save_metrics(out, doc)
    save_figure(out, "detector_before_after", before_after_figure(res))
    text = "\n\n".join([f"# Residual-noise study: {label}", f"Fitted on {res.data.describe()}; {res.test.grouping}.",
                        selection_markdown(res), results_markdown(res), "## Conclusion", conclusion(res)])
    write_text_atomic(out / "results.md", text + "\n")
    print(conclusion(res))
    print(f"noise-study: wrote {out}/metrics.json, results.md, detector_before_after.png "
          f"in {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `noise-study` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "noise-study", help="notebook 45's residual-noise study (fit, choose on val, retrained detector on test)",
        description="Fit every residual-noise model on the train split, choose one per generator on the "
                    "validation split, and report a CNN detector retrained from scratch on the test split before "
                    "and after injection (notebook 45's protocol, at any size).")
    p.add_argument("--run", default=None, help="the run folder whose generators (notebooks 20, 21) are studied")
    p.add_argument("--domain", choices=["sim", "real"], default="real")
    p.add_argument("--out", required=True, help="output folder (metrics.json, results.md, a figure)")
    p.add_argument("--profile", choices=["smoke", "cpu", "full"], default="cpu",
                   help="detector settings and defaults of this profile")
    p.add_argument("--tile", type=positive_int, default=None,
                   help="detectors on sub-tiles of this many px (more pairs; not more independent ones; "
                        "default: the profile's, 64 in cpu)")
    p.add_argument("--max-pairs", type=int, default=None,
                   help="held-out val+test pairs at most (0: all; default: the profile's)")
    p.add_argument("--mode", choices=list(MODES), default=None, help="add or replace (default: the profile's)")
    p.add_argument("--kinds", default=None, help="comma-separated noise models (default: the profile's)")
    p.add_argument("--epochs", type=positive_int, default=None, help="CNN detector epochs (default: the profile's)")
    p.add_argument("--detectors", default=None,
                   help="CNN detectors, comma-separated (small_cnn, resnet18; default: the profile's)")
    p.add_argument("--n-splits", type=positive_int, default=None, help="cross-validation folds")
    p.add_argument("--generators", default=None,
                   help="comma-separated generators to study (default: all: Pix2Pix, CycleGAN, "
                        "simulator (physics baseline))")
    p.add_argument("--dataset", default=None, help="the dataset (default: the run's)")
    p.add_argument("--real-dir", default=None, help="real frames (default: the packaged samples)")
    p.add_argument("--preset", default="ic-metal", help="simulator preset of the default dataset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier study's files in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(fn=cmd_noise_study)
    return p
