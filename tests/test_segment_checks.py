"""Label-free checks of masks on real frames (issue 19 item 4): each check against a
closed form, the validation on simulated truth, the real table and its figure."""

import json
import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from semlab import labels
from semlab.segment import checks as C


def _lines(h=96, w=96, pitch=12, width=6.0, amp=0.0, period=24):
    """Vertical bright lines (pattern id) of a given pitch; the width varies along each
    line as width + amp * sin(2 pi y / period)."""
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    wid = width + amp * np.sin(2 * np.pi * yy / period)
    centre = (np.floor(xx / pitch) + 0.5) * pitch
    m = np.abs(xx + 0.5 - centre) < wid / 2
    return np.where(m, labels.PATTERN, labels.BACKGROUND).astype(np.uint8)


def _discs(radii, a=1.0, b=1.0, size=128, step=32):
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    m = np.zeros((size, size), bool)
    k = 0
    for cy in range(step // 2, size, step):
        for cx in range(step // 2, size, step):
            if k < len(radii):
                r = radii[k]
                m |= ((yy - cy) / (a * r)) ** 2 + ((xx - cx) / (b * r)) ** 2 <= 1.0
                k += 1
    return np.where(m, labels.HOLE, labels.PATTERN).astype(np.uint8)  # dark holes in a film


def test_pitch_error_zero_for_the_right_lines_and_large_for_merged_ones():
    mask = _lines(pitch=12)
    img = 0.2 + 0.6 * (mask == labels.PATTERN)
    assert C.pitch_error(img, C.pattern_of(mask)) < 0.02
    every_other = C.pattern_of(_lines(pitch=24))  # half the lines lost
    assert C.pitch_error(img, every_other) == pytest.approx(1.0, abs=0.05)
    assert math.isnan(C.pitch_error(img, np.zeros_like(every_other)))


@pytest.mark.parametrize("amp", [0.0, 1.0, 2.0])
def test_cd_variation_against_closed_form(amp):
    """A width w + a sin(.) sampled on whole pixels: std/mean of the sampled widths
    (pixel-centre crossings), computed directly from the mask's rows."""
    mask = C.pattern_of(_lines(pitch=16, width=8.0, amp=amp, period=24))
    got = C.cd_variation(mask)
    row_w = mask[:, 2:14].sum(1).astype(float)  # the first line's width in every row (no blur: whole pixels)
    assert got == pytest.approx(row_w.std() / row_w.mean(), abs=0.01)
    if amp:  # the sine's std a / sqrt(2), up to the whole-pixel sampling of both edges
        assert got > 0.5 * amp / math.sqrt(2) / 8.0
    else:
        assert got == 0.0


def test_contact_checks_against_shapes():
    round_ = C.pattern_of(_discs([6] * 9))
    assert C.roundness_error(round_) < 0.05
    assert C.diameter_variation(round_) < 0.02
    ellipse = C.pattern_of(_discs([8] * 9, a=0.5))
    assert C.roundness_error(ellipse) == pytest.approx(0.5, abs=0.06)
    radii = [4, 5, 6, 7, 8, 9, 10, 5, 6]
    mixed = C.pattern_of(_discs(radii))
    d = 2 * np.array(radii, float)
    assert C.diameter_variation(mixed) == pytest.approx(d.std() / d.mean(), rel=0.1)
    # pillars (bright minority) are contacts too
    assert C.roundness_error(~round_) < 0.05


def test_fraction_variation_and_blurred_otsu_against_references():
    from skimage.filters import gaussian, threshold_otsu

    assert C.fraction_variation([0.4, 0.5, 0.6]) == pytest.approx(np.std([0.4, 0.5, 0.6]) / 0.5)
    assert math.isnan(C.fraction_variation([0.5]))
    img = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    sm = gaussian(img, 2.0)
    assert np.array_equal(C.blurred_otsu(img) == labels.PATTERN, sm > threshold_otsu(sm))


def _blurred_lines(width, pitch=16, size=96, blur=1.2, lo=0.2, hi=0.7, x0=0.3):
    """Vertical bright lines of a sub-pixel `width` (edges at x0 + k pitch and + width),
    area-sampled and Gaussian-blurred: (image, true pattern of the pixel centres)."""
    from scipy.ndimage import gaussian_filter

    xx = np.arange(size * 8) / 8.0 + 1 / 16  # 8 sub-samples per pixel
    ph = np.mod(xx - x0, pitch)
    prof = (ph < width).reshape(size, 8).mean(1)
    img = gaussian_filter(np.tile(lo + (hi - lo) * prof, (size, 1)), blur)
    centres = np.mod(np.arange(size) + 0.5 - x0, pitch) < width
    return img, np.tile(centres, (size, 1))


@pytest.mark.parametrize("shift", [0, 1, 2, -2])
def test_edge_offset_finds_a_shifted_boundary(shift):
    """A mask grown (shift > 0) or shrunk by `shift` px on each side of blurred lines:
    the image's gradient maximum sits |shift| px from its boundary."""
    from scipy import ndimage as ndi

    img, pat = _blurred_lines(8.0, x0=0.0)  # edges on pixel boundaries
    st = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], bool)  # grow/shrink along x only
    m = ndi.binary_dilation(pat, st, abs(shift)) if shift > 0 else ndi.binary_erosion(pat, st, abs(shift)) \
        if shift < 0 else pat
    assert C.edge_offset(img, m) == pytest.approx(abs(shift), abs=0.3)
    assert C.polarity_error(img, m) == 0.0 and C.polarity_error(img, ~m) == 1.0
    assert C.edge_offset(img, np.zeros_like(m)) == C.EDGE_RANGE_PX


def test_cd_error_against_the_true_width():
    """The image CD is the sub-pixel metrology width (true 7.4 px; the metrology's mid
    level leans to the narrower phase by a few tenths of a px); the mask's is its pixel
    count per line; a mask one pixel wider on each side is 2 px further off."""
    from scipy import ndimage as ndi

    img, pat = _blurred_lines(7.4)
    ref = C.image_line_cd(img)
    assert ref == pytest.approx(7.4, abs=0.5)
    width = pat[0, :16].sum()  # whole pixels of the first line (7 or 8)
    assert C.line_cd_error(img, pat) == pytest.approx(abs(width - ref) / ref, abs=1e-6)
    wide = ndi.binary_dilation(pat, np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], bool))
    assert C.line_cd_error(img, wide) == pytest.approx(abs(width + 2 - ref) / ref, abs=1e-6)
    assert C.line_cd_error(img, np.zeros_like(pat)) == 1.0  # no lines in the mask: the worst


def test_contact_cd_error_against_discs():
    from scipy.ndimage import gaussian_filter

    holes = _discs([8] * 9)  # dark holes of radius 8 in a film
    img = gaussian_filter(np.where(holes == labels.HOLE, 0.2, 0.6), 1.0)
    assert C.contact_cd_error(img, C.pattern_of(holes)) < 0.05
    big = C.pattern_of(_discs([10] * 9))  # mask holes 25% too wide
    assert C.contact_cd_error(img, big) == pytest.approx(0.25, abs=0.06)


def test_global_threshold_shift_against_skimage():
    from skimage.filters import gaussian, threshold_otsu

    img = np.random.default_rng(1).random((48, 48)).astype(np.float32)
    sm = gaussian(img, 1.0)
    lo, hi = np.percentile(sm, [5, 95])
    ref = sm > threshold_otsu(sm) + 0.1 * (hi - lo)
    assert np.array_equal(C.global_threshold(img, 1.0, 0.1) == labels.PATTERN, ref)


@pytest.mark.parametrize("pitch,crop,expected", [(16, 64, 1), (60, 64, 2), (100, 64, 4)])
def test_frame_scale_fits_two_periods(pitch, crop, expected):
    """ceil(2 pitch / crop): the block-averaging factor that fits two periods in the crop."""
    xx = np.arange(512)
    img = np.tile(0.3 + 0.4 * (np.mod(xx, pitch) < pitch / 2), (512, 1)).astype(np.float32)
    assert C.frame_scale(img, crop) == expected
    assert C.frame_scale(np.full((64, 64), 0.5, np.float32), crop) == 1  # no period: as is


def test_keep_rule_needs_every_seed():
    from semlab.segment import checks_validate as V

    def run(rhos):
        return {"rho": {f"{c}@{p}": {"rho": r} for (c, p), r in rhos.items()}}

    a = run({("cd_error", "line-space"): 0.8, ("edge_offset", "line-space"): 0.6, ("pitch", "line-space"): 0.7,
             ("edge_offset", "contacts"): float("nan")})
    b = run({("cd_error", "line-space"): 0.7, ("edge_offset", "line-space"): 0.49, ("pitch", "line-space"): 0.5})
    kept = V.kept_checks([a, b])
    assert kept == {"lines": ["cd_error", "pitch"], "contacts": []}


def test_validation_reports_rank_correlations():
    """A small validation: a deliberately bad offset loses IoU, every rho is Spearman's
    on the (setting, frame) pairs it reports with a CI around it, and `kept` follows the
    rule."""
    from scipy.stats import spearmanr

    from semlab.segment import checks_validate as V
    from semlab.viz.segcheck import validation_figure

    st = {k: V.SETTINGS[k] for k in ("new defaults", "edge offset +3 px", "threshold -0.2", "blurred otsu",
                                     "gaussian 5 px")}
    v = V.validate_seeds((0,), presets=("line-space",), n_images=3, settings=st, n_boot=60, progress=False, size=96)
    run = v["runs"][0]
    assert run["domain"] == "simulated" and len(run["rows"]) == 3 * len(st)
    iou = {s: np.mean([r["iou"] for r in run["rows"] if r["setting"] == s]) for s in st}
    assert iou["edge offset +3 px"] < iou["new defaults"] - 0.05
    for key, r in run["rho"].items():
        if r["check"] in ("fraction_variation", "polarity"):
            continue
        x = np.array([-q[r["check"]] for q in run["rows"]])
        y = np.array([q["iou"] for q in run["rows"]])
        ok = np.isfinite(x)
        assert r["rho"] == pytest.approx(spearmanr(x[ok], y[ok])[0])
        assert r["ci"][0] <= r["rho"] + 1e-9 and r["rho"] - 1e-9 <= r["ci"][1]
    assert v["kept"] == V.kept_checks(v["runs"])
    # a wrong edge moves the CD 1:1: the CD check must rank these settings
    assert run["rho"]["cd_error@line-space"]["rho"] >= 0.5
    assert "cd_error" in V.validation_markdown(v)
    assert isinstance(validation_figure(v), Figure)


def test_real_table_and_figure_on_packaged_frames(tmp_path):
    from semlab.viz.segcheck import segcheck_figure

    crops = C.real_crops(["cdsem-contacts"], crop=96)
    assert len(crops) == 4 and all(c.image.shape == (96, 96) for c in crops)
    assert {c.split for c in crops} == {"train", "val", "test"}
    kept = {"contacts": ["edge_offset", "roundness", "fraction_variation"], "lines": ["cd_error"]}
    tab = C.real_check_table(crops, kept=kept, progress=False)
    rows = {r["method"]: r for r in tab["rows"]}
    assert set(rows) == set(C.METHODS) and all(r["n_frames"] == 4 and r["domain"] == "real" for r in rows.values())
    assert "cd_error" not in rows["new defaults"] and "roundness" in rows["new defaults"]
    # the table's numbers are the checks of the masks it returns
    e = [C.edge_offset(c.image, C.pattern_of(tab["masks"][(c.frame, "blurred otsu")])) for c in crops]
    assert rows["blurred otsu"]["edge_offset"] == pytest.approx(np.mean(e))
    for key, won in tab["new_beats_otsu"].items():
        c, s = key.split("@")
        assert won == (rows["new defaults"][c] < rows["blurred otsu"][c])
    md = C.check_table_markdown(tab)
    down = ", ".join(map(str, rows["new defaults"]["downscale"]))
    assert rows["new defaults"]["downscale"] == sorted({c.scale for c in crops})
    assert f"| cdsem-contacts | new defaults | 4 | {down} |" in md and "Not resolved" not in md
    # a floor above both values: the pair is named as not resolved
    big = {"contacts": {"edge_offset": 10.0}}
    assert "Not resolved (both below" in C.check_table_markdown(tab, big) and "edge_offset@cdsem-contacts (floor 10.000)" \
        in C.check_table_markdown(tab, big)
    out = C.write_report(tmp_path / "checks.json", tab)
    assert json.loads(out.read_text())["rows"][0]["domain"] == "real"
    fig = segcheck_figure(crops, tab["masks"])
    assert isinstance(fig, Figure) and len(fig.axes) == 4 * 4
    with pytest.raises(KeyError, match="no label-free checks for set"):
        C.real_crops(["nope"])


def test_checks_cli_refuses_to_overwrite(tmp_path, capsys):
    from semlab.cli import main

    out = tmp_path / "checks.json"
    out.write_text("user data")
    assert main(["checks", "--out", str(out), "--n-images", "2"]) == 2
    assert "never overwrites" in capsys.readouterr().err and out.read_text() == "user data"
