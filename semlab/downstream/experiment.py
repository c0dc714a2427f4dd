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

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from semlab.downstream.data import Domain, Items, build_training_set, check_classes, check_no_overlap, structure_classes
from semlab.downstream.model import predict
from semlab.downstream.score import bootstrap_miou, metric_name, metrology_differences, score_masks
from semlab.downstream.train import TrainSettings, train_segmenter

__all__ = ["Run", "ExperimentResult", "run_experiment", "real_label", "evaluate_specs", "downstream_experiment",
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
           "val_miou": tr.val_miou, "best_step": tr.best_step, "train_s": round(tr.seconds, 2),
           "test": domain.label("test"), **sc.row()}
    return Run(spec, ts.kind, seed, ts.n_real, ts.n_real_frames, ts.n_synthetic, tr.val_miou, tr.best_step,
               tr.seconds, sc.confusion, pred, row)


def _aggregate(runs: list[Run], domain: Domain, classes, n_boot: int) -> dict:
    r0 = runs[0]
    v, lo, hi = bootstrap_miou([r.confusion for r in runs], classes, n_boot=n_boot, seed=0)
    vals = [r.row["miou"] for r in runs]
    vm = [r.val_miou for r in runs if r.val_miou is not None]
    return {"domain": domain.kind, "set": domain.name, "train": r0.spec, "kind": r0.kind, "n_seeds": len(runs),
            "n_train": r0.row["n_train"], "n_real": r0.n_real, "n_real_frames": r0.n_real_frames,
            "n_synthetic": r0.n_synthetic, "val_miou": float(np.mean(vm)) if vm else None, "miou": v,
            "miou_ci_low": lo, "miou_ci_high": hi, "miou_seed_sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
            "test": domain.label("test"), "n_test_tiles": r0.row["n_test_tiles"],
            "n_test_frames": r0.row["n_test_frames"], "metric": metric_name(domain.kind)}


def _beats(a: dict, b: dict) -> bool:
    """a's CI lies entirely above b's (non-overlapping)."""
    return all(math.isfinite(x) for x in (a["miou_ci_low"], b["miou_ci_high"])) and a["miou_ci_low"] > b["miou_ci_high"]


def _summary(rows: dict[str, dict], ns: Sequence[int | None], synth: list[str], best: str | None,
             mixes: dict[int | None, str], domain: Domain) -> dict:
    real_all = rows.get(real_label(None))
    out: dict[str, Any] = {"best_synthetic": best, "metric": metric_name(domain.kind)}
    parts = []
    if best and real_all:
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
        if best:
            entry["synthetic_over_real"] = rows[best]["miou"] / r["miou"] if r["miou"] else float("nan")
        if m is not None:
            entry.update(mix=m["train"], mix_miou=m["miou"], mix_ci=[m["miou_ci_low"], m["miou_ci_high"]],
                         mix_beats_real=_beats(m, r))
            if entry["mix_beats_real"]:
                beats_up_to = max(beats_up_to or 0, r["n_real"])
        per_n[real_label(n)] = entry
    out["per_n"] = per_n
    out["mix_beats_real_up_to_n"] = beats_up_to
    if mixes:
        parts.append("real+synthetic beats real-only (non-overlapping 95% CIs) "
                     + (f"up to N = {beats_up_to}" if beats_up_to else "at no N tested"))
    out["text"] = f"{domain.label('test')}: " + "; ".join(parts) if parts else ""
    return out


def run_experiment(domain: Domain, sources: Sequence[str], *, ns: Sequence[int | None] = (10, 30, 100, None),
                   seeds: Sequence[int] = (0, 1, 2), settings: TrainSettings = TrainSettings(),
                   n_synthetic: int = 200, mixes: str = "best", n_boot: int = 1000, progress: bool = True,
                   metrology: bool = True) -> ExperimentResult:
    """The data-efficiency experiment on `domain` (module docstring). `sources` are
    training-set specs of synthetic sources (`semlab.downstream.data`); `mixes`: "best"
    (real:N + the source with the best validation mIoU), "all" (every source) or "none"."""
    if mixes not in ("best", "all", "none"):
        raise ValueError(f"mixes must be 'best', 'all' or 'none', got {mixes!r}")
    test = domain.split("test")
    classes = structure_classes(test.masks)
    n_train = len(domain.split("train"))
    ns = list(dict.fromkeys(None if (n is None or n == 0 or n >= n_train) else int(n) for n in ns))
    t0 = time.perf_counter()
    # every spec is checked (classes, overlap) before any training starts
    specs = [real_label(n) for n in ns] + list(sources)
    for s in specs:
        ts = build_training_set(s, domain, seed=seeds[0], n_synthetic=n_synthetic, progress=progress)
        check_classes(ts, test, domain.label("test"))
        check_no_overlap(ts, test, domain.label("test"))
    runs: dict[str, list[Run]] = {}

    def train_all(spec_list):
        for s in spec_list:
            runs[s] = [_run_one(s, domain, settings, seed, n_synthetic, n_boot, progress) for seed in seeds]

    train_all(specs)
    rows = {s: _aggregate(rs, domain, classes, n_boot) for s, rs in runs.items()}
    best = max(sources, key=lambda s: rows[s]["val_miou"] if rows[s]["val_miou"] is not None else -1) if sources else None
    mix_of: dict[int | None, str] = {}
    if sources and mixes != "none":
        chosen = [best] if mixes == "best" else list(sources)
        mix_specs = []
        for n in ns:
            for src in chosen:
                mix_specs.append(f"{real_label(n)}+{src}")
                mix_of.setdefault(n, mix_specs[-1])
        train_all(mix_specs)
        for s in mix_specs:
            rows[s] = _aggregate(runs[s], domain, classes, n_boot)
        if mixes == "all":  # per N the mix with the best validation mIoU
            for n in ns:
                cands = [f"{real_label(n)}+{src}" for src in chosen]
                mix_of[n] = max(cands, key=lambda s: rows[s]["val_miou"] or -1)
    for s, r in rows.items():
        r["best_synthetic"] = s == best
    summary = _summary(rows, ns, list(sources), best, mix_of, domain)
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
    settings_d = {**settings.__dict__, "seeds": list(seeds), "ns": [n if n is not None else "all" for n in ns],
                  "n_synthetic": n_synthetic, "mixes": mixes, "n_boot": n_boot,
                  "seconds": round(time.perf_counter() - t0, 1), "classes_scored": list(classes)}
    return ExperimentResult(domain.kind, domain.name, domain.label("test"), metric_name(domain.kind),
                            [r for rs in runs.values() for r in rs], list(rows.values()), summary, domain.shift,
                            settings_d, metro, notes, test)


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
        out.append({**_aggregate([run], domain, classes, n_boot), **{k: v for k, v in run.row.items()
                                                                     if k.endswith(("_iou", "_dice", "_f1"))}})
    return out


def downstream_experiment(domain: str = "sim", profile: str = "cpu", *, run_dir=None, dataset: str = "",
                          overrides: Any = None, progress: bool | None = None) -> ExperimentResult:
    """The whole experiment of a profile in one call (`DownstreamConfig`): in "sim" the
    simulated domain of `sim_preset` with its held-out test ranges; in "real" the run's
    real dataset (or `dataset`, or one built from the packaged frames), main set."""
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
    return run_experiment(dom, list(sources), ns=[n or None for n in c.ns], seeds=c.seeds, settings=settings,
                          n_synthetic=c.n_synthetic, mixes=c.mixes, n_boot=c.n_boot, progress=prog)


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
