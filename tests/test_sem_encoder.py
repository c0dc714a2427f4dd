"""The SEM encoder behind FD_sem / KD_sem: trained on real images only, recorded, and
able to tell a different image distribution from the same one."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from semlab.data.simulate import simulate
from semlab.metrics import sem_encoder as S
from semlab.metrics.fid import fid_from_features, kid_from_features

CFG = S.EncoderConfig(steps=40, batch_size=16, crop=48, width=8, seed=0)


@pytest.fixture(scope="module")
def sims():
    return [simulate("ic-metal-noisy", 128, seed=i) for i in range(104)]


@pytest.fixture(scope="module")
def encoder(sims, tmp_path_factory):
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("enc") / "enc.pt"
    return S.train_sem_encoder([s.image for s in sims[:40]], CFG, out=path, source="sim ic-metal", progress=False)


def test_training_is_recorded_and_reduces_the_loss(encoder, sims):
    t = encoder.meta["training"]
    assert t["n_images"] == 40 and t["steps"] == 40 and len(t["loss_curve"]) == 40
    assert t["loss_last10"] < t["loss_first"] - 0.2
    assert encoder.sha256 and len(encoder.sha256) == 64
    assert "trained on 40 real images" in encoder.describe()
    from semlab.metrics.fid import images_sha256
    assert t["images_sha256"] == images_sha256([s.image for s in sims[:40]])


def test_save_load_round_trip_same_features(encoder, sims, tmp_path):
    imgs = [s.image for s in sims[40:46]]
    loaded = S.load_sem_encoder(encoder.path)
    assert loaded.sha256 == encoder.sha256 and loaded.meta["config"] == encoder.meta["config"]
    np.testing.assert_allclose(loaded.features(imgs), encoder.features(imgs), rtol=0, atol=1e-10)
    with pytest.raises(FileExistsError):
        S.save_sem_encoder(encoder, encoder.path)
    bad = tmp_path / "bad.pt"
    torch.save({"format": "other"}, bad)
    with pytest.raises(ValueError, match="not a semlab SEM encoder"):
        S.load_sem_encoder(bad)
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable"):
        S.load_sem_encoder(bad)


def test_training_is_deterministic(sims):
    a = S.train_sem_encoder([s.image for s in sims[:20]], S.EncoderConfig(steps=3, batch_size=8, crop=32, width=4),
                            progress=False)
    b = S.train_sem_encoder([s.image for s in sims[:20]], S.EncoderConfig(steps=3, batch_size=8, crop=32, width=4),
                            progress=False)
    for (k, v), (_, w) in zip(a.net.state_dict().items(), b.net.state_dict().items()):
        assert torch.equal(v, w), k


def test_features_do_not_depend_on_batch_size(encoder, sims):
    imgs = [s.image for s in sims[40:50]]
    np.testing.assert_allclose(encoder.features(imgs, batch_size=1), encoder.features(imgs, batch_size=7),
                               rtol=1e-5, atol=1e-6)


def test_fd_sem_separates_a_different_distribution(encoder, sims):
    """Held-out real images are close to other real images; the same layouts without
    noise (what an over-smoothing generator makes) or blurred are far."""
    ref = [s.image for s in sims[40:72]]
    same = [s.image for s in sims[72:104]]
    clean = [s.clean for s in sims[72:104]]
    blur = [np.clip(ndimage.gaussian_filter(s.image, 1.0), 0, 1).astype(np.float32) for s in sims[72:104]]
    d_same = S.compute_fd_sem(ref, same, encoder, kid_subset_size=32)
    d_clean = S.compute_fd_sem(ref, clean, encoder, kid_subset_size=32)
    d_blur = S.compute_fd_sem(ref, blur, encoder, kid_subset_size=32)
    # KD_sem is unbiased: the clear signal at 32 images per set
    assert d_clean["kd_sem"] > 3 * d_same["kd_sem"] and d_blur["kd_sem"] > 3 * d_same["kd_sem"]
    # FD_sem carries the finite-sample bias (256 dims, 32 images) on top of the signal
    assert d_clean["fd_sem"] > 1.3 * d_same["fd_sem"] and d_blur["fd_sem"] > 3 * d_same["fd_sem"]
    # the numbers are the FID/KID formulas on the encoder's features
    fr, ff = encoder.features(ref), encoder.features(clean)
    assert d_clean["fd_sem"] == pytest.approx(fid_from_features(fr, ff), rel=1e-9)
    assert d_clean["kd_sem"] == pytest.approx(kid_from_features(fr, ff, subset_size=32)[0], rel=1e-9)
    assert d_clean["encoder_sha256"] == encoder.sha256


def test_cached_encoder_is_reused(sims, tmp_path):
    imgs = [s.image for s in sims[:12]]
    cfg = S.EncoderConfig(steps=2, batch_size=4, crop=32, width=4)
    a = S.cached_sem_encoder(imgs, tmp_path, cfg, progress=False)
    b = S.cached_sem_encoder(imgs, tmp_path, cfg, progress=False)
    assert a.path == b.path and a.sha256 == b.sha256
    c = S.cached_sem_encoder(imgs[:10], tmp_path, cfg, progress=False)
    assert c.path != a.path


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least 2"):
        S.train_sem_encoder([np.zeros((64, 64), np.float32)], CFG, progress=False)
    with pytest.raises(ValueError, match="at least 16x16"):
        S.train_sem_encoder([np.zeros((8, 8), np.float32)] * 3, CFG, progress=False)
    with pytest.raises(KeyError, match="valid"):
        S.train_sem_encoder([np.zeros((32, 32), np.float32)] * 3, S.EncoderConfig(arch="vit"), progress=False)
