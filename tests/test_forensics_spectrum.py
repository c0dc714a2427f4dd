"""semlab.forensics.spectrum against closed forms: Parseval, white-noise spectra and their
bootstrap bands, exact dB differences, planted periodic patterns and their amplitudes, and
the spectrum-only detector on a planted checkerboard."""

import numpy as np
import pytest

from semlab.data.simulate import simulate
from semlab.forensics.detector import grouped_folds, stack_sets
from semlab.forensics.spectrum import (
    _bootstrap_band,
    compare_radial_spectra,
    cross_validate_spectrum_detector,
    find_spectral_peaks,
    log_spectrum_difference,
    mean_power_spectrum_2d,
    power_spectrum_2d,
    radial_spectra,
    radial_spectrum,
)
from semlab.metrics.spectral import mean_radial_spectrum, radial_power_spectrum

SIZE = 64


def _grid(n=SIZE):
    return np.mgrid[:n, :n].astype(np.float64)


@pytest.fixture(scope="module")
def metal():
    """Clean ic-metal images: a 'real' set and an independent set to plant artifacts in."""
    a = np.stack([simulate("ic-metal-noisy", SIZE, seed=i, with_contours=False).image for i in range(32)])
    b = np.stack([simulate("ic-metal-noisy", SIZE, seed=500 + i, with_contours=False).image for i in range(32)])
    return a, b


# --------------------------------------------------------------------------- spectra


@pytest.mark.parametrize("shape,window", [((64, 64), "hann"), ((48, 64), None), ((64, 40), "hann")])
def test_radial_spectra_extend_metrics_spectral(shape, window):
    rng = np.random.default_rng(0)
    imgs = rng.random((3,) + shape)
    freq, s = radial_spectra(imgs, window=window, to_corner=True)
    n = min(shape)
    corner = np.hypot(shape[0] // 2 / shape[0], shape[1] // 2 / shape[1])  # largest |f| on the grid
    assert freq[-1] > 0.5 and len(freq) == int(np.rint(corner * n))
    for im, row in zip(imgs, s):
        f_ref, p_ref = radial_power_spectrum(im, window=window)
        assert np.allclose(freq[: len(f_ref)], f_ref) and np.allclose(row[: len(p_ref)], p_ref)
    f2, s2 = radial_spectra(imgs, window=window, to_corner=False)
    assert np.allclose(s2, s[:, : len(f2)])
    f1, p1 = radial_spectrum(imgs[0], window=window)
    assert np.allclose(p1, s[0])


def test_power_spectrum_parseval_and_checkerboard_in_the_corner():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 32))
    p = power_spectrum_2d(x, window=None)
    assert p.sum() / x.size == pytest.approx(x.var())  # Parseval with semlab's normalisation
    yy, xx = _grid(32)
    cb = 0.5 + 0.1 * (-1.0) ** (yy + xx)
    p = power_spectrum_2d(cb, window=None)
    assert p[16, 16] == pytest.approx(0.1**2 * 32 * 32)  # a^2 HW at (0.5, 0.5), nothing elsewhere
    assert np.allclose(np.delete(p.ravel(), 16 * 32 + 16), 0, atol=1e-20)
    fy, fx, pm = mean_power_spectrum_2d([cb, cb])
    assert fy[16] == 0 and fx[16] == 0 and fy[0] == -0.5  # fftshifted: DC centred
    freq, s = radial_spectrum(cb, window=None)
    assert freq[np.argmax(s)] == pytest.approx(np.sqrt(0.5), abs=0.5 / 32)  # beyond Nyquist: needs the corners


def test_bootstrap_band_is_that_of_mean_radial_spectrum():
    rng = np.random.default_rng(2)
    imgs = rng.random((6, 32, 32))
    freq, s = radial_spectra(imgs, to_corner=False)
    m, lo, hi, _ = _bootstrap_band(s, 300, 0.9, np.random.default_rng(7))
    f_ref, m_ref, lo_ref, hi_ref = mean_radial_spectrum(list(imgs), n_boot=300, ci=0.9, seed=7)
    assert np.allclose(freq, f_ref) and np.allclose(m, m_ref) and np.allclose(lo, lo_ref) and np.allclose(hi, hi_ref)


def test_spectral_bands_cover_the_white_noise_truth():
    """White noise of variance s^2 has E[P(f)] = s^2 at every f != 0 (no window, exact);
    per bin, the mean over N images of the average over its m frequencies (m/2 independent
    exponentials, Hermitian pairs are equal) has standard error s^2 / sqrt(N m / 2)."""
    s, n_img, n = 0.1, 40, 32
    rng = np.random.default_rng(3)
    a = rng.normal(0.5, s, (n_img, n, n))
    b = rng.normal(0.5, s, (n_img, n, n))
    c = compare_radial_spectra({"real": a, "other": b}, window=None, n_boot=2000, seed=0)
    m, lo, hi = c.power["real"]
    assert np.mean((lo <= s**2) & (s**2 <= hi)) >= 0.85
    assert np.allclose(m.mean(), s**2, rtol=0.03)
    fy, fx = np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :]
    k = np.rint(np.hypot(fy, fx) * n).astype(int)
    counts = np.bincount(k.ravel(), minlength=len(c.freq) + 1)[1: len(c.freq) + 1]
    se = s**2 / np.sqrt(n_img * np.maximum(counts / 2, 1))
    ratio = (hi - lo) / (2 * 1.96 * se)
    assert 0.8 < np.median(ratio) < 1.2
    # the ratio of two sets drawn alike is 0 dB within its band, almost everywhere
    rm, rlo, rhi = c.ratio_db["other"]
    assert np.mean((rlo <= 0) & (0 <= rhi)) >= 0.85
    assert np.all(c.ratio_db["real"][0] == 0)
    rows = c.to_rows()
    assert len(rows) == 2 * len(c.freq) and rows[0]["set"] == "real"
    with pytest.raises(KeyError, match="real, other"):
        compare_radial_spectra({"real": a, "other": b}, reference="fake")


def test_spectrum_difference_and_band_ratio_are_exact_for_a_contrast_change():
    """Doubling the contrast multiplies every non-DC power by 4: +6.02 dB everywhere."""
    rng = np.random.default_rng(4)
    real = rng.uniform(0.3, 0.7, (5, 32, 32))
    fake = 0.5 + 2 * (real - 0.5)
    db = 20 * np.log10(2)
    for stat in ("log_mean", "mean_log"):
        fy, fx, d = log_spectrum_difference(real, fake, statistic=stat)
        assert d.shape == (32, 32) and d[16, 16] == 0
        off_dc = np.ones_like(d, bool)
        off_dc[16, 16] = False
        assert np.allclose(d[off_dc], db)
    # paired resampling: the fake of image i is resampled with image i, so the ratio is exact
    c = compare_radial_spectra({"real": real, "fake": fake}, n_boot=200, paired=True)
    assert np.allclose(c.ratio_db["fake"][0], db) and np.allclose(c.ratio_db["fake"][1], db)
    assert np.allclose(c.ratio_db["fake"][2], db)
    for row in c.band_summary(n_boot=200):
        assert row["ratio_db"] == pytest.approx(db) and row["ratio_db_lo"] == pytest.approx(db)
    # resampled independently, the band is wide but still holds the truth
    c = compare_radial_spectra({"real": real, "fake": fake}, n_boot=200)
    assert np.allclose(c.ratio_db["fake"][0], db)
    assert np.mean((c.ratio_db["fake"][1] < db) & (db < c.ratio_db["fake"][2])) >= 0.9
    with pytest.raises(ValueError, match="one size"):
        compare_radial_spectra({"real": real, "fake": fake[:3]}, paired=True)
    with pytest.raises(ValueError, match="statistic"):
        log_spectrum_difference(real, fake, statistic="median")


# --------------------------------------------------------------------------- peaks


def test_peak_finder_finds_planted_patterns_with_their_amplitude():
    rng = np.random.default_rng(5)
    sigma = 0.05
    noise = rng.normal(0.5, sigma, (16, SIZE, SIZE))
    yy, xx = _grid()
    cos4 = np.cos(2 * np.pi * xx / 4)  # period 4 px along x: (fy, fx) = (0, 0.25)
    cb = (-1.0) ** (yy + xx)  # (0.5, 0.5)
    diag = np.cos(2 * np.pi * (yy / 8 - xx / 4) + 0.7)  # (1/8, -1/4): checks the +-f bookkeeping

    assert find_spectral_peaks(noise) == []  # nothing in pure noise

    pk = find_spectral_peaks(noise + 0.3 * sigma * cos4)
    assert len(pk) == 1
    p = pk[0]
    assert (p.fy, p.fx) == (0.0, 0.25) and p.period_px == pytest.approx(4.0) and p.period_y == np.inf
    assert p.amplitude == pytest.approx(0.3 * sigma, rel=0.15) and p.z >= 6

    pk = find_spectral_peaks(noise + 0.2 * sigma * cb + 0.3 * sigma * diag)
    got = {(q.fy, q.fx): q for q in pk}
    assert set(got) == {(0.5, 0.5), (0.125, -0.25)}
    assert got[(0.5, 0.5)].amplitude == pytest.approx(0.2 * sigma, rel=0.15)
    assert got[(0.5, 0.5)].period_px == pytest.approx(np.sqrt(0.5) ** -1)
    assert "checkerboard" in got[(0.5, 0.5)].label()
    assert got[(0.125, -0.25)].amplitude == pytest.approx(0.3 * sigma, rel=0.15)


def test_peak_finder_on_sem_images(metal):
    real, other = metal
    assert find_spectral_peaks(real) == []  # clean simulated SEM: no periodic artifact
    cb = (-1.0) ** np.add.outer(np.arange(SIZE), np.arange(SIZE))
    noise = np.mean([np.std(simulate("ic-metal-noisy", SIZE, seed=i).image - simulate("ic-metal-noisy", SIZE, seed=i).clean)
                     for i in range(4)])
    amp = 0.01
    assert amp < 0.35 * noise
    fake = np.clip(other + amp * cb, 0, 1)
    for ref in (None, real):  # alone, and as a ratio to the real set
        pk = find_spectral_peaks(fake, reference=ref)
        assert [(q.fy, q.fx) for q in pk] == [(0.5, 0.5)]
        assert pk[0].amplitude == pytest.approx(amp, rel=0.2)
    d = pk[0].to_dict()
    assert d["period_x"] == 2.0 and d["period_y"] == 2.0


# --------------------------------------------------------------------------- spectrum detector


def test_spectrum_detector_separates_the_planted_checkerboard(metal):
    real, other = metal
    cb = (-1.0) ** np.add.outer(np.arange(SIZE), np.arange(SIZE))
    fake = np.clip(other + 0.01 * cb, 0, 1).astype(np.float32)
    r = cross_validate_spectrum_detector(real.astype(np.float32), fake, n_splits=4, seed=0, n_boot=500)
    assert r.metrics["accuracy"].value >= 0.9, r.summary()
    assert r.metrics["roc_auc"].value >= 0.95
    assert len(r.models) == 4 and r.detector == "spectrum_logreg"
    # the very folds of the CNN detector with the same seed
    _, y, g = stack_sets(real, fake)
    folds = grouped_folds(y, g, n_splits=4, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, r.folds))
    for tr, te in r.folds:
        assert not set(g[tr]) & set(g[te])
    # without the artifact it finds nothing
    r0 = cross_validate_spectrum_detector(real.astype(np.float32), other.astype(np.float32), n_splits=4, n_boot=200)
    assert r0.metrics["accuracy"].value < 0.75


# --------------------------------------------------------------------------- figures


def test_spectrum_figures(metal):
    from matplotlib import pyplot as plt
    from matplotlib.figure import Figure

    from semlab.viz.forensics import radial_spectra_figure, spectral_peaks_figure, spectrum_difference_figure

    real, other = metal
    cb = (-1.0) ** np.add.outer(np.arange(SIZE), np.arange(SIZE))
    fake = np.clip(other + 0.01 * cb, 0, 1)
    before = plt.get_fignums()
    c = compare_radial_spectra({"real": real[:8], "gen": fake[:8]}, n_boot=100)
    f1 = radial_spectra_figure(c)
    f2 = spectrum_difference_figure({"gen": log_spectrum_difference(real[:8], fake[:8])})
    pk = find_spectral_peaks(fake)
    f3 = spectral_peaks_figure(mean_power_spectrum_2d(fake), pk)
    assert all(isinstance(f, Figure) for f in (f1, f2, f3))
    assert len(f1.axes) == 2 and len(f1.axes[0].lines) >= 2
    assert len(f2.axes) == 2  # the map and its colour bar
    circles = [ln for ln in f3.axes[0].lines if ln.get_marker() == "o"]
    # the checkerboard (0.5, 0.5) = (-0.5, -0.5) sits in the first row and column of the shifted array
    assert [(ln.get_xdata()[0], ln.get_ydata()[0]) for ln in circles] == [(-0.5, -0.5)]
    assert plt.get_fignums() == before


# --------------------------------------------------------------------------- one implementation


def test_forensics_spectra_are_those_of_metrics_spectral():
    """forensics.spectrum delegates to the one window, 2-D power and radial spectrum of
    semlab.metrics.spectral (bit for bit), with its own rule: images of >= 8 px."""
    from semlab.metrics.spectral import power_spectra_2d, radial_power_spectra, spectral_window

    rng = np.random.default_rng(9)
    imgs = rng.random((4, 24, 40))
    for window in (None, "hann"):
        for to_corner in (False, True):
            f1, s1 = radial_spectra(imgs, window=window, to_corner=to_corner)
            f2, s2 = radial_power_spectra(imgs, window=window, to_corner=to_corner)
            assert np.array_equal(f1, f2) and np.array_equal(s1, s2)
        p = power_spectra_2d(imgs, window=window)
        assert np.array_equal(power_spectrum_2d(imgs[1], window=window), p[1])
        assert np.allclose(mean_power_spectrum_2d(imgs, window=window)[2], np.fft.fftshift(p.mean(axis=0)))
    w = spectral_window((24, 40), "hann")
    x = imgs[0] - imgs[0].mean()
    assert np.allclose(power_spectrum_2d(imgs[0]), np.abs(np.fft.fft2(x * w)) ** 2 / (w**2).sum())
    with pytest.raises(ValueError, match=r"set 'fake': image 1 has shape \(24, 39\) but image 0 has \(24, 40\)"):
        compare_radial_spectra({"real": imgs, "fake": [imgs[0], imgs[1][:, :39]]})
    with pytest.raises(ValueError, match=r"images: image 0 of shape \(7, 40\) is too small \(at least 8 px"):
        radial_spectra(imgs[:, :7])
