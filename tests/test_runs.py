"""semlab.runs: run folders, the manifest, generator discovery, saved outputs."""

import json
import math

import pytest

from semlab import runs


def test_step_names_and_standalone_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    assert runs.step_name("20_train_pix2pix", "real") == "20_train_pix2pix[real]"
    assert runs.step_name("20_train_pix2pix") == "20_train_pix2pix"
    assert runs.standalone_dir("pix2pix", "sim", "cpu") == tmp_path / "data" / "runs" / "pix2pix-sim-cpu"
    for bad in ("../x", "a/b", ""):
        with pytest.raises(ValueError, match="plain name"):
            runs.standalone_dir(bad, "sim", "cpu")
    with pytest.raises(ValueError, match="unknown domain"):
        runs.standalone_dir("pix2pix", "mars", "cpu")
    with pytest.raises(ValueError, match="not a notebook step"):
        runs.notebook_out(tmp_path, "../escape")


def test_outputs_pass_through_the_manifest_and_no_run_saves_nothing(tmp_path):
    assert runs.publish_outputs("", "10_make", dataset="x") is None
    assert runs.run_outputs("") == {}
    p = runs.publish_outputs(tmp_path, "10_make", "real", dataset=tmp_path / "ds")
    assert p == tmp_path / "10_make[real]" / "outputs.json"
    assert json.loads(p.read_text()) == {"dataset": str(tmp_path / "ds")}
    (tmp_path / runs.MANIFEST).write_text(json.dumps({"outputs": {"10_make[real]": {"dataset": "d"}}}))
    assert runs.run_outputs(tmp_path) == {"10_make[real]": {"dataset": "d"}}
    (tmp_path / runs.MANIFEST).write_text("{not json")
    with pytest.raises(ValueError, match="unreadable run manifest"):
        runs.run_outputs(tmp_path)


def test_find_generator_prefers_the_run_then_standalone_then_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    missing = runs.find_generator("pix2pix", "real", None, "smoke")
    assert not missing and "20_train_pix2pix[real]" in str(missing) and "pix2pix-real-smoke" in str(missing)
    alone = runs.standalone_dir("pix2pix", "real", "smoke") / "pix2pix" / "generator.pt"
    alone.parent.mkdir(parents=True)
    alone.write_bytes(b"x")
    assert runs.find_generator("pix2pix", "real", None, "smoke") == alone
    assert not runs.find_generator("pix2pix", "sim", None, "smoke")  # the other domain is not mixed in
    gen = tmp_path / "g.pt"
    gen.write_bytes(b"y")
    run = tmp_path / "run"
    run.mkdir()
    (run / runs.MANIFEST).write_text(json.dumps({"outputs": {"20_train_pix2pix[real]": {"generator": str(gen)}}}))
    assert runs.find_generator("pix2pix", "real", run, "smoke") == gen
    with pytest.raises(KeyError, match="valid: pix2pix, cyclegan"):
        runs.find_generator("stylegan", "sim", run, "smoke")


def test_metrics_doc_shape_and_savers(tmp_path):
    m = runs.metric(float("nan"), 1, 2, n=5, unit="dB")
    assert m == {"value": None, "ci_low": 1.0, "ci_high": 2.0, "n": 5, "unit": "dB"}
    doc = runs.metrics_doc("30_metric_tables", "sim", "sim-ic-metal-cpu test", 45, {"psnr": runs.metric(22.9, n=45)})
    assert set(doc) == {"notebook", "domain", "set", "n", "metrics", "headline", "figure"}
    assert doc["headline"] == [] and doc["figure"] is None
    good = runs.metrics_doc("30_metric_tables", "sim", "t", 45, {"psnr": runs.metric(1.0)},
                            headline=["psnr"], figure="worst_cases.png")
    assert good["headline"] == ["psnr"] and good["figure"] == "worst_cases.png"
    with pytest.raises(ValueError, match="headline"):
        runs.metrics_doc("30_metric_tables", "sim", "t", 45, {"psnr": runs.metric(1.0)}, headline=["fid"])
    with pytest.raises(ValueError, match="plain .png"):
        runs.metrics_doc("30_metric_tables", "sim", "t", 45, {"psnr": runs.metric(1.0)}, figure="../x.png")
    with pytest.raises(ValueError, match="runs.metric"):
        runs.metrics_doc("30", "sim", "s", 1, {"psnr": 22.9})
    assert runs.save_metrics(None, doc) is None
    p = runs.save_metrics(tmp_path, doc)
    assert json.loads(p.read_text()) == doc
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [0, 1])
    assert runs.save_figure(None, "x", fig) is None
    png = runs.save_figure(tmp_path, "line", fig)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not math.isnan(png.stat().st_size)
    with pytest.raises(ValueError, match="plain file name"):
        runs.save_figure(tmp_path, "../up", fig)


def test_old_metrics_keys_map_to_the_new_ones():
    """Readers of old runs: every old key path of each notebook's metrics.json translates
    to a new key (nested model/metric paths become flat `<entity>.<metric>` keys)."""
    from semlab.metrics import keys as K

    old00 = {"profile": "cpu", "size_px": 256, "real_available": True,
             "noise_sigma": {"real/dsa_lines": 0.05, "sim/line-space @ 3.52 nm/px": 0.06},
             "spectral_slope": {"sim/ic-metal": -1.5}, "noise_sigma_ratio_sim_over_real": 1.2}
    assert K.translate_old("00_explore_data", old00) == {
        "extra.profile": "cpu", "extra.size_px": 256, "extra.real_available": True,
        "real/dsa_lines.noise_sigma": 0.05, "sim/line-space.noise_sigma": 0.06,
        "sim/ic-metal.spectral_slope": -1.5, K.NOISE_SIGMA_RATIO: 1.2}
    old30 = {"Pix2Pix/psnr": 20.0, "simulator (physics baseline)/fid": None,
             "noise-free image (upper bound)/ssim": 0.9, "fd_sem_same_distribution_by_n": {"8": 3.0}, "models": ["a"]}
    assert K.translate_old("30_metric_tables", old30) == {
        "pix2pix.psnr": 20.0, "physics.fid": None, "upper_bound.ssim": 0.9, "same_distribution.n8.fd_sem": 3.0,
        "extra.models": ["a"]}
    old40 = {"n_pairs": 24, "models": {"Pix2Pix resize-conv": {"auc": 0.7, "auc_lo": 0.6, "hf_db": -2.0}},
             "missing": {"CycleGAN": "not trained"}}
    assert K.translate_old("40_real_vs_fake", old40) == {
        "n": 24, "pix2pix_resize-conv.detector_auc": 0.7, "pix2pix_resize-conv.detector_auc:ci_low": 0.6,
        "pix2pix_resize-conv.hf_power_db": -2.0, "extra.missing.CycleGAN": "not trained"}
    old50 = {"epe_mean_abs_nm": {"classical": {"mean": 1.0, "ci_low": 0.9, "ci_high": 1.1, "n": 8},
                                 "sam2_full": "unavailable: no weights"},
             "ood_epe_mean_abs_nm": {"low_dose": {"hybrid": 2.0}},
             "real": [{"image": "Sample_Image_1.tif", "cd_mean": 9.5, "unit": "nm"}]}
    assert K.translate_old("50_segsem_contours", old50) == {
        "classical.epe_mean_abs_nm": 1.0, "classical.epe_mean_abs_nm:ci_low": 0.9,
        "classical.epe_mean_abs_nm:ci_high": 1.1, "classical.epe_mean_abs_nm:n": 8,
        "extra.unavailable.sam2_full.epe_mean_abs_nm": "unavailable: no weights",
        "low_dose.hybrid.epe_mean_abs_nm": 2.0, "real/Sample_Image_1.cd_mean": 9.5,
        "extra.real.Sample_Image_1.unit": "nm"}
    assert K.translate_old("10_make_dataset", {"iou_pattern": 0.9, "mystery": 1}) == {"pattern.iou": 0.9,
                                                                                      "?mystery": 1}
    assert set(K.OLD_TO_NEW) == {"00_explore_data", "10_make_dataset", "20_train_pix2pix", "21_train_cyclegan",
                                 "30_metric_tables", "40_real_vs_fake", "50_segsem_contours"}
    with pytest.raises(KeyError, match="no old-key map"):
        K.translate_old("99_nothing", {})


def test_doc_problems_finds_each_broken_rule():
    from semlab.metrics import keys as K

    good = runs.metrics_doc("30_metric_tables", "sim", "t", 4, {K.key(K.PIX2PIX, K.PSNR): runs.metric(20, 19, 21, n=4)},
                            headline=[K.key(K.PIX2PIX, K.PSNR)], figure="a.png")
    assert K.doc_problems(good) == []

    def broken(**change):
        doc = json.loads(json.dumps(good))
        doc["metrics"]["pix2pix.psnr"].update(change.pop("m", {}))
        doc.update(change)
        return K.doc_problems(doc)

    assert any("bracket" in p for p in broken(m={"ci_low": 20.5}))
    assert any("finite" in p for p in broken(m={"value": None}))
    assert any("one CI bound" in p for p in broken(m={"ci_high": None}))
    assert any("n = 0" in p for p in broken(m={"n": 0}))
    assert any("positive" in p for p in broken(n=0))
    assert any("headline" in p for p in broken(headline=[]))
    assert K.doc_problems({"metrics": {}}) and "no 'notebook'" in K.doc_problems({})[0]


def test_explore_doc_ratio_and_groups_from_the_crops():
    """Notebook 00's doc: per-group noise sigma equals the median of `noise_sigma_estimate`
    over that group's crops, and the ratio is median(sim) / median(real)."""
    import numpy as np

    from semlab.metrics import keys as K
    from semlab.metrics.explore import explore_metrics_doc, group_stats
    from semlab.metrics.spectral import noise_sigma_estimate

    rng = np.random.default_rng(0)
    real = {"a": [np.clip(0.5 + 0.05 * rng.standard_normal((32, 32)), 0, 1) for _ in range(3)]}
    sim = {"p @ 2.00 nm/px": [np.clip(0.5 + 0.10 * rng.standard_normal((32, 32)), 0, 1) for _ in range(2)],
           "q": [np.clip(0.5 + 0.02 * rng.standard_normal((32, 32)), 0, 1) for _ in range(2)]}
    doc = explore_metrics_doc(group_stats(real, sim), profile="smoke", size_px=32)
    assert K.doc_problems(doc) == [] and doc["domain"] == "both" and doc["n"] == 7
    want = {g: float(np.median([noise_sigma_estimate(c) for c in crops]))
            for g, crops in {"real/a": real["a"], "sim/p": sim["p @ 2.00 nm/px"], "sim/q": sim["q"]}.items()}
    for g, v in want.items():
        assert doc["metrics"][K.key(g, K.NOISE_SIGMA)]["value"] == pytest.approx(v)
    assert doc["metrics"][K.key("sim/p", K.NOISE_SIGMA)]["note"] == "2.00 nm/px"
    assert doc["metrics"][K.NOISE_SIGMA_RATIO]["value"] == pytest.approx(
        np.median([want["sim/p"], want["sim/q"]]) / want["real/a"])
    assert doc["headline"][0] == K.NOISE_SIGMA_RATIO
    only_sim = explore_metrics_doc(group_stats({}, sim), profile="smoke", size_px=32)
    assert K.NOISE_SIGMA_RATIO not in only_sim["metrics"] and only_sim["domain"] == "sim"
    assert K.doc_problems(only_sim) == []


def test_translator_doc_scores_against_real_and_noise_free(tmp_path):
    """Notebooks 20/21: a 'generator' that returns the noise-free image plus a constant
    scores exactly what `paired_scores` gives, the upper bound is the noise-free image's
    score, and the gap is their difference."""
    import numpy as np

    from semlab.data.datasets import load_dataset, simulate_dataset
    from semlab.metrics import keys as K
    from semlab.metrics.pixel import paired_scores
    from semlab.metrics.translators import score_translator, translator_metrics_doc

    root = tmp_path / "ds"
    simulate_dataset(root, preset="line-space", n=12, size=32, seed=1, progress=False)
    ds = load_dataset(root)
    ids = ds.ids[:6]
    clean = {i: ds.clean(i) for i in ids}
    by_mask = {ds.mask(i).tobytes(): clean[i] for i in ids}

    def gen(masks, seed=0):
        return np.stack([np.clip(by_mask[m.tobytes()] + 0.05, 0, 1) for m in masks])

    scores = score_translator(gen, ds, ids, "Fake", seed=0)
    doc = translator_metrics_doc("20_train_pix2pix", K.PIX2PIX, scores, source=root, profile="smoke")
    assert K.doc_problems(doc) == [] and doc["domain"] == "sim" and doc["n"] == 6
    real = np.stack([ds.image(i) for i in ids])
    fake = gen(np.stack([ds.mask(i) for i in ids]))
    ref = paired_scores(fake, real)["psnr"].mean()
    bound = paired_scores(np.stack([clean[i] for i in ids]), real)["psnr"].mean()
    m = doc["metrics"]
    assert m[K.key(K.PIX2PIX, K.PSNR)]["value"] == pytest.approx(ref)
    assert m[K.key(K.UPPER_BOUND, K.PSNR)]["value"] == pytest.approx(bound)
    assert m[K.PSNR_GAP]["value"] == pytest.approx(bound - ref) and bound > ref
    assert m[K.key(K.PIX2PIX, K.VS_NOISE_FREE, K.PSNR)]["value"] > ref  # closer to the clean image
    assert doc["headline"] == [K.key(K.PIX2PIX, K.PSNR), K.key(K.UPPER_BOUND, K.PSNR), K.key(K.PIX2PIX, K.SSIM),
                               K.PSNR_GAP]
    assert K.STEP_S_BF16 not in m
