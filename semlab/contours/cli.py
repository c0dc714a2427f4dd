"""`semlab contours train | predict | evaluate`: SegSEM from the command line.

    semlab contours train DATASET --mode encoder --out RUN [--steps N] [--image-size 512] [--precision bf16]
    semlab contours predict IMAGES --out FOLDER [--checkpoint RUN/sam2.1_hiera_tiny.pt] [--threshold 0.8]
                            [--pixel-nm 0.75] [--format csv,json,gds]
    semlab contours evaluate DATASET [--split test] [--checkpoint ...] [--out table.md,table.csv]

`train` fine-tunes SAM2 on a labelled semlab dataset (its train split; the val split, if
any, for early stopping) and exports an official `{"model": state_dict}` file.
`predict` runs the hybrid (SAM2 where confident, the classical fallback elsewhere)
on every image of a folder and writes one contour file per image and format plus
`structures.csv` (which source each structure used, and why). An image that cannot be
read or has no structure to find (corrupt, blank, 1x1) goes to `failures.csv` and the
rest go on (exit code 1 then); `predict.json` records the settings and each image's
state, so a re-run with the same settings resumes (finished images are skipped, failed
ones retried), while other settings, or files predict did not write, are refused: it
never overwrites. Without `--checkpoint` it uses the pretrained SAM2 weights if
`semlab.weights` finds them (never downloading), else the fallback on every structure,
saying why. `evaluate` scores the fallback, SAM2 alone (when available) and the hybrid
against a dataset's ground-truth contours: mean and 95 % bootstrap CI over images.

`semlab.cli` registers this with `add_parser(subparsers)`; `semlab.cli.main` runs it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from semlab.argtypes import pixel_size_nm, positive_int

__all__ = ["add_parser", "cmd_train", "cmd_predict", "cmd_evaluate", "FORMATS"]

FORMATS = ("csv", "json", "gds")
# semlab.contours.finetune.MODES, repeated so that building the parser does not import torch
MODES = ("encoder", "decoder", "full", "lora")
_DEFAULT_MODEL = "sam2.1_hiera_tiny"


# ----------------------------------------------------------------------------- helpers


def _fallback_settings(a):
    from semlab.contours.classical import ContourSettings

    kw = {}
    if getattr(a, "edge_offset_px", None) is not None:
        kw["edge_offset_px"] = a.edge_offset_px
    if getattr(a, "polarity", None):
        kw["polarity"] = a.polarity
    return ContourSettings(**kw)


def _bf16(a) -> bool:
    """`--precision bf16`; the deprecated `--bf16` maps to it with a one-line note."""
    import sys

    if getattr(a, "bf16", False):
        if a.precision == "fp32":
            raise ValueError("--bf16 contradicts --precision fp32 (--bf16 is deprecated: use --precision bf16)")
        print("semlab contours: --bf16 is deprecated; use --precision bf16", file=sys.stderr)
        return True
    return a.precision == "bf16"


def _extractor(a, fallback):
    """The hybrid for predict/evaluate: --no-sam2 and missing default weights give a
    fallback-only hybrid with the reason; a --checkpoint that cannot be used is an error
    (the user asked for it explicitly)."""
    from semlab.contours.hybrid import HybridExtractor, sam2_unavailable_reason

    kw = {"fallback": fallback, "threshold": a.threshold}
    if a.no_sam2:
        return HybridExtractor(None, unavailable_reason="SAM2 disabled (--no-sam2)", **kw)
    if a.checkpoint:
        reason = sam2_unavailable_reason(a.model, a.checkpoint)
        if reason is not None:
            raise FileNotFoundError(f"--checkpoint {a.checkpoint}: {reason}")
    ex = HybridExtractor.from_weights(a.model, a.checkpoint, a.image_size, bf16=_bf16(a), **kw)
    if a.checkpoint and ex.predictor is None:  # e.g. not a valid SAM2 checkpoint
        raise ValueError(f"--checkpoint {a.checkpoint}: {ex.unavailable_reason}")
    return ex


def _formats(text: str) -> list[str]:
    fmts = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise ValueError(f"--format {text!r}: unknown format(s) {bad}; valid: {', '.join(FORMATS)} (comma-separated)")
    return list(dict.fromkeys(fmts))


def _refuse_existing(paths) -> None:
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing:
        more = f" (and {len(existing) - 3} more)" if len(existing) > 3 else ""
        raise ValueError(f"{', '.join(existing[:3])}{more} already exist(s): semlab contours never overwrites; "
                         f"choose another --out or remove them")


# ------------------------------------------------------------------------------- train


def cmd_train(a) -> int:
    """Fine-tune SAM2 on a labelled dataset (train split; val split for early stopping)."""
    from semlab import labels as L
    from semlab.contours.finetune import FinetuneConfig, finetune, make_examples
    from semlab.contours.hybrid import sam2_unavailable_reason
    from semlab.data.datasets import load_dataset

    ds = load_dataset(a.dataset)
    if not ds.labeled:
        raise ValueError(f"{a.dataset}: the dataset has no masks; fine-tuning needs labelled images "
                         f"(images/ + masks/, e.g. from `semlab simulate` or `semlab segment`)")
    train_ids = ds.split("train")
    if not train_ids:
        raise ValueError(f"{a.dataset}: the dataset has no images in its train split "
                         f"(splits: {sorted({r['split'] for r in ds.rows})})")
    val_ids = ds.split("val")
    cfg = FinetuneConfig(model=a.model, checkpoint=a.checkpoint, image_size=a.image_size, mode=a.mode,
                         epochs=a.epochs, max_steps=a.steps, max_prompts=a.max_prompts, lr=a.lr, bf16=_bf16(a),
                         seed=a.seed, patience=a.patience)
    reason = sam2_unavailable_reason(a.model, a.checkpoint)
    if reason is not None:
        raise FileNotFoundError(f"cannot fine-tune {a.model}: {reason} (pass the base weights with --checkpoint)")

    def examples(ids):
        return make_examples([ds.image(i) for i in ids], [ds.mask(i) for i in ids], classes=[L.PATTERN, L.HOLE],
                             names=ids)

    train, val = examples(train_ids), examples(val_ids)
    if not train:
        raise ValueError(f"{a.dataset}: no pattern or hole structure in the train split's masks: nothing to learn")
    res = finetune(train, val, cfg, a.out, resume=True, progress=not a.quiet)
    print(f"fine-tuned SAM2 ({a.mode}) for {res.steps} steps, {res.epochs} epochs on {len(train)} images"
          + (f", best validation epoch {res.best_epoch} (loss {res.best_val_loss:.4f})" if res.best_epoch is not None
             else "") + (f"; resumed from {res.resumed_from}" if res.resumed_from else ""))
    print(f"model: {res.exported}")
    return 0


# ----------------------------------------------------------------------------- predict


PREDICT_STATE = "predict.json"
STRUCTURE_FIELDS = ["item", "image", "id", "label", "label_name", "source", "reason", "confidence", "predicted_iou",
                    "stability", "area_px", "touches_frame"]


def cmd_predict(a) -> int:
    """Hybrid contours of every image of a folder; one file per image and format
    (resumable; failures listed in failures.csv; see the module docstring)."""
    import json
    import warnings

    from semlab import io
    from semlab.data.datasets import clash_warning, unique_ids
    from semlab.data.sources import list_images

    fmts = _formats(a.format)
    if a.crop_databar not in ("auto", "none"):
        raise ValueError(f"--crop-databar {a.crop_databar!r}; valid: auto, none")
    root = Path(a.images)
    files = list_images(root)
    out = Path(a.out)
    ids, clashes = unique_ids(files, root)  # before anything is written
    if clashes:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn(clash_warning(clashes, ids, root), io.SemlabWarning, stacklevel=1)
    rel = {p: (p.relative_to(root) if root.is_dir() else Path(p.name)).as_posix() for p in files}
    state_path = out / PREDICT_STATE
    try:
        state = json.loads(state_path.read_text()) if state_path.is_file() else None
        if state is not None and not isinstance(state.get("items"), dict):
            raise ValueError("no items")
    except (ValueError, AttributeError) as e:
        raise ValueError(f"{state_path}: not a readable predict record ({e}); choose another --out") from None
    if state is None:  # not a folder of ours: refuse any file it would replace
        _refuse_existing([out / f"{i}.{f}" for i in ids.values() for f in fmts]
                         + [out / n for n in ("structures.csv", "failures.csv")])
    pixel, failed = {}, {}
    for p in files:
        try:
            pixel[p] = a.pixel_nm or io.read_image_meta(p).get("pixel_size_nm")
        except (ValueError, OSError) as e:  # unreadable: a failed item, the batch goes on
            failed[p] = str(e)
    if "gds" in fmts:
        missing = [p.name for p in files if p not in failed and not pixel[p]]
        if missing:
            raise ValueError(f"--format gds needs the pixel size, unknown for {', '.join(missing[:5])}"
                             f"{' ...' if len(missing) > 5 else ''}: pass --pixel-nm")
    ex = _extractor(a, _fallback_settings(a))
    identity = json.loads(json.dumps({"images": str(root.resolve()), "formats": fmts, "pixel_nm": a.pixel_nm,
                                      "crop_databar": a.crop_databar, "hybrid": ex.describe()},
                                     default=io.json_default))
    if state is not None and state.get("identity") != identity:
        raise ValueError(f"{out} holds contours predicted with other settings or images ({state_path}); "
                         "semlab contours never overwrites: choose another --out or remove it")
    if ex.predictor is None and not a.quiet:
        print(f"SAM2 not used: {ex.unavailable_reason}; every structure uses the classical fallback")
    items = dict(state["items"]) if state else {}
    old_rows = io.read_csv(out / "structures.csv") if state and (out / "structures.csv").is_file() else []
    done = {i for i, r in items.items() if r.get("status") == "ok"
            and all((out / f"{i}.{f}").is_file() for f in fmts)}
    records = [r for r in old_rows if r.get("item") in done]

    def save() -> None:
        fails = [{"id": i, "source": r["source"], "error": r["error"]} for i, r in sorted(items.items())
                 if r["status"] == "error"]
        io.write_csv_atomic(out / "structures.csv", records, STRUCTURE_FIELDS)
        io.write_csv_atomic(out / "failures.csv", fails, ["id", "source", "error"])
        io.write_json_atomic(state_path, {"format": "semlab-contours-predict-1", "identity": identity,
                                          "items": items})

    from tqdm.auto import tqdm

    from semlab.contours.export import write_contours_csv, write_contours_gds, write_contours_json
    from semlab.data.sources import crop_databar

    out.mkdir(parents=True, exist_ok=True)
    todo = [p for p in files if ids[p] not in done]
    try:
        for k, p in enumerate(tqdm(todo, desc="contours", disable=a.quiet)):
            s, px = ids[p], pixel.get(p)
            try:
                if p in failed:
                    raise ValueError(failed[p])
                img = io.read_image(p)
                if a.crop_databar == "auto":
                    img, _ = crop_databar(img, "auto")
                hr = ex.extract(img, pixel_nm=px, source=str(p))
            except (ValueError, OSError, RuntimeError) as e:  # corrupt, blank, 1x1, ...: recorded, go on
                items[s] = {"source": rel[p], "status": "error", "error": str(e) or type(e).__name__}
                continue
            for f in fmts:  # a retried or interrupted item's files are ours (listed in predict.json)
                dst = out / f"{s}.{f}"
                if f == "csv":
                    write_contours_csv(dst, hr, pixel_nm=px, overwrite=True)
                elif f == "json":
                    write_contours_json(dst, hr, pixel_nm=px, image_path=p, image_shape=img.shape, overwrite=True,
                                        parameters={"hybrid": ex.describe(), "structures": hr.records()})
                else:
                    write_contours_gds(dst, hr, pixel_nm=px, cell_name=s, overwrite=True)
            records.extend({"item": s, "image": str(p), **{key: ("" if v is None else v) for key, v in r.items()}}
                           for r in hr.records())
            items[s] = {"source": rel[p], "status": "ok", "error": "", "n_structures": len(hr.structures),
                        "n_fallback": hr.n_fallback}
            if (k + 1) % 20 == 0:
                save()
    finally:
        save()
    current = {ids[p] for p in files}
    oks = [r for i, r in items.items() if i in current and r["status"] == "ok"]
    n_err = sum(1 for i, r in items.items() if i in current and r["status"] == "error")
    n_struct = sum(r["n_structures"] for r in oks)
    rate = sum(r["n_fallback"] for r in oks) / n_struct if n_struct else float("nan")
    print(f"{len(oks)} image(s), {n_struct} structures, fallback rate {rate:.2f}: contours in {out} "
          f"({', '.join(fmts)}), sources per structure in {out / 'structures.csv'}")
    print(f"{len(oks)} ok, {n_err} failed" + (f": see {out / 'failures.csv'}" if n_err else "")
          + (f" ({len(files) - len(todo)} done before)" if len(files) > len(todo) else ""))
    return 1 if n_err else 0


# ---------------------------------------------------------------------------- evaluate


def cmd_evaluate(a) -> int:
    """Fallback, SAM2 alone and hybrid against a dataset's ground-truth contours."""
    from semlab.contours.classical import calibrate_edge_offset
    from semlab.contours.metrics import SCORE_KEYS, format_score_table, score_contours, score_table
    from semlab.data.datasets import load_dataset
    from semlab.io import write_csv_atomic, write_text_atomic

    ds = load_dataset(a.dataset)
    ids = ds.split(a.split) if a.split != "all" else ds.ids
    if not ids:
        counts = {s: len(ds.split(s)) for s in sorted({r["split"] for r in ds.rows})}
        raise ValueError(f"{a.dataset}: no images in split {a.split!r} (splits: {counts}; or --split all)")
    ids = [i for i in ids if (ds.root / "contours" / f"{i}.json").is_file()]
    if not ids:
        raise ValueError(f"{a.dataset}: no ground-truth contours (contours/<id>.json) in split {a.split!r}; "
                         f"evaluate needs data with exact contours, e.g. `semlab simulate`")
    if a.limit:
        ids = ids[: a.limit]
    outs = [Path(p.strip()) for p in a.out.split(",")] if a.out else []
    bad = [str(p) for p in outs if p.suffix.lower() not in (".md", ".csv")]
    if bad:
        raise ValueError(f"--out {', '.join(bad)}: table files must end in .md or .csv")
    _refuse_existing(outs)
    px = ds.info.get("pixel_size_nm")
    settings = _fallback_settings(a)
    if a.calibrate > 0 and a.edge_offset_px is None:
        cal = [i for i in ds.split("train") if (ds.root / "contours" / f"{i}.json").is_file() and i not in ids]
        cal = cal[: a.calibrate]
        if cal:
            settings, info = calibrate_edge_offset(((ds.image(i), ds.contours(i)) for i in cal), settings)
            print(f"edge offset calibrated on {len(cal)} train image(s): {settings.edge_offset_px:+.3f} px")
        else:
            print("no train images with contours outside the evaluated ones: edge offset not calibrated")
    ex = _extractor(a, settings)
    from tqdm.auto import tqdm

    rows: dict[str, list[dict]] = {"classical fallback only": [], "SAM2 only": [], "hybrid": []}
    fb = []
    for i in tqdm(ids, desc="evaluate", disable=a.quiet):
        img, true = ds.image(i), ds.contours(i)
        hr = ex.extract(img, pixel_nm=px, source=i)
        fb.append(hr.fallback_rate)
        rows["classical fallback only"].append(score_contours(hr.contours_of("fallback"), true, img.shape, pixel_nm=px))
        rows["hybrid"].append(score_contours(hr.contours, true, img.shape, pixel_nm=px))
        if ex.predictor is not None:
            rows["SAM2 only"].append(score_contours(hr.contours_of("sam2"), true, img.shape, pixel_nm=px))
    keys = [k for k in SCORE_KEYS if k not in ("cd_true", "cd_pred", "lwr_true", "ler_true")]
    tables = {m: score_table(r, keys, n_boot=a.n_boot) for m, r in rows.items() if r}
    units = "nm" if px else "px"
    md = [f"Contours of {len(ids)} image(s) of {a.dataset} (split {a.split}), mean [95 % bootstrap CI] over images:",
          "", format_score_table(tables, units=units), ""]
    if ex.predictor is None:
        md.append(f"SAM2 only: unavailable: {ex.unavailable_reason}. The hybrid used the fallback on every structure.")
    md.append(f"Hybrid fallback rate (threshold {ex.threshold:g}): mean {sum(fb) / len(fb):.3f} over images.")
    text = "\n".join(md)
    print(text)
    for p in outs:
        if p.suffix.lower() == ".md":
            write_text_atomic(p, text + "\n")
        else:
            long = [{"method": m, "metric": k, "mean": c["mean"], "ci_low": c["ci_low"], "ci_high": c["ci_high"],
                     "n": c["n"], "unit": "" if k in ("iou", "dice") else units}
                    for m, t in tables.items() for k, c in t.items()]
            write_csv_atomic(p, long, ["method", "metric", "mean", "ci_low", "ci_high", "n", "unit"])
        print("wrote", p)
    return 0


# ------------------------------------------------------------------------------ parser


def _sam2_options(s: argparse.ArgumentParser, *, checkpoint_help: str) -> None:
    s.add_argument("--model", default=_DEFAULT_MODEL, help="SAM2 model (default sam2.1_hiera_tiny)")
    s.add_argument("--checkpoint", default=None, help=checkpoint_help)
    s.add_argument("--image-size", type=int, default=512, choices=[512, 1024],
                   help="SAM2 input size: 512 (CPU, default) or 1024 (official)")
    s.add_argument("--precision", default=None, choices=["fp32", "bf16"],
                   help="fp32 (default) or bf16 autocast (faster on CPUs with AMX and on GPUs)")
    s.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)  # deprecated: --precision bf16


def _hybrid_options(s: argparse.ArgumentParser) -> None:
    _sam2_options(s, checkpoint_help="SAM2 weights: a fine-tuned model from `semlab contours train` or a pretrained "
                                     "file (default: pretrained weights found by semlab.weights, else fallback only)")
    s.add_argument("--threshold", type=float, default=0.8,
                   help="use SAM2 where its confidence sqrt(predicted IoU x stability) >= this (default 0.8)")
    s.add_argument("--no-sam2", action="store_true", help="classical fallback only")
    s.add_argument("--edge-offset-px", type=float, default=None,
                   help="calibrated edge offset of the classical fallback (px at the reference edge width)")
    s.add_argument("--polarity", default=None, choices=["bright", "dark"], help="is the pattern bright or dark")
    s.add_argument("--quiet", action="store_true")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `contours` with its subcommands train, predict and evaluate on an
    argparse subparsers object; each sets `fn` (called with the parsed args)."""
    p = subparsers.add_parser("contours", help="SegSEM contours: fine-tune SAM2, extract (hybrid), evaluate",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="contours_command", required=True)

    s = sub.add_parser("train", help="fine-tune SAM2 on a labelled dataset (resumes from --out)")
    s.add_argument("dataset", help="a labelled semlab dataset (images/ + masks/, train/val splits)")
    s.add_argument("--mode", default="encoder", choices=list(MODES),
                   help="what trains: encoder (SegSEM, default), decoder, full, lora")
    s.add_argument("--out", required=True, help="run folder: checkpoints/, history.json, <model>.pt")
    s.add_argument("--steps", type=int, default=None, help="stop after this many optimizer steps")
    s.add_argument("--epochs", type=positive_int, default=30)
    s.add_argument("--patience", type=int, default=5, help="epochs without a better validation loss")
    s.add_argument("--max-prompts", type=int, default=16, help="structures per image per step")
    s.add_argument("--lr", type=float, default=None, help="learning rate (default per mode)")
    s.add_argument("--seed", type=int, default=0)
    _sam2_options(s, checkpoint_help="pretrained base weights (file or folder; default: semlab.weights search)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("predict", help="images -> contour files (hybrid: SAM2 where confident, else classical)",
                       description="Contours of every image of a folder. Resumable: a re-run with the same settings "
                                   "skips finished images and retries failed ones. An image that fails (corrupt, "
                                   "blank, 1x1) is listed in OUT/failures.csv and the rest go on; exit code 1 if any "
                                   "failed, 2 on a usage error.")
    s.add_argument("images", help="an image file or a folder of images (searched recursively)")
    s.add_argument("--out", required=True,
                   help="output folder (resumed with the same settings; files predict did not write are never "
                        "overwritten)")
    s.add_argument("--format", default="csv,json", help="comma-separated: csv, json, gds (default csv,json)")
    s.add_argument("--pixel-nm", type=pixel_size_nm, default=None,
                   help="pixel size in nm (default: from the image's TIFF tags; else px units; gds needs it)")
    s.add_argument("--crop-databar", default="auto", help="auto (detect and remove a data bar) or none")
    _hybrid_options(s)
    s.set_defaults(fn=cmd_predict)

    s = sub.add_parser("evaluate", help="score fallback, SAM2 and hybrid against ground-truth contours (CIs)")
    s.add_argument("dataset", help="a semlab dataset with contours/ (e.g. from `semlab simulate`)")
    s.add_argument("--split", default="test", help="split to evaluate (train, val, test or all; default test)")
    s.add_argument("--calibrate", type=int, default=12,
                   help="calibrate the fallback's edge offset on this many train images first (0: off)")
    s.add_argument("--limit", type=positive_int, default=None, help="only the first N images")
    s.add_argument("--n-boot", type=positive_int, default=2000, help="bootstrap resamples for the CIs")
    s.add_argument("--out", default=None, help="table file(s), .md or .csv, comma-separated (never overwritten)")
    _hybrid_options(s)
    s.set_defaults(fn=cmd_evaluate)
    return p
