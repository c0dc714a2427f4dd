"""Weight files are untrusted (design.md section 9): no code runs from them.

A crafted pickle under an official file name (the FID Inception, the LPIPS AlexNet, the
detector's ResNet-18) in $SEMLAB_WEIGHTS, in data/weights/ of a semlab project, or in the
torch hub cache must never execute: semlab reads weights itself with weights_only=True
after checking their sha256, and no library unpickles them. data/weights/ of a current
folder that is not a semlab project is never searched. Broken files and foreign hashes
are reported "unavailable: <file> ..." with the reason, never as a traceback.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_fid")
pytest.importorskip("lpips")

from semlab.metrics import fid as F  # noqa: E402
from semlab.metrics.lpips import compute_lpips, save_random_backbone  # noqa: E402
from semlab.weights import KNOWN, InvalidWeights, UnverifiedWeights  # noqa: E402

FID_FILE = KNOWN["pt_inception"].filename
ALEX_FILE = KNOWN["alexnet"].filename
ALLOW = "SEMLAB_ALLOW_UNVERIFIED_WEIGHTS"


class _Payload:
    """Unpickling this calls open(marker, "w"): the marker file appears iff code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _craft(file: Path, marker: Path, fmt: str) -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "zip":  # torch.save's archive, the payload inside its data.pkl
        torch.save({"Conv2d_1a_3x3.conv.weight": _Payload(marker), "features.0.weight": _Payload(marker)}, file)
    else:  # a bare pickle (torch's legacy format starts the same way)
        file.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    return file


def _images(n=4, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, size, size)).astype(np.float32)


@pytest.fixture
def clean(tmp_path, monkeypatch):
    """No weights anywhere; offline; the strict default (unverified files refused)."""
    for var in ("SEMLAB_ROOT", "SEMLAB_DATA", "SEMLAB_WEIGHTS", ALLOW):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _place(where: str, tmp_path: Path, monkeypatch) -> Path:
    """The folder that semlab will search for weights, set up as `where` says."""
    if where == "SEMLAB_WEIGHTS":
        folder = tmp_path / "mine"
        monkeypatch.setenv("SEMLAB_WEIGHTS", str(folder))
    elif where == "project data/weights":
        proj = tmp_path / "proj"
        proj.mkdir()
        (proj / "pyproject.toml").write_text('[project]\nname = "semlab"\nversion = "0"\n')
        monkeypatch.chdir(proj)
        folder = proj / "data" / "weights"
    else:  # the torch hub cache, where pytorch-fid and torchvision look themselves
        folder = tmp_path / "torch" / "hub" / "checkpoints"
    return folder


WHERE = ["SEMLAB_WEIGHTS", "project data/weights", "torch hub cache"]


@pytest.mark.parametrize("allowed", [False, True], ids=["strict", "allow-unverified"])
@pytest.mark.parametrize("fmt", ["zip", "pickle"])
@pytest.mark.parametrize("where", WHERE)
def test_crafted_fid_weights_never_run(clean, monkeypatch, where, fmt, allowed):
    marker = clean / "pwned"
    file = _craft(_place(where, clean, monkeypatch) / FID_FILE, marker, fmt)
    if allowed:
        monkeypatch.setenv(ALLOW, "1")
    out = F.compute_fid(_images(), _images(seed=1), kid_subset_size=4, kid_subsets=2)
    assert not marker.exists(), "unpickling the weights file ran its code"
    assert out["fid"] is None and out["kid"] is None
    st = out["status"]
    assert st.startswith(f"unavailable: {file}") or st.startswith(f"unavailable: {file.resolve()}")
    if allowed:  # the hash is let through, the contents are not
        assert "is not a valid pytorch-fid Inception checkpoint (" in st and "never unpickles" in st
        with pytest.raises(InvalidWeights, match=FID_FILE):
            F.load_inception()
    else:
        assert "is not the official pt_inception (sha256 " in st
        with pytest.raises(UnverifiedWeights, match=FID_FILE):
            F.load_inception()
    assert not marker.exists()


@pytest.mark.parametrize("allowed", [False, True], ids=["strict", "allow-unverified"])
@pytest.mark.parametrize("where", WHERE)
def test_crafted_lpips_backbone_never_runs(clean, monkeypatch, where, allowed):
    marker = clean / "pwned"
    file = _craft(_place(where, clean, monkeypatch) / ALEX_FILE, marker, "zip")
    if allowed:
        monkeypatch.setenv(ALLOW, "1")
    out = compute_lpips(_images(), _images(seed=1))
    assert not marker.exists(), "unpickling the weights file ran its code"
    assert out["lpips"] is None and out["status"].startswith("unavailable: ") and ALEX_FILE in out["status"]
    reason = "is not a valid torchvision alexnet checkpoint" if allowed else "is not the official alexnet"
    assert reason in out["status"] and str(file.name) in out["status"]


def test_crafted_weights_in_evaluate_give_unavailable_rows(clean, monkeypatch):
    marker = clean / "pwned"
    folder = _place("SEMLAB_WEIGHTS", clean, monkeypatch)
    _craft(folder / FID_FILE, marker, "zip")
    _craft(folder / ALEX_FILE, marker, "pickle")
    monkeypatch.setenv(ALLOW, "1")  # the hash check passed: the loader itself must refuse
    from semlab.metrics.evaluate import evaluate

    rows = {r["metric"]: r for r in evaluate(list(_images()), list(_images(seed=1)), paired=True,
                                             metrics=("fid", "kid", "lpips"), n_boot=10, fid_inf=True)}
    assert not marker.exists()
    assert set(rows) == {"fid", "kid", "fid_inf", "lpips"}
    for m, f in (("fid", FID_FILE), ("kid", FID_FILE), ("fid_inf", FID_FILE), ("lpips", ALEX_FILE)):
        assert rows[m]["value"] is None and rows[m]["status"].startswith(f"unavailable: {folder / f} is not a valid ")


def _run_cli(cwd: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semlab.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("allowed", [False, True], ids=["strict", "allow-unverified"])
def test_cli_evaluate_in_a_downloaded_folder_ignores_its_data_weights(tmp_path, allowed):
    """`semlab evaluate` run inside a folder that is not a semlab project but holds
    data/weights/<official names> (crafted): those files are not even looked at."""
    from semlab import io

    folder = tmp_path / "downloaded"
    marker = tmp_path / "pwned"
    _craft(folder / "data" / "weights" / FID_FILE, marker, "zip")
    _craft(folder / "data" / "weights" / ALEX_FILE, marker, "pickle")
    for d, seed in (("real", 0), ("fake", 1)):
        for i, im in enumerate(_images(seed=seed)):
            io.write_image(folder / d / f"{i:02d}.png", im)
    env = {k: v for k, v in os.environ.items()
           if k not in ("SEMLAB_ROOT", "SEMLAB_DATA", "SEMLAB_WEIGHTS", "SEMLAB_REPORTS", ALLOW)}
    env.update(SEMLAB_OFFLINE="1", TORCH_HOME=str(tmp_path / "torch"), OMP_WAIT_POLICY="PASSIVE",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    if allowed:
        env[ALLOW] = "1"
    r = _run_cli(folder, env, "evaluate", "--real", "real", "--fake", "fake", "--paired",
                 "--metrics", "fid,kid,lpips,psnr")
    assert not marker.exists(), "a weights file of the current folder ran its code"
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    lines = {ln.split("|")[1].strip(): ln for ln in r.stdout.splitlines() if ln.startswith("| ") and "---" not in ln}
    assert f"unavailable: {FID_FILE} not found" in lines["fid"] and f"unavailable: {FID_FILE} not found" in lines["kid"]
    assert f"unavailable: {ALEX_FILE} not found" in lines["lpips"]
    assert "$SEMLAB_WEIGHTS" in lines["fid"]  # where to put the file instead
    assert "unavailable" not in lines["psnr"]


def test_wrong_hash_is_unavailable_unless_allowed_then_labelled(clean, monkeypatch):
    folder = _place("SEMLAB_WEIGHTS", clean, monkeypatch)
    F.save_random_inception(folder, seed=0)
    save_random_backbone("alex", folder, seed=0)
    real, fake = _images(n=10), _images(n=10, seed=1)  # FID-infinity needs 10
    out = F.compute_fid(real, fake, kid_subset_size=6, kid_subsets=2)
    assert out["fid"] is None and out["status"].startswith(f"unavailable: {folder / FID_FILE} is not the official "
                                                           f"pt_inception (sha256 ")
    lp = compute_lpips(real, fake)
    assert lp["lpips"] is None and lp["status"].startswith(f"unavailable: {folder / ALEX_FILE} is not the official "
                                                           f"alexnet (sha256 ")
    from semlab.weights import status, weights_sha256

    ok, why = status("pt_inception")
    assert not ok and f"(sha256 {weights_sha256(folder / FID_FILE)[:12]}..." in why

    monkeypatch.setenv(ALLOW, "1")
    out = F.compute_fid(real, fake, kid_subset_size=6, kid_subsets=2)
    assert out["fid"] > 0 and out["verified"] is False and out["label"] == "FID (unverified weights)"
    lp = compute_lpips(real, fake)
    assert lp["lpips"] > 0 and lp["verified"] is False and lp["label"] == "LPIPS (unverified weights)"
    from semlab.metrics.evaluate import evaluate

    rows = evaluate(list(real), list(fake), paired=True, metrics=("fid", "kid", "lpips"), n_boot=10, fid_inf=True)
    names = [r["metric"] for r in rows if r["status"] == "ok"]
    assert sorted(names) == sorted(f"{m} (unverified weights)" for m in ("lpips", "fid", "kid", "fid_inf"))


@pytest.mark.parametrize("allowed", [False, True], ids=["strict", "allow-unverified"])
@pytest.mark.parametrize("kind", ["truncated", "text"])
def test_broken_files_under_the_official_name_are_unavailable(clean, monkeypatch, kind, allowed):
    folder = _place("SEMLAB_WEIGHTS", clean, monkeypatch)
    if allowed:
        monkeypatch.setenv(ALLOW, "1")
    for make, file in ((lambda f: F.save_random_inception(folder), folder / FID_FILE),
                       (lambda f: save_random_backbone("alex", folder), folder / ALEX_FILE)):
        make(file)
        if kind == "truncated":  # an interrupted download
            data = file.read_bytes()
            file.write_bytes(data[: len(data) // 2])
        else:  # an HTML error page saved under the name
            file.write_text("<html><body>403 Forbidden</body></html>\n")
    out = F.compute_fid(_images(), _images(seed=1))
    lp = compute_lpips(_images(), _images(seed=1))
    why = "truncated or damaged zip archive" if kind == "truncated" else "neither a zip archive nor a pickle"
    assert out["fid"] is None and out["status"].startswith(
        f"unavailable: {folder / FID_FILE} is not a valid pytorch-fid Inception checkpoint (") and why in out["status"]
    assert lp["lpips"] is None and lp["status"].startswith(
        f"unavailable: {folder / ALEX_FILE} is not a valid torchvision alexnet checkpoint (") and why in lp["status"]
    with pytest.raises(InvalidWeights, match=f"{FID_FILE} is not a valid pytorch-fid Inception checkpoint"):
        F.load_inception()


def test_resnet18_detector_weights_are_checked(clean, monkeypatch):
    from semlab.forensics.detector import build_detector
    from torchvision.models import resnet18

    folder = _place("SEMLAB_WEIGHTS", clean, monkeypatch)
    file = folder / KNOWN["resnet18"].filename
    marker = clean / "pwned"
    _craft(file, marker, "pickle")
    for pretrained in (True, "auto"):
        with pytest.raises(UnverifiedWeights, match=f"{file} is not the official resnet18"):
            build_detector("resnet18", pretrained=pretrained)
    monkeypatch.setenv(ALLOW, "1")
    with pytest.raises(InvalidWeights, match="is not a valid torchvision resnet18 checkpoint .*never unpickles"):
        build_detector("resnet18", pretrained=True)
    assert not marker.exists()
    # a foreign (random) ResNet-18: refused strictly, loaded and marked unverified when allowed
    torch.save(resnet18(weights=None).state_dict(), file)
    net = build_detector("resnet18", pretrained=True)
    assert net.semlab_info["pretrained"] == str(file) and net.semlab_info["verified"] is False
    monkeypatch.delenv(ALLOW)
    with pytest.raises(UnverifiedWeights, match="sha256 "):
        build_detector("resnet18", pretrained=True)
