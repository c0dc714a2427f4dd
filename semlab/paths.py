"""Where semlab's folders are: project root, data/, reports/, data/weights/.

The root is `$SEMLAB_ROOT` if set, else the nearest folder above the current
directory that holds a `pyproject.toml` naming semlab, else the current directory.

`is_semlab_project()` says whether that root is a real semlab project (or one named by
`$SEMLAB_ROOT` / `$SEMLAB_DATA`) rather than the fallback to the current directory.
Weight files are looked up in `data/weights/` only then (`project_weights_dir()`): a
downloaded folder that merely holds `data/weights/<official name>` must never supply
the weights that `semlab evaluate` loads when run from inside it.
"""

from __future__ import annotations

import os
from pathlib import Path


def _names_semlab(pyproject: Path) -> bool:
    """True if `pyproject` is a pyproject.toml whose [project] name is semlab."""
    try:
        text = pyproject.read_text(errors="ignore")
    except OSError:
        return False
    try:
        import tomllib

        return tomllib.loads(text).get("project", {}).get("name") == "semlab"
    except (ValueError, AttributeError):  # not TOML (or an odd layout): the plain-text rule
        return 'name = "semlab"' in text


def find_project_root() -> Path | None:
    """`$SEMLAB_ROOT` if set, else the nearest folder at or above the current directory
    whose `pyproject.toml` names semlab, else None."""
    env = os.environ.get("SEMLAB_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        pp = folder / "pyproject.toml"
        if pp.is_file() and _names_semlab(pp):
            return folder
    return None


def project_root() -> Path:
    """The project root (see the module docstring); the current directory outside a project."""
    return find_project_root() or Path.cwd().resolve()


def is_semlab_project() -> bool:
    """True if `$SEMLAB_ROOT` or `$SEMLAB_DATA` is set or a semlab pyproject.toml lies at
    or above the current directory; False when `project_root()` is only the fallback."""
    if os.environ.get("SEMLAB_ROOT") or os.environ.get("SEMLAB_DATA"):
        return True
    return find_project_root() is not None


def data_dir() -> Path:
    return Path(os.environ.get("SEMLAB_DATA", project_root() / "data"))


def reports_dir() -> Path:
    return Path(os.environ.get("SEMLAB_REPORTS", project_root() / "reports"))


def weights_dir() -> Path:
    return data_dir() / "weights"


def project_weights_dir() -> Path | None:
    """`weights_dir()` inside a semlab project (`is_semlab_project()`), else None: the
    only form of data/weights/ that weight lookups may use."""
    return weights_dir() if is_semlab_project() else None


def shared_real_dir() -> Path | None:
    """The real SEM images beside the project (`../shared/data/real_sem`), if present."""
    env = os.environ.get("SEMLAB_REAL_SEM")
    candidates = [Path(env)] if env else []
    candidates.append(project_root().parent / "shared" / "data" / "real_sem")
    for c in candidates:
        if c.is_dir():
            return c
    return None
