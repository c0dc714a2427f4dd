"""The `semlab` command: simulate, import-images, make-data, segment, run, lab, bench.

Later stages add segment, train, generate, evaluate and contours.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pickle
import sys

from semlab.argtypes import non_negative_int, pixel_size_nm, positive_int, size_px
from pathlib import Path


def _splits(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3 or any(not (p >= 0) for p in parts) or sum(parts) <= 0:
        raise ValueError(f"--splits takes three non-negative fractions train,val,test (e.g. 0.8,0.1,0.1), got {text!r}")
    return dict(zip(("train", "val", "test"), parts))


def _typed(cls, overrides: dict) -> dict:
    """`--set` values checked against the types of the dataclass `cls`'s defaults (an int
    for a float is fine; a None default takes anything), naming the option."""
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for k, v in overrides.items():
        d = defaults.get(k, dataclasses.MISSING)
        if d is dataclasses.MISSING or d is None or v is None:
            continue
        ok = (isinstance(v, bool) == isinstance(d, bool)) and (
            isinstance(v, type(d)) or (isinstance(d, float) and isinstance(v, int)))
        if not ok:
            raise ValueError(f"--set {k}={v!r}: {k} must be {type(d).__name__} like its default {d!r}")
    return overrides


def _overrides(items: list[str]) -> dict:
    out = {}
    for it in items or []:
        if "=" not in it:
            raise ValueError(f"--set takes NAME=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        k = k.strip()
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


_GDS_ONLY = ("cell", "layers", "window", "tile")


def _gds_clip(a):
    """The checked layout clip of `--gds` (semlab.data.gds.plan_clip), or None without
    --gds (then the layout-only flags are refused)."""
    from semlab.data import gds

    if a.gds is None:
        used = [f"--{k}" for k in _GDS_ONLY if getattr(a, k) is not None]
        if used:
            raise ValueError(f"{', '.join(used)} apply only with --gds FILE")
        return None
    return gds.plan_clip(a.gds, pixel_nm=a.pixel_nm, cell=a.cell, layers=a.layers or gds.DEFAULT_LAYERS,
                         window=a.window, tile=a.tile)


def cmd_simulate(a) -> int:
    from semlab.data.datasets import simulate_dataset

    if a.gds is not None and (a.n is not None or a.size is not None):
        raise ValueError("--n and --size do not apply with --gds: the window, --pixel-nm and --tile set the images")
    if a.gds is not None and a.preset_file is not None:
        raise ValueError("--preset-file does not apply with --gds (yet): use --preset")
    clip = _gds_clip(a)
    if clip is not None:
        from semlab.data.gds import simulate_gds

        out = simulate_gds(a.out, clip, preset=a.preset or "ic-metal", seed=a.seed, splits=_splits(a.splits),
                           progress=not a.quiet, **_overrides(a.set))
        print(f"dataset ready: {out} ({len(clip.tiles)} tile(s) of {clip.layout.cell}, layers "
              f"{clip.describe()['layers']})")
        return 0
    preset, pixel_nm = a.preset or "ic-metal", a.pixel_nm
    if a.preset_file is not None:  # fitted parameters (semlab fit-sim), at the fitted pixel size by default
        from semlab.data.presetfile import load_preset_file, pixel_nm_of

        if a.preset is not None:
            raise ValueError("--preset and --preset-file exclude each other (the file names its base preset)")
        preset = load_preset_file(a.preset_file)
        pixel_nm = pixel_nm or pixel_nm_of(preset)
    out = simulate_dataset(a.out, preset=preset, n=a.n or 2000, size=a.size or 256, seed=a.seed,
                           pixel_nm=pixel_nm, splits=_splits(a.splits), progress=not a.quiet, **_overrides(a.set))
    print(f"dataset ready: {out}")
    return 0


def _add_gds_flags(s) -> None:
    """--gds and its flags, shared by `simulate` and `generate` (semlab.data.gds)."""
    g = s.add_argument_group("layout clip (GDSII)")
    g.add_argument("--gds", default=None, metavar="FILE", help="render a GDSII layout clip (needs --pixel-nm)")
    g.add_argument("--cell", default=None, help="cell to render (default: the single top cell)")
    g.add_argument("--layers", default=None, metavar="MAP",
                   help="layer/datatype to class: LAYER/DATATYPE=CLASS,... with CLASS pattern, hole or defect "
                        "(default: 1/0=pattern,2/0=hole); other layers are ignored with a warning")
    g.add_argument("--window", default=None, metavar="X0,Y0,X1,Y1",
                   help="window in um, layout coordinates (default: the cell's bounding box)")
    g.add_argument("--tile", type=size_px, default=None, metavar="N",
                   help="cut the window into N x N px tiles (positions in dataset.json)")


def cmd_import(a) -> int:
    from semlab.data.datasets import batch_summary, import_images

    bar = a.crop_databar
    if bar not in ("auto", "none"):
        bar = int(bar)
    # a zero fraction means no such split (0,0,1: a test set only), not a split of one frame
    splits = {k: v for k, v in (_splits(a.splits) or {}).items() if v > 0} or None
    kw = dict(tile=a.tile, overlap=a.overlap, crop_databar=bar, seed=a.seed, splits=splits,
              progress=not a.quiet, native_pixel_nm=a.native_pixel_nm, pixel_nm=a.pixel_nm)
    if a.masks:
        import warnings

        from semlab.data.masks_import import import_labelled

        with warnings.catch_warnings():  # the mismatches are printed below, from dataset.json
            warnings.filterwarnings("ignore", message=r"\d+ (image|mask)")
            out = import_labelled(a.src, a.masks, a.out, mask_pattern=a.mask_pattern or "{stem}",
                                  mask_class=a.mask_class or "pattern", missing=a.missing_mask or "error", **kw)
    elif a.mask_pattern or a.mask_class or a.missing_mask:
        raise ValueError("--mask-pattern, --mask-class and --missing-mask need --masks DIR")
    else:
        out = import_images(a.src, a.out, **kw)
    summary, n_failed = batch_summary(out)
    meta = json.loads((Path(out) / "dataset.json").read_text())
    px = meta.get("pixel_size_nm")
    print(f"pixel size: {f'{px:.6g} nm' if px else 'unknown or per set'}"
          + (f" ({meta['pixel_size_note']})" if meta.get("pixel_size_note") else ""))
    if a.masks:
        from semlab.data.masks_import import mask_report

        for line in mask_report(meta):
            print(line)
    print(f"dataset ready: {out}: {summary}")
    return 1 if n_failed else 0


def cmd_make_data(a) -> int:
    from semlab.data.datasets import make_default_dataset

    for preset in a.presets.split(","):
        out = make_default_dataset(preset.strip(), a.profile, seed=a.seed, progress=not a.quiet)
        print(f"dataset ready: {out}")
    return 0


def cmd_segment(a) -> int:
    from semlab.data.datasets import batch_summary
    from semlab.segment.canonical import CanonicalRules
    from semlab.segment.pipeline import merge_shards, parse_shard, segment_dataset

    if a.merge:
        out = merge_shards(a.dataset)
        print(f"merged shards: {out}")
        return 0
    settings: dict = {}
    if a.backend == "sam2":
        for k in ("model", "checkpoint", "points_per_side", "pred_iou_thresh", "stability_score_thresh",
                  "crop_n_layers", "image_size"):
            v = getattr(a, k)
            if v is not None:
                settings[k] = v
    else:
        for k in ("denoise", "threshold"):
            v = getattr(a, k)
            if v is not None:
                settings[k] = v
    rules = None
    if a.classes or a.polarity or a.edge_offset_px is not None:
        base = CanonicalRules()
        rules = CanonicalRules(
            classes=tuple(c.strip() for c in a.classes.split(",")) if a.classes else base.classes,
            polarity=a.polarity or "auto",
            edge_offset_px=a.edge_offset_px if a.edge_offset_px is not None else 0.0)
    backend, extra = a.backend, None
    if a.calibrate_on:
        backend, extra = _calibrated_backend(a, settings, rules)
    elif a.backend == "hybrid":
        from semlab.segment.hybrid import make_hybrid_segmenter

        backend, note = make_hybrid_segmenter(model=a.model or "sam2.1_hiera_tiny", checkpoint=a.checkpoint,
                                              image_size=a.image_size or 512, classical=settings,
                                              fallback=not a.no_fallback)
        extra = {"hybrid": note}
    out = segment_dataset(a.dataset, a.out, backend=backend, settings=settings, rules=rules,
                          shard=parse_shard(a.shard), fallback=not a.no_fallback, progress=not a.quiet,
                          limit=a.limit, info_extra=extra)
    summary, n_failed = batch_summary(out)
    print(f"segmented dataset: {out}: {summary}")
    return 1 if n_failed else 0


def _calibrated_backend(a, settings: dict, rules):
    """`--calibrate-on DATASET`: the classical settings fitted on a few labelled images
    (`semlab.segment.calibrate`), as a segmenter, and the record for dataset.json."""
    from semlab.segment.calibrate import calibrate
    from semlab.segment.canonical import CanonicalRules
    from semlab.segment.classical import ClassicalSegmenter, ClassicalSettings

    if a.backend != "classical":
        raise ValueError(f"--calibrate-on fits the classical backend's settings; got --backend {a.backend}")
    if a.edge_offset_px is not None:
        raise ValueError("--calibrate-on fits the edge offset itself: drop --edge-offset-px")
    if rules is None:  # the rules segment_dataset will use: the source's classes, polarity per frame
        from semlab.segment.pipeline import source_items

        classes = source_items(a.dataset)[1].get("classes") or CanonicalRules().classes
        rules = CanonicalRules(classes=tuple(classes), polarity="auto")
    fitted, record = calibrate(a.calibrate_on, ClassicalSettings(**settings), rules,
                               split=a.calibrate_split, n=a.calibrate_n, progress=not a.quiet)
    if not a.quiet:
        print(f"calibrated on {record['n']} {record['split']} images of {a.calibrate_on}: {record['fitted']} "
              f"(structure IoU {record['iou_before']:.3f} -> {record['iou_after']:.3f})")
    return ClassicalSegmenter(fitted), {"calibration": record}


def cmd_run(a) -> int:
    from semlab.reports import run_pipeline

    params = None
    if a.params:
        import yaml

        try:
            params = yaml.safe_load(Path(a.params).read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{a.params}: not valid YAML ({exc})") from None
        if not isinstance(params, dict):
            raise ValueError(f"{a.params}: the parameters file must be a mapping of NAME: value "
                             f"(and sections per notebook), got a {type(params).__name__}")
    only = [x.strip() for x in a.only.split(",")] if a.only else None
    res = run_pipeline(a.profile, only=only, params=params, start=a.start, notebooks_dir=a.notebooks,
                       out_root=a.out, domain=a.domain, real_dir=a.real)
    print(f"report: {res.run_dir / 'index.html'}")
    return 0 if res.ok else 1


def cmd_train(a) -> int:
    """Every `TrainConfig` field given on the command line (`_add_train_parser`), then `--set`."""
    from semlab.train import TrainConfig
    from semlab.train.ddp import train_maybe_distributed

    opts = {k: getattr(a, k) for k in a.train_fields if getattr(a, k) is not None}
    opts.update(_typed(TrainConfig, _overrides(a.set)))
    cfg = TrainConfig.from_dict(opts)
    res = train_maybe_distributed(cfg, progress=not a.quiet, overwrite=a.overwrite)
    if res is not None:
        print(f"trained {res.steps} steps into {res.out}" + (f"; generator: {res.generator_path}" if res.generator_path else ""))
    return 0


def cmd_generate(a) -> int:
    if (a.gds is None) == (a.masks is None):
        raise ValueError("give exactly one of --masks FOLDER and --gds FILE")
    if a.gds is None and a.pixel_nm is not None:
        raise ValueError("--pixel-nm applies only with --gds FILE")
    clip = _gds_clip(a)
    if clip is not None:
        from semlab.data.gds import generate_gds

        res = generate_gds(a.checkpoint, a.out, clip, seed=a.seed, progress=not a.quiet, overwrite=a.overwrite)
        print(res.summary())
        return 0
    from semlab.train.generate import generate_folder

    res = generate_folder(a.checkpoint, a.masks, a.out, seed=a.seed, progress=not a.quiet, overwrite=a.overwrite)
    print(res.summary())
    return 0


def cmd_evaluate(a) -> int:
    from semlab.metrics.evaluate import SET_METRICS, check_table_paths, evaluate, read_folder, to_markdown, write_table

    metrics = [m.strip() for m in a.metrics.split(",")] if a.metrics else None
    unknown = sorted(set(metrics or []) - set(SET_METRICS))
    if unknown or metrics == []:
        raise ValueError(f"--metrics: unknown metric(s) {unknown}; valid: {', '.join(SET_METRICS)}")
    outs = [o.strip() for o in a.out.split(",") if o.strip()] if a.out else []
    check_table_paths(outs, overwrite=a.overwrite)  # before any image is read or metric computed
    real_ids, real = read_folder(a.real)
    fake_ids, fake = read_folder(a.fake)
    if a.paired:  # pairs by file name
        common = sorted(set(real_ids) & set(fake_ids))
        if not common:
            raise ValueError(f"--paired: no file names in common between {a.real} and {a.fake}")
        ri, fi = {k: i for i, k in enumerate(real_ids)}, {k: i for i, k in enumerate(fake_ids)}
        real, fake = [real[ri[k]] for k in common], [fake[fi[k]] for k in common]
    kw = {"metrics": metrics} if metrics else {}
    if a.paired:
        kw["names"] = common  # a size mismatch names the file pair
    if a.sem_encoder:
        from semlab.metrics.sem_encoder import load_sem_encoder

        kw["sem_encoder"] = load_sem_encoder(a.sem_encoder)
    rows = evaluate(real, fake, paired=a.paired, cache_dir=a.cache, fid_inf=a.fid_inf, precision=a.precision, **kw)
    print(to_markdown(rows))
    for out in outs:
        print("wrote", write_table(rows, out, overwrite=a.overwrite))
    return 0


def cmd_verify(a) -> int:
    from semlab.integrity import verify_dataset

    rep = verify_dataset(a.dataset, rehash=a.rehash)
    for line in rep.lines():
        print(line)
    print(rep.summary())
    return 0 if rep.ok else 1


def cmd_realism(a) -> int:
    """`semlab realism --sim DIR --real DIR`: the realism protocol of `semlab.realism`."""
    from semlab.io import write_json_atomic
    from semlab.realism import format_table, realism

    dets = tuple(d.strip() for d in a.detectors.split(",") if d.strip())
    power = None if a.power == "none" else a.power
    res = realism(a.sim, a.real, tile=a.tile, detectors=dets, power=power, real_split=a.real_split,
                  seed=a.seed, epochs=a.epochs, max_tiles=a.max_tiles, progress=not a.quiet and not a.json)
    if a.out:
        write_json_atomic(a.out, res)
    if a.json:
        for r in res["records"]:
            print(json.dumps({**r, "notes": res["notes"]}), flush=True)
    else:
        print(format_table(res))
    return 0


def cmd_lab(a) -> int:
    from semlab.lab import main as lab_main

    return lab_main(port=a.port, open_browser=a.browser)


def cmd_bench(a) -> int:
    """`semlab bench NAME`: each benchmark is a subcommand whose flags are the keyword
    arguments of its function in `semlab.bench` (`a.opts` names them), with that
    function's defaults."""
    from semlab import bench

    opts = {k: getattr(a, k) for k in a.opts if getattr(a, k) is not None}
    if "channels_last" in opts:
        opts["channels_last"] = opts["channels_last"] == "on"
    if "points_per_side" in opts:
        opts["points_per_side"] = tuple(int(x) for x in opts["points_per_side"].split(","))
    if a.bench == "segsem":  # one size / precision on the command line; both by default
        if "size" in opts:
            opts["sizes"] = (opts.pop("size"),)
        if "precision" in opts:
            opts["precisions"] = (opts.pop("precision"),)
    print(bench.format_records(bench.run(a.bench, **opts), a.json), flush=True)
    return 0


class _DefaultsHelp(argparse.HelpFormatter):
    """Appends "(default: X)" to a flag's help when X is a real default (not None/False)."""

    def _get_help_string(self, action):
        h = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in h:
            h += " (default: %(default)s)"
        return h


def _add_bench_parsers(sub) -> None:
    """One subcommand per benchmark, with its own flags and defaults (shown in --help)."""
    p = sub.add_parser("bench", help="measure throughput; one JSON object per line with --json",
                       description="Benchmarks (design.md section 6). Quote only numbers they print, "
                                   "naming the CPU (lscpu).")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="NAME")

    def add(name, help_, opts):
        s = bsub.add_parser(name, help=help_, formatter_class=_DefaultsHelp)
        for flag, kw in opts:
            s.add_argument(flag, **kw)
        s.add_argument("--json", action="store_true", help="one JSON object per line")
        s.set_defaults(fn=cmd_bench, opts=[o[1].get("dest") or o[0][2:].replace("-", "_") for o in opts])

    precision = ("--precision", {"default": "fp32", "choices": ["fp32", "bf16"], "help": "fp32, or bf16 autocast"})
    add("simulate", "simulator images/s in memory (and, with --write, writing a dataset)", [
        ("--preset", {"default": "ic-metal", "help": "layout preset"}),
        ("--size", {"type": size_px, "default": 256, "help": "image side in px"}),
        ("--n", {"type": positive_int, "default": 500, "help": "images"}),
        ("--write", {"action": "store_true", "default": None, "help": "also time writing a dataset to disk"}),
    ])
    add("segment", "segmenter seconds per image (classical or SAM2 automatic masks)", [
        ("--backend", {"default": "classical", "choices": ["classical", "sam2"], "help": "segmenter"}),
        ("--size", {"type": size_px, "default": 512, "help": "image side in px"}),
        ("--n", {"type": positive_int, "default": None, "help": "images (classical 10, sam2 2)"}),
        ("--points-per-side", {"default": None, "help": "sam2: e.g. 16,32 (default both)"}),
        ("--image-size", {"type": size_px, "default": None, "help": "sam2: model input 1024 or 512"}),
    ])
    add("train", "Pix2Pix / CycleGAN training steps per second", [
        ("--model", {"default": "pix2pix", "choices": ["pix2pix", "cyclegan"], "help": "which model"}),
        ("--size", {"type": size_px, "default": 256, "help": "image side in px"}),
        ("--batch-size", {"type": positive_int, "default": 1, "help": "batch size"}),
        precision,
        ("--steps", {"type": positive_int, "default": 10, "help": "timed steps"}),
        ("--channels-last", {"default": None, "choices": ["on", "off"], "help": "memory format (default: on for bf16)"}),
    ])
    add("metrics", "FID Inception features: seconds per 1000 images", [
        ("--n", {"type": positive_int, "default": 1000, "help": "images"}),
        ("--size", {"type": size_px, "default": 256, "help": "image side in px"}),
        precision,
    ])
    add("gds", "rasterising a GDSII window (tiled) vs the simulator rendering the same pixels, in seconds", [
        ("--window-um", {"type": float, "default": 10.0, "help": "window side in um"}),
        ("--pixel-nm", {"type": float, "default": 1.0, "help": "pixel size in nm"}),
        ("--tile", {"type": size_px, "default": 1000, "help": "tile side in px"}),
        ("--preset", {"default": "ic-metal", "help": "simulator preset"}),
    ])
    add("segsem", "SAM2 image embedding and one encoder fine-tuning step, in seconds", [
        ("--size", {"type": size_px, "default": None, "help": "model input side (default: 512 and 1024)"}),
        ("--precision", {"default": None, "choices": ["fp32", "bf16"], "help": "default: both"}),
        ("--steps", {"type": positive_int, "default": 3, "help": "timed fine-tuning steps"}),
    ])
    add("inject", "noise injection (each parametric model) vs Pix2Pix generation, images/s and their ratio", [
        ("--size", {"type": size_px, "default": 256, "help": "image side in px"}),
        ("--n", {"type": positive_int, "default": 20, "help": "images per measurement"}),
        ("--precision", {"default": "both", "choices": ["fp32", "bf16", "both"], "help": "Pix2Pix precision"}),
    ])
    add("downstream", "downstream segmenter vs Pix2Pix U-Net generator training images/s and their ratio", [
        ("--size", {"type": size_px, "default": 256, "help": "image side in px"}),
        ("--batch-size", {"type": positive_int, "default": 8, "help": "tiles per step (both networks)"}),
        ("--steps", {"type": positive_int, "default": 5, "help": "timed steps per network (alternating)"}),
        ("--width", {"type": positive_int, "default": 16, "help": "segmenter base width"}),
        ("--depth", {"type": positive_int, "default": 3, "help": "segmenter levels"}),
        ("--precision", {"default": "bf16", "choices": ["fp32", "bf16"], "help": "autocast precision"}),
    ])


# `semlab train` flags that differ from --<field-name-with-dashes>, and argparse types that
# check ranges; everything else comes from TrainConfig's fields (type, default, HELP, CHOICES)
_TRAIN_FLAGS = {"n_epochs": ("--epochs", "--n-epochs"), "n_epochs_decay": ("--epochs-decay", "--n-epochs-decay")}
_TRAIN_TYPES = {"size": size_px, "batch_size": positive_int, "n_epochs": non_negative_int,
                "n_epochs_decay": non_negative_int, "max_steps": positive_int, "checkpoint_every": positive_int,
                "keep_checkpoints": non_negative_int, "threads": positive_int, "ngf": positive_int,
                "ndf": positive_int, "n_layers_D": positive_int, "pool_size": non_negative_int,
                "sample_every_epochs": positive_int, "n_samples": non_negative_int}


def _add_train_parser(sub) -> None:
    """`semlab train DATASET --out DIR [--<field> VALUE ...]`: one flag per `TrainConfig`
    field (`extra` through `--set`); a flag not given leaves the field's default."""
    import dataclasses
    import typing

    from semlab.train.config import CHOICES, HELP, TrainConfig

    s = sub.add_parser("train", help="train Pix2Pix or CycleGAN (resumes from the last checkpoint in --out)",
                       description="Train Pix2Pix or CycleGAN into a run folder; re-running with the same --out "
                                   "resumes from the last checkpoint. A non-empty --out that is not a run folder is "
                                   "refused unless --overwrite.")
    s.add_argument("dataset", help=HELP["dataset"])
    s.add_argument("--out", required=True, help=HELP["out"])
    hints = typing.get_type_hints(TrainConfig)
    names = ["dataset", "out"]
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("dataset", "out", "extra"):
            continue
        kind = next((t for t in typing.get_args(hints[f.name]) or (hints[f.name],) if t is not type(None)), str)
        default = f.default if f.default is not dataclasses.MISSING else None
        help_ = HELP.get(f.name, f.name).replace("%", "%%")
        if default not in (None, "") and "(default" not in help_:
            help_ += f" (default: {default})"
        flags = _TRAIN_FLAGS.get(f.name, (f"--{f.name.replace('_', '-')}",))
        if kind is bool:
            s.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            s.add_argument(*flags, dest=f.name, type=_TRAIN_TYPES.get(f.name, kind), default=None,
                           choices=CHOICES.get(f.name), help=help_)
        names.append(f.name)
    s.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="any TrainConfig field")
    s.add_argument("--overwrite", action="store_true",
                   help="train from scratch: in a run folder, replace its checkpoints, log and generator; "
                        "in a non-empty folder that is not a run folder, write anyway")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_train, train_fields=names)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semlab", description="Synthetic SEM workbench")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="write a simulated paired dataset (resumable)",
                       description="Write a simulated paired dataset (resumable): procedural layouts of a preset, "
                                   "or with --gds a GDSII layout clip rendered with the preset's imaging.")
    s.add_argument("--preset", default=None, help="ic-metal (default), line-space, contacts, comb")
    s.add_argument("--preset-file", default=None, metavar="FILE",
                   help="a preset file of fitted parameters (semlab fit-sim); --pixel-nm defaults to its pixel size")
    s.add_argument("--n", type=positive_int, default=None, help="images (default 2000; not with --gds)")
    s.add_argument("--size", type=size_px, default=None, help="image side in px (default 256; not with --gds)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--pixel-nm", type=pixel_size_nm, default=None,
                   help="pixel size (default: preset field of view / size; required with --gds)")
    s.add_argument("--splits", default=None, help="train,val,test fractions (default 0.8,0.1,0.1)")
    s.add_argument("--set", action="append", metavar="NAME=VALUE", help="fix a simulator parameter")
    s.add_argument("--out", required=True)
    s.add_argument("--quiet", action="store_true")
    _add_gds_flags(s)
    s.set_defaults(fn=cmd_simulate)

    s = sub.add_parser("import-images", help="build a dataset from real SEM images (labelled with --masks)",
                       description="Build an unlabeled dataset from real SEM images, or with --masks a labelled "
                                   "one (resumable). A file that cannot be read, or an image without a valid mask, "
                                   "is recorded in the manifest (status error) and the rest go on; exit code 1 if "
                                   "any failed (a re-run retries them), 2 on a usage error.")
    s.add_argument("src")
    s.add_argument("--out", required=True)
    s.add_argument("--tile", type=size_px, default=None)
    s.add_argument("--overlap", type=int, default=0)
    s.add_argument("--crop-databar", default="auto", help="auto, none, or rows to keep")
    s.add_argument("--native-pixel-nm", type=pixel_size_nm, default=None,
                   help="the frames' pixel size in nm, for files whose tags state none (JPEGs); it wins over "
                        "a Zeiss/Hitachi/FEI tag, with a warning if they differ by more than 2%%")
    s.add_argument("--pixel-nm", type=pixel_size_nm, default=None,
                   help="resample every frame (anti-aliased, after the data-bar crop) to this pixel size in nm; "
                        "needed to import frames of one folder whose pixel sizes differ by more than 2%%")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--splits", default=None, metavar="TRAIN,VAL,TEST",
                   help="split fractions per frame (default 0.8,0.1,0.1); a zero means no such split: "
                        "0,0,1 makes a test set")
    s.add_argument("--quiet", action="store_true")
    g = s.add_argument_group("masks (a labelled dataset)")
    g.add_argument("--masks", default=None, metavar="DIR",
                   help="folder of masks matched to the images by name: canonical palette/RGB, gray class ids "
                        "0..3, or binary 0/255 or 0/1 (foreground = --mask-class)")
    g.add_argument("--mask-pattern", default=None, metavar="PATTERN",
                   help="a mask's name from its image's stem, e.g. '{stem}_m' (default '{stem}': the same name)")
    g.add_argument("--mask-class", default=None, choices=["pattern", "hole", "defect"],
                   help="the class of a binary mask's foreground (default pattern; defect for anomaly masks)")
    g.add_argument("--missing-mask", default=None, choices=["error", "skip"],
                   help="an image without a mask: a failed item (error, the default) or left out (skip); "
                        "both are listed by name")
    s.set_defaults(fn=cmd_import)

    s = sub.add_parser("make-data", help="build the embedded simulated datasets of a profile")
    s.add_argument("--profile", default="cpu")
    s.add_argument("--presets", default="ic-metal,line-space,contacts")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_make_data)

    s = sub.add_parser("run", help="execute the notebooks into reports/<run-id>/")
    s.add_argument("--profile", default="cpu")
    s.add_argument("--only", default=None, help="comma-separated notebook numbers or names")
    s.add_argument("--from", dest="start", default=None,
                   help="start at this notebook (number or name); earlier outputs come from the latest run")
    s.add_argument("--params", default=None, help="YAML file of notebook parameters")
    s.add_argument("--domain", default="sim", choices=["sim", "real", "both"],
                   help="run domain-aware notebooks on simulated images, real ones, or both (once per domain)")
    s.add_argument("--real", default=None, help="folder of real SEM images for the real domain (notebook REAL_DIR)")
    s.add_argument("--notebooks", default=None, help="notebooks folder (default: the project's notebooks/)")
    s.add_argument("--out", default=None, help="reports folder (default: reports/ or $SEMLAB_REPORTS)")
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("segment", help="unlabeled images -> dataset with canonical masks (SAM2 or classical)",
                       description="Segment every image into a new dataset folder (resumable). An image that "
                                   "cannot be segmented is recorded in the manifest (status error) and the rest go "
                                   "on; exit code 1 if any failed (a re-run retries them), 2 on a usage error.")
    s.add_argument("dataset", help="a semlab dataset folder or any folder of images")
    s.add_argument("--out", default=None, help="output dataset folder (default: DATASET-seg-BACKEND)")
    s.add_argument("--backend", default="classical", choices=["classical", "sam2", "hybrid"],
                   help="hybrid: SAM2 prompted with points and boxes from the classical masks")
    s.add_argument("--calibrate-on", default=None, metavar="LABELLED",
                   help="fit the classical threshold, edge offset and morphology on a few labelled images of "
                        "this semlab dataset (recorded in the output's dataset.json)")
    s.add_argument("--calibrate-n", type=positive_int, default=3, help="labelled images to calibrate on (default 3)")
    s.add_argument("--calibrate-split", default="train", choices=["train", "val"], help="split to calibrate on")
    s.add_argument("--shard", default=None, help="i/n: process the i-th of n shards (0-based)")
    s.add_argument("--merge", action="store_true", help="merge the shard manifests of DATASET (an output folder)")
    s.add_argument("--no-fallback", action="store_true", help="fail if SAM2 weights are missing instead of using classical")
    s.add_argument("--limit", type=positive_int, default=None, help="only the first N items (preview)")
    s.add_argument("--classes", default=None, help="canonical classes to use, e.g. background,pattern,defect")
    s.add_argument("--polarity", default=None, choices=["auto", "bright", "dark"],
                   help="is the pattern bright or dark; default auto: decided per frame and recorded in the manifest")
    s.add_argument("--edge-offset-px", type=float, default=None, help="move pattern edges inwards by this (px)")
    g = s.add_argument_group("sam2")
    g.add_argument("--model", default=None, help="e.g. sam2.1_hiera_tiny, sam2_hiera_large")
    g.add_argument("--checkpoint", default=None, help="explicit checkpoint path")
    g.add_argument("--points-per-side", type=int, default=None)
    g.add_argument("--pred-iou-thresh", type=float, default=None)
    g.add_argument("--stability-score-thresh", type=float, default=None)
    g.add_argument("--crop-n-layers", type=int, default=None)
    g.add_argument("--image-size", type=int, default=None, help="1024 (official) or 512 (4x faster on CPU)")
    g = s.add_argument_group("classical")
    g.add_argument("--denoise", default=None, help="nlm, bilateral, tv, gaussian, none")
    g.add_argument("--threshold", default=None, help="otsu, multiotsu, li, sauvola")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_segment)

    _add_train_parser(sub)

    s = sub.add_parser("generate", help="canonical masks -> SEM images with a trained generator",
                       description="Canonical masks (--masks FOLDER) or a GDSII layout clip (--gds FILE) -> SEM "
                                   "images with a trained generator. With --gds, OUT gets masks/ (the rasterised "
                                   "layout), images/ (generated), contours/ and dataset.json (layer map, tiles).")
    s.add_argument("--checkpoint", required=True, help="generator.pt or a training checkpoint")
    s.add_argument("--masks", default=None, help="folder of masks (indexed, RGB or gray PNG); or --gds")
    s.add_argument("--pixel-nm", type=pixel_size_nm, default=None, help="with --gds: pixel size in nm (required)")
    s.add_argument("--out", required=True,
                   help="output folder; generate.json there records the checkpoint's sha256: a re-run keeps "
                        "images made by the same checkpoint and seed and regenerates the others")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--overwrite", action="store_true",
                   help="regenerate everything, and write into a folder holding files generate did not write")
    s.add_argument("--quiet", action="store_true")
    _add_gds_flags(s)
    s.set_defaults(fn=cmd_generate)

    s = sub.add_parser("evaluate", help="metrics of generated vs real images, with 95%% confidence intervals")
    s.add_argument("--real", required=True, help="folder of real images")
    s.add_argument("--fake", required=True, help="folder of generated images")
    s.add_argument("--paired", action="store_true", help="pair images by file name: adds PSNR, SSIM, MS-SSIM, LPIPS")
    s.add_argument("--metrics", default=None, help="comma-separated subset of fid,kid,spectral,lpips,psnr,ssim,ms_ssim")
    s.add_argument("--out", default=None, help="table file(s): .csv, .md, .tex (comma-separated)")
    s.add_argument("--cache", default=None, help="folder caching the real set's Inception features")
    s.add_argument("--fid-inf", action="store_true", help="add FID extrapolated to infinitely many images")
    s.add_argument("--sem-encoder", default=None,
                   help="a SEM encoder file (semlab.metrics.sem_encoder) for FD_sem / KD_sem")
    s.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="Inception precision")
    s.add_argument("--overwrite", action="store_true", help="replace existing --out tables (refused otherwise)")
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("verify", help="check a dataset's files against its manifest hashes",
                       description="Check every file of a dataset folder against the sha256 in its manifest; "
                                   "list damaged, missing and extra files. Exit code 1 if a file is damaged or "
                                   "missing. --rehash accepts deliberate edits: the damaged files' new hashes "
                                   "are written into the manifest.")
    s.add_argument("dataset", help="a semlab dataset folder")
    s.add_argument("--rehash", action="store_true",
                   help="accept edited files: rewrite their hashes in manifest.csv (atomically)")
    s.set_defaults(fn=cmd_verify)

    s = sub.add_parser("realism", help="can detectors tell simulated tiles from real ones? (grouped CV, CIs)",
                       description="The realism protocol (semlab.realism): three detectors (stats, spectrum, cnn) "
                                   "separate --sim tiles from --real tiles by grouped cross-validation; balanced "
                                   "accuracy and AUC with 95% CIs, a power control and a real-vs-real floor.")
    s.add_argument("--sim", required=True, help="folder of images, semlab dataset, or preset:NAME (rendered at the "
                                                "real pixel size)")
    s.add_argument("--real", required=True, help="folder of real SEM images or a semlab dataset")
    s.add_argument("--tile", type=size_px, default=128, help="tile side in px")
    s.add_argument("--detectors", default="stats,spectrum,cnn", help="comma-separated subset of stats,spectrum,cnn")
    s.add_argument("--power", default="auto",
                   help="power control: auto (the preset recorded by --sim), preset:NAME, a folder, or none")
    s.add_argument("--real-split", default=None, choices=["train", "val", "test"],
                   help="only the real frames of this stored split")
    s.add_argument("--epochs", type=positive_int, default=4, help="CNN training epochs per fold")
    s.add_argument("--max-tiles", type=positive_int, default=300, help="tiles per side at most")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default=None, help="also write the result as JSON to this file (atomically)")
    s.add_argument("--json", action="store_true", help="one JSON object per detector, one per line")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_realism)

    s = sub.add_parser("lab", help="JupyterLab on the notebooks (semlab kernel, localhost, token auth)")
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--browser", action="store_true", help="open a browser")
    s.set_defaults(fn=cmd_lab)

    _add_bench_parsers(sub)

    # commands that live in their own module: each has `add_parser(sub)` and must stay light
    # (no torch, pandas or seaborn at import; tests/test_cli_help.py checks)
    for module in EXTRA_COMMANDS:
        importlib.import_module(module).add_parser(sub)
    return p


EXTRA_COMMANDS = ("semlab.contours.cli", "semlab.noise.cli", "semlab.downstream.cli", "semlab.data.fit_cli",
                  "semlab.segment.checks_cli", "semlab.noise.study_cli")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (KeyError, ValueError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"semlab {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"semlab {args.command}: error: out of memory (try a smaller --size, --batch-size or --n)",
              file=sys.stderr)
        return 2
    except pickle.UnpicklingError as e:
        print(f"semlab {args.command}: error: a file could not be read as a checkpoint ({e})", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, --out is a file, permission denied, ...: one line naming the file
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"semlab {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
