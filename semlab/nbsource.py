"""The notebooks' sources: jupytext percent files `notebooks/NN_verb_object.py`.

The `.py` file is the only notebook file in git. `semlab run` reads it in memory
(`read_notebook`) and executes the notebook node with papermill into the run folder; it
never writes into `notebooks/`. `make lab` creates the missing `.ipynb` twins
(`make_twins`, git-ignored) and jupytext's pairing (`jupytext.toml`) keeps both in step
while a user edits in JupyterLab.

A notebook's header holds `semlab: {depends_on: [...], domains: [...]}` in its metadata:
`depends_on` lists the notebooks whose outputs it cannot run without; `domains` the
domains it runs in (`sim`, `real`), once per domain, with the parameter `DOMAIN` set.
Its `parameters` cell (tag `parameters`) holds literal assignments only; their values
are the defaults against which `check_parameters` types the values a user passes.
"""

from __future__ import annotations

import ast
import fnmatch
import os
import re
from pathlib import Path
from typing import Any, Iterable

from semlab.paths import project_root

__all__ = ["NOTEBOOK_RE", "notebooks_dir", "list_notebooks", "read_notebook", "parameter_defaults",
           "notebook_meta", "check_parameters", "make_twins", "code_cells"]

NOTEBOOK_RE = re.compile(r"^\d\d_[A-Za-z0-9_\-]+\.py$")


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def list_notebooks(folder: str | os.PathLike | None = None, only: str | Iterable[str] | None = None,
                   start: str | None = None) -> list[Path]:
    """The `NN_verb_object.py` notebooks of a folder, in name order.

    `only` (a name or a list of names) keeps the notebooks whose stem equals a name,
    starts with it (`"00"`, `"00_explore"`) or matches it as a glob pattern; `start`
    (`--from`) keeps that notebook and the ones after it. A name that matches nothing
    raises ValueError listing the notebooks."""
    folder = Path(folder) if folder is not None else notebooks_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"notebooks folder not found: {folder}")
    books = sorted(p for p in folder.iterdir() if p.is_file() and NOTEBOOK_RE.match(p.name))
    names = ", ".join(p.stem for p in books) or "(none)"
    if start is not None:
        first = [p for p in books if p.stem == start or p.stem.startswith(str(start))]
        if not first:
            raise ValueError(f"no notebook matches --from {start!r}; available: {names}")
        books = [p for p in books if p.stem >= first[0].stem]
    if only is None:
        return books
    keep: list[Path] = []
    for w in ([only] if isinstance(only, str) else list(only)):
        stem = re.sub(r"\.(py|ipynb)$", "", str(w))
        hits = [p for p in books if p.stem == stem or p.stem.startswith(stem) or fnmatch.fnmatchcase(p.stem, stem)]
        if not hits:
            raise ValueError(f"no notebook matches {w!r}; available: {names}")
        keep.extend(h for h in hits if h not in keep)
    return sorted(keep)


def read_notebook(path: str | os.PathLike):
    """The notebook node of a jupytext percent file (or an `.ipynb`), with the project's
    `python3` kernel; a clear error naming the file if it cannot be read."""
    import jupytext

    path = Path(path)
    try:
        nb = jupytext.read(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure becomes one message
        raise ValueError(f"{path}: not a readable notebook ({type(exc).__name__}: {exc})") from None
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.pop("jupytext", None)
    return nb


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _parameters_cell(nb, name: str = ""):
    for c in code_cells(nb):
        if "parameters" in c.metadata.get("tags", []):
            return c
    raise ValueError(f"{name or 'notebook'}: no code cell tagged 'parameters'")


def parameter_defaults(nb, name: str = "") -> dict[str, Any]:
    """{NAME: default} of the `parameters` cell, which must hold literal assignments only."""
    src = _parameters_cell(nb, name).source
    try:
        tree = ast.parse(src)
    except SyntaxError as exc:
        raise ValueError(f"{name}: the parameters cell is not valid Python ({exc})") from None
    out: dict[str, Any] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"{name}: the parameters cell may hold only `NAME = literal` lines "
                             f"(line {node.lineno})")
        try:
            out[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            raise ValueError(f"{name}: parameter {node.targets[0].id} is not a literal (line {node.lineno})") from None
    return out


def notebook_meta(nb) -> dict[str, Any]:
    """{"depends_on": [...], "domains": [...], "question": str} from the notebook
    metadata (`semlab`); `question` is the one-line question the notebook answers, which
    the report dashboard shows ("" when the notebook names none)."""
    meta = nb.metadata.get("semlab", {}) or {}
    return {"depends_on": [str(d) for d in meta.get("depends_on", [])],
            "domains": [str(d) for d in meta.get("domains", [])],
            "question": str(meta.get("question", "") or "")}


def _type_ok(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def check_parameters(name: str, defaults: dict[str, Any], given: dict[str, Any]) -> None:
    """Refuse names the notebook does not have and values whose type differs from the
    default's (int for float is fine; None default takes anything), naming the notebook."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{name} has no parameter(s) {unknown}; its parameters: {', '.join(sorted(defaults))}")
    for k, v in given.items():
        if not _type_ok(defaults[k], v):
            raise ValueError(f"{name}: parameter {k} must be {type(defaults[k]).__name__} like its default "
                             f"{defaults[k]!r}, got {v!r} ({type(v).__name__})")


def make_twins(folder: str | os.PathLike | None = None) -> list[Path]:
    """Create the missing `.ipynb` twin of each `.py` notebook (for JupyterLab); an
    existing twin is left alone (jupytext's pairing reconciles it when opened)."""
    import jupytext

    made = []
    for py in list_notebooks(folder):
        twin = py.with_suffix(".ipynb")
        if not twin.exists():
            nb = jupytext.read(py)
            jupytext.write(nb, twin)
            made.append(twin)
    return made
