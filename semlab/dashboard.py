"""The HTML dashboard of a run (``reports/<run-id>/index.html``) and of all runs
(``reports/index.html``), from ``run.json``: one card per step (question, status and
duration, main figure, headline numbers with CIs and the data line naming domain, set
and n), a "Real SEM" section listing the steps that ran on real frames, every metric in a
collapsed table, then the failures with their tracebacks. `semlab.reports` runs the
notebooks and calls `write_run_index` / `write_reports_index` after every step.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from semlab.io import write_text_atomic
from semlab.paths import reports_dir

__all__ = ["flatten_metrics", "step_summary", "render_run_index", "write_run_index", "write_reports_index"]


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


def _real_section(steps: list[dict[str, Any]], run_dir: Path | None) -> str:
    """"Real SEM": the steps that ran on real frames, each with its data line and first
    headline numbers, linking to its card; says so when the run had no real domain."""
    e = html.escape
    real = [s for s in steps if (s.get("domain") == "real" or str(s.get("name", "")).endswith("[real]"))
            and not s.get("unsupported")]
    if not real:
        return ("<p>No step of this run ran on real SEM frames. <code>make report</code> and "
                "<code>semlab run --domain both</code> (or <code>real</code>) add them.</p>")
    rows = []
    for s in real:
        name = str(s.get("name", "?"))
        summary = s if "headline" in s else step_summary(s.get("metrics"), run_dir / name if run_dir and _STEP_DIR_RE.fullmatch(name) else None)
        heads = [f"{e(str(h.get('key', '')))}: {e(_fmt_estimate(h))}" for h in (summary.get("headline") or [])[:3]
                 if isinstance(h, dict)]
        rows.append(f'<tr><td><a href="#step-{e(name, quote=True)}">{e(name)}</a></td><td>{e(_status(s))}</td>'
                    f"<td>{e(_data_line(summary.get('data')))}</td><td>{'<br>'.join(heads) or '-'}</td></tr>")
    return ("<p>Measured on real SEM frames (the CD-SEM frames packaged with semlab unless <code>REAL_DIR</code> "
            "named a folder); every other card is simulated or domain-free. A CI over the tiles of one or two "
            "frames describes those frames only.</p>\n<table><tr><th>step</th><th>status</th><th>data</th>"
            "<th>headline</th></tr>\n" + "\n".join(rows) + "</table>")


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
    parts.append("<h2>Real SEM</h2>")
    parts.append(_real_section(steps, run_dir))
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
