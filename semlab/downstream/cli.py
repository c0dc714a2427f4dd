"""`semlab downstream`: train the downstream segmenter, predict with it, or score training sets.

    semlab downstream train DATASET --out DIR [--steps N] [--batch B] [--width W] [--depth D] [--seed S]
    semlab downstream predict --model DIR --in IMAGES --out DIR
    semlab downstream --train SPEC [--train SPEC ...] --test DATASET --out DIR [--steps N] [--json]
    semlab downstream experiment --domain sim|real --profile full --out DIR [--set NAME=VALUE ...]
    semlab downstream summary DIR

`train` fits the segmenter on a labelled dataset's train split (checkpoint chosen on its
val split) and saves it with its config. `predict` writes one indexed-PNG mask per image
(never overwriting). The third form trains one segmenter per `--train` spec (`real`,
`real:N`, `preset:NAME`, `render:NAME`, `gen:CHECKPOINT`, a folder; `+` joins them; see
`semlab.downstream.data`) with the same steps x batch and augmentation, and scores it on
the test split of `--test` (`real` is that dataset's train split); `--json` prints one
object per training set: train, test, n_train, miou, miou_ci_low, miou_ci_high (mIoU
over the structure classes present in the test set; for real images it is agreement
with the reference masks). Bad input (a test class the training set lacks, a train/test
overlap by sha256, a dataset without masks) is refused before any training starts.

`experiment` runs the whole data-efficiency matrix of a profile (`DownstreamConfig`,
fields changed with `--set`) and rewrites DIR/runs.jsonl after every training run, so a
killed run keeps its finished results; at the end it writes summary.json, table.csv and
efficiency.png. `summary DIR` prints the table and the summary of whatever has finished.

`semlab.cli` registers this with `add_parser(subparsers)`; no torch at import time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from semlab.argtypes import positive_int

__all__ = ["add_parser", "cmd_downstream", "cmd_train", "cmd_predict", "cmd_experiment", "cmd_summary", "JSON_KEYS"]

JSON_KEYS = ("train", "test", "n_train", "miou", "miou_ci_low", "miou_ci_high")


def _settings(a, profile_cfg):
    from semlab.downstream.train import TrainSettings

    c = profile_cfg
    return TrainSettings(steps=a.steps or c.steps, batch=a.batch or c.batch, lr=c.lr, val_every=c.val_every,
                         width=a.width or c.width, depth=a.depth or c.depth, seed=a.seed, precision=a.precision)


def _profile(a):
    from semlab.config import load_profile

    return load_profile(a.profile).downstream


def _clean(v):
    if isinstance(v, float) and v != v:
        return None
    return v


def cmd_downstream(a) -> int:
    """`semlab downstream --train SPEC ... --test DATASET --out DIR`."""
    if a.downstream_command:
        return a.fn_sub(a)
    if not a.train_specs or not a.test or not a.exp_out:
        raise ValueError("give --train SPEC (one or more), --test DATASET and --out DIR, or a subcommand "
                         "(train, predict); see `semlab downstream --help`")
    from semlab import io
    from semlab.downstream.data import real_domain
    from semlab.downstream.experiment import evaluate_specs

    out = Path(a.exp_out)
    results = out / "downstream.json"
    if results.exists():
        raise ValueError(f"{results} already exists: semlab downstream never overwrites; choose another --out")
    cfg = _profile(a)
    dom = real_domain(a.test, tile=a.tile)
    rows = evaluate_specs(dom, a.train_specs, settings=_settings(a, cfg), n_synthetic=a.n_synthetic or cfg.n_synthetic,
                          n_boot=cfg.n_boot, progress=not (a.quiet or a.json))
    recs = [{"train": r["train"], "test": str(a.test), "n_train": r["n_train"], "miou": r["miou"],
             "miou_ci_low": r["miou_ci_low"], "miou_ci_high": r["miou_ci_high"], "metric": r["metric"],
             "test_set": r["test"], **{k: v for k, v in r.items() if k.endswith(("_iou", "_dice", "_f1"))}}
            for r in rows]
    out.mkdir(parents=True, exist_ok=True)
    io.write_json_atomic(results, {"test": str(a.test), "domain": dom.name, "notes": dom.notes,
                                   "results": [{k: _clean(v) for k, v in r.items()} for r in recs]})
    for r in recs:
        if a.json:
            print(json.dumps({k: _clean(v) for k, v in r.items()}), flush=True)
        else:
            print(f"{r['train']}: {r['metric']} {r['miou']:.3f} [{r['miou_ci_low']:.3f}, {r['miou_ci_high']:.3f}] "
                  f"({r['n_train']} training tiles; {r['test_set']})", flush=True)
    if not a.json:
        print(f"results: {results}")
    return 0


def cmd_train(a) -> int:
    """`semlab downstream train DATASET --out DIR`."""
    from semlab.downstream.data import build_training_set, real_domain
    from semlab.downstream.model import save_segmenter
    from semlab.downstream.train import train_segmenter

    out = Path(a.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: exists and is not empty; semlab downstream train never overwrites: "
                         "choose another --out")
    cfg = _profile(a)
    dom = real_domain(a.dataset, tile=a.tile)
    ts = build_training_set("real", dom, seed=a.seed)
    val = dom.splits.get("val")
    tr = train_segmenter(ts, val if val is not None and len(val) else None, _settings(a, cfg), progress=not a.quiet)
    meta = {**tr.meta(), "dataset": str(a.dataset), "domain": dom.name, "tile": dom.tile, "pixel_nm": dom.pixel_nm,
            "classes": list(ts.classes), "n_train_frames": ts.n_real_frames}
    save_segmenter(tr.model, out, meta)
    v = f", validation mIoU {tr.val_miou:.3f} at step {tr.best_step}" if tr.val_miou is not None else ""
    print(f"trained on {ts.describe()} ({dom.name}){v}; model: {out}")
    return 0


def cmd_predict(a) -> int:
    """`semlab downstream predict --model DIR --in IMAGES --out DIR`."""
    from semlab import io
    from semlab.data.sources import list_images
    from semlab.downstream.model import load_segmenter, predict

    model, meta = load_segmenter(a.model)
    files = list_images(a.inp)
    root = Path(a.inp)
    out = Path(a.out)
    targets = {f: out / ((f.relative_to(root).with_suffix(".png")) if root.is_dir() else Path(f.stem + ".png"))
               for f in files}
    existing = [str(t) for t in targets.values() if t.exists()]
    if existing:
        raise ValueError(f"{existing[0]} (and {len(existing) - 1} more) already exist: semlab downstream predict "
                         "never overwrites; choose another --out")
    failed = []
    for f, t in targets.items():
        try:
            img = io.to_uint8(io.read_image(f))
        except (ValueError, OSError) as e:
            failed.append(f"{f}: {e}")
            continue
        t.parent.mkdir(parents=True, exist_ok=True)
        io.write_mask(t, predict(model, img)[0])
    print(f"{len(targets) - len(failed)} ok, {len(failed)} failed" + (": " + "; ".join(failed[:3]) if failed else "")
          + f"; masks in {out}")
    return 1 if failed else 0


def _set_overrides(pairs) -> dict:
    import yaml

    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise ValueError(f"--set {p!r}: expected NAME=VALUE (a field of DownstreamConfig, e.g. steps=600)")
        k, v = p.split("=", 1)
        try:
            out[f"downstream.{k.strip()}"] = yaml.safe_load(v)
        except yaml.YAMLError:
            raise ValueError(f"--set {p!r}: the value is not valid YAML") from None
    return out


def _print_result(res, as_json: bool) -> None:
    for r in res.rows:
        if as_json:
            print(json.dumps({k: _clean(v) for k, v in r.items()}), flush=True)
        else:
            print(f"{r['train']}: {r['metric']} {r['miou']:.3f} [{r['miou_ci_low']:.3f}, {r['miou_ci_high']:.3f}] "
                  f"({r['n_real']} real tiles of {r['n_real_frames']} frame(s) + {r['n_synthetic']} synthetic; "
                  f"{r['n_seeds']} seed(s); validation {r['val_miou'] if r['val_miou'] is None else round(r['val_miou'], 3)}"
                  f"; best steps {r['best_steps']})", flush=True)
    if not as_json:
        from semlab.downstream.experiment import conclusion

        print(res.summary.get("text", ""))
        print(conclusion(res))


def cmd_experiment(a) -> int:
    """`semlab downstream experiment --domain D --profile P --out DIR`."""
    from semlab import io
    from semlab.downstream.experiment import downstream_experiment

    out = Path(a.out)
    log = out / "runs.jsonl"
    if log.exists():
        raise ValueError(f"{log} already exists: semlab downstream experiment never overwrites; choose another --out "
                         f"(`semlab downstream summary {out}` shows its results)")
    overrides = _set_overrides(a.set)
    out.mkdir(parents=True, exist_ok=True)
    res = downstream_experiment(a.domain, a.profile, dataset=a.dataset or "", overrides=overrides or None,
                                progress=not a.quiet, log=log)
    _save_result(res, out)
    _print_result(res, a.json)
    if not a.json:
        print(f"results: {out}")
    io.write_json_atomic(out / "metrology.json", res.metrology)
    return 0


def _save_result(res, out: Path) -> None:
    from semlab import io
    from semlab.runs import save_figure
    from semlab.viz.downstream import efficiency_figure

    io.write_json_atomic(out / "summary.json", {"summary": res.summary, "rows": [{k: _clean(v) for k, v in r.items()}
                                                                                 for r in res.rows],
                                                "settings": res.settings, "shift": res.shift, "notes": res.notes})
    io.write_text_atomic(out / "table.csv", res.table().to_csv(index=False))
    save_figure(out, "efficiency", efficiency_figure(res))


def cmd_summary(a) -> int:
    """`semlab downstream summary DIR`: the table of a (partial) run log."""
    from semlab.downstream.experiment import summarize_log

    p = Path(a.dir)
    log = p / "runs.jsonl" if p.is_dir() else p
    if not log.is_file():
        raise FileNotFoundError(f"{log}: no run log here (written by `semlab downstream experiment --out DIR`)")
    _print_result(summarize_log(log), a.json)
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `downstream` (with subcommands train and predict, and the --train/--test form)."""
    p = subparsers.add_parser("downstream", help="segmenter trained on real, synthetic or mixed sets, scored on a test set",
                              description=__doc__.split("\n\n")[0] + " Training-set specs: real, real:N, "
                              "preset:NAME[:k=v,k=a..b], render:NAME, gen:CHECKPOINT, a folder; + joins them.")

    def common(s, train_opts: bool = True):
        s.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "full"],
                       help="defaults of steps, batch, width from this profile (default cpu)")
        if train_opts:
            s.add_argument("--steps", type=positive_int, default=None, help="training steps (default: profile)")
            s.add_argument("--batch", type=positive_int, default=None, help="tiles per step (default: profile)")
            s.add_argument("--width", type=positive_int, default=None, help="U-Net base width (default: profile)")
            s.add_argument("--depth", type=positive_int, default=None, help="U-Net levels (default: profile)")
            s.add_argument("--seed", type=int, default=0)
            s.add_argument("--tile", type=positive_int, default=None,
                           help="tile size in px (default: the dataset's image size)")
            s.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
        s.add_argument("--quiet", action="store_true")

    p.add_argument("--train", dest="train_specs", action="append", default=[], metavar="SPEC",
                   help="a training set (repeat for several)")
    p.add_argument("--test", default=None, help="a labelled dataset: its test split is scored, `real` is its train split")
    p.add_argument("--out", dest="exp_out", default=None, help="output folder (downstream.json; never overwritten)")
    p.add_argument("--n-synthetic", type=positive_int, default=None, help="tiles rendered per preset source")
    p.add_argument("--json", action="store_true", help="one JSON object per training set")
    common(p)
    p.set_defaults(fn=cmd_downstream, downstream_command=None)
    sub = p.add_subparsers(dest="downstream_command", metavar="{train,predict,experiment,summary}")

    s = sub.add_parser("train", help="train the segmenter on a labelled dataset and save it")
    s.add_argument("dataset", help="a labelled semlab dataset (train split; val split chooses the checkpoint)")
    s.add_argument("--out", required=True, help="a new or empty folder: model.pt + model.json")
    common(s)
    s.set_defaults(fn_sub=cmd_train)

    s = sub.add_parser("predict", help="masks of a folder of images with a trained segmenter")
    s.add_argument("--model", required=True, help="a folder written by `semlab downstream train`")
    s.add_argument("--in", dest="inp", required=True, help="an image or a folder of images")
    s.add_argument("--out", required=True, help="folder for the masks (indexed PNG; never overwritten)")
    common(s, train_opts=False)
    s.set_defaults(fn_sub=cmd_predict)

    s = sub.add_parser("experiment", help="the data-efficiency matrix of a profile, with a run log kept as it goes")
    s.add_argument("--domain", default="sim", choices=["sim", "real"],
                   help="sim: the simulator with a held-out-ranges test split; real: a labelled CD-SEM dataset")
    s.add_argument("--out", required=True, help="a folder for runs.jsonl, summary.json, table.csv, efficiency.png")
    s.add_argument("--dataset", default=None, help="real domain: a labelled dataset (default: the packaged frames)")
    s.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a DownstreamConfig field, YAML value (e.g. steps=600, 'seeds=[0,1,2]')")
    s.add_argument("--json", action="store_true", help="one JSON object per training set")
    common(s, train_opts=False)
    s.set_defaults(fn_sub=cmd_experiment)

    s = sub.add_parser("summary", help="the table and summary of an experiment's run log, finished or not")
    s.add_argument("dir", help="an --out folder of `semlab downstream experiment` (or its runs.jsonl)")
    s.add_argument("--json", action="store_true", help="one JSON object per training set")
    s.set_defaults(fn_sub=cmd_summary, profile="cpu", quiet=False)
    return p
