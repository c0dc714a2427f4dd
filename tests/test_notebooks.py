"""The committed notebooks: generated from tools/make_notebooks.py, literal parameters,
and (slow) executed with papermill in the smoke profile."""

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "00_explore_data.ipynb"


def test_notebooks_match_generator():
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "make_notebooks.py"), "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_parameters_cell_holds_literals_only():
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    tree = ast.parse(tagged[0].source)
    names = []
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.dump(node)
        ast.literal_eval(node.value)  # raises on anything but a literal
        names.append(node.targets[0].id)
    assert names == ["PROFILE", "RUN_DIR", "SEED", "PRESETS", "REAL_DIR"]
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert not any("def " in c.source for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
@pytest.mark.parametrize("real_dir", ["", "missing"])
def test_explore_data_runs_in_smoke_profile(tmp_path, real_dir):
    if importlib.util.find_spec("semlab.data.simulate") is None:
        pytest.skip("semlab.data.simulate is not available yet")
    pm = pytest.importorskip("papermill")
    run_dir = tmp_path / "run"
    out = tmp_path / "00_explore_data.ipynb"
    params = {"PROFILE": "smoke", "RUN_DIR": str(run_dir)}
    if real_dir == "missing":
        params["REAL_DIR"] = str(tmp_path / "no_such_folder")
    pm.execute_notebook(str(NOTEBOOK), str(out), parameters=params, kernel_name="python3",
                        cwd=str(NOTEBOOK.parent), progress_bar=False)
    nb = nbformat.read(str(out), as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if "image/png" in o.get("data", {})) >= 5
    metrics = json.loads((run_dir / "00_explore_data" / "metrics.json").read_text())
    assert metrics["profile"] == "smoke" and metrics["size_px"] == 64
    ls = [v for k, v in metrics["noise_sigma"].items() if k.startswith("sim/line-space")]
    assert len(ls) == 1 and ls[0] > 0
    if real_dir == "":
        # line-space is simulated at the DSA images' pixel size when they are present
        assert any("nm/px" in k for k in metrics["noise_sigma"]) == ("real/dsa_lines" in metrics["noise_sigma"])
    if real_dir == "missing":
        assert metrics["real_available"] is False
        text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
        assert "No real SEM folder found" in text
