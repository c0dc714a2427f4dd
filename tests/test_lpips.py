"""LPIPS through the lpips package, with a random AlexNet saved in torchvision's format."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
lpips = pytest.importorskip("lpips")
torchvision = pytest.importorskip("torchvision")

from semlab.metrics.lpips import compute_lpips, load_lpips, lpips_distances  # noqa: E402


@pytest.fixture
def weights(tmp_path, monkeypatch):
    folder = tmp_path / "w"
    folder.mkdir()
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), folder / "alexnet-owt-7be5be79.pth")
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(folder))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    return folder


def _images(seed, n=5, size=64):
    rng = np.random.default_rng(seed)
    return rng.random((n, size, size)).astype(np.float32)


def test_our_lpips_equals_the_package_and_ignores_batch_size(weights):
    model = load_lpips("alex")
    sd = torch.load(weights / "alexnet-owt-7be5be79.pth", weights_only=True)
    assert torch.equal(model.net.slice1[0].weight, sd["features.0.weight"])  # the file we saved is what runs
    a, b = _images(1), _images(2)
    ours = lpips_distances(model, a, b, batch_size=2)
    with torch.no_grad():
        ta = torch.from_numpy(a)[:, None].repeat(1, 3, 1, 1) * 2 - 1
        tb = torch.from_numpy(b)[:, None].repeat(1, 3, 1, 1) * 2 - 1
        ref = model(ta, tb).reshape(-1).double().numpy()
    assert np.allclose(ours, ref, rtol=1e-5, atol=1e-7)
    assert np.allclose(lpips_distances(model, a, b, batch_size=5), ours, rtol=1e-5, atol=1e-7)
    assert np.allclose(lpips_distances(model, a, a), 0, atol=1e-6)
    res = compute_lpips(a, b)
    assert res["status"] == "ok" and res["lpips"] == pytest.approx(float(ours.mean()), rel=1e-5)
    # a random backbone is not the official file: allowed in tests, and labelled
    assert res["verified"] is False and res["label"] == "LPIPS (unverified weights)"
    assert model.semlab_weights_verified is False


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_loader_equals_the_package_constructor(net, tmp_path, monkeypatch):
    """semlab builds lpips with a random backbone and copies the checked state dict into
    its slices; the package's own constructor (torchvision loading the same file from
    the torch hub cache) gives identical distances: the independent reference."""
    from semlab.metrics.lpips import save_random_backbone

    hub = tmp_path / "torch" / "hub" / "checkpoints"
    save_random_backbone(net, hub, seed=3)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    ours = load_lpips(net)
    assert ours.semlab_weights_path == str(hub / {"alex": "alexnet-owt-7be5be79.pth",
                                                  "squeeze": "squeezenet1_1-b8a52dc0.pth"}[net])
    with warnings.catch_warnings():  # torchvision's deprecation notice for lpips' pretrained=True
        warnings.simplefilter("ignore", UserWarning)
        ref = lpips.LPIPS(net=net, pretrained=True, pnet_rand=False, verbose=False).eval()
    ref = ref.to(memory_format=torch.channels_last)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    assert all(torch.equal(x, y) for x, y in zip(ours.state_dict().values(), ref.state_dict().values()))
    a, b = _images(4, n=3), _images(5, n=3)
    assert lpips_distances(ours, a, b).tolist() == lpips_distances(ref, a, b).tolist()
    assert lpips_distances(ours, a, b).min() > 0


def test_missing_backbone_is_reported_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    res = compute_lpips(_images(1), _images(2))
    assert res["lpips"] is None and res["status"].startswith("unavailable: alexnet-owt-7be5be79.pth not found")
    from semlab.weights import WeightsNotFound

    with pytest.raises(WeightsNotFound, match="alexnet-owt-7be5be79.pth"):
        load_lpips("alex")
    with pytest.raises(KeyError, match="valid"):
        load_lpips("resnet")
