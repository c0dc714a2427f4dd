"""The notebook pipeline: run folders, executed notebooks, HTML, metrics, index pages.

``run_pipeline`` executes ``notebooks/NN_verb_object.ipynb`` in name order with
papermill into ``reports/<run-id>/``, converts each executed notebook to HTML,
collects the ``metrics.json`` each notebook wrote into ``RUN_DIR/<name>/`` and writes
``reports/<run-id>/index.html`` (a dashboard: per step its question, headline numbers
with CIs and domain, main figure, status; all metrics collapsed) and ``reports/index.html``
(all runs, newest first). A failing notebook is recorded with its traceback; the
following notebooks still run unless they declare (``metadata.semlab.depends_on``)
that they need it, in which case they are marked skipped. Every file is written atomically (temp + os.replace).

Layout of a run folder::

    reports/<run-id>/
      index.html          the dashboard: a card per step, all metrics (collapsed), failures
      run.json            machine-readable summary (read back by reports/index.html)
      manifest.json       what each notebook produced (paths), for the notebooks after it
      NN_name.ipynb       executed notebook (partial if it failed)
      NN_name.html        its HTML (self-contained: code folded, images embedded, no CDN,
                          HTML and Markdown outputs sanitised: no scripts, no event handlers)
      NN_name/            RUN_DIR/<name>: the notebook's metrics.json, outputs.json, figures
"""

from __future__ import annotations

import copy
import datetime as _dt
import html
import json
import math
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

from semlab.io import write_text_atomic
from semlab.nbsource import (check_parameters, list_notebooks, notebook_meta, notebooks_dir, parameter_defaults,
                             read_notebook)
from semlab.paths import project_root, reports_dir
from semlab.runs import MANIFEST, step_name

__all__ = [
    "NOTEBOOKS_DIR",
    "RunResult",
    "run_pipeline",
    "list_notebooks",
    "make_run_id",
    "git_short_hash",
    "write_run_index",
    "write_reports_index",
    "write_text_atomic",
    "flatten_metrics",
    "render_run_index",
    "step_summary",
    "clean_report_html",
    "notebook_to_html",
]

NOTEBOOKS_DIR: Path = notebooks_dir()
TEMPLATES_DIR: Path = Path(__file__).resolve().parent / "templates"

_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class RunResult:
    """What a pipeline run produced. ``steps``: dicts name/status/seconds/html/error."""

    run_dir: Path
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s["status"] == "ok" or s.get("unsupported") for s in self.steps)

    @property
    def run_id(self) -> str:
        return self.run_dir.name


# ---------------------------------------------------------------------------- files


def _write_json(path: Path, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


# ------------------------------------------------------------------------- run ids


def git_short_hash(root: str | os.PathLike | None = None) -> str | None:
    """Short (7-char) hash of HEAD, read from the ``.git`` folder without running git.

    Handles a detached HEAD, loose refs and packed-refs; returns None if there is no
    repository or the ref cannot be resolved.
    """
    root = Path(root) if root is not None else project_root()
    for folder in (root, *root.parents):
        git = folder / ".git"
        if git.is_file():  # worktree / submodule: "gitdir: <path>"
            txt = git.read_text(errors="ignore").strip()
            if txt.startswith("gitdir:"):
                git = (folder / txt.split(":", 1)[1].strip()).resolve()
        if git.is_dir():
            break
    else:
        return None
    try:
        head = (git / "HEAD").read_text().strip()
    except OSError:
        return None
    if not head.startswith("ref:"):
        return head[:7] if re.fullmatch(r"[0-9a-f]{40}", head) else None
    ref = head.split(":", 1)[1].strip()
    commondir = git
    if (git / "commondir").is_file():
        commondir = (git / (git / "commondir").read_text().strip()).resolve()
    for base in (git, commondir):
        loose = base / ref
        if loose.is_file():
            sha = loose.read_text().strip()
            return sha[:7] if re.fullmatch(r"[0-9a-f]{40}", sha) else None
    for base in (git, commondir):
        packed = base / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(errors="ignore").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref and re.fullmatch(r"[0-9a-f]{40}", parts[0]):
                    return parts[0][:7]
    return None  # e.g. a fresh repository without commits


def make_run_id(profile: str, *, now: _dt.datetime | None = None, git_hash: str | None = None) -> str:
    """``YYYYmmddTHHMMSSZ-<profile>-<short git hash or 'nogit'>``, UTC."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    stamp = now.astimezone(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    safe_profile = re.sub(r"[^A-Za-z0-9_.-]", "_", str(profile)) or "default"
    return f"{stamp}-{safe_profile}-{git_hash or 'nogit'}"


def _new_run_dir(out_root: Path, run_id: str) -> Path:
    """Create the run folder; add -2, -3, ... if the id already exists (same second)."""
    out_root.mkdir(parents=True, exist_ok=True)
    candidate, k = out_root / run_id, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            k += 1
            candidate = out_root / f"{run_id}-{k}"


# ----------------------------------------------------------------------- notebooks


def _strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text)


def _error_from_exception(exc: BaseException) -> dict[str, str]:
    """ename / evalue / traceback (plain text) of a failed notebook."""
    ename = getattr(exc, "ename", None)
    if ename is not None:  # papermill.exceptions.PapermillExecutionError
        tb = getattr(exc, "traceback", None) or []
        tb_text = "\n".join(tb) if isinstance(tb, (list, tuple)) else str(tb)
        cell = getattr(exc, "exec_count", None)
        return {
            "ename": str(ename),
            "evalue": str(getattr(exc, "evalue", "")),
            "traceback": _strip_ansi(tb_text),
            "cell": "" if cell is None else str(cell),
        }
    return {
        "ename": type(exc).__name__,
        "evalue": str(exc),
        "traceback": _strip_ansi("".join(traceback.format_exception(exc))),
        "cell": "",
    }


# What a report page may hold from a notebook's HTML and Markdown (outputs, Markdown
# cells, highlighted code): text markup, tables, embedded raster images, links. No
# scripts, styles, forms, frames or event handlers; links only to http(s), mail or the page.
_TAGS = frozenset("""a abbr b blockquote br caption code col colgroup dd del details div dl dt em
    figcaption figure h1 h2 h3 h4 h5 h6 hr i img ins kbd li mark ol p pre q s samp small span
    strong sub summary sup table tbody td tfoot th thead tr u ul""".split())
_ATTRS = {"*": {"class", "id", "title"}, "a": {"href"}, "img": {"src", "alt", "width", "height"},
          "td": {"colspan", "rowspan", "align"}, "th": {"colspan", "rowspan", "align", "scope"},
          "ol": {"start"}, "col": {"span"}, "colgroup": {"span"}}
_EMBEDDED_IMAGE = re.compile(r"data:image/(png|jpeg|gif|webp);base64,", re.I)
_UNSAFE_BLOCK = re.compile(r"<(script|style|template|textarea|title)\b.*?</\1\s*>", re.I | re.S)


def _uri(value: str) -> str:
    """A URI as a browser reads it: entities decoded, spaces and controls gone, lower case."""
    return re.sub(r"[`\x00-\x20\x7f-\xa0\s]+", "", html.unescape(value)).lower()


def _attr_allowed(tag: str, name: str, value: str) -> bool:
    if name not in _ATTRS["*"] and name not in _ATTRS.get(tag, ()):
        return False
    if name == "src":  # figures are embedded: nothing is fetched, nothing is run
        return bool(_EMBEDDED_IMAGE.match(_uri(value)))
    if name == "href":
        return not _uri(value).startswith("data:")
    return True


def clean_report_html(fragment) -> str:
    """Sanitise HTML from a notebook (an HTML or Markdown output, a Markdown cell) for a
    report page: only the tags and attributes above survive (no ``<script>``, no ``on*``
    handlers, no ``javascript:`` or ``data:`` links; images only as embedded PNG, JPEG,
    GIF or WebP); other tags are dropped, their text kept as text. Script and style
    blocks go with their content. Used as nbconvert's ``clean_html`` filter."""
    import bleach

    text = fragment.decode() if isinstance(fragment, bytes) else str(fragment)
    text = _UNSAFE_BLOCK.sub("", text)
    cleaner = bleach.Cleaner(tags=_TAGS, attributes=_attr_allowed,
                             protocols={"http", "https", "mailto", "data"}, strip=True, strip_comments=True)
    return cleaner.clean(text)


def notebook_to_html(ipynb: str | os.PathLike, out_html: str | os.PathLike) -> Path:
    """Convert an executed notebook to a self-contained HTML report (semlab's template,
    code folded, figures embedded) with nbconvert's sanitising on: HTML and Markdown
    outputs and Markdown cells go through `clean_report_html`, JavaScript outputs are
    left out. Notebooks show paths and names, which may come from anyone."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(ipynb), as_version=4)
    # semlab's template (semlab/templates/semlab_report): self-contained, code folded
    exporter = HTMLExporter(template_name="semlab_report", extra_template_basedirs=[str(TEMPLATES_DIR)],
                            embed_images=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            sanitize_html=True, filters={"clean_html": clean_report_html})
    body, _ = exporter.from_notebook_node(nb)
    return write_text_atomic(out_html, body)


def _ipc_kernel_manager():
    """A kernel manager on IPC (unix sockets in the runtime dir): no TCP ports on
    localhost, and no "Kernel is running over TCP without encryption" line per notebook."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.transport = "ipc"

    return IPCKernelManager


def _execute(nb_in, nb_out: Path, parameters: dict, cwd: Path, timeout: float | None) -> None:
    """Execute `nb_in` (a notebook node read from its jupytext source, or a path) into
    `nb_out`; the source file is never written."""
    import papermill as pm

    partial = nb_out.with_name(f".{nb_out.stem}.partial.ipynb")
    try:
        pm.execute_notebook(
            nb_in if not isinstance(nb_in, (str, os.PathLike)) else str(nb_in),
            str(partial),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(cwd),
            progress_bar=False,
            log_output=False,
            execution_timeout=timeout,
            kernel_manager_class=_ipc_kernel_manager(),
        )
    finally:
        if partial.exists():
            os.replace(partial, nb_out)


def notebook_depends_on(path: Path) -> list[str]:
    """Notebooks this one needs (``metadata.semlab.depends_on``: names or NN prefixes)."""
    return notebook_meta(read_notebook(path))["depends_on"]


def notebook_params(nb: Path, base: dict[str, Any], params: dict[str, Any] | None, node=None) -> dict[str, Any]:
    """The parameters one notebook gets: PROFILE and RUN_DIR, then the UPPERCASE
    top-level entries of ``params`` and the entries of a section named after the
    notebook (its name or NN prefix, e.g. ``10_make_dataset: {BACKEND: sam2}`` or
    ``"10": {...}``), keeping only names its ``parameters`` cell defines. A name the
    notebook does not have, or a value whose type differs from its default's, raises
    ValueError naming the notebook."""
    nb = Path(nb)
    defaults = parameter_defaults(node if node is not None else read_notebook(nb), nb.name)
    out = {k: v for k, v in base.items() if k in ("PROFILE", "RUN_DIR")}
    for k, v in (params or {}).items():  # global entries: only where the notebook has them
        if k.isupper() and k in defaults and k not in out:
            out[k] = v
    for key, section in (params or {}).items():
        if isinstance(section, dict) and (nb.stem == key or nb.stem.startswith(str(key))):
            check_parameters(nb.name, defaults, section)
            out.update({k: v for k, v in section.items() if k not in ("PROFILE", "RUN_DIR")})
    check_parameters(nb.name, defaults, out)
    return out


def _latest_manifest(out_root: Path, profile: str, exclude: Path) -> tuple[str | None, dict]:
    runs = sorted((d for d in out_root.iterdir() if d.is_dir() and d != exclude and (d / MANIFEST).is_file()),
                  key=lambda d: d.name, reverse=True) if out_root.is_dir() else []
    for d in runs:
        try:
            m = json.loads((d / MANIFEST).read_text())
        except (OSError, ValueError):
            continue
        if m.get("profile") == profile:
            return d.name, m.get("outputs", {})
    return None, {}


# ---------------------------------------------------------------------- the runner


def run_pipeline(
    profile: str = "cpu",
    *,
    only: str | Iterable[str] | None = None,
    out_root: str | os.PathLike | None = None,
    params: dict[str, Any] | None = None,
    notebooks_dir: str | os.PathLike | None = None,
    timeout: float | None = None,
    start: str | None = None,
    domain: str = "sim",
    real_dir: str | os.PathLike | None = None,
) -> RunResult:
    """Execute the notebooks in name order into a new ``<out_root>/<run-id>/`` folder.

    Each notebook gets the parameters ``PROFILE=profile``, ``RUN_DIR=<run folder>``
    plus ``params`` (which cannot override PROFILE or RUN_DIR); it may write
    ``RUN_DIR/<name>/metrics.json``. ``timeout`` is papermill's per-cell timeout in
    seconds (None: no limit). ``start`` (``--from``) skips the notebooks before it.
    Notebooks pass results on through the run manifest (``publish_outputs`` /
    ``run_outputs``); a notebook whose ``depends_on`` notebook failed in this run is
    skipped, the others still run. Returns a :class:`RunResult`; ``.ok`` is False if
    any notebook failed or was skipped.

    ``domain`` (``sim``, ``real`` or ``both``) is the domain axis: a notebook whose
    metadata lists ``semlab.domains`` runs once per requested domain it supports, as the
    step ``NN_name[domain]`` with the parameters ``DOMAIN`` (and ``REAL_DIR`` from
    ``real_dir``) when its parameters cell has them; a requested domain it does not
    support is recorded as skipped with the reason. Other notebooks run once.
    """
    from semlab.config import load_profile

    load_profile(profile, {"domain": domain})  # an unknown profile or domain fails before anything is made
    domains = ("sim", "real") if domain == "both" else (domain,)
    books = list_notebooks(notebooks_dir, only, start)
    if not books:
        folder = Path(notebooks_dir) if notebooks_dir is not None else NOTEBOOKS_DIR
        raise FileNotFoundError(f"no NN_name.py notebooks in {folder}")
    nodes = {nb: read_notebook(nb) for nb in books}  # each source is read once per run
    for nb in books:  # bad parameters fail here, before any run folder exists
        notebook_params(nb, {"PROFILE": profile, "RUN_DIR": ""}, params, nodes[nb])
    steps_todo = []  # (notebook, domain or None, reason it is not run or None)
    for nb in books:
        supported = notebook_meta(nodes[nb])["domains"]
        if not supported:
            steps_todo.append((nb, None, None))
            continue
        for d in domains:
            why = None if d in supported else f"not run: this notebook has no {d}-domain version (it supports {', '.join(supported)})"
            steps_todo.append((nb, d, why))
    out_root = Path(out_root) if out_root is not None else reports_dir()
    git_hash = git_short_hash()
    started = _dt.datetime.now(_dt.timezone.utc)
    run_dir = _new_run_dir(out_root, make_run_id(profile, now=started, git_hash=git_hash))
    result = RunResult(run_dir=run_dir)
    meta = {
        "run_id": run_dir.name,
        "profile": profile,
        "git": git_hash or "nogit",
        "started": started.isoformat(timespec="seconds"),
        "started_ts": started.timestamp(),
        "finished": None,
        "status": "running",
        "params": dict(params or {}),
        "notebooks": [p.stem for p in books],
        "domain": domain,
    }
    all_books = list_notebooks(notebooks_dir)
    inherited_from, outputs = (None, {})
    if len(books) < len(all_books):  # a partial run reuses the outputs of the latest full one
        inherited_from, outputs = _latest_manifest(out_root, profile, run_dir)
    manifest = {"run_id": run_dir.name, "profile": profile, "inherited_from": inherited_from,
                "outputs": outputs}
    _write_json(run_dir / MANIFEST, manifest)
    meta["inherited_from"] = inherited_from
    base_params = {k: v for k, v in (params or {}).items() if k not in ("PROFILE", "RUN_DIR")}
    base_params.update(PROFILE=profile, RUN_DIR=str(run_dir.resolve()))
    if real_dir:
        base_params["REAL_DIR"] = str(real_dir)

    def publish(status: str) -> None:
        meta["status"] = status
        meta["steps"] = result.steps
        _write_json(run_dir / "run.json", meta)
        write_run_index(run_dir)
        write_reports_index(out_root)

    publish("running")
    for nb, dom, why_not in steps_todo:
        name = step_name(nb.stem, dom)
        (run_dir / name).mkdir(exist_ok=True)
        nb_out = run_dir / f"{name}.ipynb"
        step: dict[str, Any] = {"name": name, "notebook": nb.stem, "domain": dom,
                                "question": notebook_meta(nodes[nb])["question"], "status": "running",
                                "seconds": 0.0, "html": None, "ipynb": None, "metrics": None, "error": None}
        t0 = time.perf_counter()
        bad = [s["name"] for s in result.steps if s["status"] in ("failed", "skipped")
               and s.get("domain") in (None, dom)
               and any(s["notebook"] == d or s["notebook"].startswith(d) for d in notebook_meta(nodes[nb])["depends_on"])]
        if why_not or bad:
            step["status"] = "skipped"
            step["unsupported"] = bool(why_not)
            reason = why_not or f"not run: it depends on {', '.join(bad)}, which did not succeed"
            step["error"] = {"ename": "Skipped", "evalue": reason, "traceback": ""}
            result.steps.append(step)
            print(f"{name:<32} {'skipped':<7} {0.0:8.1f} s   ({reason.removeprefix('not run: ')})", flush=True)
            publish("running")
            continue
        try:
            nb_params = notebook_params(nb, base_params, params, nodes[nb])
            defaults = parameter_defaults(nodes[nb], nb.name)
            if dom is not None and "DOMAIN" in defaults:
                nb_params["DOMAIN"] = dom
            if "REAL_DIR" in base_params and "REAL_DIR" in defaults:
                nb_params.setdefault("REAL_DIR", base_params["REAL_DIR"])
            _execute(copy.deepcopy(nodes[nb]), nb_out, nb_params, nb.parent, timeout)  # runs once per domain
            step["status"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure is recorded; the next notebook still runs
            step["status"] = "failed"
            step["error"] = _error_from_exception(exc)
        step["seconds"] = round(time.perf_counter() - t0, 2)
        out_json = run_dir / name / "outputs.json"
        if out_json.is_file():
            try:
                manifest["outputs"][name] = json.loads(out_json.read_text())
            except (OSError, ValueError):
                pass
            _write_json(run_dir / MANIFEST, manifest)
        if nb_out.exists():
            step["ipynb"] = nb_out.name
            try:
                notebook_to_html(nb_out, run_dir / f"{name}.html")
                step["html"] = f"{name}.html"
            except Exception as exc:  # noqa: BLE001
                note = _error_from_exception(exc)
                step["html_error"] = f"{note['ename']}: {note['evalue']}"
        metrics_path = run_dir / name / "metrics.json"
        if metrics_path.is_file():
            try:
                step["metrics"] = json.loads(metrics_path.read_text())
            except (OSError, ValueError) as exc:
                step["metrics"] = None
                step["metrics_error"] = f"unreadable metrics.json: {exc}"
        step.update(step_summary(step["metrics"], run_dir / name))  # the dashboard's card
        result.steps.append(step)
        print(f"{name:<32} {step['status']:<7} {step['seconds']:8.1f} s", flush=True)
        publish("running")
    finished = _dt.datetime.now(_dt.timezone.utc)
    meta["finished"] = finished.isoformat(timespec="seconds")
    meta["seconds"] = round((finished - started).total_seconds(), 1)
    publish("ok" if result.ok else "failed")
    return result


# ---------------------------------------------------------------------- HTML pages

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:80em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .7em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}td.text{word-break:break-all;max-width:40em}
.ok{color:#1a7f37;font-weight:600}.failed{color:#c62828;font-weight:600}.running,.pending{color:#b26a00;font-weight:600}.skipped,.unsupported,.unknown{color:#6a6a6a;font-weight:600}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.8em;overflow-x:auto;font-size:.85em}
code{background:#f3f3f3;padding:0 .2em}.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(22em,1fr));gap:1em;margin:1em 0}
.card{border:1px solid #ccc;border-radius:6px;padding:.2em 1em .8em;overflow-wrap:anywhere}
.card.failed-card{border-color:#c62828}.card h3{margin:.6em 0 .2em;font-size:1.05em}.question{font-style:italic;margin:.2em 0 .5em}
.meta,.data{color:#555;font-size:.9em;margin:.3em 0}.error{color:#c62828;font-size:.9em;margin:.3em 0}
.thumb img{display:block;max-width:100%;max-height:11em;object-fit:contain;border:1px solid #eee;margin:.4em 0}
ul.headline{list-style:none;padding:0;margin:.4em 0}ul.headline li{margin:.15em 0}.headline .value{font-weight:600;font-variant-numeric:tabular-nums}.headline .n{color:#555;font-size:.85em}
details.all-metrics>summary{cursor:pointer;font-weight:600}
"""

# What the dashboard links or embeds must stay a plain file inside the run folder.
_STEP_DIR_RE = re.compile(r"\d\d_[A-Za-z0-9_\-]+(\[(sim|real)\])?")
_PLAIN_PNG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.png")
_STATUSES = ("ok", "failed", "skipped", "unsupported", "running", "pending")
_DOMAIN_LABELS = {"sim": "simulated", "simulated": "simulated", "real": "real",
                  "both": "simulated and real", "sim+real": "simulated and real"}
_OLD_SHAPE_LEAVES = 3  # numeric leaves shown for a metrics.json of an older shape


def flatten_metrics(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts -> [("a.b.c", value), ...]; lists of scalars are kept as values."""
    if isinstance(obj, dict):
        out: list[tuple[str, Any]] = []
        for k, v in obj.items():
            out.extend(flatten_metrics(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return [(prefix or "value", obj)]


def _number(v: Any) -> float | None:
    """A finite number as float; None for anything else (bools, strings, NaN)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _new_shape(doc: Any) -> bool:
    """A metrics.json of the one shape: `{..., metrics: {key: {value, ci_low, ...}}}`."""
    m = doc.get("metrics") if isinstance(doc, dict) else None
    return isinstance(m, dict) and bool(m) and all(isinstance(e, dict) and "value" in e for e in m.values())


def _headline_entry(key: str, m: dict[str, Any]) -> dict[str, Any]:
    return {"key": str(key), "value": m.get("value"), "ci_low": m.get("ci_low"), "ci_high": m.get("ci_high"),
            "n": m.get("n"), "unit": str(m.get("unit") or ""), "note": str(m.get("note") or "")}


def step_summary(doc: Any, step_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """What the dashboard card shows of one step, from its metrics.json (`doc`, None if it
    wrote none) and its folder: ``data`` ({domain, set, n}, None for an older shape),
    ``headline`` (the 2-4 entries named by ``headline``, each {key, value, ci_low,
    ci_high, n, unit, note}; for an older shape up to 3 numeric leaves, {key, value}) and
    ``figure`` (a plain ``.png`` name inside the step folder, or None): the named main
    figure, or for an older shape the first PNG in the folder. Recorded in run.json."""
    folder = Path(step_dir) if step_dir is not None else None
    out: dict[str, Any] = {"data": None, "headline": [], "figure": None}
    if _new_shape(doc):
        metrics = doc["metrics"]
        keys = [k for k in (doc.get("headline") or []) if isinstance(k, str) and k in metrics][:4]
        out["headline"] = [_headline_entry(k, metrics[k]) for k in keys or list(metrics)[:_OLD_SHAPE_LEAVES]]
        out["data"] = {k: doc.get(k) for k in ("domain", "set", "n")}
    elif doc is not None:
        leaves = [(k, _number(v)) for k, v in flatten_metrics(doc)]
        out["headline"] = [{"key": k, "value": v} for k, v in leaves if v is not None][:_OLD_SHAPE_LEAVES]
    named = doc.get("figure") if isinstance(doc, dict) and _new_shape(doc) else None
    if isinstance(named, str) and _PLAIN_PNG_RE.fullmatch(named) and (folder is None or (folder / named).is_file()):
        out["figure"] = named
    elif folder is not None and folder.is_dir() and not (_new_shape(doc) and "figure" in doc):
        pngs = sorted(p.name for p in folder.iterdir() if p.is_file() and _PLAIN_PNG_RE.fullmatch(p.name))
        out["figure"] = pngs[0] if pngs else None
    return out


def _fmt_value(v: Any) -> str:
    if v is None or v == "":
        return "\u2013"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt_value(x) for x in v) + "]"
    return str(v)


def _fmt_estimate(entry: dict[str, Any]) -> str:
    """``12.3 [11.8, 12.9] dB``: the value, its CI when both ends are numbers, the unit."""
    v, lo, hi = (entry.get(k) for k in ("value", "ci_low", "ci_high"))
    text = _fmt_value(float(v) if _number(v) is not None else v)
    if _number(lo) is not None and _number(hi) is not None:
        text += f" [{float(lo):.4g}, {float(hi):.4g}]"
    unit = str(entry.get("unit") or "")
    return f"{text} {unit}" if unit else text


def _fmt_seconds(seconds: Any) -> str:
    s = _number(seconds) or 0.0
    return (f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {int(s % 60):02d} s" if s < 3600
            else f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min")


def _data_line(data: dict[str, Any] | None) -> str:
    """"simulated data · set test · n = 40"; never calls unstated or simulated data real."""
    if not isinstance(data, dict):
        return "domain, set and n not stated (older metrics.json shape)"
    dom = data.get("domain")
    label = _DOMAIN_LABELS.get(dom) if isinstance(dom, str) else None
    parts = [f"{label} data" if label else ("domain not stated" if dom in (None, "") else f"domain {dom}")]
    if data.get("set") not in (None, ""):
        parts.append(f"set {data['set']}")
    if data.get("n") is not None:
        parts.append(f"n = {data['n']}")
    return " \u00b7 ".join(str(p) for p in parts)


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _href(path: str) -> str:
    """A relative path as an escaped, percent-encoded attribute value."""
    return html.escape(quote(path), quote=True)


def _link(href: str | None, text: str) -> str:
    if not href:
        return html.escape(text)
    return f'<a href="{_href(href)}">{html.escape(text)}</a>'


def _local_file(name: Any) -> str | None:
    """`name` if it is a plain file name (no folder, no `..`), else None: links stay in the run folder."""
    return name if isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-\[\]]*", name) else None


def _status(s: dict[str, Any]) -> str:
    st = "unsupported" if s.get("unsupported") else str(s.get("status", "?"))
    return st if st in _STATUSES else "unknown"


def _one_line_error(s: dict[str, Any]) -> str:
    err = s.get("error") or {}
    if not err and not s.get("metrics_error"):
        return ""
    text = f"{err.get('ename', '')}: {err.get('evalue', '')}" if err else ""
    if err.get("ename") == "Skipped":
        text = str(err.get("evalue", ""))
    text = " ".join((text or str(s.get("metrics_error"))).split())
    return text if len(text) <= 240 else text[:239] + "\u2026"


def _card(s: dict[str, Any], run_dir: Path | None) -> str:
    """One step of the dashboard: question, status and duration, error, thumbnail, headline."""
    e = html.escape
    name = str(s.get("name", "?"))
    st = _status(s)
    summary = s if "headline" in s else step_summary(s.get("metrics"), run_dir / name if run_dir and _STEP_DIR_RE.fullmatch(name) else None)
    report = _local_file(s.get("html"))
    parts = [f'<section class="card {st}-card" id="step-{e(name, quote=True)}">',
             f"<h3>{_link(report, name)}</h3>",
             f'<p class="question">{e(str(s.get("question") or "")) or "(the notebook states no question)"}</p>',
             f'<p class="meta"><span class="status {st}">{st}</span> \u00b7 {e(_fmt_seconds(s.get("seconds")))}'
             + (f" \u00b7 {_link(_local_file(s.get('ipynb')), '.ipynb')}" if _local_file(s.get("ipynb")) else "")
             + "</p>"]
    if st in ("failed", "skipped", "unsupported") or s.get("metrics_error"):
        parts.append(f'<p class="error">{e(_one_line_error(s))}</p>')
    fig = summary.get("figure")
    if st != "pending" and _STEP_DIR_RE.fullmatch(name) and isinstance(fig, str) and _PLAIN_PNG_RE.fullmatch(fig):
        img = f'<img src="{_href(f"{name}/{fig}")}" alt="{e(f"main figure of {name}", quote=True)}">'
        parts.append(f'<a class="thumb" href="{_href(report)}">{img}</a>' if report else f'<span class="thumb">{img}</span>')
    data = summary.get("data")
    doc_n = data.get("n") if isinstance(data, dict) else None
    items = []
    for h in summary.get("headline") or []:
        if not isinstance(h, dict):
            continue
        n = h.get("n")
        n_txt = f' <span class="n">(n = {e(str(n))})</span>' if n is not None and n != doc_n else ""
        note = f' title="{e(str(h["note"]), quote=True)}"' if h.get("note") else ""
        items.append(f'<li{note}><span class="key">{e(str(h.get("key", "")))}</span>: '
                     f'<span class="value">{e(_fmt_estimate(h))}</span>{n_txt}</li>')
    if items:
        parts.append('<ul class="headline">' + "".join(items) + "</ul>")
    if s.get("metrics") is not None or summary.get("headline"):
        parts.append(f'<p class="data">{e(_data_line(data))}</p>')
    elif st == "ok":
        parts.append('<p class="data">no metrics.json</p>')
    return "\n".join(parts) + "\n</section>"


def _metrics_table(steps: list[dict[str, Any]]) -> str:
    """Every key of every step's metrics.json, in a collapsed section."""
    e = html.escape
    rows, n_keys = [], 0
    for s in steps:
        if isinstance(s.get("metrics"), (dict, list, int, float, str)):
            items = flatten_metrics(s["metrics"])
            n_keys += len(items)
            for k, (key, val) in enumerate(items):
                first = (f"<td rowspan=\"{len(items)}\">{e(str(s.get('name')))}</td>" if k == 0 else "")
                cell = "<td class=\"num\">" if _number(val) is not None else "<td class=\"text\">"
                rows.append(f"<tr>{first}<td>{e(key)}</td>{cell}{e(_fmt_value(val))}</td></tr>")
        if s.get("metrics_error"):
            rows.append(f"<tr><td>{e(str(s.get('name')))}</td><td colspan=\"2\">{e(str(s['metrics_error']))}</td></tr>")
    if not rows:
        return "<p>No notebook wrote a metrics.json.</p>"
    return (f'<details class="all-metrics"><summary>All metrics ({n_keys} keys)</summary>\n'
            "<table><tr><th>notebook</th><th>metric</th><th>value</th></tr>\n" + "\n".join(rows) + "</table></details>")


def render_run_index(meta: dict[str, Any], run_dir: str | os.PathLike | None = None) -> str:
    """HTML of a run's index page (the dashboard) from its run.json contents: one card per
    step (`_card`), then every metric in a collapsed table, then the failures with their
    tracebacks. `run_dir` lets a run.json written before the dashboard find thumbnails."""
    e = html.escape
    run_dir = Path(run_dir) if run_dir is not None else None
    steps = [s for s in meta.get("steps") or [] if isinstance(s, dict)]
    status = str(meta.get("status", "?"))
    st_cls = status if status in _STATUSES else "unknown"
    parts = [
        f"<h1>semlab report: {e(str(meta.get('run_id', '')))}</h1>",
        "<p>"
        f"Profile <code>{e(str(meta.get('profile')))}</code> &middot; domain <code>{e(str(meta.get('domain', 'sim')))}</code> &middot; "
        f"git <code>{e(str(meta.get('git')))}</code> &middot; "
        f"started {e(str(meta.get('started')))} &middot; finished {e(str(meta.get('finished') or '-'))} &middot; "
        f"status <span class=\"{st_cls}\">{e(status)}</span> &middot; <a href=\"../index.html\">all runs</a></p>",
    ]
    if meta.get("params"):
        parts.append(f"<p>Parameters: <code>{e(json.dumps(meta['params'], default=str))}</code></p>")
    parts.append("<h2>Notebooks</h2>")
    done = {s.get("notebook", s.get("name")) for s in steps}
    pending = [{"name": str(n), "status": "pending"} for n in meta.get("notebooks", []) if n not in done]
    parts.append('<div class="cards">\n' + "\n".join(_card(s, run_dir) for s in steps + pending) + "\n</div>")
    parts.append("<h2>Metrics</h2>")
    parts.append(_metrics_table(steps))

    failed = [s for s in steps if s.get("status") in ("failed", "skipped")]
    parts.append("<h2>Failures</h2>")
    if not failed:
        parts.append("<p>None.</p>")
    for s in failed:
        err = s.get("error") or {}
        where = f" (cell {e(str(err['cell']))})" if err.get("cell") else ""
        name = str(s.get("name", "?"))
        parts.append(
            f"<h3 id=\"fail-{e(name, quote=True)}\">{e(name)}: {e(str(err.get('ename', '')))}: {e(str(err.get('evalue', '')))}{where}</h3>"
            f"<pre>{e(str(err.get('traceback', '')))}</pre>"
        )
        if _local_file(s.get("html")):
            parts.append(f"<p>Partial output: {_link(s['html'], s['html'])}</p>")
    return _page(f"semlab report {meta.get('run_id', '')}", "\n".join(parts))


def write_run_index(run_dir: str | os.PathLike) -> Path:
    """(Re)write ``<run_dir>/index.html`` from ``<run_dir>/run.json``."""
    run_dir = Path(run_dir)
    try:
        meta = json.loads((run_dir / "run.json").read_text())
    except ValueError as exc:
        raise ValueError(f"{run_dir / 'run.json'}: not valid JSON ({exc})") from None
    return write_text_atomic(run_dir / "index.html", render_run_index(meta, run_dir))


def write_reports_index(out_root: str | os.PathLike | None = None) -> Path:
    """(Re)write ``<out_root>/index.html``: every run folder (newest first) with its
    status, duration and how many steps were ok, failed or skipped."""
    out_root = Path(out_root) if out_root is not None else reports_dir()
    e = html.escape
    runs = []
    for d in out_root.iterdir() if out_root.is_dir() else []:
        if d.is_dir() and (d / "run.json").is_file():
            try:
                meta = json.loads((d / "run.json").read_text())
            except (OSError, ValueError):
                meta = {"status": "unreadable"}
            runs.append((_number(meta.get("started_ts")) or 0.0, d.name, d, meta))
    runs.sort(key=lambda r: (r[0], r[1]), reverse=True)
    rows = ["<tr><th>run</th><th>profile</th><th>domain</th><th>started (UTC)</th><th>status</th>"
            "<th>duration</th><th>steps ok</th><th>failed</th><th>skipped</th></tr>"]
    for _, name, d, meta in runs:
        steps = [s for s in meta.get("steps") or [] if isinstance(s, dict)]
        n_ok = sum(s.get("status") == "ok" for s in steps)
        failed = [str(s.get("name", "?")) for s in steps if s.get("status") == "failed"]
        n_skipped = sum(s.get("status") == "skipped" for s in steps)
        status = str(meta.get("status", "?"))
        seconds = meta["seconds"] if _number(meta.get("seconds")) is not None else sum(  # wall clock once finished
            _number(s.get("seconds")) or 0.0 for s in steps)
        link = _link(f"{name}/index.html", name) if (d / "index.html").is_file() else e(name)
        rows.append(
            f"<tr><td>{link}</td><td>{e(str(meta.get('profile', '')))}</td><td>{e(str(meta.get('domain', 'sim')))}</td>"
            f"<td>{e(str(meta.get('started', '')))}</td>"
            f"<td class=\"{status if status in _STATUSES else 'unknown'}\">{e(status)}</td>"
            f"<td class=\"num\">{e(_fmt_seconds(seconds))}</td>"
            f"<td class=\"num\">{n_ok}/{max(len(steps), len(meta.get('notebooks') or []))}</td>"
            f"<td>{len(failed)}{': ' + e(', '.join(failed)) if failed else ''}</td>"
            f"<td class=\"num\">{n_skipped}</td></tr>"
        )
    body = ["<h1>semlab reports</h1>"]
    if runs:
        body.append("<table>" + "\n".join(rows) + "</table>")
    else:
        body.append("<p>No runs yet. Run <code>make report</code> or <code>semlab run</code>.</p>")
    return write_text_atomic(out_root / "index.html", _page("semlab reports", "\n".join(body)))
