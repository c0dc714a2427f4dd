"""The re-tuned built-in presets (issue 17 item 4): the ic-metal MIIC statistics by their
named estimators, the edge-overshoot estimator against a closed form, the pillar layout,
scan-correlated noise, and the pre-issue presets kept under their own names."""

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.integrate import trapezoid

from semlab import labels
from semlab.data import layouts as L
from semlab.data.simulate import PRESETS, SIMULATOR_VERSION, simulate
from semlab.metrics.spectral import noise_sigma_estimate
from semlab.metrology import edge_overshoot, fft_pitch

# MIIC statistics (third-party measurements, unverified) and the tolerance
MIIC = {"noise_sigma": 0.0024, "rim": 0.16, "halo": -0.19, "pitch_px": 51.0}
TOL = 0.25


def _plateau_image(P=0.6, T=0.2, rim=0.064, halo=-0.076, n=64):
    """Vertical stripes: plateaus (cols 0-31 of every 64) with a one-pixel rim of `rim`
    above P on both sides of the edges, trenches with a one-pixel halo of `halo` below T."""
    img = np.full((n, n), T, np.float64)
    mask = np.zeros((n, n), bool)
    mask[:, :32] = True
    img[:, :32] = P
    img[:, [0, 31]] += rim
    img[:, [32, 63]] += halo
    return img, mask


def test_edge_overshoot_matches_the_closed_form():
    img, mask = _plateau_image()
    # the trenches are 32 px wide, so both levels are read far from the edges
    rim, halo = edge_overshoot(np.tile(img, (1, 4)), np.tile(mask, (1, 4)), far_px=4.0)
    assert rim == pytest.approx(0.064 / 0.4, abs=1e-9)
    assert halo == pytest.approx(-0.076 / 0.4, abs=1e-9)
    # dark plateaus on a bright ground: the same magnitudes
    rim2, halo2 = edge_overshoot(1.0 - np.tile(img, (1, 4)), np.tile(mask, (1, 4)), far_px=4.0)
    assert rim2 == pytest.approx(rim, abs=1e-9) and halo2 == pytest.approx(halo, abs=1e-9)


def test_edge_overshoot_refuses_bad_input():
    img, mask = _plateau_image()
    with pytest.raises(ValueError, match="shape"):
        edge_overshoot(img, mask[:, :10])
    with pytest.raises(ValueError, match="no edges"):
        edge_overshoot(img, np.ones_like(mask))
    with pytest.raises(ValueError, match="plateau pixels"):
        edge_overshoot(img, mask, far_px=40.0)


def test_ic_metal_has_the_miic_statistics():
    """Three 512-px frames; each statistic's median within +-25% of the MIIC value."""
    sig, rims, halos, pitches, cover = [], [], [], [], []
    for k in range(3):
        r = simulate("ic-metal", 512, (7, k), with_contours=False)
        plateau = r.mask == labels.PATTERN
        sig.append(noise_sigma_estimate(r.image))
        rim, halo = edge_overshoot(r.image, plateau)
        rims.append(rim)
        halos.append(halo)
        pitches.append(fft_pitch(r.image).pitch_px)
        cover.append(plateau.mean())
    got = {"noise_sigma": np.median(sig), "rim": np.median(rims), "halo": np.median(halos),
           "pitch_px": np.median(pitches)}
    for k, want in MIIC.items():
        assert abs(got[k] / want - 1) <= TOL, f"{k}: {got[k]:.4g}, MIIC {want} (+-{TOL:.0%})"
    assert np.median(cover) > 0.6  # metal plateaus cover most of the field


def test_ic_metal_noisy_keeps_the_old_look():
    """The old ic-metal (now ic-metal-noisy) is much noisier and mostly dark field."""
    new = simulate("ic-metal", 256, 1, with_contours=False)
    old = simulate("ic-metal-noisy", 256, 1, with_contours=False)
    assert noise_sigma_estimate(old.image) > 5 * noise_sigma_estimate(new.image)
    assert (old.mask == labels.PATTERN).mean() < (new.mask == labels.PATTERN).mean()


def test_preset_names_exist_and_differ():
    assert SIMULATOR_VERSION >= 3
    for new, old in (("line-space", "line-space-v2"), ("contacts", "contacts-v2"), ("ic-metal", "ic-metal-noisy")):
        assert new in PRESETS and old in PRESETS
        assert PRESETS[new].params != PRESETS[old].params
        assert PRESETS[new].layout == PRESETS[old].layout
    assert PRESETS["contacts-pillars"].params["pillars"] is True
    # every preset renders
    for name in PRESETS:
        r = simulate(name, 64, 0, with_contours=False)
        assert r.image.shape == (64, 64) and np.isfinite(r.image).all()


@pytest.mark.parametrize("cy,cx,r", [(20.3, 20.7, 7.5), (10.0, 11.5, 3.2), (30.5, 30.5, 12.0)])
def test_disc_strips_have_the_disc_area(cy, cx, r):
    cov = L.rasterize_rects(L.disc_strips(cy, cx, r), 64, 64)
    assert cov.sum() == pytest.approx(math.pi * r * r, rel=1e-5)
    # per row: the disc's area in that row (closed form by numerical integration)
    yy = np.linspace(-0.5, 0.5, 2001)
    for i in (int(cy), int(cy + r * 0.7)):
        t = i + yy - cy
        chord = 2 * np.sqrt(np.clip(r * r - t * t, 0, None))
        assert cov[i].sum() == pytest.approx(trapezoid(chord, yy), abs=2e-3)


def test_pillars_are_pattern_discs_on_background():
    r = simulate("contacts-pillars", 256, 3, defect_prob=0.0, with_contours=False)
    pat = r.mask == labels.PATTERN
    assert 0.1 < pat.mean() < 0.7
    assert not (r.mask == labels.HOLE).any()
    lab, n = ndimage.label(pat)
    assert n >= 10
    # pillars are brighter than the film between them (noise-free image)
    assert r.clean[pat].mean() > r.clean[~pat].mean() + 0.1


def test_scan_correlated_noise_has_the_gaussian_filter_correlation():
    """scan_corr_px low-passes all noise along x: lag-1 correlation along x equals that of
    scipy's Gaussian filter of white noise, none along y, variance kept."""
    s = 0.6
    kw = dict(disable=["texture", "charging", "detector_noise", "scan_noise"], dose=400.0, defect_prob=0.0)
    a = simulate("line-space", 256, 5, scan_corr_px=s, with_contours=False, **kw)
    b = simulate("line-space", 256, 5, scan_corr_px=0.0, with_contours=False, **kw)
    na = (a.image - a.clean).astype(np.float64)[:, 8:-8]
    nb = (b.image - b.clean).astype(np.float64)[:, 8:-8]
    k = ndimage.gaussian_filter1d(np.eye(1, 41, 20).ravel(), s, truncate=4.0)
    rho = float((k[1:] * k[:-1]).sum() / (k * k).sum())
    lag_x = float((na[:, 1:] * na[:, :-1]).mean() / na.var())
    lag_y = float((na[1:] * na[:-1]).mean() / na.var())
    assert lag_x == pytest.approx(rho, abs=0.03)
    assert abs(lag_y) < 0.03
    assert na.var() == pytest.approx(nb.var(), rel=0.05)


def _feature_distance(preset, real):
    """Mean squared standardised difference of the mean tile features of `semlab realism`
    (log radial spectrum, intensity and gradient histograms), sim against real."""
    from semlab.realism import render_preset_side, tile_features

    fr = tile_features(real.tiles)
    fs = tile_features(render_preset_side(preset, like=real, tile=real.tiles.shape[1], n_tiles=len(fr)).tiles[:len(fr)])
    sd = np.sqrt(0.5 * (fr.var(0) + fs.var(0))) + 1e-3
    return float(np.mean(((fs.mean(0) - fr.mean(0)) / sd) ** 2))


def test_retuned_line_space_is_closer_to_the_real_test_frame_than_the_old():
    """On the held-out test frame of cdsem-lines (never used for tuning) the re-tuned
    line-space's tile features are far closer to the real ones than the pre-issue preset's.
    (The protocol's balanced accuracy saturates at 1.0 for both on one test frame:
    tools/measure_presets.py.)"""
    from semlab.data import samples
    from semlab.realism import load_side

    real = load_side(samples.path("cdsem-lines"), split="test", tile=64)
    real = real.subset(np.arange(0, real.n, 4))  # 70 tiles spread over the frame
    new, old = _feature_distance("line-space", real), _feature_distance("line-space-v2", real)
    assert new < 0.25 * old, (new, old)
