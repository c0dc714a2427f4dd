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
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from semlab.dashboard import (flatten_metrics, render_run_index, step_summary, write_reports_index,  # re-exported
                              write_run_index)
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
    """A kernel manager on IPC (unix sockets): no TCP ports on localhost, and no "Kernel is
    running over TCP without encryption" line per notebook. Each kernel gets its sockets in
    a fresh private temp folder: jupyter_client's default (`kernel-ipc-N` in the working
    directory, N picked by looking for free names) lets two runs in one folder take the same
    sockets ("Invalid Signature") and leaves socket files in the notebooks folder."""
    import shutil
    import tempfile
    import weakref

    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            folder = tempfile.mkdtemp(prefix="semlab-kernel-")
            weakref.finalize(self, shutil.rmtree, folder, True)  # removed with the manager
            self.transport = "ipc"
            self.ip = str(Path(folder) / "ipc")

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
