"""Run folders, the run manifest, generator discovery and a notebook's saved outputs.

One low-level module (floor 2, beside `semlab.paths`) that every stage uses, so that no
package module needs the papermill runner (`semlab.reports`) to find an earlier result.

A *run* is one `semlab run`: `reports/<run-id>/`. Each notebook step writes into
`RUN_DIR/<step>/` (`step_name`: the notebook's stem, with `[real]` / `[sim]` appended
for a notebook that runs once per domain) and hands what later notebooks need (paths,
never data) on through `publish_outputs`; `run_outputs` reads them back.

Without a run (a notebook opened in JupyterLab with `RUN_DIR = ""`, or the CLI), stages
keep their results in `standalone_dir(kind, domain, profile)` =
`data/runs/<kind>-<domain>-<profile>/`, and `find_generator` looks there too.

`save_metrics(out, doc)` and `save_figure(out, name, fig)` are no-ops when `out` is
None, so a notebook cell never needs an `if OUT is not None:`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semlab.io import write_json_atomic
from semlab.paths import data_dir

__all__ = [
    "DATASET_NOTEBOOK", "DOMAINS", "GENERATOR_NOTEBOOKS", "MANIFEST", "Missing", "domain_doc", "find_dataset",
    "find_generator", "metrics_doc", "metric", "notebook_out", "publish_outputs", "run_outputs", "save_figure", "save_metrics",
    "standalone_dir", "step_name",
]

DOMAINS = ("sim", "real")
MANIFEST = "manifest.json"

# The notebook that trains each generator kind: the one place a package module names a
# notebook. Its step in a run is `step_name(notebook, domain)`.
GENERATOR_NOTEBOOKS = {"pix2pix": "20_train_pix2pix", "cyclegan": "21_train_cyclegan"}
DATASET_NOTEBOOK = "10_make_dataset"  # publishes `dataset`: the paired dataset of its domain

_STEP_RE = re.compile(r"^\d\d_[A-Za-z0-9_\-]+(\[(sim|real)\])?$")


def _check_domain(domain: str) -> str:
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; valid: {', '.join(DOMAINS)}")
    return domain


def step_name(notebook: str, domain: str | None = None) -> str:
    """`20_train_pix2pix` -> `20_train_pix2pix[real]`; no suffix when `domain` is None
    (a notebook that does not run once per domain)."""
    return notebook if not domain else f"{notebook}[{_check_domain(domain)}]"


def notebook_out(run_dir: str | os.PathLike | None, notebook: str, domain: str | None = None) -> Path | None:
    """`RUN_DIR/<step>/`, created; None without a run (then nothing is saved)."""
    if not run_dir:
        return None
    step = step_name(notebook, domain)
    if not _STEP_RE.match(step):
        raise ValueError(f"not a notebook step name: {step!r}")
    out = Path(run_dir) / step
    out.mkdir(parents=True, exist_ok=True)
    return out


def standalone_dir(kind: str, domain: str = "sim", profile: str = "cpu") -> Path:
    """`data/runs/<kind>-<domain>-<profile>`: where a stage run without a run folder
    keeps its results (a notebook in JupyterLab, the CLI)."""
    for what, value in (("kind", kind), ("profile", profile)):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(value)):
            raise ValueError(f"{what} must be a plain name, got {value!r}")
    return data_dir() / "runs" / f"{kind}-{_check_domain(domain)}-{profile}"


# ------------------------------------------------------------------ the run manifest


def publish_outputs(run_dir: str | os.PathLike | None, notebook: str, domain: str | None = None,
                    **outputs: Any) -> Path | None:
    """Record what a notebook step produced (paths, names; no data) for the steps after
    it, in `RUN_DIR/<step>/outputs.json`; the runner merges it into the manifest. A no-op
    without a run."""
    out = notebook_out(run_dir, notebook, domain)
    if out is None:
        return None
    return write_json_atomic(out / "outputs.json", {k: (str(v) if isinstance(v, Path) else v)
                                              for k, v in outputs.items()})


def run_outputs(run_dir: str | os.PathLike | None) -> dict[str, dict[str, Any]]:
    """Outputs of the earlier steps of a run: {step: {key: value}} (empty without a run).
    With `--from`/`--only` the manifest also holds the outputs of the steps that were not
    re-run, taken from the latest earlier run of the same profile."""
    if not run_dir:
        return {}
    p = Path(run_dir) / MANIFEST
    if not p.is_file():
        return {}
    try:
        return dict(json.loads(p.read_text()).get("outputs", {}))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{p}: unreadable run manifest ({exc})") from None


# ------------------------------------------------------------------ generator discovery


@dataclass(frozen=True)
class Missing:
    """Why something is not available; falsy, so `if found:` reads naturally."""

    reason: str

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return self.reason


def find_generator(kind: str, domain: str = "sim", run_dir: str | os.PathLike | None = None,
                   profile: str = "cpu") -> Path | Missing:
    """The trained generator of `kind` ("pix2pix", "cyclegan") for `domain`: from the run
    manifest when there is a run, else from the standalone folder
    (`standalone_dir(kind, domain, profile)/<kind>/generator.pt`, or its latest training
    checkpoint). `Missing(reason)` says which notebook to run otherwise."""
    from semlab.train.checkpoint import latest_checkpoint

    if kind not in GENERATOR_NOTEBOOKS:
        raise KeyError(f"unknown generator kind {kind!r}; valid: {', '.join(GENERATOR_NOTEBOOKS)}")
    nb = GENERATOR_NOTEBOOKS[kind]
    outs = run_outputs(run_dir)
    for step in (step_name(nb, domain), nb) if domain == "sim" else (step_name(nb, domain),):
        p = (outs.get(step) or {}).get("generator")
        if p and Path(p).is_file():
            return Path(p)
    root = standalone_dir(kind, domain, profile) / kind
    if (root / "generator.pt").is_file():
        return root / "generator.pt"
    ckpt = latest_checkpoint(root / "checkpoints")
    if ckpt is not None and Path(ckpt).is_file():
        return Path(ckpt)
    where = f"the run {run_dir}" if run_dir else "this standalone run (RUN_DIR is empty)"
    return Missing(f"no trained {kind} generator for the {domain} domain: notebook {step_name(nb, domain)} "
                   f"has not run in {where}, and {root} holds none")


def find_dataset(domain: str, run_dir: str | os.PathLike | None) -> Path | Missing:
    """The paired dataset of `domain` in a run: the `dataset` that notebook 10 published
    for that domain (`10_make_dataset[real]`; for sim also the plain `10_make_dataset`),
    if it is a dataset folder. `Missing(reason)` otherwise."""
    outs = run_outputs(run_dir)
    steps = (step_name(DATASET_NOTEBOOK, domain),) + ((DATASET_NOTEBOOK,) if domain == "sim" else ())
    for step in steps:
        p = (outs.get(step) or {}).get("dataset")
        if p and (Path(p) / "dataset.json").is_file():
            return Path(p)
    where = f"the run {run_dir}" if run_dir else "this standalone run (RUN_DIR is empty)"
    return Missing(f"no {domain}-domain dataset: notebook {steps[0]} has not published one in {where}")


def domain_doc(run_dir: str | os.PathLike | None, notebook: str, domain: str) -> dict[str, Any] | None:
    """The metrics.json of `notebook` run in `domain` in this run (`RUN_DIR/<step>/`), or
    None when it has not run (or left no readable file): for showing the domains side by side."""
    if not run_dir:
        return None
    p = Path(run_dir) / step_name(notebook, domain) / "metrics.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------ saved outputs


def metric(value: Any, ci_low: Any = None, ci_high: Any = None, n: int | None = None,
           unit: str = "", note: str = "") -> dict[str, Any]:
    """One metric entry of a `metrics.json`: {value, ci_low, ci_high, n, unit[, note]};
    NaN becomes None (JSON has no NaN)."""
    def clean(v):
        if v is None:
            return None
        try:
            f = float(v)
        except (TypeError, ValueError):
            return v
        return None if f != f or f in (float("inf"), float("-inf")) else f

    out = {"value": clean(value), "ci_low": clean(ci_low), "ci_high": clean(ci_high),
           "n": None if n is None else int(n), "unit": unit}
    if note:
        out["note"] = note
    return out


def metrics_doc(notebook: str, domain: str | None, dataset: str, n: int | None,
                metrics: dict[str, dict[str, Any]], *, headline: list[str] | tuple[str, ...] = (),
                figure: str | None = None, **extra: Any) -> dict[str, Any]:
    """The one shape of every notebook's `metrics.json`:
    `{notebook, domain, set, n, metrics: {key: {value, ci_low, ci_high, n, unit}},
    headline: [key, ...], figure: "name.png"}` (keys from `semlab.metrics.keys`).

    `headline` names the 2-4 metrics the report dashboard shows for this notebook (each
    must be in `metrics`); `figure` is the file name of its main figure in the step folder
    (the dashboard's thumbnail); `extra` holds non-metric facts (paths, settings)."""
    for k, m in metrics.items():
        if not isinstance(m, dict) or "value" not in m:
            raise ValueError(f"metric {k!r} must be a dict made by semlab.runs.metric(), got {m!r}")
    missing = [k for k in headline if k not in metrics]
    if missing:
        raise ValueError(f"headline key(s) {missing} are not among the metrics {sorted(metrics)}")
    if len(headline) > 4:
        raise ValueError(f"a headline holds at most 4 metrics, got {len(headline)}")
    if figure is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.png", figure):
        raise ValueError(f"figure must be a plain .png file name, got {figure!r}")
    doc = {"notebook": notebook, "domain": domain, "set": dataset, "n": n, "metrics": dict(metrics),
           "headline": list(headline), "figure": figure}
    if extra:
        doc["extra"] = extra
    return doc


def save_metrics(out: str | os.PathLike | None, doc: dict[str, Any]) -> Path | None:
    """Write `out/metrics.json` atomically; a no-op when `out` is None."""
    if out is None:
        return None
    return write_json_atomic(Path(out) / "metrics.json", doc)


def save_figure(out: str | os.PathLike | None, name: str, fig, dpi: int = 90) -> Path | None:
    """Save `fig` as `out/<name>.png` (atomically); a no-op when `out` is None. Returns
    the path (or None). The figure is left open for display."""
    if out is None or fig is None:
        return None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"figure name must be a plain file name, got {name!r}")
    import io as _io

    from semlab.io import atomic_write

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    path = Path(out) / (name if name.endswith(".png") else f"{name}.png")
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())
    return path
