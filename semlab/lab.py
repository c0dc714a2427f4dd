"""`make lab` / `semlab lab`: JupyterLab on the project's notebooks, safely.

The project's kernel is registered inside the virtual environment (`--sys-prefix`, so
nothing is written to the user's home), the server listens on 127.0.0.1 only, and token
authentication stays on (Jupyter prints the URL with its token). The notebooks run top
to bottom interactively exactly as `semlab run` executes them in batch: same kernel,
same package, their `parameters` cell holding the defaults (`RUN_DIR = ""` writes no
report files).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from semlab.paths import project_root

KERNEL_NAME = "semlab"


def register_kernel(prefix: str | None = None) -> Path:
    """Install the `semlab` kernelspec (this Python) into the environment's prefix."""
    from jupyter_client.kernelspec import KernelSpecManager
    from ipykernel.kernelspec import install

    path = install(kernel_name=KERNEL_NAME, display_name="Python (semlab)", prefix=prefix or sys.prefix)
    KernelSpecManager().get_kernel_spec(KERNEL_NAME)  # raises if it did not land
    return Path(path)


def lab_command(port: int | None = None, token: str | None = None, open_browser: bool = False,
                root: str | os.PathLike | None = None) -> list[str]:
    """The `jupyter lab` command line: localhost only, token authentication on."""
    cmd = [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.root_dir={Path(root) if root else project_root()}",
           f"--ServerApp.open_browser={open_browser}"]
    if port:
        cmd.append(f"--ServerApp.port={int(port)}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI run as root
        cmd.append("--allow-root")
    if token is not None:
        if not token:
            raise ValueError("an empty token would switch authentication off; semlab does not allow that")
        cmd.append(f"--IdentityProvider.token={token}")
    return cmd


def main(port: int | None = None, open_browser: bool = False) -> int:
    register_kernel()
    print(f"kernel {KERNEL_NAME!r} registered in {sys.prefix}; starting JupyterLab on 127.0.0.1 "
          "(open the URL with the token printed below)", flush=True)
    return subprocess.call(lab_command(port, None, open_browser))
