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
