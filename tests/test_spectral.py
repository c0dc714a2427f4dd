"""Spectral metrics against closed forms."""

import numpy as np
import pytest

from semlab.metrics.spectral import (
    mean_radial_spectrum,
    noise_sigma_estimate,
    radial_power_spectrum,
    spectral_slope,
)


def test_bins_cover_up_to_nyquist():
    freq, power = radial_power_spectrum(np.random.default_rng(0).normal(size=(64, 64)))
    assert freq.shape == power.shape == (32,)
    np.testing.assert_allclose(freq, np.arange(1, 33) / 64)
    assert freq[-1] == 0.5


@pytest.mark.parametrize("window", [None, "hann"])
def test_white_noise_is_flat_with_mean_variance(window):
    s = 0.3
    rng = np.random.default_rng(1)
    imgs = [rng.normal(0.5, s, size=(128, 128)) for _ in range(8)]
    spec = np.mean([radial_power_spectrum(im, window=window)[1] for im in imgs], axis=0)
    # mean over all bins equals s^2 (Parseval normalisation); every bin is close to it
    assert spec.mean() == pytest.approx(s**2, rel=0.03)
    # the lowest bins average few frequencies: allow more scatter there
    assert np.all(np.abs(spec[4:] / s**2 - 1) < 0.25)
    freq = radial_power_spectrum(imgs[0], window=window)[0]
    assert abs(spectral_slope(freq, spec)) < 0.1


def test_parseval_without_window():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 32))
    x -= x.mean()
    p2d = np.abs(np.fft.fft2(x)) ** 2 / x.size
    assert p2d.sum() / x.size == pytest.approx(np.mean(x**2))


@pytest.mark.parametrize("f0,window", [(0.125, None), (0.1, "hann"), (0.3, "hann"), (0.21, None)])
def test_sinusoid_peaks_in_its_bin(f0, window):
    n = 128
    yy, xx = np.mgrid[0:n, 0:n]
    img = 0.5 + 0.2 * np.sin(2 * np.pi * f0 * xx + 0.3)
    freq, power = radial_power_spectrum(img, window=window)
    k = int(np.argmax(power))
    half = 0.5 / n
    assert freq[k] - half <= f0 < freq[k] + half


def test_diagonal_sinusoid_radial_frequency():
    n = 128
    yy, xx = np.mgrid[0:n, 0:n]
    img = np.cos(2 * np.pi * (8 * xx + 6 * yy) / n)  # |f| = 10/128
    freq, power = radial_power_spectrum(img, window=None)
    assert freq[np.argmax(power)] == pytest.approx(10 / n)


def test_non_square_and_bad_window():
    freq, power = radial_power_spectrum(np.random.default_rng(0).normal(size=(40, 64)))
    assert freq.shape == (20,)
    with pytest.raises(ValueError):
        radial_power_spectrum(np.zeros((16, 16)), window="kaiser")
    with pytest.raises(ValueError):
        radial_power_spectrum(np.zeros((3, 16, 16)))


def test_mean_radial_spectrum_band():
    rng = np.random.default_rng(3)
    imgs = [rng.normal(0, 0.1, size=(64, 64)) for _ in range(10)]
    freq, mean, lo, hi = mean_radial_spectrum(imgs, n_boot=300)
    assert freq.shape == mean.shape == lo.shape == hi.shape
    assert np.all(lo <= mean + 1e-12) and np.all(mean <= hi + 1e-12)
    assert np.all(hi > lo)
    assert mean.mean() == pytest.approx(0.01, rel=0.1)
    # one image: band collapses; mixed sizes are interpolated onto the first grid
    f1, m1, lo1, hi1 = mean_radial_spectrum(imgs[:1])
    np.testing.assert_array_equal(lo1, m1)
    f2, m2, _, _ = mean_radial_spectrum([imgs[0], rng.normal(0, 0.1, size=(96, 96))])
    assert f2.shape == (32,) and np.all(np.isfinite(m2))
    with pytest.raises(ValueError):
        mean_radial_spectrum([])


@pytest.mark.parametrize("sigma", [0.01, 0.05, 0.1])
def test_noise_sigma_on_flat_image(sigma):
    rng = np.random.default_rng(4)
    img = 0.4 + rng.normal(0, sigma, size=(128, 128))
    assert noise_sigma_estimate(img) == pytest.approx(sigma, rel=0.1)


def test_noise_sigma_ignores_structure():
    """Lines, gradients and edges barely change the estimate (median of the high-pass)."""
    rng = np.random.default_rng(5)
    n, sigma = 128, 0.03
    yy, xx = np.mgrid[0:n, 0:n]
    structure = 0.2 + 0.3 * ((xx // 8) % 2) + 0.2 * yy / n  # line/space grating + gradient
    img = structure + rng.normal(0, sigma, size=(n, n))
    assert noise_sigma_estimate(img) == pytest.approx(sigma, rel=0.1)
    assert noise_sigma_estimate(structure) < 0.1 * sigma


def test_spectral_slope_power_law():
    f = np.linspace(0.01, 0.5, 50)
    assert spectral_slope(f, 3.0 * f**-2.5) == pytest.approx(-2.5)
    assert np.isnan(spectral_slope(f[:2], f[:2]))


def test_log_spectrum_distance_and_high_frequency_ratio():
    from scipy import ndimage

    from semlab.metrics.spectral import high_frequency_ratio, log_spectrum_distance

    rng = np.random.default_rng(0)
    white = [rng.normal(0, 1, (64, 64)) for _ in range(8)]
    white2 = [rng.normal(0, 1, (64, 64)) for _ in range(8)]
    louder = [3 * w for w in white2]  # +9.54 dB at every frequency
    smooth = [ndimage.gaussian_filter(w, 2) for w in white2]
    assert log_spectrum_distance(white, white) == 0.0
    assert log_spectrum_distance(white, white2) < 1.0  # same spectrum up to sampling noise
    assert log_spectrum_distance(white2, louder) == pytest.approx(20 * np.log10(3), rel=1e-6)
    assert log_spectrum_distance(white, smooth) > 10
    # white noise: the share of ring-weighted power above 0.25 cycles/px is the share of
    # the radial bins' ring weights above it (flat spectrum)
    f = np.arange(1, 33) / 64
    expected = (f[f > 0.25]).sum() / f.sum()
    assert high_frequency_ratio(white, window=None) == pytest.approx(expected, rel=0.05)
    assert high_frequency_ratio(smooth) < 0.01


# --------------------------------------------------------------------------- the one window and radial spectrum


def test_spectral_window_by_hand():
    from semlab.metrics.spectral import spectral_window

    # np.hanning(3) = [0, 1, 0], np.hanning(5) = [0, .5, 1, .5, 0]: the outer product
    expect = np.array([[0, 0, 0, 0, 0], [0, 0.5, 1, 0.5, 0], [0, 0, 0, 0, 0]])
    np.testing.assert_allclose(spectral_window((3, 5), "hann"), expect, atol=1e-15)
    for none in (None, "none", "boxcar", "rect"):
        assert np.array_equal(spectral_window((3, 5), none), np.ones((3, 5)))
    with pytest.raises(ValueError, match="unknown window 'kaiser'; valid: 'hann', None"):
        spectral_window((4, 4), "kaiser")


def _ring_count(n: int, k: int) -> int:
    """How many of the n x n FFT frequencies (integers in [-n/2, n/2)) have rint(|f| n) == k."""
    ks = [i if i < n // 2 else i - n for i in range(n)]
    return sum(1 for a in ks for b in ks if round((a * a + b * b) ** 0.5) == k)


def test_radial_power_spectra_closed_form_cosine_and_checkerboard():
    from semlab.metrics.spectral import radial_bins, radial_power_spectra

    n, amp = 64, 0.2
    yy, xx = np.mgrid[0:n, 0:n]
    cos = 0.5 + amp * np.cos(2 * np.pi * (8 * xx + 6 * yy) / n)  # |f| = 10/n exactly
    cb = 0.5 + amp * (-1.0) ** (xx + yy)  # (0.5, 0.5): |f| = 0.707, beyond Nyquist
    freq, s = radial_power_spectra([cos, cb], window=None)
    np.testing.assert_allclose(freq, np.arange(1, n // 2 + 1) / n)
    # a cosine of amplitude a puts a^2 n^2 / 4 at +f and at -f; the bin averages its frequencies
    expect = 2 * amp**2 * n**2 / 4 / _ring_count(n, 10)
    assert s[0, 9] == pytest.approx(expect, rel=1e-12)
    assert np.allclose(np.delete(s[0], 9), 0, atol=1e-20)
    assert np.allclose(s[1], 0, atol=1e-20)  # up to Nyquist the checkerboard is invisible
    freq, s = radial_power_spectra([cb], window=None, to_corner=True)
    k = int(round(n * 2**-0.5))  # 45
    _, _, nbins = radial_bins(n, n, to_corner=True)
    assert len(freq) == nbins == k and freq[-1] == pytest.approx(k / n)
    assert s[0, k - 1] == pytest.approx(amp**2 * n**2 / _ring_count(n, k), rel=1e-12)
    assert np.allclose(s[0, : k - 1], 0, atol=1e-20)


def test_radial_power_spectra_white_noise_is_flat_and_rows_are_the_single_image_spectra():
    from semlab.metrics.spectral import radial_power_spectra

    s2 = 0.1**2
    imgs = np.random.default_rng(5).normal(0.5, 0.1, size=(16, 96, 64))
    for window in (None, "hann"):
        freq, s = radial_power_spectra(imgs, window=window, chunk=5)  # chunks of 5, 5, 5, 1
        mean = s.mean(axis=0)
        assert mean.mean() == pytest.approx(s2, rel=0.03) and np.all(np.abs(mean[3:] / s2 - 1) < 0.2)
        for im, row in zip(imgs[:3], s):
            assert np.array_equal(radial_power_spectrum(im, window=window)[1], row)
    # uint8 is read as gray levels in [0, 1]: the spectrum of u8 is that of u8 / 255
    u8 = np.random.default_rng(6).integers(0, 256, (2, 32, 32)).astype(np.uint8)
    np.testing.assert_allclose(radial_power_spectra(u8)[1], radial_power_spectra(u8 / 255.0)[1], rtol=1e-12)
    with pytest.raises(ValueError, match=r"image 1 has shape \(32, 31\) but image 0 has \(32, 32\)"):
        radial_power_spectra([u8[0], u8[1][:, :31]])
    with pytest.raises(ValueError, match=r"image 0 of shape \(3, 32\) is too small"):
        radial_power_spectrum(np.zeros((3, 32)))
