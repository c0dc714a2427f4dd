"""Where semlab's folders are: project root, data/, reports/, data/weights/.

The root is `$SEMLAB_ROOT` if set, else the nearest folder above the current
directory that holds a `pyproject.toml` naming semlab, else the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    env = os.environ.get("SEMLAB_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        pp = folder / "pyproject.toml"
        if pp.is_file() and 'name = "semlab"' in pp.read_text(errors="ignore"):
            return folder
    return here


def data_dir() -> Path:
    return Path(os.environ.get("SEMLAB_DATA", project_root() / "data"))


def reports_dir() -> Path:
    return Path(os.environ.get("SEMLAB_REPORTS", project_root() / "reports"))


def weights_dir() -> Path:
    return data_dir() / "weights"


def shared_real_dir() -> Path | None:
    """The real SEM images beside the project (`../shared/data/real_sem`), if present."""
    env = os.environ.get("SEMLAB_REAL_SEM")
    candidates = [Path(env)] if env else []
    candidates.append(project_root().parent / "shared" / "data" / "real_sem")
    for c in candidates:
        if c.is_dir():
            return c
    return None
