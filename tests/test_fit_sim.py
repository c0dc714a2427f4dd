"""`semlab fit-sim` (semlab.data.fit) and preset files (semlab.data.presetfile).

The fit sees plain folders of simulated PNGs (no manifest, no parameters) and must
recover the generating parameters; preset files are untrusted input."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from semlab import io
from semlab.data import presetfile
from semlab.data.fit import PRIORS, fit_sim
from semlab.data.simulate import PRESETS, Preset, get_preset, simulate

PX = 1.0  # nm per pixel of the test images
# everything the sweeps do not vary, fixed; the priors of the fit held at their values
BASE = dict(sidewall_nm=PRIORS["sidewall_nm"], rim_width_nm=PRIORS["rim_width_nm"],
            rim_offset_nm=PRIORS["rim_offset_nm"], texture_amp=0.0, charging_amp=0.0, drift_px=0.0,
            defect_prob=0.0, line_end_prob=0.0, vertical=True, scan_asymmetry=0.0, brightness=0.0, contrast=1.0,
            scanline_sigma=0.0, rim_amp=0.3, halo_amp=0.04, halo_width_nm=5.0, background_level=0.2,
            pattern_level=0.5, ler_corr_nm=12.0, pitch_nm=40.0, width_frac=0.5, detector_sigma=0.02,
            noise_corr_px=0.6, psf_sigma_nm=2.0, dose=150.0, ler_sigma_nm=1.4)


def _folder(tmp_path, n=2, size=256, seed=5, **kw):
    """A plain folder of simulated 8-bit PNGs (nothing else) and the noise truth."""
    p = {**BASE, **kw}
    folder = tmp_path / "frames"
    folder.mkdir(parents=True)
    truth = []
    for i in range(n):
        r = simulate("line-space", size, (seed, i), pixel_nm=PX, with_contours=False, **p)
        io.write_image(folder / f"f{i}.png", r.image)
        truth.append(math.sqrt(float(r.clean.mean()) / p["dose"] + p["detector_sigma"] ** 2))
    return folder, p, float(np.mean(truth))


SWEEPS = [("dose", [60.0, 150.0, 400.0]), ("psf_sigma_nm", [1.5, 2.5, 3.5]),
          ("ler_sigma_nm", [0.8, 1.4, 2.0]), ("pitch_nm", [30.0, 42.0, 55.0])]


@pytest.mark.parametrize("key,values", SWEEPS, ids=[k for k, _ in SWEEPS])
def test_fit_recovers_known_parameters(tmp_path, key, values):
    for j, v in enumerate(values):
        folder, p, noise_truth = _folder(tmp_path / str(j), **{key: v})
        fit = fit_sim(folder, "line-space", pixel_nm=PX, refine=0)  # the direct estimators
        assert fit.n_frames == 2 and not list(folder.glob("*.yaml"))
        noise = np.mean([f["noise_sigma"] for f in fit.per_frame])
        assert noise == pytest.approx(noise_truth, rel=0.10), (key, v)
        psf = np.mean([f["psf_sigma_nm"] for f in fit.per_frame])
        assert psf == pytest.approx(p["psf_sigma_nm"], rel=0.15), (key, v)
        assert fit.params["ler_sigma_nm"] == pytest.approx(p["ler_sigma_nm"], rel=0.15), (key, v)
        assert fit.params["pitch_nm"] == pytest.approx(p["pitch_nm"], rel=0.02), (key, v)
        assert 0 <= fit.uncertainty["pitch_nm"][0] < 0.02 * p["pitch_nm"]


def test_contacts_fit_recovers_pitch_and_levels(tmp_path):
    kw = dict(pitch_nm=50.0, width_frac=0.5, hole_jitter=0.0, missing_prob=0.0, stagger=False, defect_prob=0.0,
              texture_amp=0.0, charging_amp=0.0, drift_px=0.0, brightness=0.0, contrast=1.0, pattern_level=0.45,
              hole_level=0.1, psf_sigma_nm=2.0, dose=200.0, detector_sigma=0.02, scanline_sigma=0.0,
              rim_amp=0.2, halo_amp=0.03, sidewall_nm=PRIORS["sidewall_nm"], rim_width_nm=PRIORS["rim_width_nm"],
              rim_offset_nm=PRIORS["rim_offset_nm"])
    ims = [simulate("contacts", 256, (3, i), pixel_nm=PX, with_contours=False, **kw).image for i in range(2)]
    fit = fit_sim(ims, "contacts", pixel_nm=PX, refine=0)
    assert fit.params["pitch_nm"] == pytest.approx(50.0, rel=0.02)
    assert fit.params["hole_level"] == pytest.approx(0.1, abs=0.03)
    assert fit.params["pattern_level"] == pytest.approx(0.45, abs=0.03)
    assert fit.params["psf_sigma_nm"] == pytest.approx(2.0, rel=0.25)


def test_no_edges_is_refused_and_nothing_written(tmp_path):
    from semlab.cli import main

    flat = tmp_path / "flat"
    flat.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        io.write_image(flat / f"n{i}.png", np.clip(0.4 + 0.05 * rng.standard_normal((128, 128)), 0, 1))
    with pytest.raises(ValueError, match="could not estimate"):
        fit_sim(flat, "line-space", pixel_nm=1.0)
    out = tmp_path / "out.yaml"
    assert main(["fit-sim", str(flat), "--kind", "line-space", "--pixel-nm", "1", "--out", str(out)]) == 2
    assert not out.exists() and not list(tmp_path.glob(".out.yaml*"))


def test_pixel_sizes_within_and_beyond_two_percent(tmp_path, monkeypatch):
    from semlab.data import fit as fitmod

    folder, _, _ = _folder(tmp_path, n=2, size=128)
    sizes = {"f0.png": 0.752, "f1.png": 0.744}  # the DSA frames: within 2%
    real_meta = io.read_image_meta
    monkeypatch.setattr(io, "read_image_meta", lambda p, **k: {**real_meta(p, **k),
                                                                 "pixel_size_nm": sizes[p.name]})
    frames, px, notes = fitmod.load_frames(folder)
    assert px == pytest.approx(np.median(list(sizes.values())))
    assert any("within 2%" in n for n in notes)
    sizes["f1.png"] = 0.80  # 6% apart
    with pytest.raises(ValueError, match=r"more than 2%.*f0\.png: 0\.752 nm.*f1\.png: 0\.8 nm"):
        fitmod.load_frames(folder)
    out = tmp_path / "p.yaml"
    from semlab.cli import main

    assert main(["fit-sim", str(folder), "--kind", "line-space", "--out", str(out)]) == 2
    assert not out.exists()


def _doc(**params):
    return {"version": 1, "units": {"length": "nm", "gray": "[0, 1]"}, "kind": "line-space", "pixel_nm": 1.0,
            "params": params or {"pitch_nm": 40.0}, "provenance": {"semlab_version": "x"}}


def _write(tmp_path, doc, name="p.yaml"):
    import yaml

    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc) if name.endswith(".yaml") else json.dumps(doc))
    return p


@pytest.mark.parametrize("bad,match", [
    ({"params": {"pitch_nm": 40.0, "frame": [[0.1] * 100] * 100}}, r"params\.frame"),  # pixels and unknown
    ({"params": {"pitch_nm": 40.0}, "noise_spectrum": [[0.0] * 65] * 65}, "noise_spectrum"),
    ({"params": {"pitch_nm": 40.0}, "edge_profile": [0.1] * 500}, "(a list of 500 numbers|unknown key)"),
    ({"params": {"pitch_nm": 40.0}, "provenance": {"pixels": list(range(200))}}, "list of 200 numbers"),
    ({"params": {"not_a_parameter": 1.0}}, r"params\.not_a_parameter: unknown parameter"),
    ({"params": {"dose": -5.0}}, r"params\.dose: -5 is outside the valid range"),
    ({"params": {"pattern_level": [0.2, 1.7]}}, r"params\.pattern_level: 1\.7 is outside"),
    ({"params": {"width_frac": [0.6, 0.4]}}, "low > high"),
    ({"params": {"vertical": 2.0}}, "not a probability"),
    ({"units": {"length": "um", "gray": "[0, 1]"}}, "units"),
    ({"version": 9}, "version"),
    ({"kind": "nope"}, "kind"),
    ({"surprise": 1}, "surprise: unknown key"),
])
def test_bad_preset_files_are_refused(tmp_path, bad, match):
    doc = {**_doc(), **bad}
    p = _write(tmp_path, doc)
    with pytest.raises(ValueError, match=match) as e:
        presetfile.load_preset_file(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_pixels_refused_even_as_json_and_deep_arrays(tmp_path):
    frame = np.random.default_rng(0).random((80, 80)).tolist()
    p = _write(tmp_path, {**_doc(), "noise_spectrum": frame}, "p.json")
    with pytest.raises(ValueError, match="noise_spectrum"):
        presetfile.load_preset_file(p)
    p = _write(tmp_path, {**_doc(), "provenance": {"notes": [[[1, 2], [3, 4]]]}}, "q.json")
    with pytest.raises(ValueError, match="more than 2 dimensions"):
        presetfile.load_preset_file(p)
    p = tmp_path / "broken.yaml"
    p.write_text("version: [1\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        presetfile.load_preset_file(p)


def test_round_trip_save_load_and_no_overwrite(tmp_path):
    folder, p, _ = _folder(tmp_path, n=2, size=192)
    fit = fit_sim(folder, "line-space", pixel_nm=PX, refine=0)
    out = tmp_path / "tool.yaml"
    presetfile.save_preset_file(fit, out)
    pre = presetfile.load_preset_file(out)
    assert isinstance(pre, Preset) and pre.layout == PRESETS["line-space"].layout
    assert presetfile.pixel_nm_of(pre) == pytest.approx(PX)
    for k, v in fit.params.items():
        got = pre.params[k]
        if isinstance(v, list):
            assert list(got) == pytest.approx(v)
        elif k == "vertical":
            assert got is True
        else:
            assert got == pytest.approx(v), k
    assert "tip_gap_nm" not in fit.params  # not fitted: from the base
    assert pre.params["tip_gap_nm"] == PRESETS["line-space"].params["tip_gap_nm"]
    doc = presetfile.read_preset_file(out)
    assert doc["provenance"]["sources"][0]["sha256"] == io.sha256_file(folder / "f0.png")
    before = out.read_bytes()
    with pytest.raises(FileExistsError):
        presetfile.save_preset_file(fit, out)
    assert out.read_bytes() == before
    presetfile.save_preset_file(fit, tmp_path / "tool.json")
    assert presetfile.load_preset_file(tmp_path / "tool.json").params == pre.params
    # the simulator takes the Preset object wherever it takes a name
    assert get_preset(pre) is pre
    r = simulate(pre, 128, 0, pixel_nm=PX)
    assert r.params["preset"] == pre.name and r.params["pitch_nm"] == pytest.approx(fit.params["pitch_nm"])


def test_cli_fit_sim_and_simulate_preset_file(tmp_path, capsys):
    from semlab.cli import main
    from semlab.data.datasets import load_dataset

    folder, p, _ = _folder(tmp_path, n=2, size=192)
    out = tmp_path / "tool.yaml"
    assert main(["fit-sim", str(folder), "--kind", "line-space", "--pixel-nm", "1", "--out", str(out), "--json",
                 "--refine", "0"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["params"]["pitch_nm"] == pytest.approx(p["pitch_nm"], rel=0.02) and rec["n_frames"] == 2
    assert main(["fit-sim", str(folder), "--kind", "line-space", "--pixel-nm", "1", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    ds_dir = tmp_path / "ds"
    assert main(["simulate", "--preset-file", str(out), "--n", "3", "--size", "96", "--out", str(ds_dir),
                 "--quiet"]) == 0
    ds = load_dataset(ds_dir)
    info = json.loads((ds_dir / "dataset.json").read_text())
    assert info["pixel_size_nm"] == pytest.approx(PX)  # the fitted pixel size by default
    assert len(ds.rows) == 3
    img = ds.image(ds.rows[0]["id"])
    assert img.shape == (96, 96)
    assert main(["simulate", "--preset-file", str(out), "--preset", "contacts", "--n", "1", "--out",
                 str(tmp_path / "x")]) == 2
    bad = _write(tmp_path, {**_doc(), "params": {"dose": 0.0}}, "bad.yaml")
    assert main(["simulate", "--preset-file", str(bad), "--n", "1", "--out", str(tmp_path / "y")]) == 2
    assert "params.dose" in capsys.readouterr().err and not (tmp_path / "y").exists()


def test_refinement_keeps_known_parameters_and_figures(tmp_path):
    """The closed-loop step (simulate the fit, measure it, correct) leaves a good fit good."""
    from semlab.data.fit import render_like
    from semlab.viz.fit import fit_comparison_figure, quantities_figure, side_by_side_figure

    folder, p, _ = _folder(tmp_path, n=2, size=192, psf_sigma_nm=2.5, ler_sigma_nm=1.2)
    fit = fit_sim(folder, "line-space", pixel_nm=PX, refine=1)
    assert any("closed-loop" in n for n in fit.notes)
    assert fit.params["psf_sigma_nm"] == pytest.approx(2.5, rel=0.15)
    assert fit.params["ler_sigma_nm"] == pytest.approx(1.2, rel=0.15)
    assert fit.params["pitch_nm"] == pytest.approx(40.0, rel=0.02)
    pre = presetfile.load_preset_file(presetfile.save_preset_file(fit, tmp_path / "t.yaml"))
    sims = render_like(pre, (160, 160), 2, pixel_nm=PX)
    sim = fit_sim(sims, "line-space", pixel_nm=PX, refine=0)
    assert sim.params["pitch_nm"] == pytest.approx(fit.params["pitch_nm"], rel=0.03)
    fig = fit_comparison_figure(fit, sim, set_name="test folder")
    assert len(fig.axes) == 6 and "real: test folder (2 frames)" in fig._suptitle.get_text()
    assert "simulated" in fig._suptitle.get_text()
    assert len(quantities_figure(fit, sim).axes) == 1
    sbs = side_by_side_figure([io.read_image(f) for f in sorted(folder.glob("*.png"))], sims, pixel_nm=PX)
    assert len(sbs.axes) == 4


@pytest.mark.parametrize("name,kind", [("cdsem-lines", "line-space"), ("cdsem-contacts", "contacts")])
def test_packaged_preset_files_load_and_render(name, kind):
    from pathlib import Path

    import semlab

    path = Path(semlab.__file__).parent / "data" / "presets" / f"{name}.yaml"
    doc = presetfile.read_preset_file(path)
    assert doc["kind"] == kind and len(doc["provenance"]["sources"]) >= 2
    split = __import__("semlab.data.samples", fromlist=["x"]).stored_split(name)
    used = {s["name"] for s in doc["provenance"]["sources"]}
    assert not any(split[f] == "test" for f in used)  # never fitted on test frames
    pre = presetfile.load_preset_file(path)
    r = simulate(pre, 96, 0, pixel_nm=presetfile.pixel_nm_of(pre))
    assert r.image.shape == (96, 96) and 0.0 < float(r.image.mean()) < 1.0


def test_fit_recovers_ler_across(tmp_path):
    """`ler_across_nm` (how far across the edges the roughness stays correlated, simulator v4)
    from the anticorrelation of neighbouring edges: 3 values within 30% (two 256-px frames,
    ~24 edges each: the correlation estimate is the noisy part) and in the right order."""
    est = []
    for j, v in enumerate([7.0, 10.0, 14.0]):
        folder, p, _ = _folder(tmp_path / str(j), ler_across_nm=v)
        fit = fit_sim(folder, "line-space", pixel_nm=PX, refine=0)
        est.append(fit.params["ler_across_nm"])
        assert est[-1] == pytest.approx(v, rel=0.30), (v, est)
        assert fit.params["ler_sigma_nm"] == pytest.approx(p["ler_sigma_nm"], rel=0.15), (v, est)
    assert est[0] < est[1] < est[2], est


def test_fit_recovers_line_placement_roughness(tmp_path):
    """`lpr_sigma_nm` (each line wiggling as a whole, `semlab.data.placement`, simulator v4)
    from the covariance of a line's two edges: 3 values within 15%, below the estimator's
    floor (0.35 nm) where there is none; the edges' own roughness (ler_sigma_nm) stays within
    15% beside it. Edges otherwise independent (ler_across_nm 3 nm), as in cdsem-lines."""
    for j, v in enumerate([0.0, 0.6, 1.0, 1.5]):
        folder, p, _ = _folder(tmp_path / str(j), size=384, ler_sigma_nm=0.7, ler_across_nm=3.0, lpr_sigma_nm=v,
                                lpr_corr_nm=20.0)
        fit = fit_sim(folder, "line-space", pixel_nm=PX, refine=0)
        got = np.mean([f["lpr_sigma_nm"] for f in fit.per_frame])
        if v == 0:  # the covariance of two 384-row traces has a noise floor of ~0.3 nm here
            assert got < 0.35 and fit.params.get("lpr_sigma_nm", 0.0) < 0.35, (got, fit.params)
        else:
            assert got == pytest.approx(v, rel=0.15), (v, got)
            assert fit.params["lpr_sigma_nm"] == pytest.approx(v, rel=0.15), (v, fit.params)
        assert fit.params["ler_sigma_nm"] == pytest.approx(0.7, rel=0.15), (v, fit.params)


def test_fit_recovers_scan_correlated_noise(tmp_path):
    """Shot noise low-passed along the scan as a whole (`scan_corr_px`, the cdsem-lines look):
    fit-sim reads the kernel width within 20% at 3 values, and the dose within 20%."""
    for j, v in enumerate([0.5, 0.8, 1.2]):
        folder, p, _ = _folder(tmp_path / str(j), detector_sigma=0.0, scan_corr_px=v, dose=300.0)
        fit = fit_sim(folder, "line-space", pixel_nm=PX, refine=0)
        assert fit.params["scan_corr_px"] == pytest.approx(v, rel=0.20), (v, fit.params["scan_corr_px"])
        assert fit.params["dose"] == pytest.approx(300.0, rel=0.20), (v, fit.params["dose"])
        assert fit.params["noise_corr_px"] == 0.0


def test_fit_reads_the_bit_depth_and_the_simulator_quantises():
    """`bit_depth` (simulator v4): the image on the gray levels of an 8- or 16-bit file (0:
    float); fit-sim reads it from the pixels of arrays of each kind."""
    for bits in (8, 16, 0):
        r = simulate("line-space", 192, (3, bits), pixel_nm=PX, with_contours=False, **{**BASE, "bit_depth": bits})
        q = 2 ** (bits or 8) - 1  # a float image is on no 8-bit grid
        on_grid = np.abs(r.image * q - np.rint(r.image * q)).max() < 0.02
        assert on_grid == (bits > 0), bits
        fit = fit_sim([r.image], "line-space", pixel_nm=PX, refine=0)
        assert fit.params["bit_depth"] == bits


def test_tilted_grating_layout():
    """`layouts.line_space(tilt=...)`: each pixel row of every line shifted by tilt px per
    row about the middle row (one rectangle per row), the frame still filled at both sides;
    tilt 0 is the plain grating from the same random stream."""
    from semlab.data import layouts as L

    h, w, pitch, cd, t = 64, 96, 16.0, 8.0, 0.05
    plain = L.rasterize_rects(L.line_space(np.random.default_rng(0), h, w, pitch=pitch, cd=cd).rects, h, w)
    tilted = L.rasterize_rects(L.line_space(np.random.default_rng(0), h, w, pitch=pitch, cd=cd, tilt=t).rects, h, w)
    assert np.array_equal(plain, L.rasterize_rects(
        L.line_space(np.random.default_rng(0), h, w, pitch=pitch, cd=cd, tilt=0.0).rects, h, w))
    assert tilted.mean(axis=1) == pytest.approx(np.full(h, cd / pitch), abs=0.02)  # no gaps at the sides
    for i in (0, h // 2, h - 1):  # the shift of row i against the plain grating, by circular cross-correlation
        a, b = plain[i] - plain[i].mean(), tilted[i] - tilted[i].mean()
        c = np.real(np.fft.ifft(np.fft.fft(b) * np.conj(np.fft.fft(a))))
        k = int(np.argmax(c))
        shift = (k + 0.5 * (c[k - 1] - c[(k + 1) % w]) / (c[k - 1] - 2 * c[k] + c[(k + 1) % w]))
        shift = (shift + pitch / 2) % pitch - pitch / 2  # a grating: the shift modulo its pitch
        assert shift == pytest.approx(t * (i - (h - 1) / 2), abs=0.15), (i, shift)


def test_fit_recovers_tilt_and_scan_wander(tmp_path):
    """Line tilt (px per row) and the scan wander (one x-shift per row shared by all edges,
    `placement.placement_terms`) from plain frames of 33 lines: tilt within 0.001 px/row at 3
    values (0.003 beside a wander), the wander std (direct estimate, known to read 20-32% low;
    with refine 1: 0.55 for 0.5, 0.87 for 1.0) at 2 values within [0.55, 1.05] x the truth and
    in order, below 0.06 px without wander; the edges' own LER stays within 15% beside it."""
    cases = [(-0.012, 0.0), (0.0, 0.5), (0.008, 1.0)]  # cdsem-lines: -0.016 px/row, a 30-px pitch
    got = []
    for j, (tilt, wander) in enumerate(cases):
        folder = tmp_path / str(j)
        folder.mkdir()
        base = get_preset("line-space")  # tilt and wander are optional keys (preset files may set them)
        pre = dataclasses.replace(base, params={**base.params, "tilt": tilt, "wander_nm": wander,
                                                "wander_corr_nm": 30.0})
        r = simulate(pre, (512, 672), (9, j), pixel_nm=PX, with_contours=False,
                     **{**BASE, "pitch_nm": 20.0, "psf_sigma_nm": 1.2, "rim_amp": 0.15, "ler_sigma_nm": 0.6,
                        "ler_corr_nm": 8.0})
        io.write_image(folder / "f.png", r.image)
        fit = fit_sim(folder, "line-space", pixel_nm=PX, refine=0)
        est = fit.per_frame[0]
        # a wander of std 0.5-1 px (30-px correlation) has a random slope of ~0.001 px/row over 512 rows
        assert est["tilt"] == pytest.approx(tilt, abs=0.003 if wander else 0.001), (tilt, est["tilt"])
        if wander:  # the direct estimate reads 20-32% low (smoothed edge traces); refine's closed loop corrects it
            assert 0.55 * wander < est["wander_nm"] < 1.05 * wander, (wander, est["wander_nm"])
            assert fit.params["wander_nm"] == est["wander_nm"]
            got.append(est["wander_nm"])
        else:
            assert est["wander_nm"] < 0.06, est["wander_nm"]
        assert fit.params["ler_sigma_nm"] == pytest.approx(0.6, rel=0.15), (tilt, wander, fit.params["ler_sigma_nm"])
    assert got[0] < got[1], got
