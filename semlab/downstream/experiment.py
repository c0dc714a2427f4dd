"""The data-efficiency experiment: do synthetic SEM images train a segmenter that works on
the target domain?

Roles per domain (every table names them):

| domain | "real" (target-domain training set) | synthetic sources | test |
|---|---|---|---|
| sim | simulator images with exact masks from the training ranges | presets / translators / generators rendering NEW layouts | the held-out ranges (`data.SHIFT`, listed in `ExperimentResult.shift`) |
| real | CD-SEM tiles of the train frames, QA-passed reference masks | generators and presets at the real pixel size | tiles of the stored test frames |

Training sets: real:N for N in `ns` (None = all; N counts tiles, the table says how many
frames they come from), each synthetic source alone, and real:N + synthetic (the best
source, chosen on the validation split, or every source). Every set gets the same
augmentation and steps x batch, keeps its checkpoint chosen on the target's validation
split, and trains once per seed. `run_experiment` returns the tidy table (one row per
training set and seed, and one aggregated row per set: mean over seeds, 95% CI from a
bootstrap over test tiles) and the summary ("synthetic-only reaches X% of real-only;
real+synthetic beats real-only up to N = Y", with non-overlapping CIs).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from semlab.downstream.data import Domain, Items, build_training_set, check_classes, check_no_overlap, structure_classes
from semlab.downstream.model import predict
from semlab.downstream.score import (bootstrap_miou, bootstrap_miou_difference, metric_name, metrology_differences,
                                     score_masks)
from semlab.downstream.train import TrainSettings, train_segmenter

__all__ = ["Run", "ExperimentResult", "run_experiment", "summarize_log", "conclusion", "real_label", "evaluate_specs", "downstream_experiment",
           "experiment_metrics_doc"]


def real_label(n: int | None) -> str:
    return "real" if n is None else f"real:{n}"


@dataclass
class Run:
    """One training set and seed: its scores and test predictions."""

    spec: str
    kind: str
    seed: int
    n_real: int
    n_real_frames: int
    n_synthetic: int
    val_miou: float | None
    best_step: int
    seconds: float
    confusion: np.ndarray = field(repr=False)
    pred: np.ndarray = field(repr=False)
    row: dict = field(default_factory=dict)


@dataclass
class ExperimentResult:
    domain: str
    domain_name: str
    test_label: str
    metric: str
    runs: list[Run]
    rows: list[dict]  # aggregated per training set
    summary: dict
    shift: dict[str, str]
    settings: dict
    metrology: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    test: Items | None = field(default=None, repr=False)  # the test tiles (for the figures)

    def table(self, per_seed: bool = False):
        """A pandas DataFrame: aggregated rows, or one row per run with `per_seed`."""
        import pandas as pd

        return pd.DataFrame([r.row for r in self.runs] if per_seed else self.rows)

    def text(self) -> str:
        return self.summary.get("text", "")


def _run_one(spec: str, domain: Domain, settings: TrainSettings, seed: int, n_synthetic: int, n_boot: int,
             progress: bool) -> Run:
    test = domain.split("test")
    ts = build_training_set(spec, domain, seed=seed, n_synthetic=n_synthetic, progress=progress)
    check_classes(ts, test, domain.label("test"))
    check_no_overlap(ts, test, domain.label("test"))
    val = domain.splits.get("val")
    tr = train_segmenter(ts, val if val is not None and len(val) else None,
                         TrainSettings(**{**settings.__dict__, "seed": seed}), progress=progress,
                         desc=f"{spec} seed {seed}")
    pred = predict(tr.model, test.images)
    sc = score_masks(pred, test.masks, frames=test.frames, n_boot=n_boot, seed=seed, domain_kind=domain.kind)
    row = {"domain": domain.kind, "set": domain.name, "train": spec, "kind": ts.kind, "seed": seed,
           "n_train": ts.n, "n_real": ts.n_real, "n_real_frames": ts.n_real_frames, "n_synthetic": ts.n_synthetic,
           "val_miou": tr.val_miou, "val_at_half": _best_until(tr.history, settings.steps / 2),
           "best_step": tr.best_step, "steps": settings.steps, "train_s": round(tr.seconds, 2),
           "test": domain.label("test"), **sc.row()}
    return Run(spec, ts.kind, seed, ts.n_real, ts.n_real_frames, ts.n_synthetic, tr.val_miou, tr.best_step,
               tr.seconds, sc.confusion, pred, row)


def _best_until(history: list[dict], step: float) -> float | None:
    """The best validation mIoU among checkpoints up to `step` (None without any)."""
    v = [h["val_miou"] for h in history if h["step"] <= step]
    return max(v) if v else None


def _meta(domain: Domain) -> dict:
    return {"domain": domain.kind, "set": domain.name, "test": domain.label("test")}


def _aggregate(runs: list[Run], meta: dict, classes, n_boot: int) -> dict:
    """One row per training set: the mean over seeds of the pooled test mIoU, and its 95%
    CI from a two-level percentile bootstrap (seeds drawn with replacement, then test tiles
    drawn with replacement, the same tiles for every drawn seed; `bootstrap_miou`)."""
    r0 = runs[0]
    v, lo, hi = bootstrap_miou([r.confusion for r in runs], classes, n_boot=n_boot, seed=0, resample_runs=True)
    vals = [r.row["miou"] for r in runs]
    vm = [r.val_miou for r in runs if r.val_miou is not None]
    steps = r0.row.get("steps")
    return {"domain": meta["domain"], "set": meta["set"], "train": r0.spec, "kind": r0.kind, "n_seeds": len(runs),
            "n_train": r0.row["n_train"], "n_real": r0.n_real, "n_real_frames": r0.n_real_frames,
            "n_synthetic": r0.n_synthetic, "val_miou": float(np.mean(vm)) if vm else None, "miou": v,
            "miou_ci_low": lo, "miou_ci_high": hi, "miou_seed_sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
            "best_steps": [r.best_step for r in runs],
            "n_best_at_end": sum(1 for r in runs if steps and r.best_step >= steps),
            # how much the second half of the budget still added on validation (convergence)
            "val_gain_2nd_half": (float(np.mean([r.val_miou - r.row["val_at_half"] for r in runs]))
                                  if all(r.val_miou is not None and r.row.get("val_at_half") is not None for r in runs)
                                  else None),
            "test": meta["test"], "n_test_tiles": r0.row["n_test_tiles"],
            "n_test_frames": r0.row["n_test_frames"], "metric": metric_name(meta["domain"])}


def _beats(a: dict, b: dict) -> bool:
    """a's CI lies entirely above b's (non-overlapping)."""
    return all(math.isfinite(x) for x in (a["miou_ci_low"], b["miou_ci_high"])) and a["miou_ci_low"] > b["miou_ci_high"]


def _summary(rows: dict[str, dict], ns: Sequence[int | None], best: str | None,
             mixes: dict[int | None, str], meta: dict, references: Sequence[str] = (),
             runs: dict[str, list[Run]] | None = None, classes=(), n_boot: int = 1000) -> dict:
    real_all = rows.get(real_label(None))
    out: dict[str, Any] = {"best_synthetic": best, "metric": metric_name(meta["domain"])}
    parts = []
    if best and real_all and best in rows:
        ratio = rows[best]["miou"] / real_all["miou"] if real_all["miou"] else float("nan")
        out["synthetic_over_real_all"] = ratio
        parts.append(f"synthetic-only ({best}, chosen on validation) reaches {100 * ratio:.0f}% of real-only "
                     f"(all {real_all['n_real']} tiles of {real_all['n_real_frames']} frame(s)): "
                     f"{rows[best]['miou']:.3f} vs {real_all['miou']:.3f}")
    per_n = {}
    beats_up_to = None
    for n in ns:
        r = rows.get(real_label(n))
        m = rows.get(mixes.get(n, ""))
        if r is None:
            continue
        entry = {"n_real": r["n_real"], "n_real_frames": r["n_real_frames"], "real_miou": r["miou"],
                 "real_ci": [r["miou_ci_low"], r["miou_ci_high"]]}
        if best and best in rows:
            entry["synthetic_over_real"] = rows[best]["miou"] / r["miou"] if r["miou"] else float("nan")
        if m is not None:
            entry.update(mix=m["train"], mix_miou=m["miou"], mix_ci=[m["miou_ci_low"], m["miou_ci_high"]],
                         mix_gain=m["miou"] - r["miou"], mix_beats_real=_beats(m, r))
            ra, rb = (runs or {}).get(m["train"], []), (runs or {}).get(r["train"], [])
            sa, sb = {x.seed: x for x in ra}, {x.seed: x for x in rb}
            common = sorted(set(sa) & set(sb))
            if common and classes:  # paired by seed (the same real tiles) and test tile
                d, lo, hi = bootstrap_miou_difference([sa[k].confusion for k in common], [sb[k].confusion for k in common],
                                                      classes, n_boot=n_boot)
                entry.update(mix_gain_paired=d, mix_gain_ci=[lo, hi], mix_gain_seeds=len(common))
            if entry["mix_beats_real"]:
                beats_up_to = max(beats_up_to or 0, r["n_real"])
        per_n[real_label(n)] = entry
    out["per_n"] = per_n
    out["mix_beats_real_up_to_n"] = beats_up_to
    if any("mix" in e for e in per_n.values()):
        parts.append("real+synthetic beats real-only (non-overlapping 95% CIs) "
                     + (f"up to N = {beats_up_to}" if beats_up_to else "at no N tested"))
    refs = [rows[r] for r in references if r in rows]
    if refs:
        top = max(refs, key=lambda r: r["miou"])
        out["reference"] = {"train": top["train"], "miou": top["miou"], "ci": [top["miou_ci_low"], top["miou_ci_high"]]}
        if real_all:
            out["headroom_over_real_all"] = top["miou"] - real_all["miou"]
            parts.append(f"a reference trained on the test ranges themselves ({top['train']}, never a candidate) "
                         f"reaches {top['miou']:.3f}, {top['miou'] - real_all['miou']:+.3f} over real-only: what a "
                         "source that covered the shift adds here")
    out["text"] = f"{meta['test']}: " + "; ".join(parts) if parts else ""
    return out


def _log_record(run: Run) -> dict:
    """A run as one JSON line of the run log: its row and its per-tile confusion matrices."""
    row = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in run.row.items()}
    return {"record": "run", **row, "confusion": run.confusion.tolist()}


def _write_log(path, header: dict, runs: dict[str, list[Run]]) -> None:
    from semlab.io import write_text_atomic

    lines = [json.dumps({"record": "header", **header})]
    lines += [json.dumps(_log_record(r)) for rs in runs.values() for r in rs]
    write_text_atomic(path, "\n".join(lines) + "\n")


def _pick_best(rows: dict[str, dict], sources: Sequence[str]) -> str | None:
    done = [s for s in sources if s in rows]
    return max(done, key=lambda s: rows[s]["val_miou"] if rows[s]["val_miou"] is not None else -1) if done else None


def _mix_choice(rows: dict[str, dict], ns, chosen: Sequence[str]) -> dict[int | None, str]:
    """Per N the mix with the best validation mIoU among those that ran."""
    out = {}
    for n in ns:
        cands = [f"{real_label(n)}+{src}" for src in chosen if f"{real_label(n)}+{src}" in rows]
        if cands:
            out[n] = max(cands, key=lambda s: rows[s]["val_miou"] if rows[s]["val_miou"] is not None else -1)
    return out


def run_experiment(domain: Domain, sources: Sequence[str], *, ns: Sequence[int | None] = (10, 30, 100, None),
                   seeds: Sequence[int] = (0, 1, 2), settings: TrainSettings = TrainSettings(),
                   n_synthetic: int = 200, mixes: str = "best", n_boot: int = 1000, progress: bool = True,
                   metrology: bool = True, log=None, extra: dict | None = None,
                   references: Sequence[str] = ()) -> ExperimentResult:
    """The data-efficiency experiment on `domain` (module docstring). `sources` are
    training-set specs of synthetic sources (`semlab.downstream.data`); `mixes`: "best"
    (real:N + the source with the best validation mIoU), "all" (every source) or "none".
    `log`: a JSONL file rewritten (atomically) after every run, a header then one line per
    run with its per-tile confusion matrices, so `summarize_log` gives the table and the
    summary of whatever has finished (partial results of a killed run stay usable).
    `references`: specs trained and scored like the sources but never a candidate for
    "best" (e.g. the simulator drawn from the test ranges: the headroom a source that
    knew the shift could reach); their rows have `reference` True."""
    if mixes not in ("best", "all", "none"):
        raise ValueError(f"mixes must be 'best', 'all' or 'none', got {mixes!r}")
    test = domain.split("test")
    classes = structure_classes(test.masks)
    n_train = len(domain.split("train"))
    ns = list(dict.fromkeys(None if (n is None or n == 0 or n >= n_train) else int(n) for n in ns))
    t0 = time.perf_counter()
    # every spec is checked (classes, overlap) before any training starts
    specs = [real_label(n) for n in ns] + list(sources) + [r for r in references if r not in sources]
    for s in specs:
        ts = build_training_set(s, domain, seed=seeds[0], n_synthetic=n_synthetic, progress=progress)
        check_classes(ts, test, domain.label("test"))
        check_no_overlap(ts, test, domain.label("test"))
    meta = _meta(domain)
    settings_d = {**settings.__dict__, "seeds": list(seeds), "ns": [n if n is not None else "all" for n in ns],
                  "n_synthetic": n_synthetic, "mixes": mixes, "n_boot": n_boot, "classes_scored": list(classes),
                  **(extra or {})}
    header = {**meta, "sources": list(sources), "references": list(references), "ns": [n if n is not None else 0 for n in ns], "classes": list(classes),
              "shift": domain.shift, "settings": settings_d, "notes": list(domain.notes)}
    runs: dict[str, list[Run]] = {}

    def train_all(spec_list):
        for s in spec_list:
            runs[s] = []
            for seed in seeds:
                runs[s].append(_run_one(s, domain, settings, seed, n_synthetic, n_boot, progress))
                if log is not None:
                    _write_log(log, header, runs)

    train_all(specs)
    rows = {s: _aggregate(rs, meta, classes, n_boot) for s, rs in runs.items()}
    best = _pick_best(rows, sources)
    mix_of: dict[int | None, str] = {}
    if sources and mixes != "none":
        chosen = [best] if mixes == "best" else list(sources)
        mix_specs = [f"{real_label(n)}+{src}" for n in ns for src in chosen]
        train_all(mix_specs)
        for s in mix_specs:
            rows[s] = _aggregate(runs[s], meta, classes, n_boot)
        mix_of = _mix_choice(rows, ns, chosen)
    for s, r in rows.items():
        r["best_synthetic"] = s == best
        r["reference"] = s in references and s not in sources
    summary = _summary(rows, ns, best, mix_of, meta, references, runs, classes, n_boot)
    metro = {}
    if metrology and domain.layout in ("lines", "contacts"):
        for s in [real_label(None), best] if best else [real_label(None)]:
            if s in runs:
                r = runs[s][0]
                metro[s] = metrology_differences(test.images, r.pred, test.frames, layout=domain.layout,
                                                 pixel_nm=domain.pixel_nm, n_boot=n_boot)
    notes = list(domain.notes)
    if domain.kind == "real":
        from semlab.train.realsets import CI_CAVEAT

        notes.append(CI_CAVEAT)
    settings_d["seconds"] = round(time.perf_counter() - t0, 1)
    return ExperimentResult(domain.kind, domain.name, domain.label("test"), metric_name(domain.kind),
                            [r for rs in runs.values() for r in rs], list(rows.values()), summary, domain.shift,
                            settings_d, metro, notes, test)


def summarize_log(path, *, n_boot: int | None = None) -> ExperimentResult:
    """The table and summary of a run log written by `run_experiment(log=...)`, finished
    or not: sets with at least one finished seed are aggregated (their `n_seeds` says how
    many); the best source is chosen on validation among the sources that finished, and
    each N's mix among the mixes that ran. No predictions (the figures of masks need a
    live result)."""
    from pathlib import Path

    lines = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    if not lines or lines[0].get("record") != "header":
        raise ValueError(f"{path}: not a downstream run log (no header line)")
    h = lines[0]
    meta = {k: h[k] for k in ("domain", "set", "test")}
    classes = tuple(h["classes"])
    n_boot = n_boot or int(h["settings"].get("n_boot", 1000))
    runs: dict[str, list[Run]] = {}
    for r in lines[1:]:
        conf = np.asarray(r.pop("confusion"), np.int64)
        r.pop("record", None)
        runs.setdefault(r["train"], []).append(
            Run(r["train"], r["kind"], r["seed"], r["n_real"], r["n_real_frames"], r["n_synthetic"], r["val_miou"],
                r["best_step"], r["train_s"], conf, np.zeros((0,), np.uint8), r))
    rows = {s: _aggregate(rs, meta, classes, n_boot) for s, rs in runs.items()}
    ns = [n or None for n in h["ns"]]
    best = _pick_best(rows, h["sources"])
    mix_of = _mix_choice(rows, ns, h["sources"])
    refs = [r for r in h.get("references", []) if r not in h["sources"]]
    for s, r in rows.items():
        r["best_synthetic"] = s == best
        r["reference"] = s in refs
    summary = _summary(rows, ns, best, mix_of, meta, refs, runs, classes, n_boot)
    settings = {**h["settings"], "seconds": round(sum(r.seconds for rs in runs.values() for r in rs), 1)}
    return ExperimentResult(meta["domain"], meta["set"], meta["test"], metric_name(meta["domain"]),
                            [r for rs in runs.values() for r in rs], list(rows.values()), summary, h.get("shift", {}),
                            settings, {}, list(h.get("notes", [])), None)


def evaluate_specs(domain: Domain, specs: Sequence[str], *, settings: TrainSettings = TrainSettings(),
                   n_synthetic: int = 200, n_boot: int = 1000, progress: bool = True) -> list[dict]:
    """One aggregated row per training spec (what `semlab downstream --train ... --test ...`
    prints): every spec is checked before any training starts."""
    test = domain.split("test")
    classes = structure_classes(test.masks)
    for s in specs:
        ts = build_training_set(s, domain, seed=settings.seed, n_synthetic=n_synthetic)
        check_classes(ts, test, domain.label("test"))
        check_no_overlap(ts, test, domain.label("test"))
    out = []
    for s in specs:
        run = _run_one(s, domain, settings, settings.seed, n_synthetic, n_boot, progress)
        scores = {k: v for k, v in run.row.items() if k.endswith(("_iou", "_dice", "_f1"))}
        out.append({**_aggregate([run], _meta(domain), classes, n_boot), **scores})
    return out


def downstream_experiment(domain: str = "sim", profile: str = "cpu", *, run_dir=None, dataset: str = "",
                          overrides: Any = None, progress: bool | None = None, log=None) -> ExperimentResult:
    """The whole experiment of a profile in one call (`DownstreamConfig`): in "sim" the
    simulated domain of `sim_preset` with its held-out test ranges; in "real" the run's
    real dataset (or `dataset`, or one built from the packaged frames), main set. `log`:
    the run log of `run_experiment` (partial results, `summarize_log`). The settings
    record the target preset's parameters, so a later re-tuned preset cannot pass for it."""
    from semlab.config import load_profile
    from semlab.downstream.data import real_domain, sim_domain

    prof = load_profile(profile, overrides)
    c = prof.downstream
    prog = prof.progress if progress is None else progress
    if domain == "sim":
        dom = sim_domain(c.sim_preset, size=c.tile, n_train=c.sim_n_train, n_val=c.sim_n_val, n_test=c.sim_n_test,
                         seed=0, progress=prog)
        sources = c.sources_sim
    elif domain == "real":
        from semlab.train.realsets import domain_dataset

        folder, split = domain_dataset("real", run_dir, dataset, profile=prof.name, real_dir=prof.real_dir)
        dom = real_domain(folder, tile=c.tile, set_name=split.set if split is not None else None)
        sources = c.sources_real
    else:
        raise ValueError(f"unknown domain {domain!r}; valid: sim, real")
    settings = TrainSettings(steps=c.steps, batch=c.batch, lr=c.lr, val_every=c.val_every, width=c.width,
                             depth=c.depth, precision=c.precision)
    from semlab.data.simulate import get_preset
    from semlab.downstream.data import test_range_spec

    # "test-ranges": the simulator drawn from the held-out test ranges of the target preset
    refs = [test_range_spec(c.sim_preset) if r == "test-ranges" else r for r in c.references_sim] if domain == "sim" else []
    extra = {"profile": prof.name, "preset": dom.preset,
             "preset_params": {k: list(v) if isinstance(v, tuple) else v for k, v in get_preset(dom.preset).params.items()}}
    return run_experiment(dom, list(sources), ns=[n or None for n in c.ns], seeds=c.seeds, settings=settings,
                          n_synthetic=c.n_synthetic, mixes=c.mixes, n_boot=c.n_boot, progress=prog, log=log,
                          extra=extra, references=refs)


def experiment_metrics_doc(result: ExperimentResult, figure: str | None = "efficiency.png") -> dict:
    """The `metrics.json` of notebook 60 (`semlab.runs.metrics_doc`, keys of
    `semlab.metrics.keys`): per training set `<entity>.miou` with its CI, the summary
    ratios, and the metrology differences (nm) of real-only and the best synthetic source."""
    from semlab.metrics import keys as K
    from semlab.runs import metric, metrics_doc

    def ok(v):
        return v is not None and isinstance(v, (int, float)) and math.isfinite(v)

    m: dict[str, dict] = {}
    n_test = int(result.rows[0]["n_test_tiles"]) if result.rows else 0
    for r in result.rows:
        e = K.downstream_entity(r["train"])
        lo, hi = (r["miou_ci_low"], r["miou_ci_high"]) if ok(r["miou_ci_low"]) and ok(r["miou_ci_high"]) else (None, None)
        m[K.key(e, K.DOWNSTREAM_MIOU)] = metric(r["miou"], lo, hi, n=n_test,
                                                note=f"{r['metric']}; {r['n_train']} training tiles, {r['n_seeds']} seed(s)")
    s = result.summary
    if ok(s.get("synthetic_over_real_all")):
        m[K.SYNTHETIC_OVER_REAL] = metric(s["synthetic_over_real_all"], n=n_test, note=f"best: {s['best_synthetic']}")
    if s.get("mix_beats_real_up_to_n"):
        m[K.MIX_BEATS_REAL_UP_TO_N] = metric(s["mix_beats_real_up_to_n"], n=n_test)
    names = {"cd": K.CD_DIFF, "ler": K.LER_DIFF, "diameter": K.DIAMETER_DIFF}
    for spec, d in result.metrology.items():
        for k, name in names.items():
            x = d.get(k)
            if x and ok(x["value"]):
                lo, hi = (x["ci_low"], x["ci_high"]) if ok(x["ci_low"]) else (None, None)
                m[K.key(K.downstream_entity(spec), name)] = metric(x["value"], lo, hi, n=x["n_frames"],
                                                                   unit=d.get("unit", "nm"),
                                                                   note=("CI over frames" if x["n_frames"] > 1 else
                                                                         "CI over the tiles of one frame"))
    head = [k for k in (K.key("real", K.DOWNSTREAM_MIOU), K.SYNTHETIC_OVER_REAL, K.MIX_BEATS_REAL_UP_TO_N) if k in m]
    return metrics_doc("60_downstream", result.domain, result.domain_name, n_test or None, m, headline=head or list(m)[:1],
                       figure=figure, summary=s.get("text", ""), shift=result.shift, settings=result.settings,
                       notes=result.notes)


def conclusion(result: ExperimentResult, *, goal_ratio: float = 0.9) -> str:
    """The conclusion of notebook 60 generated from the numbers (markdown): whether the
    best synthetic source (chosen on validation) reaches `goal_ratio` of real-only at N =
    all and per N, whether real+synthetic beats real-only with non-overlapping CIs, and
    if not, why: how close real-only at the smallest N already is to real-only at all
    tiles, the headroom a reference trained on the test ranges shows, the CI widths, and
    whether validation picked the source that did best on test. Then convergence: how
    many runs kept their last checkpoint and what the second half of the budget added."""
    rows = {r["train"]: r for r in result.rows}
    s = result.summary
    out = []
    best = s.get("best_synthetic")
    real_all = rows.get("real")
    if best and real_all and s.get("synthetic_over_real_all") is not None:
        ratio = s["synthetic_over_real_all"]
        per = [f"{100 * e['synthetic_over_real']:.0f}% at N = {e['n_real']}" for e in s.get("per_n", {}).values()
               if e.get("synthetic_over_real") is not None and e["n_real"] != real_all["n_real"]]
        out.append(f"- **Synthetic only** ({best}, chosen on validation): {rows[best]['miou']:.3f} "
                   f"[{rows[best]['miou_ci_low']:.3f}, {rows[best]['miou_ci_high']:.3f}], **{100 * ratio:.0f}%** of "
                   f"real-only with all {real_all['n_real']} tiles ({real_all['miou']:.3f})"
                   + ("; " + ", ".join(per) + "; " if per else "; ")
                   + (f"the {100 * goal_ratio:.0f}% goal is met." if ratio >= goal_ratio
                      else f"below the {100 * goal_ratio:.0f}% goal.")
                   + (" Its CI lies above real-only's: on this test split the synthetic source alone beats the "
                      "target's own training images." if _beats(rows[best], real_all) else ""))
        synth = [r for r in result.rows if r["kind"] == "synthetic" and not r.get("reference")]
        top = max(synth, key=lambda r: r["miou"]) if synth else None
        if top is not None and top["train"] != best:
            out.append(f"- Validation (drawn from the training ranges, blind to the shift) picked {best} "
                       f"(validation {rows[best]['val_miou']:.3f}); on test {top['train']} did best ({top['miou']:.3f}, "
                       f"validation {top['val_miou']:.3f}), a difference of {top['miou'] - rows[best]['miou']:+.3f}.")
    mixes = [(e, k) for k, e in s.get("per_n", {}).items() if "mix" in e]
    if mixes:
        txt = "; ".join(f"N = {e['n_real']}: {e['mix_miou']:.3f} [{e['mix_ci'][0]:.3f}, {e['mix_ci'][1]:.3f}] vs "
                        f"{e['real_miou']:.3f} [{e['real_ci'][0]:.3f}, {e['real_ci'][1]:.3f}] "
                        f"({e['mix_gain']:+.3f}{', beats' if e['mix_beats_real'] else ''})" for e, _ in mixes)
        paired = [f"N = {e['n_real']}: {e['mix_gain_paired']:+.3f} [{e['mix_gain_ci'][0]:+.3f}, {e['mix_gain_ci'][1]:+.3f}]"
                  for e, _ in mixes if "mix_gain_ci" in e]
        up = s.get("mix_beats_real_up_to_n")
        out.append(f"- **Real + synthetic** vs real-only: {txt}. "
                   + (f"Real+synthetic beats real-only with non-overlapping 95% CIs up to N = {up}."
                      if up else "Real+synthetic beats real-only with non-overlapping 95% CIs at no N tested.")
                   + (" The paired difference (mix minus real-only, the same seeds' real tiles and the same test "
                      f"tiles, 95% CI): {'; '.join(paired)}; a CI above 0 is a gain that non-overlapping CIs, a "
                      "stricter test, may not show." if paired else ""))
        if not up and real_all:
            small = min((e for e, _ in mixes), key=lambda e: e["n_real"])
            widths = [r["miou_ci_high"] - r["miou_ci_low"] for r in result.rows
                      if math.isfinite(r["miou_ci_high"]) and math.isfinite(r["miou_ci_low"])]
            why = (f"  Why: real-only with N = {small['n_real']} tiles already reaches {small['real_miou']:.3f}, "
                   f"{100 * small['real_miou'] / real_all['miou']:.0f}% of real-only with all tiles")
            ref = s.get("reference")
            if ref:
                why += (f"; a segmenter trained on the held-out test ranges themselves ({ref['train']}) reaches "
                        f"{ref['miou']:.3f}, {ref['miou'] - real_all['miou']:+.3f} over real-only with all tiles: "
                        "the gain a source that covered the shift brings here")
            if widths:
                why += f"; the 95% CIs are {np.median(widths):.3f} wide (median), so a gain must exceed about that"
            out.append(why + ".")
    runs = result.runs
    if runs and runs[0].row.get("steps"):
        at_end = sum(1 for r in runs if r.best_step >= r.row["steps"])
        gains = [r.val_miou - r.row["val_at_half"] for r in runs
                 if r.val_miou is not None and r.row.get("val_at_half") is not None]
        out.append(f"- Budget: {runs[0].row['steps']} steps x {result.settings.get('batch')} tiles per run; "
                   f"{at_end} of {len(runs)} runs kept their last checkpoint"
                   + (f"; the second half of the budget added {np.mean(gains):+.3f} validation mIoU on average "
                      f"(max {np.max(gains):+.3f})" if gains else "") + "."
                   + (" Most runs kept their last checkpoint: the budget is too short for these numbers to settle "
                      "(the matrix of the `full` profile and `semlab downstream experiment` trains longer)."
                      if at_end > len(runs) / 2 else ""))
    out.append("- 95% CIs: a two-level percentile bootstrap, seeds drawn with replacement, then test tiles drawn "
               "with replacement (the same tiles for every drawn seed); the value is the mean over seeds of the "
               "pooled mIoU.")
    return "\n".join(out)
