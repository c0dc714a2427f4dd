"""The simulator against independent measurements: contours vs mask, Poisson noise,
LER sigma, determinism."""

import json

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import polygon2mask

from semlab import labels
from semlab.data.simulate import EFFECTS, PRESETS, effect_ladder, simulate, correlated_field

ALL = list(EFFECTS)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("seed", [0, 7])
def test_contours_rasterise_to_the_mask(preset, seed):
    r = simulate(preset, 128, seed, defect_prob=0.0)
    region = r.mask == labels.PATTERN
    filled = np.zeros(region.shape, bool)
    for c in r.contours:  # even-odd rule: hole outlines cut out of the pattern
        filled ^= polygon2mask(region.shape, c)
    diff = filled ^ region
    edge = ndimage.binary_dilation(region, iterations=1) ^ ndimage.binary_erosion(region, iterations=1)
    assert region.any() and len(r.contours) > 0
    assert not (diff & ~edge).any(), "contour/mask disagreement farther than 1 px from an edge"
    assert diff.sum() <= 0.02 * edge.sum() + 2


def test_shot_noise_is_poisson_at_the_dose():
    dose = 100.0
    r = simulate("ic-metal", 256, 3, disable=[e for e in ALL if e != "shot_noise"], dose=dose, defect_prob=0.0,
                 background_level=0.15, pattern_level=0.4)
    counts = r.image.astype(np.float64) * dose
    clean = r.clean.astype(np.float64)
    assert r.image.max() < 1.0  # no clipping, so the moments below are exact
    # Poisson: counts are integers, mean = dose * clean, variance = dose * clean
    assert np.allclose(counts, np.round(counts), atol=1e-3)
    resid = counts - dose * clean
    assert abs(resid.mean()) < 4 * np.sqrt(dose * clean.mean() / resid.size)
    ratio = (resid ** 2).sum() / (dose * clean).sum()
    assert ratio == pytest.approx(1.0, abs=0.03)
    # per intensity level too: dark trench and bright plateau
    for lo, hi in [(0.1, 0.25), (0.3, 0.5)]:
        sel = (clean > lo) & (clean < hi)
        assert sel.sum() > 2000
        assert resid[sel].var() / (dose * clean[sel]).mean() == pytest.approx(1.0, abs=0.06)


def _edge_positions(mask_row_major: np.ndarray) -> list[np.ndarray]:
    """x(y) of every left and right edge of vertical lines, tracked by nearest column."""
    m = mask_row_major.astype(np.int8)
    d = np.diff(m, axis=1)
    mean_profile = np.diff(m.mean(axis=0) > 0.5)
    nominal = np.flatnonzero(mean_profile) + 0.5
    series = {i: [] for i in range(len(nominal))}
    for y in range(m.shape[0]):
        xs = np.flatnonzero(d[y]) + 0.5
        for x in xs:
            k = int(np.argmin(np.abs(nominal - x)))
            if abs(nominal[k] - x) < 15:
                series[k].append(x)
    good = [np.asarray(v) for k, v in series.items()
            if len(v) == m.shape[0] and 20 < nominal[k] < m.shape[1] - 20]
    return good


def test_ler_sigma_matches_parameter():
    px, sigma_nm, corr_nm = 0.5, 1.5, 8.0
    sig_px = []
    for seed in range(3):
        r = simulate("line-space", (1024, 512), seed, pixel_nm=px, vertical=True, line_end_prob=0.0,
                     defect_prob=0.0, pitch_nm=48.0, width_frac=0.5, ler_sigma_nm=sigma_nm,
                     ler_corr_nm=corr_nm, with_contours=False)
        for x in _edge_positions(r.mask == labels.PATTERN):
            sig_px.append(np.std(x - x.mean()))
    assert len(sig_px) >= 12
    measured_nm = float(np.sqrt(np.mean(np.square(sig_px)))) * px
    # pixel quantisation of edges adds 1/12 px^2
    expected_nm = np.sqrt(sigma_nm ** 2 + px ** 2 / 12)
    assert measured_nm == pytest.approx(expected_nm, rel=0.12)


def test_correlated_field_std_and_correlation_length():
    rng = np.random.default_rng(0)
    f = correlated_field(rng, (512, 512), 2.0, 10.0, 0.5)
    assert f.std() == pytest.approx(2.0, rel=0.1)
    g = correlated_field(rng, (512, 512), 2.0, 2.0, 0.5)
    # a longer correlation length gives a smoother field (neighbour correlation)
    c = lambda a: np.corrcoef(a[:, :-1].ravel(), a[:, 1:].ravel())[0, 1]
    assert c(f) > c(g) > 0


def test_same_seed_same_bytes_other_seed_differs():
    a = simulate("ic-metal", 96, (5, 1))
    b = simulate("ic-metal", 96, (5, 1))
    c = simulate("ic-metal", 96, (5, 2))
    assert a.image.tobytes() == b.image.tobytes() and a.mask.tobytes() == b.mask.tobytes()
    assert json.dumps(a.params, sort_keys=True) == json.dumps(b.params, sort_keys=True)
    assert a.image.tobytes() != c.image.tobytes()


def test_outputs_contract():
    r = simulate("contacts", 64, 1)
    assert r.image.dtype == np.float32 and r.clean.dtype == np.float32 and r.mask.dtype == np.uint8
    assert r.image.shape == r.mask.shape == r.clean.shape == (64, 64)
    assert 0 <= r.image.min() and r.image.max() <= 1
    assert set(np.unique(r.mask)) <= {0, 1, 2, 3}
    assert (r.mask == labels.HOLE).any()
    json.dumps(r.params)  # serialisable


def test_holes_are_dark_pattern_bright_rims_brightest():
    r = simulate("contacts-v2", 256, 2, defect_prob=0.0)  # the re-tuned contacts has no visible rim
    hole = r.clean[ndimage.binary_erosion(r.mask == labels.HOLE, iterations=3)].mean()
    film = r.clean[ndimage.binary_erosion(r.mask == labels.PATTERN, iterations=6)].mean()
    rim = r.clean[(r.mask == labels.PATTERN) & ndimage.binary_dilation(r.mask == labels.HOLE, iterations=2)].mean()
    assert hole < film < rim


def test_effect_ladder_switches_effects_on_in_order():
    ladder = effect_ladder("ic-metal-noisy", 64, 0)  # ic-metal's corner radius is below a pixel at 64 px
    assert [n for n, _, _ in ladder] == ["layout"] + ALL
    for (_, _, a), (_, _, b) in zip(ladder, ladder[1:]):
        assert not np.array_equal(a, b)


def test_unknown_names_are_refused():
    with pytest.raises(KeyError, match="valid"):
        simulate("no-such-preset", 32)
    with pytest.raises(KeyError, match="ler_sigma_nm"):
        simulate("ic-metal", 32, ler_sigmaa=1)
    with pytest.raises(KeyError, match="valid"):
        simulate("ic-metal", 32, disable=["blurr"])


def test_databar_option():
    r = simulate("ic-metal", 128, 0, databar=True)
    row = r.params["databar_row"]
    assert 100 < row < 128 and (r.mask[row:] == 0).all()
    from semlab.data.sources import detect_databar
    assert detect_databar(r.image) is not None


# ---------------------------------------------------------------------------------
# the fast paths of the simulator against independent references


@pytest.mark.parametrize("lam", [3.0, 9.0, 30.0, 150.0])
def test_auto_shot_noise_matches_the_poisson_pmf(lam):
    """Total-variation distance of the sampled counts to scipy's Poisson pmf; a plain
    normal approximation would give 0.02-0.05 here and fail."""
    from scipy import stats
    from semlab.data.simulate import shot_noise

    dose = 200.0
    rng = np.random.default_rng(11)
    counts = shot_noise(rng, np.full((1000, 2000), lam / dose, np.float32), dose) * dose
    k = np.rint(counts).astype(np.int64)
    assert np.abs(counts - k).max() < 1e-3 and k.min() >= 0
    hist = np.bincount(k.ravel()) / k.size
    pmf = stats.poisson.pmf(np.arange(max(len(hist), int(lam * 3 + 30))), lam)
    hist = np.pad(hist, (0, len(pmf) - len(hist)))
    tv = 0.5 * np.abs(hist - pmf).sum()
    assert tv < 0.008, tv
    assert k.var() == pytest.approx(lam, rel=0.02)


def test_exact_shot_noise_and_bad_method():
    from semlab.data.simulate import shot_noise

    rng = np.random.default_rng(0)
    c = shot_noise(rng, np.full((300, 300), 0.5, np.float32), 40.0, "exact") * 40
    assert np.allclose(c, np.rint(c), atol=1e-4) and c.mean() == pytest.approx(20, rel=0.01)
    with pytest.raises(ValueError, match="shot-noise method"):
        shot_noise(rng, np.zeros((2, 2), np.float32), 10.0, "gaussian")
    with pytest.raises(ValueError, match="shot_noise_method"):
        simulate("ic-metal", 32, 0, shot_noise_method="normal")


def test_normal32_is_standard_normal():
    from scipy import stats
    from semlab.data.simulate import normal32

    x = normal32(np.random.default_rng(3), (501, 401)).astype(np.float64).ravel()
    assert x.shape == (501 * 401,)
    assert abs(x.mean()) < 0.01 and x.std() == pytest.approx(1.0, abs=0.01)
    assert abs(stats.skew(x)) < 0.02 and abs(stats.kurtosis(x)) < 0.04
    assert stats.kstest(x, "norm").pvalue > 1e-3


@pytest.mark.parametrize("s", [1.0, 2.5, 6.0])
@pytest.mark.parametrize("mode,ref", [("edge", "nearest"), ("symmetric", "reflect")])
def test_fft_gaussian_blur_matches_scipy(s, mode, ref):
    from semlab.data.simulate import gaussian_blur

    rng = np.random.default_rng(1)
    img = np.zeros((100, 130), np.float32)
    img[20:60, 30:90] = 1
    img[70:, 100:] = 0.5  # touches two borders: tests the padding mode
    img += 0.2 * rng.random(img.shape, dtype=np.float32)
    ours = gaussian_blur(img, s, mode)
    theirs = ndimage.gaussian_filter(img.astype(np.float64), s, mode=ref, truncate=6)
    assert ours.shape == img.shape
    assert np.abs(ours - theirs).max() < 1e-3


def test_random_fields_have_the_requested_variance():
    from semlab.data.simulate import edge_roughness

    rng = np.random.default_rng(5)
    f = np.stack([correlated_field(rng, (256, 192), 1.5, 6.0, 0.5) for _ in range(30)])
    assert f.var() == pytest.approx(1.5 ** 2, rel=0.06)
    for axis in (0, 1):
        e = np.stack([edge_roughness(rng, (192, 256), 0.7, 5.0, 0.5, 4.0, axis) for _ in range(30)])
        assert e.var() == pytest.approx(0.49, rel=0.06)
        # a 1-D process along the edge with no mean offset: every edge averages to zero
        assert np.abs(e.mean(axis=1 + axis)).max() < 1e-4
        # smooth across the edge: neighbours across are strongly correlated
        a, b = (e[:, :, :-1], e[:, :, 1:]) if axis == 0 else (e[:, :-1, :], e[:, 1:, :])
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9


# ----------------------------------------------------------------------------------
# render_mask: the simulator as a mask -> SEM translator (physics baseline)

def test_render_mask_of_a_simulated_mask_looks_like_its_source():
    from semlab.data.simulate import render_mask

    src = simulate("ic-metal", 128, seed=3)
    r = render_mask(src.mask, "ic-metal", seed=3)
    assert r.image.shape == src.image.shape and r.image.dtype == np.float32
    assert np.array_equal(r.mask, src.mask)
    assert r.params["rendered_from_mask"] is True
    # same parameters drawn (same seed): the noise-free images agree except near edges,
    # where the mask's pixel edges replace the sub-pixel rough ones
    inner = ndimage.binary_erosion(src.mask == labels.PATTERN, iterations=3)
    outer = ndimage.binary_erosion(src.mask == labels.BACKGROUND, iterations=3)
    assert abs(r.clean[inner].mean() - src.clean[inner].mean()) < 0.03
    assert abs(r.clean[outer].mean() - src.clean[outer].mean()) < 0.03
    # pattern brighter than background, as in the source image
    assert r.clean[inner].mean() > r.clean[outer].mean() + 0.1
    # contours trace the mask's pattern boundary
    rr, cc = np.concatenate(r.contours).T
    assert len(r.contours) > 0 and rr.min() >= -0.51 and cc.max() <= 127.51


def test_render_mask_other_seed_other_imaging_and_bad_masks():
    from semlab.data.simulate import render_mask

    m = np.zeros((64, 64), np.uint8)
    m[:, 16:32] = labels.PATTERN
    m[30:34, 40:44] = labels.DEFECT
    a, b = render_mask(m, seed=0), render_mask(m, seed=1)
    assert not np.array_equal(a.image, b.image)
    assert np.array_equal(render_mask(m, seed=0).image, a.image)  # deterministic
    # a defect on background is drawn at the defect level, not as pattern
    assert abs(a.clean[31, 41] - a.clean[5, 5]) > 0.05
    with pytest.raises(ValueError, match="labels must be in"):
        render_mask(np.full((8, 8), 7, np.uint8))
    with pytest.raises(ValueError, match="integer"):
        render_mask(np.zeros((8, 8), np.float32))


# ---------------------------------------------------------------- the particles preset (issue 19)


def _particle_measurements(seed: int) -> dict:
    """The documented difficulty of one `particles` frame, measured from the simulator's
    truth: the particle list, the label mask and the noise-free image."""
    r = simulate("particles", 256, seed)
    parts = r.params["particles"]
    c = np.array([q[:3] for q in parts])
    n = len(c)
    dist = np.hypot(c[:, None, 0] - c[None, :, 0], c[:, None, 1] - c[None, :, 1]) - c[:, None, 2] - c[None, :, 2]
    np.fill_diagonal(dist, np.inf)
    touching = (dist < 0).any(1)
    # the mask agrees: particles sharing a structure component are exactly the touching ones
    comp, _ = ndimage.label(r.mask != labels.BACKGROUND, structure=np.ones((3, 3)))
    at = comp[np.round(c[:, 0]).astype(int), np.round(c[:, 1]).astype(int)]
    shares = np.array([(at == a).sum() > 1 for a in at])
    yy, xx = np.mgrid[:256, :256]
    pat = r.mask != labels.BACKGROUND
    far = ~ndimage.binary_dilation(pat, iterations=6)
    steps, core_dark = [], {}
    for (cy, cx, rad), rc in zip(c, [q[3] for q in parts]):
        rho = np.hypot(yy - cy, xx - cx)
        centre = float(r.clean[rho <= 0.35 * rad].mean())
        ring = float(r.clean[(rho >= rad - 2) & (rho <= rad - 0.5)].mean())
        local_bg = r.clean[(rho >= rad + 5) & (rho <= rad + 9) & far]
        if rad >= 6 and len(local_bg) > 20:
            if not rc:
                steps.append(centre - float(np.median(local_bg)))
            core_dark[bool(rc)] = core_dark.get(bool(rc), []) + [ring - centre]
    noise = float((r.image - r.clean).std())
    step = float(np.median(steps))
    bg = r.clean[far]
    return {"n": n, "radius": c[:, 2], "touching": float(touching.mean()), "mask_agrees": bool((shares == touching).all()),
            "rim_core": float(np.mean([q[3] for q in parts])), "core_dark": core_dark, "step": step,
            "step_to_noise": step / noise, "illumination": float(np.percentile(bg, 97) - np.percentile(bg, 3)),
            "pixel_nm": r.params["pixel_nm"]}


def test_particles_preset_meets_its_documented_difficulty():
    """Radius 2-12 px at 256 px, 20-40% touching, step-to-noise 3-8, half rim-and-core,
    uneven illumination: each measured on 8 frames from the simulator's own truth."""
    for seed in range(8):
        m = _particle_measurements(seed)
        assert m["pixel_nm"] == 1.0 and m["n"] >= 15
        assert 2.0 <= m["radius"].min() and m["radius"].max() <= 12.0
        assert 0.2 <= m["touching"] <= 0.4 and m["mask_agrees"], (seed, m["touching"])
        assert abs(m["rim_core"] - 0.5) <= 0.5 / m["n"] + 1e-9
        assert 3.0 <= m["step_to_noise"] <= 8.0, (seed, m["step_to_noise"])
        # rim-and-core particles: the core is darker than the rim by a good part of the step;
        # plain ones are not
        # (particles of at least 6 px radius: smaller ones are blurred by the probe)
        assert min(m["core_dark"][True]) > 0.15 * m["step"], seed
        assert max(m["core_dark"][False]) < 0.0, seed
        # uneven illumination: the substrate alone varies by a visible fraction of the step
        assert m["illumination"] > 0.15 * m["step"], (seed, m["illumination"], m["step"])


def test_particles_debris_is_small_and_much_brighter_than_the_particles():
    """The documented debris (semlab.data.particles): 1-3 per frame, radius 2-5 px, and,
    after the probe blur, a debris of radius >= 3 px stands >= 1.05x as far above the
    substrate as the brightest particle of its frame (its 99th percentile, rims
    included) and >= 2x the plateau step: the edge effect of an object smaller than the
    electron escape range. Measured on the noise-free image of 10 frames."""
    n_big = 0
    for seed in range(10):
        r = simulate("particles", 256, (3000, seed))
        assert 1 <= r.params["n_defects"] <= 3
        c = r.clean
        bg = float(np.median(c[r.mask == labels.BACKGROUND]))
        step = r.params["contrast"] * (r.params["pattern_level"] - r.params["background_level"])
        lab, k = ndimage.label(r.mask == labels.PATTERN)
        brightest = max(float(np.percentile(c[lab == j], 99)) for j in range(1, k + 1)) - bg
        lab, k = ndimage.label(r.mask == labels.DEFECT)
        for j in range(1, k + 1):
            m = lab == j
            rad = float(np.sqrt(m.sum() / np.pi))
            assert rad <= 5.5, (seed, rad)
            if rad >= 3:
                n_big += 1
                peak = float(c[m].max()) - bg
                assert peak >= 1.05 * brightest and peak >= 2.0 * step, (seed, rad, peak, brightest, step)
    assert n_big >= 6
