"""semlab.forensics.study: fake sets, generator discovery, the results table, the
conclusion's wording, and notebook 40 under papermill (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from semlab.forensics import study
from semlab.metrics import keys as K



# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    from semlab.data.datasets import simulate_dataset

    return simulate_dataset(tmp_path_factory.mktemp("ds") / "sim", preset="ic-metal", n=12, size=64, seed=3,
                            progress=False)


def _row(model: str, acc=(0.97, 0.94, 0.99), spec=(0.95, 0.91, 0.98), **kw) -> dict:
    """A results_table row as the conclusion reads it (no peaks, no saliency by default)."""
    nan = float("nan")
    r = {"model": model, "n_pairs": 93, "n_splits": 5, "splits": "val+test", "level": 0.95, "detector": "small_cnn",
         "accuracy": acc[0], "accuracy_lo": acc[1], "accuracy_hi": acc[2],
         "balanced_accuracy": acc[0], "balanced_accuracy_lo": acc[1], "balanced_accuracy_hi": acc[2],
         "auc": min(1.0, acc[0] + 0.01), "auc_lo": acc[1], "auc_hi": min(1.0, acc[2] + 0.01),
         "spectrum_accuracy": spec[0], "spectrum_accuracy_lo": spec[1], "spectrum_accuracy_hi": spec[2],
         "spectrum_auc": spec[0], "spectrum_auc_lo": spec[1], "spectrum_auc_hi": spec[2],
         "n_peaks": 0, "n_grid_peaks": 0, "peak_fy": nan, "peak_fx": nan, "peak_period_px": nan, "peak_z": nan,
         "peak_on_grid": False, "grid_peak_fy": nan, "grid_peak_fx": nan, "grid_peak_period_px": nan,
         "grid_peak_z": nan, "hf_db": -0.2, "hf_db_lo": -0.6, "hf_db_hi": 0.3, "hf_band": "(0.25, 0.5]",
         "top_band": "", "top_band_db": nan, "top_band_db_lo": nan, "top_band_db_hi": nan,
         "edge_enrichment": nan, "edge_enrichment_lo": nan, "edge_enrichment_hi": nan, "attr_high_share": nan,
         "image_high_share": nan, "n_wrong_examples": 0}
    r.update(kw)
    return r


def _plain(md: str) -> str:
    """Markdown from semlab as plain text: names in it are escaped (`semlab.textfmt.md_escape`)."""
    return md.replace("\\", "")


def _bullet(text: str, model: str) -> str:
    """The conclusion's bullet of one model."""
    hits = [line for line in _plain(text).splitlines() if line.startswith(f"- **{model}**")]
    assert len(hits) == 1, text
    return hits[0]


# --------------------------------------------------------------------------- inputs


def test_simulator_fake_set_is_paired_with_the_real_images_by_mask(tiny_dataset, tmp_path):
    from semlab.data.datasets import load_dataset
    from semlab.data.simulate import render_mask
    from semlab.forensics.spectrum import cross_validate_spectrum_detector

    ds = load_dataset(tiny_dataset)
    bogus = tmp_path / "not_a_generator.pt"
    bogus.write_bytes(b"this is not a checkpoint")
    sets = study.fake_sets(tiny_dataset, {"Pix2Pix": bogus, "CycleGAN": None}, ("train", "val", "test"),
                           missing={"CycleGAN": "notebook 21 did not run"}, seed=5)
    ids = ds.split("train") + ds.split("val") + ds.split("test")
    assert sets.ids == ids and sets.models == [study.SIMULATOR]
    assert "cannot be loaded" in sets.missing["Pix2Pix"] and str(bogus) in sets.missing["Pix2Pix"]
    assert sets.missing["CycleGAN"] == "notebook 21 did not run"
    for k in (0, len(ids) - 1):  # image k of every set comes from mask ids[k]
        np.testing.assert_array_equal(sets.masks[k], ds.mask(ids[k]))
        np.testing.assert_array_equal(sets.real[k], ds.image(ids[k]))
        ref = render_mask(ds.mask(ids[k]).astype(np.int64), "ic-metal", seed=(5, 7919, k),
                          pixel_nm=ds.info["pixel_size_nm"]).image
        np.testing.assert_allclose(sets.fakes[study.SIMULATOR][k], ref, atol=1e-6)
    real, fake, gr, gf = sets.pair(study.SIMULATOR)
    assert list(gr) == ids and list(gf) == ids and fake.shape == real.shape
    # the mask ids as groups keep each real/generated pair in one fold
    res = cross_validate_spectrum_detector(real, fake, gr, gf, n_splits=3, seed=0, n_boot=50)
    n = len(ids)
    np.testing.assert_array_equal(res.fold[:n], res.fold[n:])
    table = _plain(sets.table())
    assert "**missing**" in table and "CycleGAN" in table and study.SIMULATOR in table
    with pytest.raises(KeyError, match="available"):
        sets.pair("Pix2Pix")


def test_find_generators_reads_the_manifest_then_standalone_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    gen = tmp_path / "p2p" / "generator.pt"
    gen.parent.mkdir()
    gen.write_bytes(b"x")
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"outputs": {"20_train_pix2pix": {"generator": str(gen)}}}))
    found, missing = study.find_generators(run, "smoke")
    assert found == {"Pix2Pix": gen}
    assert set(missing) == {"CycleGAN"} and "21_train_cyclegan" in missing["CycleGAN"]
    # a standalone notebook-21 run of the same profile is used when the run has none
    alone = tmp_path / "data" / "runs" / "cyclegan-sim-smoke" / "cyclegan" / "generator.pt"
    alone.parent.mkdir(parents=True)
    alone.write_bytes(b"x")
    found, missing = study.find_generators(run, "smoke")
    assert found["CycleGAN"] == alone and not missing
    found, missing = study.find_generators("", "cpu")  # no run, other profile: both missing
    assert not found and set(missing) == {"Pix2Pix", "CycleGAN"}
    assert "RUN_DIR is empty" in missing["Pix2Pix"]


def test_settings_and_upsampling_configs_differ_only_in_upsampling(tmp_path):
    with pytest.raises(KeyError, match="valid"):
        study.study_settings("gpu")
    with pytest.raises(KeyError, match="epochz"):
        study.study_settings("cpu", epochz=3)
    assert study.study_settings("cpu", epochs=2)["epochs"] == 2
    cfgs = study.upsampling_configs(tmp_path / "ds", tmp_path / "runs", profile="cpu", seed=4)
    a, b = (c.to_dict() for c in cfgs.values())
    assert {k for k in a if a[k] != b[k]} == {"upsample", "out"}
    assert {a["upsample"], b["upsample"]} == {"transposed", "resize"} and a["seed"] == 4


def test_on_upsampling_grid():
    assert study.on_upsampling_grid(0.0, 0.25, 128)
    assert study.on_upsampling_grid(0.5, 0.5, 128) and study.on_upsampling_grid(0.125, -0.375, 64)
    assert study.on_upsampling_grid(1 / 128, 0.25, 128)  # within the Hann main lobe
    assert not study.on_upsampling_grid(0.0, 0.25 + 2 / 128, 128)  # two bins off
    assert not study.on_upsampling_grid(0.0, 0.0, 128)  # DC
    assert not study.on_upsampling_grid(0.1, 0.0, 128)


# --------------------------------------------------------------------------- conclusion wording


def test_conclusion_calls_chance_results_at_chance():
    rows = [_row("simulator (physics baseline)", acc=(0.54, 0.47, 0.62), spec=(0.52, 0.45, 0.60)),
            _row("CycleGAN", acc=(0.97, 0.94, 0.99), spec=(0.95, 0.91, 0.98)),
            _row("Pix2Pix", acc=(0.66, 0.48, 0.80), spec=(0.50, 0.41, 0.58))]
    text = _plain(study.conclusion(rows))
    sim = _bullet(text, "simulator (physics baseline)")
    assert "at chance" in sim and "0.54 [0.47, 0.62]" in sim and "separates" not in sim
    cyc = _bullet(text, "CycleGAN")
    assert "almost perfectly" in cyc and "0.97 [0.94, 0.99]" in cyc
    assert "0.95 [0.91, 0.98], within the CNN's CI" in cyc and "most of the signal is spectral" in cyc
    p2p = _bullet(text, "Pix2Pix")
    assert "inconclusive" in p2p and "includes chance" in p2p
    short = text.split("**In short.**")[1]
    assert "simulator (physics baseline)" in short.split("At chance")[1]
    assert "CycleGAN (0.97)" in short and "Pix2Pix (" not in short  # not claimed detectable


def test_conclusion_separates_spectral_from_spatial_cues():
    rows = [_row("A", acc=(0.95, 0.90, 0.99), spec=(0.60, 0.52, 0.68)),
            _row("B", acc=(0.90, 0.84, 0.95), spec=(0.51, 0.43, 0.58))]
    text = study.conclusion(rows)
    assert "clearly below the CNN" in _bullet(text, "A")
    assert "at chance" in _bullet(text, "B") and "spatial arrangement" in _bullet(text, "B")
    # the two CNN intervals overlap: the ranking is not read as a difference
    assert "do not read the order" in text


def test_conclusion_mentions_a_peak_at_the_upsampling_frequency():
    t = _row("Pix2Pix transposed-conv", n_peaks=3, n_grid_peaks=2, grid_peak_fy=0.0, grid_peak_fx=0.25,
             grid_peak_period_px=4.0, grid_peak_z=35.0, peak_fy=0.0, peak_fx=0.25, peak_period_px=4.0, peak_z=35.0,
             top_band="(0.25, 0.5]", top_band_db=-6.1, top_band_db_lo=-7.0, top_band_db_hi=-5.2)
    r = _row("Pix2Pix resize-conv", acc=(0.80, 0.72, 0.87))
    text = study.conclusion([t, r])
    tb = _bullet(text, "Pix2Pix transposed-conv")
    assert "upsampling grid" in tb and "(0.000, 0.250)" in tb and "4.00-px period" in tb
    assert "(1 more off the grid)" in tb
    assert "6.1 dB [5.2, 7.0] less power than real at (0.25, 0.5]" in tb and "too smooth" in tb
    assert "no narrow peaks" in _bullet(text, "Pix2Pix resize-conv")
    para = next(p for p in text.split("\n\n") if p.startswith("**Transposed vs resize"))
    assert "2 for transposed conv" in para and "none for resize-conv" in para
    assert "do not overlap" in para and "transposed-conv generator is the easier" in para
    # overlapping intervals: no difference claimed
    text2 = study.conclusion([t, _row("Pix2Pix resize-conv", acc=(0.95, 0.90, 0.98))])
    para2 = next(p for p in text2.split("\n\n") if p.startswith("**Transposed vs resize"))
    assert "the CIs overlap" in para2 and "does not measurably change" in para2


def test_conclusion_reports_saliency_and_missing_models():
    rows = [_row("CycleGAN", edge_enrichment=2.3, edge_enrichment_lo=1.9, edge_enrichment_hi=2.7,
                 attr_high_share=0.61, image_high_share=0.35),
            _row("Pix2Pix", edge_enrichment=1.05, edge_enrichment_lo=0.9, edge_enrichment_hi=1.2),
            {"model": "Pix2Pix transposed-conv", "missing": "not trained (TRAIN_UPSAMPLING = False)"}]
    text = _plain(study.conclusion(rows))
    cyc = _bullet(text, "CycleGAN")
    assert "2.30x [1.90, 2.70] enriched at pattern edges" in cyc and "61%" in cyc and "35%" in cyc
    assert "simulator baseline" not in cyc  # no chance-level reference in this table
    rows.append(_row(study.SIMULATOR, acc=(0.5, 0.42, 0.58), attr_high_share=0.44, image_high_share=0.35))
    assert "chance-level detector of the simulator baseline: 44%" in _bullet(study.conclusion(rows), "CycleGAN")
    assert "no clear preference" in _bullet(text, "Pix2Pix")
    assert "**Not compared**" in text and "TRAIN_UPSAMPLING = False" in text
    assert "Transposed vs resize" not in text  # one of the pair is missing


# --------------------------------------------------------------------------- the study on planted artifacts


@pytest.fixture(scope="module")
def planted(tiny_dataset):
    """The study on a tiny dataset with two fake sets: the simulator baseline and the real
    images plus a planted 4-px periodic pattern (cos(pi x / 2) cos(pi y / 2): power at
    (+-0.25, +-0.25) cycles/px), a stand-in for a transposed-convolution artifact."""
    sets = study.fake_sets(tiny_dataset, {}, ("train", "val", "test"), seed=0)
    c = np.cos(np.pi / 2 * np.arange(sets.real.shape[2]))
    sets.fakes["planted 4-px period"] = np.clip(sets.real + 0.06 * np.outer(c, c)[None], 0, 1)
    sets.sources["planted 4-px period"] = "test"
    over = dict(n_splits=3, epochs=2, detector_kwargs={"width": 8, "depth": 2}, batch_size=8, n_boot=200,
                crop=None)
    det = study.run_detectors(sets, profile="smoke", seed=0, **over)
    spec = study.spectral_study(sets, n_boot=200, seed=0)
    sal = study.saliency_study(sets, det, profile="smoke", seed=0, n_attr_per_class=6)
    return study.StudyResults(sets, det, spec, sal)


def test_results_table_rows_hold_cis_and_match_the_detections(planted, tmp_path):
    from sklearn.metrics import accuracy_score, roc_auc_score

    rows = study.results_table(planted)
    assert [r["model"] for r in rows] == [study.SIMULATOR, "planted 4-px period"]
    for r in rows:
        res = planted.detections[r["model"]]
        assert r["accuracy"] == pytest.approx(accuracy_score(res.main.labels, res.main.scores > 0))
        assert r["auc"] == pytest.approx(roc_auc_score(res.main.labels, res.main.scores))
        assert r["spectrum_accuracy"] == pytest.approx(accuracy_score(res.spectrum.labels, res.spectrum.scores > 0))
        for key in ("accuracy", "balanced_accuracy", "auc", "spectrum_accuracy", "hf_db", "edge_enrichment"):
            assert r[f"{key}_lo"] <= r[key] <= r[f"{key}_hi"], key
        assert r["n_pairs"] == 12 and r["n_splits"] == 3
    planted_row = rows[1]
    # the planted pattern's peaks, at (0.25, +-0.25) cycles/px, are found on the grid
    assert planted_row["n_grid_peaks"] >= 2
    assert (planted_row["grid_peak_fy"], abs(planted_row["grid_peak_fx"])) == pytest.approx((0.25, 0.25))
    assert rows[0]["n_grid_peaks"] == 0
    # the spectrum-only detector sees the added power: independent check of its sign
    from semlab.forensics.spectrum import radial_spectra

    f, pr = radial_spectra(planted.sets.real)
    _, pf = radial_spectra(planted.sets.fakes["planted 4-px period"])
    k = int(np.argmin(np.abs(f - np.hypot(0.25, 0.25))))
    assert pf[:, k].mean() > 2 * pr[:, k].mean()
    text = study.conclusion(planted)
    bullet = _bullet(text, "planted 4-px period")
    assert "upsampling grid" in bullet and "(0.250, " in bullet and "2.83-px period" in bullet
    md = study.format_results_table(rows)
    assert md.count("\n| ") == 2 and " [" in md
    paths = study.write_results(planted, tmp_path)
    from semlab.io import read_csv

    back = read_csv(paths["csv"])
    assert [r["model"] for r in back] == [r["model"] for r in rows]
    assert float(back[1]["accuracy_lo"]) == pytest.approx(rows[1]["accuracy_lo"])
    peaks = read_csv(paths["peaks"])
    assert any(p["model"] == "planted 4-px period" and p["on_grid"] == "True" for p in peaks)
    doc = study.study_metrics_doc(planted, profile="smoke", dataset="planted", seconds=1.5)
    assert K.doc_problems(doc) == []
    assert doc["notebook"] == "40_real_vs_fake" and doc["n"] == planted.sets.n_pairs and doc["extra"]["seconds"] == 1.5
    planted_key = K.model_key("planted 4-px period")
    for model in (K.PHYSICS, planted_key):
        auc = doc["metrics"][K.key(model, K.DETECTOR_AUC)]
        row = next(r for r in rows if K.model_key(r["model"]) == model)
        assert (auc["value"], auc["ci_low"], auc["ci_high"]) == pytest.approx((row["auc"], row["auc_lo"], row["auc_hi"]))
    assert doc["metrics"][K.key(planted_key, K.N_GRID_PEAKS)]["value"] >= 1
    order = [K.model_key(r["model"]) for r in rows if "missing" not in r]  # no Pix2Pix/CycleGAN: first two
    assert doc["headline"] == [K.key(m, k) for m in order[:2] for k in (K.DETECTOR_AUC, K.SPECTRUM_ACCURACY)]
    assert all(math.isfinite(m["value"]) for m in doc["metrics"].values())
    json.dumps(doc, allow_nan=False)  # serialisable, no NaN


def test_saliency_study_picks_out_of_fold_examples(planted):
    for name, s in planted.saliency.items():
        res = planted.detections[name].main
        assert len(s.index) == len(set(s.index.tolist())) <= 4
        np.testing.assert_array_equal(s.correct, res.predictions[s.index] == res.labels[s.index])
        assert s.correct[: int(s.correct.sum())].all()  # correct examples first
        for method, maps in s.maps.items():
            assert maps.shape == (len(s.index), 64, 64) and np.isfinite(maps).all(), method
        # the saliency of example 0 is that of the fold model that never saw it
        from semlab.forensics.saliency import attribute

        i = int(s.index[0])
        ref = attribute(res.models[int(res.fold[i])], s.images[:1], "saliency", target="generated")
        np.testing.assert_allclose(s.maps["saliency"][0], ref[0], rtol=1e-5, atol=1e-8)
        assert set(s.regions["enrichment"]) >= {"edge", "pattern", "background"}


# --------------------------------------------------------------------------- the notebook


@pytest.mark.slow
def test_real_vs_fake_notebook_runs_in_smoke_profile(tmp_path, monkeypatch, run_notebook):
    """Notebook 40 in the smoke profile with a Pix2Pix generator in the run manifest and
    no CycleGAN: it must compare the models it has, say that CycleGAN is missing, show
    figures and write its metrics and tables."""
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    (tmp_path / "no-weights").mkdir()
    from semlab.data.datasets import make_default_dataset
    from semlab.train import TrainConfig, train

    ds = make_default_dataset("ic-metal", "smoke", seed=0, progress=False)
    res = train(TrainConfig(model="pix2pix", dataset=str(ds), out=str(tmp_path / "p2p"), n_epochs=1,
                            n_epochs_decay=0, batch_size=4, ngf=8, ndf=8), progress=False)
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps(
        {"outputs": {"20_train_pix2pix": {"generator": str(res.generator_path), "dataset": str(ds)}}}))
    nb = run_notebook("40_real_vs_fake.ipynb", {"PROFILE": "smoke", "RUN_DIR": str(run)})
    assert nb.images >= 10
    shown = nb.text + nb.markdown
    assert "CycleGAN: missing." in shown and "**Not compared**" in shown
    m = json.loads((run / "40_real_vs_fake[sim]" / "metrics.json").read_text())
    assert K.doc_problems(m) == [] and m["notebook"] == "40_real_vs_fake"
    assert m["extra"]["profile"] == "smoke" and m["n"] == 24 and m["extra"]["seconds"] > 0
    models = {k.split(".")[0] for k in m["metrics"]}
    assert models == {K.PIX2PIX, "pix2pix_transposed-conv", "pix2pix_resize-conv", K.PHYSICS}
    assert set(m["extra"]["missing"]) == {"CycleGAN"}
    # a 5-step Pix2Pix lacks the real images' noise grain: the detector must see it
    assert m["metrics"][K.key(K.PIX2PIX, K.DETECTOR_ACCURACY)]["ci_low"] > 0.5
    assert m["headline"] == [K.key(K.PIX2PIX, K.DETECTOR_AUC), K.key(K.PIX2PIX, K.SPECTRUM_ACCURACY)]
    assert m["figure"] == "detector_metrics.png" and (run / "40_real_vs_fake[sim]" / m["figure"]).is_file()
    folder = run / "40_real_vs_fake[sim]"
    assert (folder / "results.csv").is_file() and (folder / "conclusion.md").is_file()
    assert (folder / "image_sets.png").is_file() and (folder / "radial_spectra.png").is_file()
    outs = json.loads((folder / "outputs.json").read_text())
    assert Path(outs["results"]).is_file()


# --------------------------------------------------------------------------- helpers the study added


def test_detector_crop_takes_true_windows_and_is_a_no_op_when_too_large():
    import torch

    from semlab.forensics.detector import _random_crop, predict_logits, train_detector

    x = torch.arange(2 * 24 * 20, dtype=torch.float32).reshape(2, 1, 24, 20)
    c = _random_crop(x, 8, np.random.default_rng(0))
    assert c.shape == (2, 1, 8, 8)
    for i in range(2):  # each crop is a contiguous window of its own image
        v = int(c[i, 0, 0, 0])
        y0, x0 = divmod(v - i * 24 * 20, 20)
        np.testing.assert_array_equal(c[i, 0].numpy(), x[i, 0, y0:y0 + 8, x0:x0 + 8].numpy())
    rng = np.random.default_rng(1)
    imgs = rng.random((12, 32, 32)).astype(np.float32)
    y = np.r_[np.zeros(6), np.ones(6)]
    kw = dict(epochs=1, batch_size=6, seed=3, detector_kwargs={"width": 4, "depth": 2})
    m0, _ = train_detector(imgs, y, **kw)
    m1, _ = train_detector(imgs, y, crop=64, **kw)  # larger than the images: whole images
    for a, b in zip(m0.state_dict().values(), m1.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    m2, _ = train_detector(imgs, y, crop=16, **kw)
    assert predict_logits(m2, imgs).shape == (12,)  # trained on crops, scores whole images
    with pytest.raises(ValueError, match="crop"):
        train_detector(imgs, y, crop=4, **kw)


def test_fake_sets_figure_shows_each_model_and_the_zoomed_centre():
    from matplotlib.figure import Figure

    from semlab.viz.forensics import fake_sets_figure

    rng = np.random.default_rng(0)
    real = rng.random((4, 32, 32)).astype(np.float32)
    masks = (rng.random((4, 32, 32)) > 0.5).astype(np.uint8)
    fakes = {"a": real[::-1].copy(), "b": 1 - real}
    fig = fake_sets_figure(masks, real, fakes, n=2, zoom=8)
    assert isinstance(fig, Figure)
    axes = np.asarray(fig.axes).reshape(4, 4)  # 2 masks x (image row + zoom row), mask|real|a|b
    assert [ax.get_title() for ax in axes[0, 1:]] == ["target", "a", "b"]  # no domain given: never "real"
    np.testing.assert_array_equal(axes[1, 3].images[0].get_array(), (1 - real[0])[12:20, 12:20])
    np.testing.assert_array_equal(axes[2, 2].images[0].get_array(), real[2])  # "a" of mask 1
