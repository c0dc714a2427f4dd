"""semlab.weights: search order, error messages, offline behaviour, safe downloads."""

import hashlib
import io
import pickle
import zipfile
from dataclasses import replace
from pathlib import Path
from urllib.error import URLError

import pytest

from semlab import weights
from semlab.weights import KNOWN, WeightsNotFound, resolve, status


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    """A private project: data/weights, torch hub cache and $SEMLAB_WEIGHTS under tmp_path."""
    monkeypatch.setenv("SEMLAB_ROOT", str(tmp_path))
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("SEMLAB_WEIGHTS", raising=False)
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    return tmp_path


def _checkpoint_bytes(tag: str = "w") -> bytes:
    """A small file with torch.save's layout (a zip holding <dir>/data.pkl): passes the
    format check that status() makes without unpickling; its hash is never official."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"tag": tag}))
    return buf.getvalue()


def _put(folder: Path, name: str, payload: bytes | str = "w") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / KNOWN[name].filename
    f.write_bytes(_checkpoint_bytes(payload) if isinstance(payload, str) else payload)
    return f


def test_registry_entries():
    for variant, mb in (("tiny", 149), ("small", 176), ("base_plus", 309), ("large", 856)):
        old, new = KNOWN[f"sam2_hiera_{variant}"], KNOWN[f"sam2.1_hiera_{variant}"]
        assert old.filename == f"sam2_hiera_{variant}.pt" and new.filename == f"sam2.1_hiera_{variant}.pt"
        assert old.url.endswith(f"/072824/{old.filename}") and new.url.endswith(f"/092824/{new.filename}")
        assert old.size_mb == new.size_mb == mb and not old.torch_hub and not new.torch_hub
    assert KNOWN["pt_inception"].filename == "pt_inception-2015-12-05-6726825d.pth"
    assert KNOWN["pt_inception"].torch_hub
    for name in ("alexnet", "vgg16", "squeezenet1_1"):
        spec = KNOWN[name]
        assert spec.torch_hub and spec.url == f"https://download.pytorch.org/models/{spec.filename}"
    assert len(KNOWN) == 13
    with pytest.raises(Exception):
        KNOWN["alexnet"].filename = "x"  # frozen


def test_resolution_order(env, monkeypatch):
    name = "alexnet"  # a torch-hub file: all four places apply
    hub = _put(env / "torch" / "hub" / "checkpoints", name, "hub")
    data = _put(env / "data" / "weights", name, "data")
    envdir = _put(env / "mine", name, "env")
    explicit = _put(env / "elsewhere", name, "explicit")
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(env / "mine"))

    assert resolve(name, explicit) == explicit
    assert resolve(name, explicit.parent) == explicit  # a folder holding the official name
    assert resolve(name) == envdir
    envdir.unlink()  # $SEMLAB_WEIGHTS set but without the file: fall through
    assert resolve(name) == data
    monkeypatch.delenv("SEMLAB_WEIGHTS")
    assert resolve(name) == data
    data.unlink()
    assert resolve(name) == hub
    assert status(name) == (True, str(hub))


def test_sam2_is_not_looked_for_in_the_torch_hub_cache(env):
    _put(env / "torch" / "hub" / "checkpoints", "sam2.1_hiera_tiny")
    with pytest.raises(WeightsNotFound):
        resolve("sam2.1_hiera_tiny")
    f = _put(env / "data" / "weights", "sam2.1_hiera_tiny")
    assert resolve("sam2.1_hiera_tiny") == f


def test_explicit_path_must_exist(env):
    _put(env / "data" / "weights", "sam2.1_hiera_tiny")  # not used: the explicit path wins
    with pytest.raises(WeightsNotFound, match="does not exist") as e:
        resolve("sam2.1_hiera_tiny", env / "missing.pt")
    assert "missing.pt" in str(e.value) and KNOWN["sam2.1_hiera_tiny"].url in str(e.value)
    assert status("sam2.1_hiera_tiny", env / "missing.pt")[0] is False


def test_error_message_names_file_size_url_and_folder(env):
    with pytest.raises(WeightsNotFound) as e:
        resolve("sam2.1_hiera_tiny")
    msg = str(e.value)
    assert msg.startswith("sam2.1_hiera_tiny.pt (~149 MB) not found in ")
    assert "$SEMLAB_WEIGHTS (unset)" in msg and "data/weights/" in msg
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt" in msg
    assert f"put it in {(env / 'data' / 'weights').resolve()}/" in msg
    assert "SEMLAB_OFFLINE=1" in msg
    assert isinstance(e.value, FileNotFoundError) and e.value.spec is KNOWN["sam2.1_hiera_tiny"]
    assert str(pickle.loads(pickle.dumps(e.value))) == msg  # crosses process boundaries intact

    with pytest.raises(WeightsNotFound) as e:
        resolve("squeezenet1_1")
    msg = str(e.value)
    assert "squeezenet1_1-b8a52dc0.pth (~4.7 MB)" in msg and "torch hub cache" in msg
    assert "torch hub cache torch/hub/checkpoints/" in msg  # shown relative to the project root


def test_unknown_names_list_the_valid_ones():
    for fn in (resolve, status):
        with pytest.raises(KeyError) as e:
            fn("sam3_hiera_huge")
        assert "sam2.1_hiera_tiny" in str(e.value) and "pt_inception" in str(e.value)


def test_status_never_downloads(env, monkeypatch):
    monkeypatch.delenv("SEMLAB_OFFLINE")

    def forbidden(*a, **k):
        raise AssertionError("status() must not download")

    monkeypatch.setattr(weights, "_download", forbidden)
    assert status("sam2.1_hiera_tiny") == (False, "sam2.1_hiera_tiny.pt not found (put it in data/weights/)")
    assert status("pt_inception")[0] is False
    f = _put(env / "data" / "weights", "sam2.1_hiera_tiny")
    assert status("sam2.1_hiera_tiny") == (True, str(f))


def test_offline_never_calls_the_downloader(monkeypatch):
    monkeypatch.setattr(weights, "_download", lambda *a, **k: pytest.fail("downloaded while offline"))
    with pytest.raises(WeightsNotFound):
        resolve("vgg16")


def test_failed_download_is_weights_not_found_and_leaves_nothing(env, monkeypatch):
    monkeypatch.delenv("SEMLAB_OFFLINE")
    calls = []

    def broken(url, dst, progress=True):
        calls.append((url, dst))
        Path(dst).write_bytes(b"half a file")  # a partial write before the network drops
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(weights, "_download", broken)
    with pytest.raises(WeightsNotFound) as e:
        resolve("sam2.1_hiera_small")
    assert calls and calls[0][0] == KNOWN["sam2.1_hiera_small"].url
    msg = str(e.value)
    assert "sam2.1_hiera_small.pt (~176 MB)" in msg and "Name or service not known" in msg
    assert KNOWN["sam2.1_hiera_small"].url in msg
    assert isinstance(e.value.__cause__, URLError)
    wdir = env / "data" / "weights"
    assert list(wdir.iterdir()) == []  # no partial file, under any name


def test_successful_download_is_atomic(env, monkeypatch):
    monkeypatch.delenv("SEMLAB_OFFLINE")
    seen = []

    def fake(url, dst, progress=True):
        seen.append(Path(dst))
        assert not (env / "data" / "weights" / KNOWN["squeezenet1_1"].filename).exists()
        Path(dst).write_bytes(b"weights")

    monkeypatch.setattr(weights, "_download", fake)
    f = resolve("squeezenet1_1")
    assert f == env / "data" / "weights" / "squeezenet1_1-b8a52dc0.pth" and f.read_bytes() == b"weights"
    assert seen[0] != f and seen[0].parent == f.parent  # written under a temporary name first
    assert sorted(p.name for p in f.parent.iterdir()) == [f.name]
    assert resolve("squeezenet1_1") == f and len(seen) == 1  # found locally the second time


# ---------------------------------------------------------------------------------- hashes


def test_official_hashes_match_the_file_names():
    """Each torch.hub file name carries the first 8 hex digits of its sha256; where the
    full hash is recorded it starts with them. SAM2 has no published hash: not verifiable."""
    for name, prefix in (("pt_inception", "6726825d"), ("alexnet", "7be5be79"), ("vgg16", "397923af"),
                         ("squeezenet1_1", "b8a52dc0"), ("resnet18", "f37072fd")):
        spec = KNOWN[name]
        assert spec.hash_prefix == prefix and spec.verifiable
        assert spec.sha256 is None or (len(spec.sha256) == 64 and spec.sha256.startswith(prefix))
    for name in ("sam2.1_hiera_tiny", "sam2_hiera_large"):
        assert KNOWN[name].sha256 is None and KNOWN[name].hash_prefix is None and not KNOWN[name].verifiable


def test_verify_full_hash_prefix_and_not_verifiable(env, monkeypatch):
    f = _put(env / "w", "alexnet", "some bytes")
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    ok, sha, reason = weights.verify("alexnet", f)
    assert not ok and sha == digest
    assert reason.startswith(f"{f} is not the official alexnet (sha256 {digest[:12]}..., official 7be5be791159...")
    # the full recorded hash decides...
    monkeypatch.setitem(KNOWN, "alexnet", replace(KNOWN["alexnet"], sha256=digest))
    assert weights.verify("alexnet", f) == (True, digest, "")
    monkeypatch.delenv("SEMLAB_ALLOW_UNVERIFIED_WEIGHTS", raising=False)
    assert weights.check("alexnet", f) == (True, digest)  # the official bytes need no allowance
    assert status("alexnet", f) == (True, str(f))
    # ...else the prefix in the file name (torch.hub's convention)
    monkeypatch.setitem(KNOWN, "alexnet", replace(KNOWN["alexnet"], sha256=None,
                                                  filename=f"alexnet-owt-{digest[:8]}.pth"))
    assert weights.verify("alexnet", f)[0] is True
    monkeypatch.setitem(KNOWN, "alexnet", replace(KNOWN["alexnet"], sha256=None,
                                                  filename=f"alexnet-owt-{'0' * 8}.pth"))
    assert weights.verify("alexnet", f)[0] is False
    s = _put(env / "w", "sam2.1_hiera_tiny")
    ok, _, reason = weights.verify("sam2.1_hiera_tiny", s)
    assert ok and reason.startswith("not verifiable")


def test_sha256_is_remembered_per_path_size_and_mtime(env, monkeypatch):
    f = _put(env / "w", "alexnet", "one")
    calls = []
    real_open = open

    def counting_open(p, *a, **k):
        calls.append(str(p))
        return real_open(p, *a, **k)

    monkeypatch.setattr("builtins.open", counting_open)
    first = weights.weights_sha256(f)
    assert weights.weights_sha256(f) == first and len(calls) == 1  # hashed once
    f.write_bytes(_checkpoint_bytes("another, longer tag"))
    assert weights.weights_sha256(f) == hashlib.sha256(f.read_bytes()).hexdigest() != first
    from semlab.metrics import fid

    assert fid.weights_sha256 is weights.weights_sha256  # one implementation


def test_status_refuses_a_foreign_file_unless_allowed(env, monkeypatch):
    monkeypatch.delenv("SEMLAB_ALLOW_UNVERIFIED_WEIGHTS", raising=False)
    f = _put(env / "data" / "weights", "alexnet", "foreign")
    ok, why = status("alexnet")
    assert not ok and why.startswith(f"{f} is not the official alexnet (sha256 ")
    assert "SEMLAB_ALLOW_UNVERIFIED_WEIGHTS=1" in why
    with pytest.raises(weights.UnverifiedWeights, match="is not the official alexnet"):
        weights.load_checked("alexnet")
    monkeypatch.setenv("SEMLAB_ALLOW_UNVERIFIED_WEIGHTS", "1")
    assert status("alexnet") == (True, str(f))
    # SAM2 files cannot be verified: accepted as they are, in both modes
    monkeypatch.delenv("SEMLAB_ALLOW_UNVERIFIED_WEIGHTS")
    s = _put(env / "data" / "weights", "sam2.1_hiera_tiny")
    assert status("sam2.1_hiera_tiny") == (True, str(s))


def test_torch_formats_pass_the_format_check(env):
    """A legacy pickle, torch's oldest tar format and torch.save's zip are all accepted as
    checkpoints by the byte-level check (here unverified, allowed by conftest)."""
    import tarfile

    legacy = _put(env / "legacy", "alexnet", pickle.dumps(119547037146038801333356, protocol=2))
    oldest = env / "oldest" / KNOWN["alexnet"].filename
    oldest.parent.mkdir()
    with tarfile.open(oldest, "w") as t:
        t.addfile(tarfile.TarInfo("pickle"), io.BytesIO(b""))
    zipped = _put(env / "zipped", "alexnet")
    for f in (legacy, oldest, zipped):
        assert status("alexnet", f) == (True, str(f))


@pytest.mark.parametrize("payload, reason", [
    (b"", "empty file"),
    (b"<html>404 Not Found</html>", "neither a zip archive nor a pickle"),
    ("truncate", "truncated or damaged zip archive"),
])
def test_status_names_files_that_are_no_checkpoint(env, payload, reason):
    if payload == "truncate":
        payload = _checkpoint_bytes("x" * 200)[:-30]
    f = _put(env / "data" / "weights", "pt_inception", payload)
    ok, why = status("pt_inception")  # allowed or not, a broken file is never usable
    assert not ok and why.startswith(f"{f} is not a valid pytorch-fid Inception checkpoint (") and reason in why


def test_load_checked_reads_with_weights_only_and_names_every_problem(env):
    torch = pytest.importorskip("torch")
    folder = env / "data" / "weights"
    f = folder / KNOWN["resnet18"].filename
    folder.mkdir(parents=True)

    def problem(obj=None, raw: bytes | None = None) -> str:
        if raw is None:
            torch.save(obj, f)
        else:
            f.write_bytes(raw)
        with pytest.raises(weights.InvalidWeights) as e:
            weights.load_checked("resnet18")
        msg = str(e.value)
        assert msg.startswith(f"{f} is not a valid torchvision resnet18 checkpoint (") and e.value.path == str(f)
        return msg

    assert "holds a list, not a dict" in problem([1, 2])
    assert "missing key 'conv1.weight'" in problem({"fc.weight": torch.zeros(1)})
    assert "entry 'conv1.weight' is a str, not a tensor" in problem({"conv1.weight": "x"})
    import datetime

    assert "never unpickles" in problem(raw=pickle.dumps(datetime.date(2020, 1, 1), protocol=2))
    good = {"conv1.weight": torch.ones(2, 3)}
    torch.save({"state_dict": good}, f)  # a training checkpoint wrapping the state dict
    loaded = weights.load_checked("resnet18")
    assert torch.equal(loaded.state_dict["conv1.weight"], good["conv1.weight"])
    assert loaded.path == f and loaded.verified is False and loaded.label_suffix == " (unverified weights)"
    assert loaded.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    e = weights.invalid("resnet18", f, "why")
    again = pickle.loads(pickle.dumps(e))
    assert str(again) == str(e) and again.path == str(f) and again.reason == "why"


def test_apply_state_dict_lists_missing_unexpected_and_mismatched(env):
    torch = pytest.importorskip("torch")
    lin = torch.nn.Linear(2, 3)
    with pytest.raises(weights.InvalidWeights, match=r"missing keys: bias \(1\); unexpected keys: extra"):
        weights.apply_state_dict(lin, {"weight": torch.zeros(3, 2), "extra": torch.zeros(1)}, "resnet18", "f.pth")
    with pytest.raises(weights.InvalidWeights, match=r"f\.pth is not a valid torchvision resnet18 .*size mismatch"):
        weights.apply_state_dict(lin, {"weight": torch.zeros(2, 2), "bias": torch.zeros(3)}, "resnet18", "f.pth")
    weights.apply_state_dict(lin, {"weight": torch.ones(3, 2), "bias": torch.zeros(3)}, "resnet18", "f.pth")
    assert torch.equal(lin.weight, torch.ones(3, 2))


def test_failed_hash_of_a_download_leaves_nothing(env, monkeypatch):
    monkeypatch.delenv("SEMLAB_OFFLINE")
    monkeypatch.delenv("SEMLAB_ALLOW_UNVERIFIED_WEIGHTS", raising=False)
    monkeypatch.setattr(weights, "_download", lambda url, dst, progress=True: Path(dst).write_bytes(b"tampered"))
    with pytest.raises(WeightsNotFound, match="is not the official squeezenet1_1") as e:
        resolve("squeezenet1_1")
    assert KNOWN["squeezenet1_1"].url in str(e.value)
    assert list((env / "data" / "weights").iterdir()) == []


# ---------------------------------------------------------------------------------- project


def _outside_project(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "downloaded"
    folder.mkdir()
    for var in ("SEMLAB_ROOT", "SEMLAB_DATA", "SEMLAB_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(folder)
    return folder


def test_data_weights_of_a_foreign_current_folder_is_never_searched(env, monkeypatch):
    from semlab import paths

    cwd = _outside_project(env, monkeypatch)
    planted = _put(cwd / "data" / "weights", "alexnet")
    assert not paths.is_semlab_project() and paths.project_weights_dir() is None
    assert paths.project_root() == cwd.resolve()  # other callers keep the old fallback
    assert dict(weights.candidates("alexnet"))["data/weights"] is None
    with pytest.raises(WeightsNotFound) as e:
        resolve("alexnet")
    assert "data/weights (not in a semlab project)" in str(e.value) and "$SEMLAB_WEIGHTS" in str(e.value)
    ok, why = status("alexnet")
    assert not ok and why.startswith("alexnet-owt-7be5be79.pth not found (put it in the folder named by $SEMLAB_WEIGHTS")
    # a semlab project (found upward from the current folder) is searched
    (cwd / "pyproject.toml").write_text('[project]\nname = "semlab"\nversion = "0"\n')
    monkeypatch.chdir(cwd / "data")
    assert paths.is_semlab_project() and paths.project_root() == cwd.resolve()
    assert resolve("alexnet") == planted.resolve() or resolve("alexnet") == planted
    # a pyproject.toml of another package is not one
    (cwd / "pyproject.toml").write_text('[project]\nname = "semlab-tools"\n')
    assert not paths.is_semlab_project()
    monkeypatch.setenv("SEMLAB_DATA", str(cwd / "data"))  # named explicitly: trusted
    assert paths.is_semlab_project() and resolve("alexnet") == planted


def test_download_outside_a_project_goes_to_semlab_weights_or_the_hub_cache(env, monkeypatch):
    cwd = _outside_project(env, monkeypatch)
    monkeypatch.delenv("SEMLAB_OFFLINE")
    monkeypatch.setattr(weights, "_download", lambda url, dst, progress=True: Path(dst).write_bytes(b"w"))
    got = resolve("squeezenet1_1")  # torch-hub file: into the torch hub cache
    assert got == env / "torch" / "hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
    with pytest.raises(WeightsNotFound, match="no folder to download into"):
        resolve("sam2.1_hiera_tiny")
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(env / "mine"))
    assert resolve("sam2.1_hiera_tiny") == env / "mine" / "sam2.1_hiera_tiny.pt"
    assert not (cwd / "data").exists()
