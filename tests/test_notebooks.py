"""The committed notebooks: jupytext percent sources (the only notebook files in git),
literal parameters, edits in a paired .ipynb landing in the .py, and (slow) executed
with papermill in the smoke profile."""

import ast
import json
import subprocess
from pathlib import Path

import pytest

from semlab.metrics import keys as K

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "00_explore_data.py"


def test_an_edit_in_the_ipynb_twin_lands_in_the_py_source(tmp_path):
    """A user edits the paired .ipynb in JupyterLab and saves: jupytext's contents
    manager (what `make lab` serves) writes the edit into the .py, and nothing else of
    the source changes."""
    import shutil

    import jupytext
    from jupytext import TextFileContentsManager

    from semlab.nbsource import make_twins, read_notebook

    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    shutil.copy(ROOT / "jupytext.toml", tmp_path / "jupytext.toml")
    src = nbs / "00_explore_data.py"
    shutil.copy(NOTEBOOK, src)
    assert make_twins(nbs) == [nbs / "00_explore_data.ipynb"]
    assert make_twins(nbs) == []  # an existing twin is never overwritten
    cm = TextFileContentsManager(root_dir=str(tmp_path))
    model = cm.get("notebooks/00_explore_data.ipynb")
    nb = model["content"]
    before = [c.source for c in nb.cells]
    nb.cells[2].source += "\nprint('my edit')"
    cm.save({"type": "notebook", "content": nb}, "notebooks/00_explore_data.ipynb")
    after = read_notebook(src)
    assert after.cells[2].source.endswith("print('my edit')")
    assert [c.source for c in after.cells][3:] == before[3:]
    assert "parameters" in after.cells[1].metadata.get("tags", [])
    assert jupytext.read(src).metadata["semlab"] == read_notebook(NOTEBOOK).metadata["semlab"]


def test_run_never_writes_into_notebooks(tmp_path):
    """`semlab run` reads the .py in memory: the notebooks folder is unchanged after
    reading every notebook's parameters and metadata."""
    from semlab import reports

    before = {p.name: p.stat().st_mtime_ns for p in (ROOT / "notebooks").iterdir()}
    for nb in reports.list_notebooks(ROOT / "notebooks"):
        reports.notebook_params(nb, {"PROFILE": "smoke", "RUN_DIR": ""}, {"SEED": 3})
        reports.notebook_depends_on(nb)
    assert {p.name: p.stat().st_mtime_ns for p in (ROOT / "notebooks").iterdir()} == before


PARAMETERS = {
    "00_explore_data.py": ["PROFILE", "RUN_DIR", "SEED", "PRESETS", "REAL_DIR"],
    "10_make_dataset.py": ["PROFILE", "RUN_DIR", "SEED", "DOMAIN", "SOURCE", "PRESET", "BACKEND", "SAM2_MODEL",
                              "SAM2_IMAGE_SIZE", "POINTS_PER_SIDE", "PRED_IOU_THRESH", "STABILITY_SCORE_THRESH",
                              "DENOISE", "THRESHOLD", "CALIBRATE_EDGES", "N_CALIBRATE", "REAL_DIR"],
    "20_train_pix2pix.py": ["PROFILE", "RUN_DIR", "SEED", "DOMAIN", "REAL_DIR", "DATASET", "PRESET", "EPOCHS",
                            "EPOCHS_DECAY", "BATCH_SIZE", "PRECISION", "NET_G", "UPSAMPLE", "GAN_MODE", "DIFFAUG",
                            "COMPARE_FP32"],
    "21_train_cyclegan.py": ["PROFILE", "RUN_DIR", "SEED", "DOMAIN", "REAL_DIR", "DATASET", "PRESET", "MAX_STEPS",
                             "BATCH_SIZE", "PRECISION", "NET_G", "LAMBDA_IDENTITY", "DIFFAUG"],
    "30_metric_tables.py": ["PROFILE", "RUN_DIR", "SEED", "DOMAIN", "REAL_DIR", "DATASET", "PRESET", "N_EVAL",
                            "FID_INF", "LPIPS_NET", "SEM_STEPS"],
    "40_real_vs_fake.py": ["PROFILE", "RUN_DIR", "SEED", "DOMAIN", "REAL_DIR", "DATASET", "PRESET", "TRAIN_UPSAMPLING",
                           "MAX_PAIRS"],
    "45_residual_noise.py": ["PROFILE", "RUN_DIR", "SEED", "DOMAIN", "REAL_DIR", "DATASET", "PRESET", "MODE", "KINDS"],
    "50_segsem_contours.py": ["PROFILE", "RUN_DIR", "SEED", "SAM2_MODEL", "SAM2_CHECKPOINT", "SAM2_STEPS",
                                 "REAL_DIR"],
    "60_downstream.py": ["PROFILE", "RUN_DIR", "SEED", "DOMAIN", "REAL_DIR", "DATASET"],
}


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_parameters_cell_holds_literals_only(name):
    from semlab.nbsource import read_notebook

    nb = read_notebook(ROOT / "notebooks" / name)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    tree = ast.parse(tagged[0].source)
    names = []
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.dump(node)
        ast.literal_eval(node.value)  # raises on anything but a literal
        names.append(node.targets[0].id)
    assert names == PARAMETERS[name]
    assert names[:2] == ["PROFILE", "RUN_DIR"]  # what `semlab run` passes to every notebook
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert not any("def " in c.source for c in nb.cells if c.cell_type == "code")


def test_every_notebook_is_checked():
    assert sorted(p.name for p in (ROOT / "notebooks").glob("*.py")) == sorted(PARAMETERS)
    tracked = subprocess.run(["git", "ls-files", "notebooks"], cwd=ROOT, capture_output=True, text=True).stdout
    assert not [t for t in tracked.split() if t.endswith(".ipynb")], "only the .py sources belong in git"


def test_every_notebook_names_its_question():
    """The report dashboard shows each notebook's question: one line in its `semlab` metadata."""
    from semlab.nbsource import notebook_meta, read_notebook

    for name in PARAMETERS:
        q = notebook_meta(read_notebook(ROOT / "notebooks" / name))["question"]
        assert q.endswith("?") and "\n" not in q and 20 < len(q) <= 120, (name, q)


def metrics_doc_of(run_dir: Path, notebook: str) -> dict:
    """A notebook step's metrics.json (`notebook`: the step, e.g. `20_train_pix2pix[real]`),
    checked against the one shape (semlab.metrics.keys.doc_problems: keys exist, values
    finite, CIs bracket values, n > 0, a headline) with its figure on disk."""
    doc = json.loads((run_dir / notebook / "metrics.json").read_text())
    assert K.doc_problems(doc) == [], K.doc_problems(doc)
    assert doc["notebook"] == notebook.split("[")[0] and doc["figure"]
    assert (run_dir / notebook / doc["figure"]).is_file()
    return doc


@pytest.mark.slow
@pytest.mark.parametrize("real_dir", ["", "missing"])
def test_explore_data_runs_in_smoke_profile(tmp_path, real_dir, run_notebook):
    run_dir = tmp_path / "run"
    params = {"PROFILE": "smoke", "RUN_DIR": str(run_dir)}
    if real_dir == "missing":
        params["REAL_DIR"] = str(tmp_path / "no_such_folder")
    nb = run_notebook(NOTEBOOK.name, params)
    assert nb.images >= 5
    doc = metrics_doc_of(run_dir, "00_explore_data")
    assert doc["extra"]["profile"] == "smoke" and doc["extra"]["size_px"] == 64
    ls = doc["metrics"][K.key("sim/line-space", K.NOISE_SIGMA)]
    assert ls["value"] > 0 and ls["n"] > 0
    real = K.key("real/dsa_lines", K.NOISE_SIGMA) in doc["metrics"]
    if real_dir == "":
        # line-space is simulated at the DSA images' pixel size when they are present
        assert ("nm/px" in ls.get("note", "")) == real
        assert (K.NOISE_SIGMA_RATIO in doc["metrics"]) == real and doc["domain"] == ("both" if real else "sim")
    if real_dir == "missing":
        assert doc["extra"]["real_available"] is False and doc["domain"] == "sim"
        assert "No real SEM folder found" in nb.text


@pytest.mark.slow
def test_make_dataset_runs_in_smoke_profile(tmp_path, monkeypatch, run_notebook):
    """Notebook 10 on the smoke dataset, with SAM2 requested but no weights: it must say it
    fell back to the classical backend, score the masks and write its metrics."""
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    run_dir = tmp_path / "run"
    nb = run_notebook("10_make_dataset.ipynb",
                      {"PROFILE": "smoke", "RUN_DIR": str(run_dir), "BACKEND": "sam2", "N_CALIBRATE": 4})
    assert nb.images >= 6
    assert "SAM2 was requested but is unavailable" in nb.markdown and "sam2.1_hiera_tiny.pt" in nb.markdown
    doc = metrics_doc_of(run_dir, "10_make_dataset[sim]")  # DOMAIN="sim" by default
    m = doc["metrics"]
    # issue 19: structure classes by pixel IoU with CIs, defects as objects, the oracle ceiling row
    assert "| structure classes | mean pixel IoU |" in nb.markdown and "oracle ceiling" in nb.markdown
    assert "| defect, all sizes |" in nb.markdown and "| radius | true | predicted |" in nb.markdown
    assert m[K.MEAN_IOU_STRUCTURE]["ci_low"] is not None and m[K.key("pattern", K.IOU)]["ci_high"] is not None
    assert (K.key(K.ORACLE, "defect", K.IOU) in m) == ("no particle in the scored images" not in nb.markdown)
    out = json.loads((run_dir / "10_make_dataset[sim]" / "outputs.json").read_text())
    assert (Path(out["dataset"]) / "dataset.json").is_file()
    assert doc["extra"]["backend_requested"] == "sam2" and doc["extra"]["backend_used"] == "classical"
    assert doc["domain"] == "sim" and doc["n"] >= 1 and 0.5 < m[K.key("pattern", K.IOU)]["value"] <= 1.0
    assert m[K.N_OK]["value"] + m[K.N_EXCLUDED]["value"] == 24
    assert doc["headline"][0] == K.MEAN_IOU_STRUCTURE
    assert (run_dir / "10_make_dataset[sim]" / "painted_mask.png").is_file()
    from semlab.io import read_mask

    painted = read_mask(run_dir / "10_make_dataset[sim]" / "painted_mask.png")
    assert painted.shape == (64, 64) and (painted == 3).any()


@pytest.mark.slow
def test_make_dataset_real_domain_runs_in_smoke_profile(tmp_path, monkeypatch, run_notebook):
    """Notebook 10 with DOMAIN="real" on the packaged frames (smoke: the line set only):
    imports and tiles them with the stored frame split, segments them with the defaults
    for uncalibrated frames, reports tiles and frames and publishes the paired dataset
    for notebooks 20/21 (`semlab.runs.find_dataset`)."""
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    run_dir = tmp_path / "run"
    nb = run_notebook("10_make_dataset.ipynb", {"PROFILE": "smoke", "RUN_DIR": str(run_dir), "DOMAIN": "real"})
    doc = metrics_doc_of(run_dir, "10_make_dataset[real]")
    m = doc["metrics"]
    assert doc["domain"] == "real" and m[K.N_FRAMES]["value"] == 3 and m[K.N_TILES]["value"] == doc["n"] > 3
    assert "tiles of 3 frames (Test01, Test02, Test03)" in nb.text and "polarity per image" in nb.text
    assert "no ground truth" in nb.text and nb.images >= 3
    from semlab.data.datasets import load_dataset

    out = json.loads((run_dir / "10_make_dataset[real]" / "outputs.json").read_text())
    seg = load_dataset(out["dataset"])
    assert {r["group"] for r in seg.all_rows} == {"Test01", "Test02", "Test03"}
    assert {r["group"] for r in seg.all_rows if r["split"] == "test"} == {"Test02"}  # the stored split
    assert all(r.get("polarity") in ("bright", "dark") for r in seg.all_rows)


@pytest.mark.slow
def test_train_pix2pix_runs_in_smoke_profile(tmp_path, monkeypatch, run_notebook):
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    run_dir = tmp_path / "run"
    nb = run_notebook("20_train_pix2pix.ipynb", {"PROFILE": "smoke", "RUN_DIR": str(run_dir)})
    assert nb.images >= 3
    doc = metrics_doc_of(run_dir, "20_train_pix2pix[sim]")  # DOMAIN="sim" by default
    assert doc["domain"] == "sim"
    m = {k: v["value"] for k, v in doc["metrics"].items()}
    assert doc["extra"]["steps"] > 0 and 0 < m[K.key(K.PIX2PIX, K.PSNR)] < m[K.key(K.UPPER_BOUND, K.PSNR)]
    assert m[K.STEP_S_FP32] > 0 and m[K.PSNR_GAP] == pytest.approx(
        m[K.key(K.UPPER_BOUND, K.PSNR)] - m[K.key(K.PIX2PIX, K.PSNR)])
    assert doc["metrics"][K.key(K.PIX2PIX, K.PSNR)]["ci_low"] is not None
    out = json.loads((run_dir / "20_train_pix2pix[sim]" / "outputs.json").read_text())
    assert Path(out["generator"]).is_file()
    assert (run_dir / "20_train_pix2pix[sim]" / "fp32_vs_bf16.png").is_file()


@pytest.mark.slow
def test_train_cyclegan_runs_in_smoke_profile(tmp_path, monkeypatch, run_notebook):
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    run_dir = tmp_path / "run"
    nb = run_notebook("21_train_cyclegan.ipynb", {"PROFILE": "smoke", "RUN_DIR": str(run_dir)})
    assert nb.images >= 2
    doc = metrics_doc_of(run_dir, "21_train_cyclegan[sim]")
    assert doc["extra"]["steps"] == 4 and doc["metrics"][K.key(K.CYCLEGAN, K.PSNR)]["value"] > 0


@pytest.mark.slow
def test_metric_tables_runs_in_smoke_profile(tmp_path, monkeypatch, run_notebook):
    """Notebook 30 with a (2-step) Pix2Pix from the run manifest, no CycleGAN and no
    FID/LPIPS weights: Pix2Pix, the physics baseline and the upper bound are scored,
    CycleGAN is reported missing, FID says which file is missing."""
    from semlab.data.datasets import make_default_dataset
    from semlab.train import TrainConfig, train

    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    ds = make_default_dataset("ic-metal", "smoke", progress=False)
    res = train(TrainConfig(model="pix2pix", dataset=str(ds), out=str(tmp_path / "p2p"), max_steps=2, batch_size=2),
                progress=False)
    from semlab.train.checkpoint import latest_checkpoint

    gen = latest_checkpoint(tmp_path / "p2p" / "checkpoints")  # max_steps: a training checkpoint, no generator.pt
    assert res.steps == 2 and gen is not None
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps(
        {"outputs": {"20_train_pix2pix": {"generator": str(gen), "dataset": str(ds)}}}))
    nb = run_notebook("30_metric_tables.ipynb", {"PROFILE": "smoke", "RUN_DIR": str(run_dir)})
    assert nb.images >= 4
    out = run_dir / "30_metric_tables[sim]"
    doc = metrics_doc_of(run_dir, "30_metric_tables[sim]")
    m = doc["metrics"]
    assert doc["extra"]["models"] == ["Pix2Pix", "simulator (physics baseline)", "noise-free image (upper bound)"]
    assert doc["extra"]["missing_models"] == ["CycleGAN"]
    assert m[K.key(K.PIX2PIX, K.PSNR)]["value"] < m[K.key(K.UPPER_BOUND, K.PSNR)]["value"]
    assert K.key(K.PIX2PIX, K.FID) not in m and K.key(K.PIX2PIX, K.FID) in doc["extra"][K.UNAVAILABLE]
    assert K.key(K.PIX2PIX, K.FD_SEM) in m and len(doc["extra"]["sem_encoder_sha256"]) == 64
    assert doc["headline"] == [K.key(K.PIX2PIX, K.PSNR), K.key(K.PIX2PIX, K.FD_SEM)]
    table = (out / "comparison.md").read_text().replace("\\", "")  # names may be Markdown-escaped
    assert "pt_inception-2015-12-05-6726825d.pth not found" in table and "**" in table


def real_lines_dataset(root: Path) -> Path:
    """The packaged cdsem-lines frames imported in 128-px tiles with the stored frame split
    and segmented (classical): the paired dataset notebook 10 publishes for DOMAIN="real"."""
    from semlab.data import samples
    from semlab.data.datasets import import_images
    from semlab.segment.pipeline import segment_dataset

    imported = import_images(samples.path("cdsem-lines"), root / "real-imported", tile=128, progress=False)
    return segment_dataset(imported, root / "real-seg", backend="classical", progress=False)


def merge_outputs(run_dir: Path, step: str) -> None:
    """What the runner does after a step: its outputs.json into the run manifest."""
    man = json.loads((run_dir / "manifest.json").read_text())
    man["outputs"][step] = json.loads((run_dir / step / "outputs.json").read_text())
    (run_dir / "manifest.json").write_text(json.dumps(man))


@pytest.mark.slow
def test_real_domain_notebooks_20_21_30_40_45_run_in_smoke_profile(tmp_path, monkeypatch, run_notebook):
    """DOMAIN="real" through training, metric tables and the detector, on the packaged
    cdsem-lines frames (train frame Test03, val Test01, test Test02): each notebook writes a
    valid real-domain metrics doc naming the set, n tiles and n frames; no test frame was
    trained on; 30 and 40 show the simulated domain beside the real one."""
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    ds = real_lines_dataset(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps({"outputs": {"10_make_dataset[real]": {"dataset": str(ds)}}}))
    params = {"PROFILE": "smoke", "RUN_DIR": str(run_dir), "DOMAIN": "real"}
    docs = {}
    for nb in ("20_train_pix2pix", "21_train_cyclegan", "30_metric_tables", "40_real_vs_fake", "45_residual_noise"):
        run = run_notebook(f"{nb}.ipynb", params)
        step = f"{nb}[real]"
        docs[nb] = doc = metrics_doc_of(run_dir, step)
        assert doc["domain"] == "real" and doc["set"].startswith("cdsem-lines (real)"), (nb, doc["set"])
        assert doc["extra"]["real_set"] == "cdsem-lines" and doc["extra"]["n_tiles"] == doc["n"]
        assert "describes those frames only" in doc["extra"]["ci_note"]
        assert not set(doc["extra"]["frames"]) & set(doc["extra"]["train_frames"])
        if (run_dir / step / "outputs.json").is_file():  # 45 hands nothing on
            merge_outputs(run_dir, step)
        if nb in ("30_metric_tables", "40_real_vs_fake"):
            assert "real domain (target: real SEM tiles)" in run.markdown
    from semlab.runs import find_generator

    for kind in ("pix2pix", "cyclegan"):
        assert Path(find_generator(kind, "real", run_dir, "smoke")).is_file()
    p2p, cyc, tab, det, inj = (docs[nb] for nb in sorted(docs))
    # 45: noise fitted on the train frame, chosen on the val frame, reported on the test frame only
    assert inj["extra"]["frames"] == ["Test02"] and set(inj["extra"]["chosen"]) <= {"Pix2Pix", "CycleGAN",
                                                                                    "simulator (physics baseline)"}
    assert "Pix2Pix" in inj["extra"]["chosen"] and "train split" in inj["extra"]["fit_data"]
    for state in ("before", "injected"):
        e = inj["metrics"][K.key(K.PIX2PIX, state, K.DETECTOR_BALANCED_ACCURACY)]
        assert e["ci_low"] <= e["value"] <= e["ci_high"] and e["n"] == inj["n"]
        # FD_sem before and after, in the features of the encoder notebook 30 published
        assert inj["metrics"][K.key(K.PIX2PIX, state, K.FD_SEM)]["value"] >= 0
    assert p2p["extra"]["n_frames"] == 1 and p2p["set"].endswith(f"{p2p['n']} tiles of 1 frame")
    assert p2p["extra"]["frames"] == ["Test02"] and p2p["extra"]["train_frames"] == ["Test03"]
    assert p2p["metrics"][K.key(K.PIX2PIX, K.PSNR)]["ci_low"] is not None
    assert K.key(K.UPPER_BOUND, K.PSNR) not in p2p["metrics"]  # no noise-free image of a real frame
    assert cyc["metrics"][K.key(K.CYCLEGAN, K.SSIM)]["n"] == cyc["n"]
    m = tab["metrics"]
    assert {K.key(x, K.PSNR) for x in (K.PIX2PIX, K.CYCLEGAN, K.PHYSICS)} <= set(m)
    assert tab["extra"]["physics_preset"] == "line-space" and 0.8 < tab["extra"]["physics_pixel_nm"] < 0.85
    assert tab["n"] == 24  # smoke: real.max_eval test tiles, spread over the frame
    assert det["extra"]["n_frames"] == 2 and det["extra"]["frames"] == ["Test01", "Test02"]
    assert "blocks of 2x2 tiles" in det["extra"]["grouping"]  # 2 frames, 3 folds: blocks, said so
    for model in (K.PIX2PIX, K.CYCLEGAN, K.PHYSICS):
        for key in (K.DETECTOR_BALANCED_ACCURACY, K.DETECTOR_AUC, "spectrum_auc"):
            e = det["metrics"][K.key(model, key)]
            assert e["ci_low"] <= e["value"] <= e["ci_high"] and e["n"] == det["n"] == 24
