"""semlab.metrology against closed forms on synthetic images of known geometry."""

import numpy as np
import pytest
from scipy import ndimage

from semlab.metrology import edge_psd, fft_pitch, line_edges, measure_contacts, measure_lines, unbiased_sigma


def _coverage(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Area coverage of the interval [a, b] (per row, arrays (rows,)) over pixels j of
    extent [j - 0.5, j + 0.5], j = 0..n-1: exact sub-pixel edges."""
    j = np.arange(n)[None, :]
    return np.clip(np.minimum(b[:, None], j + 0.5) - np.maximum(a[:, None], j - 0.5), 0.0, 1.0)


def _rough(rng, rows: int, sigma: float, corr: float) -> np.ndarray:
    """A stationary Gaussian process of standard deviation `sigma` and a Gaussian
    correlation (filter sigma `corr` px): white noise convolved with a unit-L2 kernel."""
    if sigma == 0:
        return np.zeros(rows)
    k = np.exp(-0.5 * (np.arange(-int(5 * corr), int(5 * corr) + 1) / corr) ** 2)
    k /= np.sqrt((k ** 2).sum())
    w = rng.normal(size=rows + len(k) - 1)
    return sigma * np.convolve(w, k, mode="valid")


def lines_image(rng, *, rows=512, cols=256, pitch=25.0, cd=10.0, ler=0.0, corr=4.0, noise=0.0, blur=1.0,
                bg=0.2, fg=0.7, rim=0.0, x0=7.3):
    """Vertical bright lines of width `cd` every `pitch` px, each edge displaced by an
    independent rough process of sigma `ler`; optional bright rims at the edges."""
    img = np.full((rows, cols), bg)
    k = 0
    while x0 + k * pitch + cd < cols - 1:
        a = x0 + k * pitch + _rough(rng, rows, ler, corr)
        b = x0 + k * pitch + cd + _rough(rng, rows, ler, corr)
        img += (fg - bg) * _coverage(a, b, cols)
        if rim:
            img += rim * (_coverage(a, a + 1.5, cols) + _coverage(b - 1.5, b, cols))
        k += 1
    if blur:
        img = ndimage.gaussian_filter1d(img, blur, axis=1, mode="nearest")
    return img + rng.normal(0, noise, img.shape) if noise else img


@pytest.mark.parametrize("pitch", [12.5, 20.0, 33.3, 47.0])
def test_fft_pitch_of_line_space_within_2_percent(pitch):
    rng = np.random.default_rng(0)
    img = lines_image(rng, rows=256, cols=256, pitch=pitch, cd=0.45 * pitch, noise=0.05)
    r = fft_pitch(img)
    assert r.pitch_px == pytest.approx(pitch, rel=0.02)
    assert abs(r.angle_deg) < 1 or abs(abs(r.angle_deg) - 180) < 1  # varies along x: vertical lines
    assert fft_pitch(img.T).pitch_px == pytest.approx(pitch, rel=0.02)  # horizontal lines


@pytest.mark.parametrize("pitch", [16.0, 24.0, 40.0])
def test_fft_pitch_finds_the_fundamental_when_rims_dominate(pitch):
    """Lines at half duty with bright rims on both edges and a weak plateau contrast: the
    rims repeat every half pitch and hold the strongest peak; the pitch is still found."""
    rng = np.random.default_rng(1)
    img = lines_image(rng, rows=256, cols=256, pitch=pitch, cd=pitch / 2, fg=0.25, rim=0.5, noise=0.02)
    p = np.abs(np.fft.rfft(img.mean(axis=0) - img.mean())) ** 2
    f_strongest = np.argmax(p[2:]) + 2
    assert f_strongest / 256 == pytest.approx(2 / pitch, rel=0.1)  # the harmonic is the strongest
    r = fft_pitch(img)
    assert r.pitch_px == pytest.approx(pitch, rel=0.02)
    assert r.harmonic == 2


def test_fft_pitch_of_a_contact_lattice():
    n, pitch = 256, 21.3
    yy, xx = np.mgrid[0:n, 0:n]
    d = np.hypot((yy + 0.5 * pitch) % pitch - 0.5 * pitch, (xx + 0.5 * pitch) % pitch - 0.5 * pitch)
    img = 0.7 - 0.5 * (d < 0.3 * pitch) + np.random.default_rng(2).normal(0, 0.05, (n, n))
    assert fft_pitch(img).pitch_px == pytest.approx(pitch, rel=0.02)


def test_fft_pitch_refuses_a_flat_image():
    with pytest.raises(ValueError, match="flat"):
        fft_pitch(np.full((64, 64), 0.3))


@pytest.mark.parametrize("cd", [8.0, 11.5, 16.3])
def test_cd_of_lines(cd):
    rng = np.random.default_rng(3)
    img = lines_image(rng, rows=128, cols=256, pitch=30.0, cd=cd, noise=0.02, blur=1.0)
    m = measure_lines(img)
    assert m.cd == pytest.approx(cd, abs=0.15)
    assert m.pitch == pytest.approx(30.0, rel=0.02)
    assert m.n_lines >= 7
    # dark lines on a bright ground: the same geometry with polarity "dark"
    assert measure_lines(1 - img, polarity="dark").cd == pytest.approx(cd, abs=0.15)


@pytest.mark.parametrize("ler", [0.5, 1.0, 2.0])
def test_unbiased_ler_within_15_percent(ler):
    """Image noise jitters every detected edge; the biased sigma is inflated (most at the
    smallest LER), the PSD noise-floor subtraction recovers the true sigma."""
    rng = np.random.default_rng(int(ler * 10))
    img = lines_image(rng, rows=1024, cols=256, pitch=25.0, cd=11.0, ler=ler, corr=4.0, noise=0.1, blur=1.0)
    m = measure_lines(img)
    assert m.ler_3sigma / 3 == pytest.approx(ler, rel=0.15)
    # LWR of independent edges: sqrt(2) times the LER
    assert m.lwr_3sigma / 3 == pytest.approx(np.sqrt(2) * ler, rel=0.15)
    if ler == 0.5:
        assert m.ler_3sigma_biased / 3 > 1.15 * ler  # the floor subtraction is what makes it right


def test_line_edges_follow_the_true_edges():
    rng = np.random.default_rng(7)
    rows, cols = 64, 128
    a = 20.3 + _rough(rng, rows, 1.0, 4.0)
    b = a + 9.0
    img = ndimage.gaussian_filter1d(0.2 + 0.5 * _coverage(a, b, cols), 1.0, axis=1)
    e = line_edges(img, orientation="vertical", smooth_px=0)
    assert e.n_lines == 1
    assert np.nanmax(np.abs(e.left[0] - a)) < 0.1 and np.nanmax(np.abs(e.right[0] - b)) < 0.1  # sub-pixel


def test_unbiased_sigma_of_white_noise_is_zero_and_of_a_sine_is_exact():
    rng = np.random.default_rng(8)
    white = rng.normal(0, 0.7, size=(50, 512))
    u, b, floor = unbiased_sigma(white)
    assert b == pytest.approx(0.7, rel=0.03) and u < 0.1 and floor == pytest.approx(0.49, rel=0.05)
    y = np.arange(512)
    sine = np.sin(2 * np.pi * y * 8 / 512)[None] * np.sqrt(2) * 1.3  # sigma 1.3 at a low frequency
    u, b, _ = unbiased_sigma(sine)
    assert u == pytest.approx(1.3, rel=0.01) and b == pytest.approx(1.3, rel=0.01)
    f, p = edge_psd(sine)
    assert f[np.argmax(p)] == pytest.approx(8 / 512)


def _disc_image(n, centres, diam, ratio=1.0, blur=0.8, noise=0.02, ss=4, rng=None):
    """Dark elliptical holes (axes diam, diam*ratio) in a bright film, area-sampled ss x ss."""
    yy, xx = (np.mgrid[0:n * ss, 0:n * ss] + 0.5) / ss - 0.5
    hole = np.zeros((n * ss, n * ss), bool)
    for cy, cx in centres:
        hole |= ((xx - cx) / (diam / 2)) ** 2 + ((yy - cy) / (diam * ratio / 2)) ** 2 <= 1
    cov = hole.reshape(n, ss, n, ss).mean(axis=(1, 3))
    img = ndimage.gaussian_filter(0.7 - 0.5 * cov, blur)
    return img + (rng or np.random.default_rng(0)).normal(0, noise, img.shape)


@pytest.mark.parametrize("diam", [12.0, 18.0, 26.0])
def test_contact_diameter_and_roundness_of_circles(diam):
    n, pitch = 160, 40.0
    centres = [(20.3 + i * pitch, 20.7 + j * pitch) for i in range(4) for j in range(4)]
    m = measure_contacts(_disc_image(n, centres, diam))
    assert m.polarity == "dark"
    assert len(m.contacts) == 16
    assert m.diameter == pytest.approx(diam, rel=0.02)
    assert m.roundness > 0.97
    assert all(c.fit_radius == pytest.approx(diam / 2, rel=0.03) for c in m.contacts)


def test_contact_roundness_of_ellipses_and_pillars():
    n = 120
    centres = [(30.2, 30.4), (30.6, 89.1), (90.3, 60.2)]
    m = measure_contacts(_disc_image(n, centres, 24.0, ratio=0.6))
    assert len(m.contacts) == 3
    assert m.roundness == pytest.approx(0.6, abs=0.03)
    assert m.diameter == pytest.approx(24.0 * np.sqrt(0.6), rel=0.03)  # equal-area circle
    pillars = measure_contacts(1 - _disc_image(n, centres, 18.0))  # bright pillars
    assert pillars.polarity == "bright" and pillars.diameter == pytest.approx(18.0, rel=0.02)


def test_contacts_touching_the_border_are_left_out():
    m = measure_contacts(_disc_image(80, [(40.0, 40.0), (2.0, 40.0)], 16.0))
    assert len(m.contacts) == 1
