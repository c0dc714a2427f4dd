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


def test_validation_reports_rank_correlations():
    """A small validation: a deliberately bad offset loses IoU, every rho is Spearman's
    on the rows it reports, and `kept` follows the 0.5 rule."""
    from scipy.stats import spearmanr

    st = {k: C.DEGRADED[k] for k in ("new defaults", "edge offset +3 px", "gaussian 3 px", "blurred otsu")}
    v = C.validate_checks(("line-space",), size=96, n_frames=2, settings=st, progress=False)
    rows = {r["setting"]: r for r in v["rows"]}
    assert set(rows) == set(st) and v["domain"] == "simulated"
    assert rows["edge offset +3 px"]["iou"] < rows["new defaults"]["iou"]
    for key, r in v["rho"].items():
        x = [-rows[s][r["check"]] for s in st]
        y = [rows[s]["iou"] for s in st]
        ok = np.isfinite(x)
        if ok.sum() >= 3:
            assert r["rho"] == pytest.approx(spearmanr(np.array(x)[ok], np.array(y)[ok])[0], nan_ok=True)
        assert r["kept"] == (np.isfinite(r["rho"]) and r["rho"] >= C.KEEP_RHO)
    assert v["kept"] == sorted({r["check"] for r in v["rho"].values() if r["kept"]})


def test_real_table_and_figure_on_packaged_frames(tmp_path):
    from semlab.viz.segcheck import segcheck_figure

    crops = C.real_crops(["cdsem-contacts"], crop=96)
    assert len(crops) == 4 and all(c.image.shape == (96, 96) for c in crops)
    assert {c.split for c in crops} == {"train", "val", "test"}
    tab = C.real_check_table(crops, kept=("roundness", "fraction_variation"), progress=False)
    rows = {r["method"]: r for r in tab["rows"]}
    assert set(rows) == set(C.METHODS) and all(r["n_frames"] == 4 and r["domain"] == "real" for r in rows.values())
    assert "cd_variation" not in rows["new defaults"] and "roundness" in rows["new defaults"]
    for key, won in tab["new_beats_otsu"].items():
        c, s = key.split("@")
        assert won == (rows["new defaults"][c] < rows["blurred otsu"][c])
    md = C.check_table_markdown(tab)
    assert "| cdsem-contacts | new defaults | 4 |" in md
    out = C.write_report(tmp_path / "checks.json", tab)
    assert json.loads(out.read_text())["rows"][0]["domain"] == "real"
    fig = segcheck_figure(crops, tab["masks"])
    assert isinstance(fig, Figure) and len(fig.axes) == 4 * 4
