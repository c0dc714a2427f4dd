"""Notebook 30's library: models found, images paired with the right masks, tables."""

import csv
import json

import numpy as np
import pytest

from semlab.data.datasets import load_dataset, simulate_dataset
from semlab.metrics import tables
from semlab.metrics.evaluate import comparison_table


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds") / "sim"
    simulate_dataset(root, preset="line-space", n=24, size=48, seed=3, progress=False)
    return load_dataset(root)


def test_find_generators_from_manifest_and_standalone(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    run = tmp_path / "run"
    run.mkdir()
    g = tmp_path / "g.pt"
    g.write_bytes(b"x")
    (run / "manifest.json").write_text(json.dumps({"outputs": {"20_train_pix2pix": {"generator": str(g)}}}))
    found = tables.find_generators(run, "smoke")
    assert found["Pix2Pix"]["found"] and found["Pix2Pix"]["path"] == str(g)
    assert not found["CycleGAN"]["found"] and "21_train_cyclegan" in found["CycleGAN"]["where"]
    # standalone: the folder notebook 21 writes without a run
    ck = tmp_path / "data" / "runs" / "cyclegan-sim-smoke" / "cyclegan" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "ckpt-000000004.pt").write_bytes(b"x")
    found = tables.find_generators("", "smoke")
    assert found["CycleGAN"]["found"] and found["CycleGAN"]["path"].endswith("ckpt-000000004.pt")
    assert not found["Pix2Pix"]["found"]


def test_model_images_are_paired_with_their_masks(dataset):
    ids = dataset.split("train")[:5]
    fakes = tables.model_images(dataset, ids, {"Pix2Pix": {"found": False}}, preset="line-space", seed=1)
    assert set(fakes) == {tables.PHYSICS, tables.UPPER_BOUND}
    for k, i in enumerate(ids):
        np.testing.assert_array_equal(fakes[tables.UPPER_BOUND][k], dataset.clean(i))
        m = dataset.mask(i)
        # the physics baseline draws its pattern where this image's mask has pattern
        phys = fakes[tables.PHYSICS][k]
        assert phys.shape == m.shape
        assert np.corrcoef(phys.ravel(), (m > 0).ravel())[0, 1] > 0.3


def _scored_inputs(dataset, tmp_path, monkeypatch):
    """12 test ids, their images and the physics/upper-bound images, with no weights
    reachable (FID/LPIPS unavailable, nothing downloaded)."""
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ids = dataset.ids[:12]
    real = np.stack([dataset.image(i) for i in ids])
    return ids, real, tables.model_images(dataset, ids, {}, preset="line-space", seed=0)


def test_evaluate_models_tables_and_reference_row(dataset, tmp_path, monkeypatch):
    ids, real, fakes = _scored_inputs(dataset, tmp_path, monkeypatch)
    results, per = tables.evaluate_models(real, fakes, fid_inf=False, n_boot=50, progress=False)
    # per-image values are the pairs' own scores, in order
    from semlab.metrics.pixel import psnr
    np.testing.assert_allclose(per[tables.PHYSICS]["psnr"], [psnr(f, r) for f, r in zip(fakes[tables.PHYSICS], real)])
    assert tables.value(results, tables.UPPER_BOUND, "psnr") > tables.value(results, tables.PHYSICS, "psnr")
    # the upper bound is better but is a reference: the physics baseline is marked best
    md = comparison_table(results, "markdown", reference=[tables.UPPER_BOUND])
    unescaped = md.replace("\\", "")  # names may be Markdown-escaped: compare the plain text
    row = next(line for line in unescaped.splitlines() if line.startswith(f"| {tables.PHYSICS}"))
    assert row.split("|")[2].strip().startswith("**")
    up = next(line for line in unescaped.splitlines() if line.startswith(f"| {tables.UPPER_BOUND}"))
    assert "**" not in up
    # unavailable cells point to one note naming the file
    assert ("unavailable [1]" in unescaped and "] unavailable: pt_inception" in unescaped
            and "] unavailable: alexnet" in unescaped)
    paths = tables.write_comparison(results, tmp_path / "out")
    rows = list(csv.DictReader(open(paths[2])))
    assert {r["model"] for r in rows} == set(fakes) and any(r["metric"] == "fid" and r["status"].startswith(
        "unavailable") for r in rows)
    assert tables.worst_indices(per[tables.PHYSICS], "ssim", 3) == list(np.argsort(per[tables.PHYSICS]["ssim"])[:3])



def test_tables_metrics_doc_has_one_shape(dataset, tmp_path, monkeypatch):
    """metrics.json of notebook 30: flat `<model>.<metric>` keys from semlab.metrics.keys with
    the CIs of `evaluate`; unavailable values (no FID weights) named with their reason."""
    from types import SimpleNamespace

    from semlab.metrics import keys as K

    ids, real, fakes = _scored_inputs(dataset, tmp_path, monkeypatch)
    results, _ = tables.evaluate_models(real, fakes, fid_inf=False, n_boot=50, progress=False)
    enc = SimpleNamespace(sha256="a" * 64, describe=lambda: "SEM encoder aaaa")
    curves = {tables.SAME: [{"n": 4, "fd": 1.0}, {"n": 4, "fd": 3.0}, {"n": 8, "fd": 0.5}]}
    doc = tables.tables_metrics_doc(results, {"Pix2Pix": {"found": False}}, curves, enc, source=tmp_path / "sim",
                                    n=len(ids), profile="smoke")
    assert K.doc_problems(doc) == [] and doc["domain"] == "sim" and doc["n"] == 12
    row = next(r for r in results[tables.PHYSICS] if r["metric"] == "psnr")
    got = doc["metrics"][K.key(K.PHYSICS, K.PSNR)]
    assert (got["value"], got["ci_low"], got["ci_high"], got["n"], got["unit"]) == (
        row["value"], row["ci_low"], row["ci_high"], 12, "dB")
    assert doc["metrics"][K.key(K.UPPER_BOUND, K.SSIM)]["value"] == tables.value(results, tables.UPPER_BOUND, "ssim")
    assert K.key(K.PHYSICS, K.FID) not in doc["metrics"]
    assert doc["extra"][K.UNAVAILABLE][K.key(K.PHYSICS, K.FID)].startswith("unavailable: pt_inception")
    assert doc["metrics"]["same_distribution.n4.fd_sem"]["value"] == 2.0
    assert doc["metrics"]["same_distribution.n8.fd_sem"]["n"] == 1
    assert doc["headline"][0] == K.key(K.PHYSICS, K.PSNR)  # no trained model: the physics baseline
    assert doc["extra"]["missing_models"] == ["Pix2Pix"] and doc["figure"] == "models_gallery.png"


def test_summary_text_follows_the_intervals():
    def r(metric, v, lo, hi):
        return {"metric": metric, "value": v, "ci_low": lo, "ci_high": hi, "n": 10, "status": "ok", "note": ""}

    res = {"A": [r("psnr", 25.0, 24.0, 26.0), r("kd_sem", 2.0, 1.5, 2.5)],
           "B": [r("psnr", 23.0, 22.0, 23.5), r("kd_sem", 0.1, 0.0, 0.2)],
           tables.UPPER_BOUND: [r("psnr", 30.0, 29.0, 31.0), r("kd_sem", 5.0, 4.0, 6.0)]}
    text = tables.summary_text(res).replace("\\", "")  # names may be Markdown-escaped
    assert "**psnr**: best is A" in text and "**kd_sem**: best is B" in text and "clearly" in text
    assert "Pixel metrics favour **A**, distribution metrics **B**" in text
    assert tables.UPPER_BOUND not in text  # a reference, never a winner
    res["B"][0] = r("psnr", 24.5, 23.0, 25.5)  # now overlapping A's interval
    assert "intervals overlap" in tables.summary_text(res)


def test_fid_sample_size_study_needs_the_official_file_and_uses_it(tmp_path, monkeypatch):
    """Without pt_inception the FID-vs-n study is unavailable (naming the file); with the
    file (random weights in the official format) it returns the features of that network:
    the curve equals distance_vs_n on inception_features directly, and FD shrinks with n
    for two sets of one distribution."""
    from semlab.metrics import fid as F
    from semlab.data.simulate import simulate

    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(tmp_path / "none"))
    extract, why = tables.inception_extractor()
    assert extract is None and "pt_inception-2015-12-05-6726825d.pth not found" in why
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(tmp_path / "w"))
    F.save_random_inception(tmp_path / "w", seed=1)
    extract, why = tables.inception_extractor()
    assert extract is not None and str(tmp_path / "w") in why
    a = [simulate("line-space", 32, (0, 1, i)).image for i in range(24)]
    b = [simulate("line-space", 32, (0, 2, i)).image for i in range(24)]
    curves = tables.sample_size_study(extract, {"same": (a, b)}, [6, 24], repeats=2, seed=0)
    direct = F.distance_vs_n(F.inception_features(a, F.load_inception()), F.inception_features(b, F.load_inception()),
                             [6, 24], repeats=2, seed=0)
    assert [r["fd"] for r in curves["same"]] == pytest.approx([r["fd"] for r in direct], rel=1e-6)
    fd = {n: np.mean([r["fd"] for r in curves["same"] if r["n"] == n]) for n in (6, 24)}
    assert fd[24] < fd[6]
