"""`make lab` / `semlab lab`: JupyterLab on the project's notebooks, safely.

The project's kernel is registered inside the virtual environment (`--sys-prefix`, so
nothing is written to the user's home), the server listens on 127.0.0.1 only, and token
authentication stays on: `semlab lab` passes its own random token on the command line
(which outranks every config file) and prints the URL with it, and it refuses to start
while a Jupyter config file it would read sets an empty token (the setting that switches
authentication off). The notebooks run top to bottom interactively exactly as `semlab
run` executes them in batch: same kernel, same package, their `parameters` cell holding
the defaults (`RUN_DIR = ""` writes no report files).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

from semlab.paths import project_root

KERNEL_NAME = "semlab"
HOST = "127.0.0.1"
DEFAULT_PORT = 8888
# The config files `jupyter lab` reads from every Jupyter config folder (the base file,
# the server's and the lab extension's), as .py and .json.
CONFIG_BASENAMES = ("jupyter_config", "jupyter_server_config", "jupyter_lab_config")
# Sections whose `token` is the server's token: the identity providers (the current
# place), the deprecated ServerApp.token and NotebookApp.token (moved by notebook_shim).
TOKEN_SECTIONS = ("IdentityProvider", "PasswordIdentityProvider", "LegacyIdentityProvider",
                  "ServerApp", "NotebookApp")


class LabConfigError(RuntimeError):
    """A Jupyter configuration that would switch authentication off."""


def register_kernel(prefix: str | None = None) -> Path:
    """Install the `semlab` kernelspec (this Python) into the environment's prefix."""
    from jupyter_client.kernelspec import KernelSpecManager
    from ipykernel.kernelspec import install

    path = install(kernel_name=KERNEL_NAME, display_name="Python (semlab)", prefix=prefix or sys.prefix)
    KernelSpecManager().get_kernel_spec(KERNEL_NAME)  # raises if it did not land
    return Path(path)


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def lab_command(port: int | None = None, token: str | None = None, open_browser: bool = False,
                root: str | os.PathLike | None = None) -> list[str]:
    """The `jupyter lab` command line: localhost only, token authentication on. Without
    `token` a random one is made (`new_token`); an empty token raises ValueError. The
    token goes on the command line, so no config file can replace it."""
    if token is None:
        token = new_token()
    if not token or not token.strip():
        raise ValueError("an empty token would switch authentication off; semlab does not allow that")
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.ip={HOST}",
           f"--ServerApp.root_dir={Path(root) if root else project_root()}",
           f"--ServerApp.open_browser={open_browser}", f"--IdentityProvider.token={token}"]
    if port:
        cmd += [f"--ServerApp.port={int(port)}", "--ServerApp.port_retries=0"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI run as root
        cmd.append("--allow-root")
    return cmd


def config_files(dirs: list[str] | None = None) -> list[Path]:
    """The Jupyter config files `jupyter lab` would read (existing ones, every folder of
    `jupyter_core.paths.jupyter_config_path()` or `dirs`)."""
    if dirs is None:
        from jupyter_core.paths import jupyter_config_dir, jupyter_config_path

        dirs = jupyter_config_path()
        if jupyter_config_dir() not in dirs:
            dirs.insert(0, jupyter_config_dir())
    found = []
    for d in dirs:
        for base in CONFIG_BASENAMES:
            for ext in (".py", ".json"):
                p = Path(d) / f"{base}{ext}"
                if p.is_file():
                    found.append(p)
    return found


def _load(path: Path):
    """A config file's settings, read with traitlets' loaders as Jupyter reads them
    (a Python config file is code by design: Jupyter runs it the same way)."""
    from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader

    loader = PyFileConfigLoader if path.suffix == ".py" else JSONFileConfigLoader
    return loader(path.name, path=str(path.parent)).load_config()


def auth_problems(dirs: list[str] | None = None) -> list[str]:
    """Settings in the Jupyter config files that would switch token authentication
    off: an empty `token` in any identity provider, ServerApp or NotebookApp section.
    Each problem names the file and the setting. A file that cannot be loaded is
    skipped, as Jupyter skips it (with a note on stderr)."""
    problems = []
    for path in config_files(dirs):
        try:
            cfg = _load(path)
        except Exception as exc:  # noqa: BLE001 - Jupyter logs and ignores a broken file too
            print(f"note: {path} could not be read ({type(exc).__name__}: {exc}); Jupyter will skip it",
                  file=sys.stderr)
            continue
        for section in TOKEN_SECTIONS:
            if section in cfg and "token" in cfg[section]:
                value = cfg[section]["token"]
                if not isinstance(value, str) or not value.strip():
                    problems.append(f"{path}: {section}.token = {value!r} switches authentication off")
    return problems


def check_config(dirs: list[str] | None = None) -> None:
    """Raise LabConfigError listing every setting that would switch authentication off."""
    problems = auth_problems(dirs)
    if problems:
        raise LabConfigError("refusing to start JupyterLab without authentication:\n  " + "\n  ".join(problems)
                             + "\nremove these settings (semlab sets its own token), or point "
                               "JUPYTER_CONFIG_DIR at another folder")


def free_port(start: int = DEFAULT_PORT, tries: int = 50) -> int:
    """The first port from `start` on that nothing listens on at 127.0.0.1."""
    for port in range(start, start + tries):
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {start}..{start + tries - 1} on {HOST}")


def main(port: int | None = None, open_browser: bool = False) -> int:
    """Check the config, register the kernel, start JupyterLab with a fresh token and
    print its URL. Returns JupyterLab's exit code, or 2 if the config would switch
    authentication off (nothing is started then)."""
    try:
        check_config()
    except LabConfigError as exc:
        print(f"semlab lab: error: {exc}", file=sys.stderr)
        return 2
    register_kernel()
    from semlab.nbsource import make_twins

    made = make_twins()  # the .ipynb twins of notebooks/*.py (git-ignored; jupytext keeps them paired)
    if made:
        print(f"made {len(made)} notebook(s) from their .py sources: {', '.join(p.name for p in made)}")
    port = int(port) if port else free_port()
    token = new_token()
    print(f"kernel {KERNEL_NAME!r} registered in {sys.prefix}; starting JupyterLab on {HOST}:{port}\n"
          f"open: http://{HOST}:{port}/lab?token={token}", flush=True)
    return subprocess.call(lab_command(port, token, open_browser))
