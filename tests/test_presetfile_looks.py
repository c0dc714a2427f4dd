"""Frame looks in preset files (semlab.data.looks, issue 17): jointly fitted frame-level
parameter sets, one drawn per simulated frame; `semlab fit-sim` writes one per frame."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from semlab import io
from semlab.data import looks, presetfile
from semlab.data.fit import PRIORS, fit_sim
from semlab.data.simulate import get_preset, simulate

PX = 1.0
SHA = "ab" * 32
LOOK_A = {"pattern_level": 0.30, "dose": 400.0, "detector_sigma": 0.0, "scan_corr_px": 1.0, "bit_depth": 8}
LOOK_B = {"pattern_level": 0.55, "dose": 120.0, "detector_sigma": 0.01, "scan_corr_px": 0.0, "bit_depth": 8}


def _doc(n_looks=2, **extra):
    lk = [LOOK_A, LOOK_B] * 16
    return {"version": 1, "units": dict(presetfile.UNITS), "kind": "line-space", "pixel_nm": PX,
            "params": {"pitch_nm": 40.0, "width_frac": 0.5, "psf_sigma_nm": [1.5, 2.5]},
            "provenance": {"sources": []},
            "looks": [{"params": dict(lk[i]), "source": {"name": f"f{i}.tif", "sha256": SHA, "pixel_nm": PX}}
                      for i in range(n_looks)], **extra}


def _write(tmp_path, doc, name="p.yaml"):
    import yaml

    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc))
    return p


def test_looks_round_trip(tmp_path):
    p = _write(tmp_path, _doc())
    d = presetfile.read_preset_file(p)
    assert len(d["looks"]) == 2 and d["looks"][0]["dose"] == 400.0 and d["looks"][1]["pattern_level"] == 0.55
    pre = presetfile.load_preset_file(p)
    assert looks.count(pre) == 2 and pre.params["looks"][1]["scan_corr_px"] == 0.0
    assert pre.params["psf_sigma_nm"] == (1.5, 2.5)  # the pooled ranges stay
    pj = tmp_path / "p.json"
    pj.write_text(json.dumps(_doc()))
    assert presetfile.load_preset_file(pj).params == pre.params
    # a file without looks loads without the key, exactly as before
    doc = _doc()
    del doc["looks"]
    assert "looks" not in presetfile.load_preset_file(_write(tmp_path, doc, "n.yaml")).params


BAD = [
    (lambda d: d["looks"][1]["params"].update(pitch_nm=30.0), r"looks\[1\]\.params\.pitch_nm: not a frame-level"),
    (lambda d: d["looks"][0]["params"].update(foo=1.0), r"looks\[0\]\.params\.foo"),
    (lambda d: d["looks"][0]["params"].update(dose=-5.0), r"looks\[0\]\.params\.dose: -5 is outside"),
    (lambda d: d["looks"][0]["params"].update(dose="high"), r"looks\[0\]\.params\.dose: expected a number"),
    (lambda d: d["looks"][1].update(pixels=[1, 2]), r"looks\[1\]\.pixels: unknown key"),
    (lambda d: d["looks"][0]["source"].update(sha256="xyz"), r"looks\[0\]\.source\.sha256: not a sha256"),
    (lambda d: d["looks"][0].update(params={}), r"looks\[0\]\.params: expected a non-empty"),
    (lambda d: d.update(looks=[]), r"looks: expected a non-empty list"),
    (lambda d: d.update(looks=_doc(17)["looks"]), r"looks: 17 looks \(at most 16\)"),
    (lambda d: d["looks"][0]["params"].update(dose=list(range(100))), r"looks\[0\].* a list of 100 numbers"),
]


@pytest.mark.parametrize("edit,match", BAD, ids=[m.split(":")[0][:30] for _, m in BAD])
def test_bad_looks_are_refused_naming_file_and_key(tmp_path, edit, match):
    doc = _doc()
    edit(doc)
    p = _write(tmp_path, doc)
    with pytest.raises(presetfile.PresetFileError, match=match) as e:
        presetfile.load_preset_file(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)
    assert len(presetfile.read_preset_file(_write(tmp_path, _doc(16), "ok.yaml"))["looks"]) == 16


def _base_draw(rng, spec):
    return {k: rng.random() for k in sorted(spec)}


def test_no_looks_draws_the_same_stream():
    """Without looks the simulator's own draw runs on the spec unchanged and nothing else
    uses the stream (files without looks render exactly as before)."""
    spec = dict(get_preset("line-space").params)
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    assert looks.draw(a, spec, _base_draw) == _base_draw(b, spec)
    assert a.random() == b.random()  # the stream continues identically
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    assert simulate("line-space", 32, 7).image.tobytes() == simulate(get_preset("line-space"), 32, 7).image.tobytes()


def test_one_look_per_frame_deterministic_and_every_look_used(tmp_path):
    pre = presetfile.load_preset_file(_write(tmp_path, _doc()))
    used = []
    for s in range(24):
        r1, r2 = (simulate(pre, 48, (s, 1), pixel_nm=PX, with_contours=False) for _ in range(2))
        np.testing.assert_array_equal(r1.image, r2.image)
        i = looks.look_of(pre, r1.params)
        assert i is not None  # all of one look's values together, never a mix
        used.append(i)
    assert 6 <= used.count(0) <= 18 and 6 <= used.count(1) <= 18  # uniform choice (binomial 24, 1/2: p < 0.01)
    pinned = looks.pin(pre, 1)
    assert all(looks.look_of(pre, simulate(pinned, 32, s, pixel_nm=PX, with_contours=False).params) == 1
               for s in range(4))
    with pytest.raises(IndexError, match="look 2 does not exist"):
        looks.pin(pre, 2)


def test_realism_side_renders_every_look(tmp_path):
    from semlab.realism import Side, render_preset_side

    pre = presetfile.load_preset_file(_write(tmp_path, _doc()))
    like = Side("real", "x", np.zeros((4, 64, 64), np.float32), np.array(["a"] * 4), np.array([(0, 0), (0, 1), (1, 0),
                (1, 1)]), PX, {"a": (128, 128)}, None, [])
    s = render_preset_side(pre, like=like, tile=64)
    frames = sorted(set(s.frame))
    assert len(frames) == 2 and "2 frame looks" in s.notes[0]
    means = [float(s.tiles[s.frame == f].mean()) for f in frames]
    assert means[1] > means[0] + 0.1  # frame 0: look A (pattern 0.30), frame 1: look B (pattern 0.55)


def test_fit_sim_recovers_two_known_looks(tmp_path):
    """Two frames rendered from two known looks (white noise vs shot noise low-passed along
    the scan, different dose and levels): fit-sim writes one look per frame, and each look
    reproduces its frame's noise level within 10% and scan correlation within 20%."""
    base = dict(sidewall_nm=PRIORS["sidewall_nm"], rim_width_nm=PRIORS["rim_width_nm"],
                rim_offset_nm=PRIORS["rim_offset_nm"], texture_amp=0.0, charging_amp=0.0, drift_px=0.0,
                defect_prob=0.0, line_end_prob=0.0, vertical=True, scan_asymmetry=0.0, scanline_sigma=0.0,
                rim_amp=0.3, halo_amp=0.04, halo_width_nm=5.0, background_level=0.2, ler_corr_nm=12.0,
                pitch_nm=40.0, width_frac=0.5, noise_corr_px=0.0, psf_sigma_nm=2.0, ler_sigma_nm=1.4)
    truth = [dict(LOOK_A, pattern_level=0.45), dict(LOOK_B)]
    folder = tmp_path / "frames"
    folder.mkdir()
    sigma = []
    for i, lk in enumerate(truth):
        r = simulate("line-space", 320, (9, i), pixel_nm=PX, with_contours=False, **{**base, **lk})
        io.write_image(folder / f"f{i}.png", r.image)
        sigma.append(float((r.image - r.clean).std()))
    fit = fit_sim(folder, "line-space", pixel_nm=PX, refine=1)
    assert [lk["source"]["name"] for lk in fit.looks] == ["f0.png", "f1.png"]
    assert all(len(lk["source"]["sha256"]) == 64 for lk in fit.looks)
    out = presetfile.save_preset_file(fit, tmp_path / "two.yaml")
    pre = presetfile.load_preset_file(out)
    assert looks.count(pre) == 2
    for i, lk in enumerate(truth):
        got = pre.params["looks"][i]
        r = simulate(looks.pin(pre, i), 320, (10, i), pixel_nm=PX, with_contours=False, **{
            k: v for k, v in base.items() if k not in got})
        assert float((r.image - r.clean).std()) == pytest.approx(sigma[i], rel=0.10), (i, got)
        if lk["scan_corr_px"]:
            assert got["scan_corr_px"] == pytest.approx(lk["scan_corr_px"], rel=0.20), (i, got)
        else:
            assert got["scan_corr_px"] == 0.0, (i, got)
        assert got["pattern_level"] == pytest.approx(lk["pattern_level"], abs=0.03), (i, got)
    assert not math.isclose(pre.params["looks"][0]["dose"], pre.params["looks"][1]["dose"], rel_tol=0.3)
    assert copy.deepcopy(fit.summary())["looks"] == fit.looks


def test_tilt_and_scan_wander_are_look_keys(tmp_path):
    """A look may set the frame's line tilt and scan wander (issue 17: cdsem-lines frames
    tilt -0.016 px/row and wander 0.14-0.28 nm); out-of-range values are refused; a frame
    drawn from the look shows its tilt (the fit reads it back within 0.002 px/row)."""
    doc = _doc()
    doc["looks"][0]["params"].update(tilt=-0.016, wander_nm=0.2, wander_corr_nm=25.0)
    pre = presetfile.load_preset_file(_write(tmp_path, doc))
    assert pre.params["looks"][0]["tilt"] == -0.016 and pre.params["looks"][0]["wander_nm"] == 0.2
    bad = _doc()
    bad["looks"][1]["params"]["tilt"] = 0.5
    with pytest.raises(presetfile.PresetFileError, match=r"looks\[1\]\.params\.tilt: 0.5 is outside"):
        presetfile.load_preset_file(_write(tmp_path, bad, "bad.yaml"))
    img = simulate(looks.pin(pre, 0), (384, 480), (1, 2), pixel_nm=PX, with_contours=False).image
    fit = fit_sim([img], "line-space", pixel_nm=PX, refine=0)
    assert fit.per_frame[0]["tilt"] == pytest.approx(-0.016, abs=0.002)
