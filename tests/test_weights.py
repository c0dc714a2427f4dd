"""semlab.weights: search order, error messages, offline behaviour, safe downloads."""

import pickle
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


def _put(folder: Path, name: str, payload: bytes = b"w") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / KNOWN[name].filename
    f.write_bytes(payload)
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
    hub = _put(env / "torch" / "hub" / "checkpoints", name, b"hub")
    data = _put(env / "data" / "weights", name, b"data")
    envdir = _put(env / "mine", name, b"env")
    explicit = _put(env / "elsewhere", name, b"explicit")
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
