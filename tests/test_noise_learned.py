"""The `learned` residual-noise model (semlab.noise.learned) against noise of known parameters.

Synthetic source: smooth clean images in [0.15, 0.85] plus Poisson-Gaussian noise
``var = A * clean + B`` that is spatially correlated (unit white noise low-passed by a
Gaussian of CORR px and rescaled to unit variance), the simulator's case of a known
noise-free image. Tolerances (stated here, checked below):

* noise level: the sampled residual std over the training cleans within 10% of the truth;
* variance vs signal: every intensity bin in [0.2, 0.8] within 15% of ``A * c + B``;
* radially averaged PSD of samples vs the source noise's: within 20% in every band
  that holds at least 2% of the peak band's power (the bands beyond carry < 1% of the
  variance), and the power-weighted mean frequency within 10%.
"""

import pickle

import numpy as np
import pytest
from scipy import ndimage

torch = pytest.importorskip("torch")

from semlab.noise import registry  # noqa: E402
from semlab.noise.learned import (MAX_PARAMS, PROFILE_OPTIONS, STATE_FILE, LearnedNoise,  # noqa: E402
                                  clean_estimate, fit)

A, B, CORR = 0.004, 0.0002, 0.8
SIZE, N_IMG, STEPS = 112, 4, 150


def _unit_correlated(rng, shape, corr):
    z = ndimage.gaussian_filter(rng.standard_normal(shape), corr, mode="wrap") if corr else rng.standard_normal(shape)
    d = np.zeros((41, 41))
    d[20, 20] = 1.0
    gain = np.sqrt((ndimage.gaussian_filter(d, corr) ** 2).sum()) if corr else 1.0  # std of filtered unit noise
    return z / gain


def _clean(rng, size=SIZE):
    """Smooth blobs whose intensities cover [0.15, 0.85] uniformly (rank transform)."""
    c = ndimage.gaussian_filter(rng.random((size, size)), 6)
    u = np.argsort(np.argsort(c.ravel())).reshape(c.shape) / (c.size - 1)
    return (0.15 + 0.7 * u).astype(np.float32)


def _source(seed=0, corr=CORR, n=N_IMG, size=SIZE):
    rng = np.random.default_rng(seed)
    cleans = [_clean(rng, size) for _ in range(n)]
    imgs = [np.clip(c + np.sqrt(A * c + B) * _unit_correlated(rng, c.shape, corr), 0, 1).astype(np.float32)
            for c in cleans]
    return imgs, cleans


def _radial_psd(noise_maps, nbins=16):
    """Radially averaged periodogram (mean over maps), bands of |f| in [0, 0.5] cycles/px."""
    acc = 0.0
    for x in noise_maps:
        x = x - x.mean()
        acc = acc + np.abs(np.fft.fft2(x)) ** 2 / x.size
    acc = acc / len(noise_maps)
    fy = np.fft.fftfreq(acc.shape[0])[:, None]
    fx = np.fft.fftfreq(acc.shape[1])[None, :]
    r = np.hypot(fy, fx)
    band = np.minimum((r / 0.5 * nbins).astype(int), nbins)  # corners beyond 0.5 go to the last band
    keep = band < nbins
    return np.bincount(band[keep], weights=acc[keep], minlength=nbins) / np.bincount(band[keep], minlength=nbins)


@pytest.fixture(scope="module")
def source():
    return _source()


@pytest.fixture(scope="module")
def model(source):
    imgs, cleans = source
    return LearnedNoise.fit(imgs, cleans, steps=STEPS, max_seconds=60, seed=0)


def test_registered_and_small(model, source):
    assert "learned" in registry.names()
    assert registry.get("learned") is LearnedNoise
    assert model.n_params < MAX_PARAMS
    assert model.n_params == sum(p.numel() for p in model.net.parameters())
    assert model.params()["steps_done"] == STEPS and model.params()["clean"] == "given"
    assert model.meta.n_images == N_IMG and model.meta.data_sha256 == registry.data_sha256(source[0])


def test_noise_level_recovered_within_10_percent(model, source):
    _, cleans = source
    rng = np.random.default_rng(7)
    sampled = np.concatenate([model.noise(c, rng).ravel() for c in cleans for _ in range(2)])
    truth = np.sqrt(np.mean([np.mean(A * c + B) for c in cleans]))
    assert sampled.std() == pytest.approx(truth, rel=0.10)
    # and the noise is zero-mean
    assert abs(sampled.mean()) < 0.05 * truth


def test_variance_follows_signal(model):
    """Sampled variance per intensity bin against var = A*c + B (15%); it must rise with c."""
    ramp = np.tile(np.linspace(0.1, 0.9, 320, dtype=np.float32), (160, 1))
    rng = np.random.default_rng(3)
    res = np.stack([model.noise(ramp, rng) for _ in range(3)])[:, 8:-8, 8:-8]
    c = ramp[8:-8, 8:-8]
    edges = np.linspace(0.2, 0.8, 7)
    got, want = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (c >= lo) & (c < hi)
        got.append(res[:, sel].var())
        want.append(np.mean(A * c[sel] + B))
    got, want = np.array(got), np.array(want)
    np.testing.assert_allclose(got, want, rtol=0.15)
    assert got[-1] / got[0] > 0.6 * want[-1] / want[0]  # the signal dependence itself, not just the mean level


def test_psd_matches_source(model):
    rng = np.random.default_rng(11)
    flat = np.full((128, 128), 0.5, np.float32)
    samples = [model.noise(flat, rng) for _ in range(16)]
    src = [_unit_correlated(rng, (128, 128), CORR) * np.sqrt(A * 0.5 + B) for _ in range(16)]
    p_model, p_src = _radial_psd(samples), _radial_psd(src)
    strong = p_src >= 0.02 * p_src.max()
    assert strong.sum() >= 6
    np.testing.assert_allclose(p_model[strong], p_src[strong], rtol=0.20)
    f = (np.arange(16) + 0.5) / 32
    ring = np.arange(16) + 0.5  # frequencies per band grow with the radius

    def centroid(p):  # power-weighted mean |f| of the 2-D spectrum
        return float((f * p * ring).sum() / (p * ring).sum())

    assert centroid(p_model) == pytest.approx(centroid(p_src), rel=0.10)
    assert np.var(samples) == pytest.approx((A * 0.5 + B), rel=0.10)


def test_white_source_gives_flat_spectrum():
    """On white noise the learned kernel stays (near) a delta: the PSD is flat."""
    imgs, cleans = _source(seed=1, corr=0, n=2, size=80)
    m = LearnedNoise.fit(imgs, cleans, steps=40, seed=0)
    p = _radial_psd([m.noise(np.full((96, 96), 0.5, np.float32), np.random.default_rng(k)) for k in range(4)])
    assert p.max() / p.min() < 1.6
    assert m.kernel_array()[3, 3] > 0.9


def test_sample_deterministic_per_seed(model, source):
    clean = source[1][0]
    a = model.sample(clean, np.random.default_rng(5))
    b = model.sample(clean, np.random.default_rng(5))
    c = model.sample(clean, np.random.default_rng(6))
    assert a.dtype == np.float32 and a.shape == clean.shape
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.01
    with pytest.raises(TypeError, match="numpy Generator"):
        model.sample(clean, 5)


def test_fit_deterministic_per_seed(source):
    imgs, cleans = source
    m1 = LearnedNoise.fit(imgs[:2], cleans[:2], steps=4, seed=3)
    m2 = LearnedNoise.fit(imgs[:2], cleans[:2], steps=4, seed=3)
    m3 = LearnedNoise.fit(imgs[:2], cleans[:2], steps=4, seed=4)
    s1, s2, s3 = (m.net.state_dict() for m in (m1, m2, m3))
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)


def test_save_load_round_trip(model, source, tmp_path):
    folder = model.save(tmp_path / "m")
    assert (folder / "model.json").is_file() and (folder / STATE_FILE).is_file()
    assert not (folder / registry.ARRAYS_FILE).exists()
    back = registry.load(folder)
    assert isinstance(back, LearnedNoise)
    assert back.params() == model.params() and back.meta.to_json() == model.meta.to_json()
    clean = source[1][1]
    np.testing.assert_array_equal(back.sample(clean, np.random.default_rng(9)),
                                  model.sample(clean, np.random.default_rng(9)))


class _Payload:
    """Unpickling this would create a file: a stand-in for code run by a malicious model."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_pickled_model_refused(model, tmp_path, how):
    folder = model.save(tmp_path / "m")
    marker = tmp_path / "pwned"
    state = dict(model.net.state_dict())
    state["kernel"] = _Payload(str(marker))
    with open(folder / STATE_FILE, "wb") as f:
        torch.save(state, f) if how == "torch.save" else pickle.dump(state, f)
    with pytest.raises(ValueError, match=rf"{STATE_FILE}: refused"):
        registry.load(folder)
    assert not marker.exists()


def test_state_dict_checked(model, tmp_path):
    folder = model.save(tmp_path / "m")
    state = {k: v.clone() for k, v in model.net.state_dict().items()}
    state["kernel"] = torch.zeros(5, 5)
    torch.save(state, folder / STATE_FILE)
    with pytest.raises(ValueError, match=r"kernel has shape \(5, 5\)"):
        registry.load(folder)
    del state["kernel"]
    torch.save(state, folder / STATE_FILE)
    with pytest.raises(ValueError, match="do not match"):
        registry.load(folder)
    (folder / STATE_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=STATE_FILE):
        registry.load(folder)


def test_bad_input_refused(source):
    imgs, cleans = source
    with pytest.raises(ValueError, match="different sizes"):
        LearnedNoise.fit([imgs[0], imgs[1][:64, :64]], steps=1)
    with pytest.raises(ValueError, match="at least 1 image"):
        LearnedNoise.fit([], steps=1)
    with pytest.raises(ValueError, match="constant"):
        LearnedNoise.fit([imgs[0], np.full_like(imgs[0], 0.4)], steps=1)
    with pytest.raises(ValueError, match="uint8"):
        LearnedNoise.fit([(imgs[0] * 255).astype(np.uint8)], steps=1)
    with pytest.raises(ValueError, match="unknown option"):
        LearnedNoise.fit(imgs[:1], cleans[:1], step=1)
    with pytest.raises(ValueError, match="too small"):
        LearnedNoise.fit([imgs[0][:16, :16]], [cleans[0][:16, :16]], steps=1, kernel=9)
    with pytest.raises(ValueError, match="no noise"):
        LearnedNoise.fit(cleans[:1], cleans[:1], steps=1)


def test_nl_means_clean_estimate():
    """Without clean images the model makes its own: non-local means removes most of a
    white noise of known level from a piecewise-flat image, and the fit records it."""
    rng = np.random.default_rng(2)
    clean = np.where((np.arange(96)[None, :] // 12) % 2 == 0, 0.3, 0.7) * np.ones((96, 1))
    img = np.clip(clean + rng.normal(0, 0.04, clean.shape), 0, 1).astype(np.float32)
    est = clean_estimate(img)
    assert est.shape == img.shape and est.dtype == np.float32
    assert np.sqrt(np.mean((est - clean) ** 2)) < 0.4 * 0.04
    m = LearnedNoise.fit([img], steps=3)
    assert m.params()["clean"] == "nl-means"


def test_profile_budgets(source):
    assert PROFILE_OPTIONS["cpu"]["max_seconds"] <= 30
    imgs, cleans = source
    m = fit(imgs[:1], cleans[:1], profile="smoke", steps=2, pixel_nm=0.83)
    assert m.params()["steps_done"] == 2 and m.meta.pixel_nm == 0.83
    m = fit(imgs[:1], cleans[:1], steps=10_000, max_seconds=0.3)  # the clock stops it
    assert 1 <= m.params()["steps_done"] < 10_000
    with pytest.raises(KeyError, match="unknown profile 'gpu'"):
        fit(imgs[:1], cleans[:1], profile="gpu")
