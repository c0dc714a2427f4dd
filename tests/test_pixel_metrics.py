"""PSNR/SSIM wrappers against closed forms, and the bootstrap interval."""

import numpy as np
import pytest

from semlab.metrics.pixel import bootstrap_ci, paired_scores, psnr, ssim


def test_psnr_closed_form():
    rng = np.random.default_rng(0)
    ref = rng.random((32, 32))
    pred = np.clip(ref + rng.normal(0, 0.05, ref.shape), 0, 1)
    mse = np.mean((pred - ref) ** 2)
    assert psnr(pred, ref) == pytest.approx(10 * np.log10(1 / mse))


def test_ssim_identity_and_ordering():
    rng = np.random.default_rng(1)
    ref = rng.random((48, 48))
    assert ssim(ref, ref) == pytest.approx(1.0)
    a = np.clip(ref + rng.normal(0, 0.02, ref.shape), 0, 1)
    b = np.clip(ref + rng.normal(0, 0.2, ref.shape), 0, 1)
    assert 1.0 > ssim(a, ref) > ssim(b, ref)


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(2)
    small = rng.normal(5, 1, 20)
    big = rng.normal(5, 1, 2000)
    m, lo, hi = bootstrap_ci(small)
    assert lo < m < hi and m == pytest.approx(small.mean())
    _, lo2, hi2 = bootstrap_ci(big)
    assert hi2 - lo2 < (hi - lo) / 3
    assert all(np.isnan(bootstrap_ci([])))


def test_paired_scores_shapes_and_errors():
    x = [np.zeros((16, 16)), np.ones((16, 16)) * 0.5]
    s = paired_scores(x, x)
    assert s["psnr"].shape == (2,) and np.isinf(s["psnr"]).all()
    with pytest.raises(ValueError):
        paired_scores(x, x[:1])


def test_ci_table_and_its_text():
    from semlab.metrics.pixel import ci_table, format_ci_table

    rng = np.random.default_rng(3)
    t = ci_table({"a": {"psnr": rng.normal(30, 1, 40), "ssim": rng.uniform(0.8, 0.9, 40)}})
    m, lo, hi = t["a"]["psnr"]
    assert lo < m < hi and 29 < m < 31
    text = format_ci_table(t, "x")
    assert text.splitlines()[1].startswith("a") and f"{m:.2f}" in text


def test_single_scale_terms_equal_scikit_image_and_ms_ssim_behaves():
    from skimage.metrics import structural_similarity

    from semlab.metrics.pixel import _ssim_terms, ms_ssim

    rng = np.random.default_rng(4)
    ref = np.clip(0.5 + 0.2 * rng.normal(size=(128, 128)), 0, 1)
    a = np.clip(ref + rng.normal(0, 0.03, ref.shape), 0, 1)
    b = np.clip(ref + rng.normal(0, 0.15, ref.shape), 0, 1)
    sk = structural_similarity(ref, a, data_range=1.0, gaussian_weights=True, sigma=1.5,
                               use_sample_covariance=False)
    assert _ssim_terms(a, ref)[0] == pytest.approx(sk, abs=1e-9)
    assert ms_ssim(ref, ref) == pytest.approx(1.0)
    assert 1.0 > ms_ssim(a, ref) > ms_ssim(b, ref) > 0
    # a global brightness offset hurts SSIM's luminance term only at the coarsest scale
    shifted = np.clip(ref + 0.1, 0, 1)
    assert ms_ssim(shifted, ref) > ssim(shifted, ref)
    with pytest.raises(ValueError):
        ms_ssim(ref, ref[:64])
