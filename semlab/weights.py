"""Pretrained weights: where to find them, whether they are the official files, and how
they are loaded (design.md sections 5 and 9).

`resolve(name)` looks, in order, at:

1. an explicit `path` (a file, or a folder holding the official file name); it must exist;
2. the folder `$SEMLAB_WEIGHTS`;
3. `data/weights/` (`semlab.paths.weights_dir()`, which follows `$SEMLAB_DATA`), but only
   inside a semlab project (`semlab.paths.is_semlab_project()`): a downloaded folder that
   holds `data/weights/<official name>` is never searched just because it is the
   current directory;
4. for files the library itself fetches through torch.hub (pytorch-fid, torchvision
   backbones of lpips): `torch.hub.get_dir()/checkpoints/` (`$TORCH_HOME/hub/checkpoints`);
5. unless `$SEMLAB_OFFLINE=1`, a download from the official URL (through
   `torch.hub.download_url_to_file`) into `data/weights/` (or `$SEMLAB_WEIGHTS`, or the
   torch hub cache outside a project), written under a temporary name, checked against
   the official hash, then renamed: never a partial or foreign file.

If all of that fails it raises `WeightsNotFound`, naming the file, its approximate size,
the official URL and the folder to put it in.

Weight files may come from anyone, so semlab never lets a library unpickle them:
`load_checked(name)` / `load_state_dict(name)` read them with
``torch.load(..., weights_only=True)`` (no code runs, whatever the file holds) after
checking that

* the file looks like a torch checkpoint (a zip archive holding ``data.pkl``, or a
  pickle): a truncated download or an HTML error page is refused with its reason;
* its sha256 is the official one (`WeightSpec.sha256`, else the 8 hex digits that
  torch.hub file names carry, `WeightSpec.hash_prefix`). A file with another hash raises
  `UnverifiedWeights` unless `$SEMLAB_ALLOW_UNVERIFIED_WEIGHTS=1`; then it is loaded and
  every metric computed from it is labelled "(unverified weights)". SAM2 files have no
  published hash here: not verifiable, accepted as they are.

Errors about a file that exists are `InvalidWeights` ("<file> is not a valid <kind>
checkpoint (<reason>)" or "<file> is not the official <name> (sha256 ...)").
`status(name)` answers the same questions for report tables (never downloads, never
unpickles): (True, path) or (False, reason); tables write "unavailable: " + reason.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semlab.paths import project_root, project_weights_dir

__all__ = ["WeightSpec", "KNOWN", "WeightsNotFound", "InvalidWeights", "UnverifiedWeights",
           "LoadedWeights", "ALLOW_UNVERIFIED_ENV", "UNVERIFIED_LABEL", "resolve", "status",
           "candidates", "offline", "allow_unverified", "weights_sha256", "verify", "check",
           "load_checked", "load_state_dict", "apply_state_dict", "invalid"]

ALLOW_UNVERIFIED_ENV = "SEMLAB_ALLOW_UNVERIFIED_WEIGHTS"
UNVERIFIED_LABEL = " (unverified weights)"  # appended to a metric's name computed from such a file


@dataclass(frozen=True)
class WeightSpec:
    name: str  # registry key, e.g. "sam2.1_hiera_tiny"
    filename: str  # official file name, e.g. "sam2.1_hiera_tiny.pt"
    size_mb: float  # approximate size, for messages
    url: str  # official download address
    kind: str  # "sam2", "fid", "lpips-backbone" or "detector-backbone"
    torch_hub: bool = False  # the library itself looks in torch.hub.get_dir()/checkpoints
    sha256: str | None = None  # the official file's full sha256, where published

    @property
    def hash_prefix(self) -> str | None:
        """The hex digits a torch.hub file name carries before its suffix
        ("alexnet-owt-7be5be79.pth" -> "7be5be79"): the start of the file's sha256
        (torch.hub's `check_hash` convention). None for other names."""
        m = re.search(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$", self.filename) if self.torch_hub else None
        return m.group(1) if m else None

    @property
    def verifiable(self) -> bool:
        return bool(self.sha256 or self.hash_prefix)

    @property
    def label(self) -> str:
        """What the file is, for messages: "pytorch-fid Inception", "torchvision alexnet",
        "SAM2" (as semlab's SAM2 loader words it)..."""
        if self.kind == "fid":
            return "pytorch-fid Inception"
        if self.kind == "sam2":
            return "SAM2"
        return f"torchvision {self.name}"


_SAM2_SIZES_MB = {"tiny": 149, "small": 176, "base_plus": 309, "large": 856}
_SAM2_RELEASES = {"sam2": "072824", "sam2.1": "092824"}
# Full sha256 of the official files (each starts with the digits in its file name, as
# torch.hub names do; pytorch-fid's file is 95,628,359 bytes). SAM2 releases publish
# none: recorded as None, "not verifiable".
_SHA256 = {
    "pt_inception": "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    "alexnet": "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
    "vgg16": "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
    "squeezenet1_1": "b8a52dc049b60e4b6ab68ad0df457362afab8b6304b2febdc1650a5dab4d7e7b",
    "resnet18": "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
}


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
        f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{fid}", "fid",
        torch_hub=True, sha256=_SHA256["pt_inception"])
    for name, fn, mb in (("alexnet", "alexnet-owt-7be5be79.pth", 233),
                         ("vgg16", "vgg16-397923af.pth", 528),
                         ("squeezenet1_1", "squeezenet1_1-b8a52dc0.pth", 4.7)):
        known[name] = WeightSpec(name, fn, mb, f"https://download.pytorch.org/models/{fn}",
                                 "lpips-backbone", torch_hub=True, sha256=_SHA256[name])
    known["resnet18"] = WeightSpec("resnet18", "resnet18-f37072fd.pth", 44.7,
                                   "https://download.pytorch.org/models/resnet18-f37072fd.pth",
                                   "detector-backbone", torch_hub=True, sha256=_SHA256["resnet18"])
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


class InvalidWeights(ValueError):
    """A weights file exists but cannot be used: not a readable checkpoint of the right
    kind ("<file> is not a valid <kind> checkpoint (<reason>)"), or (`UnverifiedWeights`)
    not the official file."""

    def __init__(self, message: str, spec: WeightSpec | None = None, path: str | None = None,
                 reason: str = ""):
        super().__init__(message)
        self.spec = spec
        self.path = path
        self.reason = reason

    def __reduce__(self):  # keeps the extra fields across process boundaries
        return type(self), (self.args[0] if self.args else "", self.spec, self.path, self.reason)


class UnverifiedWeights(InvalidWeights):
    """The file's sha256 is not the official one and `$SEMLAB_ALLOW_UNVERIFIED_WEIGHTS`
    is not set."""


@dataclass(frozen=True)
class LoadedWeights:
    """A checkpoint read by `load_checked`: its contents (a dict of tensors, or SAM2's
    {"model": state_dict}), the file, its sha256 and whether that is the official hash
    (None: no official hash recorded)."""
    state_dict: dict
    path: Path
    sha256: str
    verified: bool | None
    spec: WeightSpec

    @property
    def label_suffix(self) -> str:
        """" (unverified weights)" for a file that is not the official one, else ""."""
        return UNVERIFIED_LABEL if self.verified is False else ""


def _spec(name: str) -> WeightSpec:
    try:
        return KNOWN[name]
    except KeyError:
        raise KeyError(f"unknown weights {name!r}; valid names: {', '.join(KNOWN)}") from None


def _truthy(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")


def offline() -> bool:
    """True if `$SEMLAB_OFFLINE` forbids downloads ("1", "true", "yes", "on")."""
    return _truthy("SEMLAB_OFFLINE")


def allow_unverified() -> bool:
    """True if `$SEMLAB_ALLOW_UNVERIFIED_WEIGHTS` lets files with a non-official hash be
    used (their metrics are then labelled "(unverified weights)")."""
    return _truthy(ALLOW_UNVERIFIED_ENV)


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
    (label, folder); the folder is None when its environment variable is unset, and
    data/weights is None outside a semlab project."""
    spec = _spec(name)
    env = os.environ.get("SEMLAB_WEIGHTS")
    out: list[tuple[str, Path | None]] = [("$SEMLAB_WEIGHTS", Path(env) if env else None),
                                          ("data/weights", project_weights_dir())]
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
            searched.append(f"{label} ({'unset' if label.startswith('$') else 'not in a semlab project'})")
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


def _put_it_in() -> str:
    folder = project_weights_dir()
    if folder is not None:
        return f"{folder.resolve()}/"
    return "the folder named by $SEMLAB_WEIGHTS (data/weights/ is searched only inside a semlab project)"


def _advice(spec: WeightSpec) -> str:
    return f"download it from {spec.url} and put it in {_put_it_in()}"


def _not_found(spec: WeightSpec, searched: list[str], reason: str) -> WeightsNotFound:
    msg = (f"{spec.filename} (~{spec.size_mb:g} MB) not found in {', '.join(searched)}"
           f"{'; ' + reason if reason else ''}; {_advice(spec)}")
    return WeightsNotFound(msg, spec, tuple(searched), reason)


# --------------------------------------------------------------------------- checking


_HASHES: dict[tuple, str] = {}


def weights_sha256(path) -> str:
    """sha256 of a weights file, remembered per (path, size, mtime) in this process."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def invalid(name: str | WeightSpec, path, reason: str) -> InvalidWeights:
    """The error for a file that is not a usable checkpoint of weights `name`."""
    spec = name if isinstance(name, WeightSpec) else _spec(name)
    return InvalidWeights(f"{path} is not a valid {spec.label} checkpoint ({reason})", spec, str(path), reason)


def _format_problem(path: Path) -> str | None:
    """Why `path` cannot be a torch checkpoint, judged from its bytes without
    unpickling anything (None if it may be one): torch.save writes a zip archive holding
    a ``data.pkl``; the legacy format and plain pickles start with the pickle opcode 0x80,
    torch's oldest format is a tar archive."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if size == 0:
        return "empty file"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            return f"truncated or damaged zip archive, {size} bytes: {exc}"
        if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "a zip archive without data.pkl, not written by torch.save"
        return None
    if head[:1] == b"\x80" or head[257:262] == b"ustar":  # a pickle; torch's oldest (tar) format
        return None
    return f"neither a zip archive nor a pickle; it starts with {head[:8]!r}"


def verify(name: str, path) -> tuple[bool, str, str]:
    """(ok, sha256, reason): is `path` the official file of weights `name`? Checks the
    full sha256 where `KNOWN[name].sha256` records it, else the hash prefix of the file
    name. A name without any official hash gives (True, sha256, "not verifiable: ...");
    a mismatch gives (False, sha256, "<file> is not the official <name> (sha256 ...)")."""
    spec = _spec(name)
    digest = weights_sha256(path)
    expected = spec.sha256 or spec.hash_prefix
    if not expected:
        return True, digest, f"not verifiable: no published sha256 for {spec.filename}"
    if digest.startswith(expected):
        return True, digest, ""
    return False, digest, (f"{path} is not the official {spec.name} (sha256 {digest[:12]}..., "
                           f"official {expected[:12]}...; {ALLOW_UNVERIFIED_ENV}=1 uses it, labelled "
                           f"'unverified weights')")


def check(name: str, path) -> tuple[bool | None, str]:
    """(verified, sha256) of a file about to be used as weights `name`: verified is True
    for the official file, None when no official hash is recorded, False for another
    file when `$SEMLAB_ALLOW_UNVERIFIED_WEIGHTS=1`. Raises `InvalidWeights` if a
    non-official file cannot be a torch checkpoint (empty, truncated, a text page) and
    `UnverifiedWeights` for any other non-official file (unless allowed). Reads the
    bytes only; nothing is unpickled."""
    spec = _spec(name)
    p = Path(path)
    if not p.is_file():
        raise invalid(spec, p, "not a file")
    ok, digest, reason = verify(name, p)
    if ok and spec.verifiable:  # the official bytes: nothing more to ask
        return True, digest
    problem = _format_problem(p)
    if problem:
        raise invalid(spec, p, problem)
    if ok:
        return None, digest
    if not allow_unverified():
        raise UnverifiedWeights(reason, spec, str(p), "not the official file")
    return False, digest


# a key every valid checkpoint of each kind holds
_REQUIRED_KEY = {"fid": "Conv2d_1a_3x3.conv.weight", "lpips-backbone": "features.0.weight",
                 "detector-backbone": "conv1.weight", "sam2": "model"}


def _unpickling_reason(exc: BaseException) -> str:
    text = str(exc)
    detail = next((ln.strip() for ln in text.splitlines() if "Unsupported global" in ln), "")
    if not detail:
        detail = text.strip().splitlines()[0][:160] if text.strip() else type(exc).__name__
    return f"it holds Python objects that semlab never unpickles ({detail})"


def load_checked(name: str, path: str | os.PathLike | None = None, *, download: bool = False,
                 progress: bool = True) -> LoadedWeights:
    """Resolve weights `name` (as `resolve`), `check` the file and read it with
    ``torch.load(map_location="cpu", weights_only=True)``. Raises `WeightsNotFound`,
    `UnverifiedWeights`, or `InvalidWeights` for a file that is unreadable, truncated, a
    pickle that needs arbitrary Python objects, not a dict, or missing the keys of its
    kind; the error names the file."""
    import torch

    spec = _spec(name)
    file = resolve(name, path, download=download, progress=progress)
    verified, digest = check(name, file)
    try:
        obj: Any = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise invalid(spec, file, _unpickling_reason(exc)) from None
    except Exception as exc:  # truncated data, damaged records, a foreign format
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise invalid(spec, file, f"unreadable: {type(exc).__name__}: {first}") from None
    if not isinstance(obj, dict):
        raise invalid(spec, file, f"it holds a {type(obj).__name__}, not a dict of tensors")
    if spec.kind != "sam2" and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    key = _REQUIRED_KEY.get(spec.kind)
    if key and key not in obj:
        shown = ", ".join(map(str, list(obj)[:5])) or "none"
        raise invalid(spec, file, f"missing key {key!r}; its keys: {shown}{', ...' if len(obj) > 5 else ''}")
    if spec.kind != "sam2":
        bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise invalid(spec, file, f"entry {bad[0]!r} is a {type(obj[bad[0]]).__name__}, not a tensor")
    return LoadedWeights(obj, Path(file), digest, verified, spec)


def load_state_dict(name: str, path: str | os.PathLike | None = None, *, download: bool = False) -> dict:
    """The checked contents of weights `name` (see `load_checked`)."""
    return load_checked(name, path, download=download).state_dict


def apply_state_dict(module, state_dict: dict, name: str, path) -> None:
    """``module.load_state_dict(state_dict)`` with every key required; missing or
    unexpected keys and shape mismatches raise `InvalidWeights` naming the file."""
    try:
        res = module.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:  # size mismatches
        lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
        raise invalid(name, path, "; ".join(lines[:3])[:400] or str(exc)[:400]) from None
    parts = []
    for what, keys in (("missing keys", res.missing_keys), ("unexpected keys", res.unexpected_keys)):
        if keys:
            parts.append(f"{what}: {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''} ({len(keys)})")
    if parts:
        raise invalid(name, path, "; ".join(parts))


# --------------------------------------------------------------------------- finding


def _download(url: str, dst: str, progress: bool = True) -> None:
    """The downloader (a module attribute so tests can replace it)."""
    import torch.hub

    torch.hub.download_url_to_file(url, dst, progress=progress)


def _download_dir(spec: WeightSpec) -> Path | None:
    """Where a download goes: data/weights/ in a project, else $SEMLAB_WEIGHTS, else the
    torch hub cache for the files the libraries fetch there."""
    folder = project_weights_dir()
    if folder is None and os.environ.get("SEMLAB_WEIGHTS"):
        folder = Path(os.environ["SEMLAB_WEIGHTS"])
    if folder is None and spec.torch_hub:
        folder = _torch_hub_checkpoints()
    return folder


def resolve(name: str, path: str | os.PathLike | None = None, *, download: bool = True,
            progress: bool = True) -> Path:
    """The local file holding weights `name` (a key of `KNOWN`), searching as the module
    docstring says; downloads only if `download` and not `$SEMLAB_OFFLINE=1`. Finds
    files only: `load_checked` verifies and reads them.

    Raises `KeyError` for an unknown name and `WeightsNotFound` if the file is nowhere
    (a failed download raises the same error, with the network error as its cause; so
    does a downloaded file that is not the official one, unless unverified files are
    allowed).
    """
    spec = _spec(name)
    found, searched = _find(spec, path)
    if found is not None:
        return found
    if not download:
        raise _not_found(spec, searched, "")
    if offline():
        raise _not_found(spec, searched, "downloads are disabled ($SEMLAB_OFFLINE=1)")
    folder = _download_dir(spec)
    if folder is None:
        raise _not_found(spec, searched, "no folder to download into (outside a semlab project, "
                                         "set $SEMLAB_WEIGHTS)")
    dst = folder / spec.filename
    tmp = dst.with_name(f".{spec.filename}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        _download(spec.url, str(tmp), progress=progress)
        ok, _, reason = verify(name, tmp)
        if not ok and not allow_unverified():
            raise UnverifiedWeights(reason.replace(str(tmp), f"the file downloaded from {spec.url}"),
                                    spec, str(tmp), "not the official file")
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
    """(True, path) or (False, reason) for report tables, e.g.
    (False, "sam2.1_hiera_tiny.pt not found (put it in data/weights/)") or (False,
    "<file> is not the official pt_inception (sha256 ...)"); tables write
    "unavailable: " + reason. Checks the file's format and hash (`check`); never
    downloads and never unpickles."""
    spec = _spec(name)
    try:
        found, _ = _find(spec, path)
    except WeightsNotFound:
        return False, f"{spec.filename} not found at {path}"
    if found is None:
        folder = project_weights_dir()
        where = _show(folder) if folder is not None else _put_it_in()
        return False, f"{spec.filename} not found (put it in {where})"
    try:
        check(name, found)
    except InvalidWeights as exc:
        return False, str(exc)
    return True, str(found)
