"""FID/KID: math against references, the real loading code with a random network saved
in the official pytorch-fid format, missing weights, and the real-set cache."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_fid")

from pytorch_fid.fid_score import calculate_frechet_distance  # noqa: E402

from semlab.metrics import fid as F  # noqa: E402
from semlab.weights import WeightsNotFound  # noqa: E402

FILENAME = "pt_inception-2015-12-05-6726825d.pth"


def _random_stats(rng, d, n):
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.5 + rng.normal(size=d)
    return x.mean(0), np.cov(x, rowvar=False), x


# --------------------------------------------------------------------------- math


@pytest.mark.parametrize("d", [2, 4, 16, 64])  # d=1: pytorch-fid itself fails with scipy 1.17
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pytorch-fid passes sqrtm(disp=False)
def test_frechet_matches_pytorch_fid(d):
    rng = np.random.default_rng(d)
    mu1, s1, _ = _random_stats(rng, d, 3 * d + 5)
    mu2, s2, _ = _random_stats(rng, d, 3 * d + 7)
    ours = F.frechet_distance(mu1, s1, mu2, s2)
    ref = calculate_frechet_distance(np.atleast_1d(mu1), np.atleast_2d(s1), np.atleast_1d(mu2), np.atleast_2d(s2))
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-9)
    assert ours > 0
    assert F.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-8 * np.trace(s1))


def test_frechet_diagonal_closed_form():
    rng = np.random.default_rng(1)
    d = 10
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert F.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fid_from_features_both_routes_agree_with_sqrtm():
    rng = np.random.default_rng(2)
    d = 12
    # full rank (n > d): the symmetric-eigh route, against pytorch-fid's sqrtm
    _, _, a = _random_stats(rng, d, 40)
    _, _, b = _random_stats(rng, d, 50)
    ref = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert F.fid_from_features(a, b) == pytest.approx(ref, rel=1e-9)
    # n <= d (singular covariances): exact low-rank route vs sqrtm (approximate there)
    a2, b2 = a[:9], b[:11]
    ref2 = F.frechet_distance(a2.mean(0), np.cov(a2, rowvar=False), b2.mean(0), np.cov(b2, rowvar=False))
    assert F.fid_from_features(a2, b2) == pytest.approx(ref2, rel=1e-5)
    assert F.fid_from_features(a2, a2) == pytest.approx(0, abs=1e-9)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_trace_sqrt_product_equals_sqrtm_trace_on_correlated_covariances():
    from scipy import linalg

    rng = np.random.default_rng(5)
    d = 64
    mix = rng.normal(size=(d, d)) * np.logspace(0, -3, d)  # condition number ~1e6
    x, y = rng.normal(size=(400, d)) @ mix, rng.normal(size=(500, d)) @ mix.T
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    ref = np.trace(linalg.sqrtm(s1 @ s2)).real
    assert F._trace_sqrt_product(s1, s2) == pytest.approx(ref, rel=1e-8)
    assert F.fid_from_features(x, y) == pytest.approx(
        calculate_frechet_distance(x.mean(0), s1, y.mean(0), s2), rel=1e-8)


def _kid_reference(f1, f2, subset_size, n_subsets, seed):
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(f1), len(f2))
    d = f1.shape[1]
    vals = []
    for _ in range(n_subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        sxx = syy = sxy = 0.0
        for i in range(m):
            for j in range(m):
                kxy = (x[i] @ y[j] / d + 1) ** 3
                sxy += kxy
                if i != j:
                    sxx += (x[i] @ x[j] / d + 1) ** 3
                    syy += (y[i] @ y[j] / d + 1) ** 3
        vals.append(sxx / (m * (m - 1)) + syy / (m * (m - 1)) - 2 * sxy / (m * m))
    return np.mean(vals), np.std(vals)


def test_kid_matches_direct_implementation():
    rng = np.random.default_rng(3)
    f1 = rng.normal(size=(30, 8))
    f2 = rng.normal(size=(25, 8)) + 0.5
    for subset in (10, 1000):  # 1000 > n: clipped to min(n1, n2)
        mean, std = F.kid_from_features(f1, f2, subset_size=subset, n_subsets=7, seed=5)
        rmean, rstd = _kid_reference(f1, f2, subset, 7, 5)
        assert mean == pytest.approx(rmean, rel=1e-10)
        assert std == pytest.approx(rstd, rel=1e-9)
    assert mean > 0


def test_kid_of_a_set_with_itself_is_near_zero():
    rng = np.random.default_rng(4)
    f = rng.normal(size=(200, 16))
    g = rng.normal(size=(200, 16)) + 1.0
    same, _ = F.kid_from_features(f, f, subset_size=50, n_subsets=50, seed=0)
    far, _ = F.kid_from_features(f, g, subset_size=50, n_subsets=50, seed=0)
    # points shared by both subsets make KID(X, X) slightly negative (O(1/m)), never large
    assert abs(same) < 0.02 * far
    # unbiased: over independent pairs of sets from one distribution the mean is ~0
    vals = [F.kid_from_features(rng.normal(size=(40, 8)), rng.normal(size=(40, 8)), 40, 1, seed=i)[0]
            for i in range(300)]
    assert abs(np.mean(vals)) < 4 * np.std(vals) / np.sqrt(len(vals))


# --------------------------------------------------------------------------- real loading, random network


@pytest.fixture(scope="session")
def random_weights_dir(tmp_path_factory):
    """A randomly initialised FID Inception saved as the official file name."""
    import pytorch_fid.inception as pi
    import torchvision.models.inception as tvi

    mp = pytest.MonkeyPatch()
    try:  # build the architecture without the (offline) download
        mp.setattr(pi, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(tvi.Inception3, "load_state_dict", lambda self, *a, **k: None)
        net = pi.fid_inception_v3()
    finally:
        mp.undo()
    torch.manual_seed(0)
    for mod in net.modules():
        if isinstance(mod, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(mod.weight)
    folder = tmp_path_factory.mktemp("weights")
    torch.save(net.state_dict(), folder / FILENAME)
    return folder


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("SEMLAB_WEIGHTS", raising=False)
    return monkeypatch


@pytest.fixture(scope="session")
def images():
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 1, (6, 64, 64)).astype(np.float32)
    from scipy.ndimage import gaussian_filter

    smooth = np.stack([gaussian_filter(im, 3) for im in noise])
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return noise, smooth.astype(np.float32)


@pytest.fixture(scope="session")
def model(random_weights_dir):
    return F.load_inception(random_weights_dir / FILENAME)


def test_loads_the_resolved_file(env, random_weights_dir):
    import torch.hub

    env.setenv("SEMLAB_WEIGHTS", str(random_weights_dir))
    hub_before = torch.hub.get_dir()
    m = F.load_inception()
    assert m.semlab_weights_path == str(random_weights_dir / FILENAME)
    assert not m.training
    assert torch.hub.get_dir() == hub_before
    assert m.semlab_weights_verified is False  # a random network is never the official file
    sd = torch.load(random_weights_dir / FILENAME, weights_only=True)
    w = sd["Conv2d_1a_3x3.conv.weight"]
    assert torch.equal(m.blocks[0][0].conv.weight, w)


def _pytorch_fid_reference(file):
    """pytorch-fid's own constructor, InceptionV3([3], use_fid_inception=True), handed the
    file's state dict where it would download it: the independent reference."""
    import pytorch_fid.inception as pi

    sd = torch.load(file, map_location="cpu", weights_only=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pi, "load_state_dict_from_url", lambda url, *a, **k: sd if url == pi.FID_WEIGHTS_URL else None)
        ref = pi.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True)
    return ref.eval()


@pytest.mark.parametrize("maker", ["fixture", "save_random_inception"])
def test_loader_equals_pytorch_fid_constructor(maker, random_weights_dir, images, tmp_path):
    """semlab builds the network itself (no torch.hub, weights read with weights_only=True):
    on the same state dict its features equal those of pytorch-fid's own constructor."""
    file = (random_weights_dir / FILENAME if maker == "fixture"
            else F.save_random_inception(tmp_path / "w", seed=2))
    ours = F.load_inception(file)
    ref = _pytorch_fid_reference(file)
    assert type(ours).forward is type(ref).forward  # pytorch-fid's forward runs
    assert ours.state_dict().keys() == ref.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), ref.state_dict().values()))
    x = torch.from_numpy(np.stack(images[0][:2]))[:, None].expand(-1, 3, -1, -1).contiguous()
    with torch.inference_mode():
        a = ours(x.contiguous(memory_format=torch.channels_last))[0]
        b = ref.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))[0]
    assert a.abs().max() > 1e-3 and torch.equal(a, b)


def test_features_do_not_depend_on_batch_size(model, images):
    noise, smooth = images
    x = np.concatenate([noise[:3], smooth[:2]])
    f1 = F.inception_features(x, model, batch_size=1)
    f5 = F.inception_features(x, model, batch_size=5)
    f2 = F.inception_features(x, model, batch_size=2)
    assert f1.shape == (5, 2048) and f1.dtype == np.float64
    assert np.abs(f1).max() > 1e-3  # the kaiming re-init gives non-trivial features
    np.testing.assert_allclose(f5, f1, rtol=1e-4, atol=1e-5 * np.abs(f1).max())
    np.testing.assert_allclose(f2, f1, rtol=1e-4, atol=1e-5 * np.abs(f1).max())
    # uint8 input is the same as float input / 255
    u8 = (x * 255).round().astype(np.uint8)
    np.testing.assert_allclose(F.inception_features(u8, model, batch_size=5),
                               F.inception_features(u8 / np.float32(255), model, batch_size=5),
                               rtol=1e-5, atol=1e-6 * np.abs(f1).max())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        F.inception_features(x * 2, model)


def test_compute_fid_with_random_network(env, random_weights_dir, images):
    env.setenv("SEMLAB_WEIGHTS", str(random_weights_dir))
    noise, smooth = images
    same = F.compute_fid(noise, noise, kid_subset_size=6, kid_subsets=10)
    assert same["weights"] == str(random_weights_dir / FILENAME)
    assert same["status"] == "ok" and same["verified"] is False
    assert same["label"] == "FID (unverified weights)" and same["kid_label"] == "KID (unverified weights)"
    assert same["n_real"] == same["n_fake"] == 6
    diff = F.compute_fid(noise, smooth, kid_subset_size=6, kid_subsets=10)
    assert abs(same["fid"]) < 1e-6 * diff["fid"]
    assert diff["fid"] > 1.0
    assert diff["kid"] > 0 and abs(same["kid"]) < 0.01 * diff["kid"]


def test_missing_weights_are_unavailable(env):
    out = F.compute_fid(np.zeros((3, 8, 8), np.float32), np.zeros((3, 8, 8), np.float32))
    assert out["fid"] is None and out["kid"] is None
    assert out["status"].startswith("unavailable: ")
    assert f"{FILENAME} not found" in out["status"]
    with pytest.raises(WeightsNotFound, match=FILENAME):
        F.load_inception()


def test_real_stats_cache(env, model, images, tmp_path):
    noise, smooth = images
    calls = []
    real_fn = F.inception_features

    def counting(imgs, *a, **k):
        calls.append(len(imgs))
        return real_fn(imgs, *a, **k)

    env.setattr(F, "inception_features", counting)
    cache = tmp_path / "cache" / "fid"
    a = F.feature_stats_cache(noise[:4], model, cache, "h1")
    b = F.feature_stats_cache(noise[:4], model, cache, "h1")
    assert not a["hit"] and b["hit"] and calls == [4]
    np.testing.assert_array_equal(a["mu"], b["mu"])
    np.testing.assert_array_equal(a["sigma"], b["sigma"])
    assert [p.name for p in cache.iterdir()] == [cache.joinpath(a["path"]).name]  # no temp files left
    changed = noise[:4].copy()
    changed[0, 0, 0] = 0.5 if changed[0, 0, 0] != 0.5 else 0.25
    c = F.feature_stats_cache(changed, model, cache, "h1")
    d = F.feature_stats_cache(noise[:4], model, cache, "other-model")
    assert not c["hit"] and not d["hit"] and calls == [4, 4, 4]
    # compute_fid uses the cache for the real set
    env.setenv("SEMLAB_WEIGHTS", str(model.semlab_weights_path).rsplit("/", 1)[0])
    r1 = F.compute_fid(noise[:4], smooth[:4], cache_dir=cache, kid_subset_size=4, kid_subsets=3)
    r2 = F.compute_fid(noise[:4], smooth[:4], cache_dir=cache, kid_subset_size=4, kid_subsets=3)
    assert not r1["real_cache_hit"] and r2["real_cache_hit"]
    assert r1["fid"] == pytest.approx(r2["fid"], rel=1e-12)


def test_evaluate_reports_fid_and_kid_with_intervals(env, random_weights_dir, images, tmp_path):
    """The evaluate table with the (random, test-only) network in the official format."""
    from semlab.metrics.evaluate import evaluate

    env.setenv("SEMLAB_WEIGHTS", str(random_weights_dir))
    noise, smooth = images
    rows = {r["metric"]: r for r in evaluate(list(noise), list(smooth), metrics=("fid", "kid"), n_boot=100,
                                             cache_dir=tmp_path / "cache", fid_inf=True)}
    # random weights are not the official file: every name in the table says so
    assert set(rows) == {"fid (unverified weights)", "kid (unverified weights)", "fid_inf (unverified weights)"}
    f = rows["fid (unverified weights)"]
    assert f["status"] == "ok" and f["value"] > 1 and f["ci_low"] <= f["value"] <= f["ci_high"] * 1.5
    k = rows["kid (unverified weights)"]
    assert k["status"] == "ok" and k["ci_low"] < k["value"] < k["ci_high"]
    assert list((tmp_path / "cache").glob("*.npz"))  # the real set's features are cached
    from semlab.metrics.evaluate import to_markdown
    from semlab.textfmt import md_escape  # names in Markdown tables are escaped (issue 15 item 3)

    assert f"| {md_escape('fid (unverified weights)')} |" in to_markdown(list(rows.values()))


def test_random_network_is_not_fid_without_the_allowance(env, random_weights_dir, images):
    """Without $SEMLAB_ALLOW_UNVERIFIED_WEIGHTS the same file is refused by its hash."""
    from semlab.metrics.evaluate import evaluate
    from semlab.weights import UnverifiedWeights

    env.setenv("SEMLAB_WEIGHTS", str(random_weights_dir))
    env.delenv("SEMLAB_ALLOW_UNVERIFIED_WEIGHTS")
    noise, smooth = images
    out = F.compute_fid(noise, smooth, kid_subset_size=6, kid_subsets=3)
    assert out["fid"] is None and out["status"].startswith(
        f"unavailable: {random_weights_dir / FILENAME} is not the official pt_inception (sha256 ")
    with pytest.raises(UnverifiedWeights, match=FILENAME):
        F.load_inception()
    rows = evaluate(list(noise), list(smooth), metrics=("fid", "kid"), n_boot=20)
    assert [r["metric"] for r in rows] == ["fid", "kid"] and all(r["value"] is None for r in rows)
    assert "is not the official pt_inception" in rows[0]["status"]


# ----------------------------------------------------------------------------------
# sample size: FID-infinity and the bias curve

def _gaussian_sets(rng, d=16, n_real=20000, n_fake=600):
    a = rng.normal(size=(d, d)) * 0.3
    s2 = np.eye(d) * 0.5 + a @ a.T / d
    m2 = np.full(d, 0.3)
    fr = rng.normal(size=(n_real, d))
    ff = rng.normal(size=(n_fake, d)) @ np.linalg.cholesky(s2).T + m2
    return fr, ff, F.frechet_distance(np.zeros(d), np.eye(d), m2, s2)


def test_fid_infinity_removes_the_finite_sample_bias():
    """Gaussian features with a closed-form Frechet distance: FID at N is biased upward
    by ~k/N; the extrapolation to 1/N = 0 lands on the true value on average."""
    rng = np.random.default_rng(0)
    err_n, err_inf = [], []
    for t in range(8):
        fr, ff, true = _gaussian_sets(rng)
        err_n.append(F.fid_from_features(fr, ff) - true)
        r = F.fid_infinity(fr, ff, repeats=2, seed=t)
        err_inf.append(r["value"] - true)
        assert r["slope"] > 0 and len(r["ns"]) == len(r["fids"]) and max(r["ns"]) == 600
    assert np.mean(err_n) > 0.1                       # the bias a single FID hides
    assert abs(np.mean(err_inf)) < 0.4 * np.mean(err_n)
    with pytest.raises(ValueError, match="n_min"):
        F.fid_infinity(fr, ff, n_min=600)


def test_distance_vs_n_shows_fd_falling_and_kid_level():
    rng = np.random.default_rng(1)
    fr, ff, true = _gaussian_sets(rng, n_real=800, n_fake=800)
    rows = F.distance_vs_n(fr, ff, [40, 200, 800, 5000], repeats=3, seed=0, kid_subsets=5)
    assert {r["n"] for r in rows} == {40, 200, 800}  # 5000 is more than the sets hold
    fd = {n: np.mean([r["fd"] for r in rows if r["n"] == n]) for n in (40, 200, 800)}
    kid = {n: np.mean([r["kid"] for r in rows if r["n"] == n]) for n in (40, 200, 800)}
    assert fd[40] > fd[200] > fd[800] and fd[40] > true + 1.0
    # unbiased KID: no systematic fall with n (within its scatter at small n)
    assert abs(kid[40] - kid[800]) < 0.5 * (fd[40] - fd[800]) / true * kid[800] + 0.05
    # each row is exactly the FD of some subset pair: at n = N it is the full-set value
    full = [r["fd"] for r in rows if r["n"] == 800]
    assert np.allclose(full, F.fid_from_features(fr, ff))
