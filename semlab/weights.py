"""Pretrained weights: where to find them, and a clear error when they are missing
(design.md section 5).

`resolve(name)` looks, in order, at:

1. an explicit `path` (a file, or a folder holding the official file name); it must exist;
2. the folder `$SEMLAB_WEIGHTS`;
3. `data/weights/` (`semlab.paths.weights_dir()`, which follows `$SEMLAB_DATA`);
4. for files the library itself fetches through torch.hub (pytorch-fid, torchvision
   backbones of lpips): `torch.hub.get_dir()/checkpoints/` (`$TORCH_HOME/hub/checkpoints`);
5. unless `$SEMLAB_OFFLINE=1`, a download from the official URL into `data/weights/`
   (written under a temporary name, then renamed: never a partial file).

If all of that fails it raises `WeightsNotFound`, naming the file, its approximate size,
the official URL and the folder to put it in. `status(name)` answers the same question
for report tables without ever downloading.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from semlab.paths import project_root, weights_dir

__all__ = ["WeightSpec", "KNOWN", "WeightsNotFound", "resolve", "status", "candidates", "offline"]


@dataclass(frozen=True)
class WeightSpec:
    name: str  # registry key, e.g. "sam2.1_hiera_tiny"
    filename: str  # official file name, e.g. "sam2.1_hiera_tiny.pt"
    size_mb: float  # approximate size, for messages
    url: str  # official download address
    kind: str  # "sam2", "fid" or "lpips-backbone"
    torch_hub: bool = False  # the library itself looks in torch.hub.get_dir()/checkpoints


_SAM2_SIZES_MB = {"tiny": 149, "small": 176, "base_plus": 309, "large": 856}
_SAM2_RELEASES = {"sam2": "072824", "sam2.1": "092824"}


def _registry() -> dict[str, WeightSpec]:
    known: dict[str, WeightSpec] = {}
    for family, release in _SAM2_RELEASES.items():
        for variant, mb in _SAM2_SIZES_MB.items():
            name = f"{family}_hiera_{variant}"
            fn = f"{name}.pt"
            known[name] = WeightSpec(name, fn, mb,
                                     f"https://dl.fbaipublicfiles.com/segment_anything_2/{release}/{fn}",
                                     "sam2", torch_hub=False)
    fid = "pt_inception-2015-12-05-6726825d.pth"
    known["pt_inception"] = WeightSpec(
        "pt_inception", fid, 91,
        f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{fid}", "fid", torch_hub=True)
    for name, fn, mb in (("alexnet", "alexnet-owt-7be5be79.pth", 233),
                         ("vgg16", "vgg16-397923af.pth", 528),
                         ("squeezenet1_1", "squeezenet1_1-b8a52dc0.pth", 4.7)):
        known[name] = WeightSpec(name, fn, mb, f"https://download.pytorch.org/models/{fn}",
                                 "lpips-backbone", torch_hub=True)
    known["resnet18"] = WeightSpec("resnet18", "resnet18-f37072fd.pth", 44.7,
                                   "https://download.pytorch.org/models/resnet18-f37072fd.pth",
                                   "detector-backbone", torch_hub=True)
    return known


KNOWN: dict[str, WeightSpec] = _registry()


class WeightsNotFound(FileNotFoundError):
    """A weights file is missing (and could not be downloaded). The message names the
    file, its approximate size, the official URL and the folder to put it in."""

    def __init__(self, message: str, spec: WeightSpec | None = None,
                 searched: tuple[str, ...] = (), reason: str = ""):
        super().__init__(message)
        self.spec = spec
        self.searched = searched
        self.reason = reason

    def __str__(self) -> str:  # OSError's own formatting would add "[Errno ...]" noise
        return self.args[0] if self.args else ""


def _spec(name: str) -> WeightSpec:
    try:
        return KNOWN[name]
    except KeyError:
        raise KeyError(f"unknown weights {name!r}; valid names: {', '.join(KNOWN)}") from None


def offline() -> bool:
    """True if `$SEMLAB_OFFLINE` forbids downloads ("1", "true", "yes", "on")."""
    return os.environ.get("SEMLAB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _torch_hub_checkpoints() -> Path:
    try:
        import torch.hub

        return Path(torch.hub.get_dir()) / "checkpoints"
    except ImportError:  # same rule as torch.hub.get_dir(), without torch installed
        home = os.environ.get("TORCH_HOME") or os.path.join(
            os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
        return Path(home) / "hub" / "checkpoints"


def _show(folder: Path) -> str:
    """A folder for messages: relative to the project root when inside it, with a final '/'."""
    folder = Path(folder)
    try:
        shown = str(folder.resolve().relative_to(project_root()))
    except ValueError:
        shown = str(folder)
    return shown.rstrip("/") + "/"


def candidates(name: str) -> list[tuple[str, Path | None]]:
    """The places `resolve` searches (explicit path excepted), in order, as
    (label, folder); the folder is None when its environment variable is unset."""
    spec = _spec(name)
    env = os.environ.get("SEMLAB_WEIGHTS")
    out: list[tuple[str, Path | None]] = [("$SEMLAB_WEIGHTS", Path(env) if env else None),
                                          ("data/weights", weights_dir())]
    if spec.torch_hub:
        out.append(("torch hub cache", _torch_hub_checkpoints()))
    return out


def _find(spec: WeightSpec, path: str | os.PathLike | None) -> tuple[Path | None, list[str]]:
    """(found file or None, descriptions of the places searched)."""
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / spec.filename
        if p.is_file():
            return p, []
        raise WeightsNotFound(
            f"{spec.name}: the explicit weights path {p} does not exist; "
            f"{_advice(spec)}", spec, (str(p),), "explicit path missing")
    searched = []
    for label, folder in candidates(spec.name):
        if folder is None:
            searched.append(f"{label} (unset)")
            continue
        f = folder / spec.filename
        if f.is_file():
            return f, searched
        if label == "data/weights":
            searched.append(_show(folder))
        elif label == "$SEMLAB_WEIGHTS":
            searched.append(f"$SEMLAB_WEIGHTS={_show(folder)}")
        else:
            searched.append(f"{label} {_show(folder)}")
    return None, searched


def _advice(spec: WeightSpec) -> str:
    return f"download it from {spec.url} and put it in {weights_dir().resolve()}/"


def _not_found(spec: WeightSpec, searched: list[str], reason: str) -> WeightsNotFound:
    msg = (f"{spec.filename} (~{spec.size_mb:g} MB) not found in {', '.join(searched)}"
           f"{'; ' + reason if reason else ''}; {_advice(spec)}")
    return WeightsNotFound(msg, spec, tuple(searched), reason)


def _download(url: str, dst: str, progress: bool = True) -> None:
    """The downloader (a module attribute so tests can replace it)."""
    import torch.hub

    torch.hub.download_url_to_file(url, dst, progress=progress)


def resolve(name: str, path: str | os.PathLike | None = None, *, download: bool = True,
            progress: bool = True) -> Path:
    """The local file holding weights `name` (a key of `KNOWN`), searching as the module
    docstring says; downloads only if `download` and not `$SEMLAB_OFFLINE=1`.

    Raises `KeyError` for an unknown name and `WeightsNotFound` if the file is nowhere
    (a failed download raises the same error, with the network error as its cause).
    """
    spec = _spec(name)
    found, searched = _find(spec, path)
    if found is not None:
        return found
    if not download:
        raise _not_found(spec, searched, "")
    if offline():
        raise _not_found(spec, searched, "downloads are disabled ($SEMLAB_OFFLINE=1)")
    dst = weights_dir() / spec.filename
    tmp = dst.with_name(f".{spec.filename}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        _download(spec.url, str(tmp), progress=progress)
        os.replace(tmp, dst)
    except (Exception, KeyboardInterrupt) as exc:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _not_found(spec, searched, f"downloading it failed ({type(exc).__name__}: {exc})") from exc
    return dst


def status(name: str, path: str | os.PathLike | None = None) -> tuple[bool, str]:
    """(found, path) or (False, reason) for report tables, e.g.
    (False, "sam2.1_hiera_tiny.pt not found (put it in data/weights/)"); tables write
    "unavailable: " + reason. Never downloads."""
    spec = _spec(name)
    try:
        found, _ = _find(spec, path)
    except WeightsNotFound:
        return False, f"{spec.filename} not found at {path}"
    if found is not None:
        return True, str(found)
    return False, f"{spec.filename} not found (put it in {_show(weights_dir())})"
