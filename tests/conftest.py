"""Shared test settings and fixtures."""

import os

# Set before torch is imported: with pytest-xdist two workers share the 2 cores, and
# OpenMP threads that spin while waiting slow each other down several-fold.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Tests save random networks under the official weight file names (save_random_inception,
# save_random_backbone, ...): their sha256 is never the official one, so they load only as
# "unverified weights", and every metric computed from them is labelled so. Tests of the
# refusal itself (tests/test_security_weights.py, tests/test_weights.py) unset this.
os.environ["SEMLAB_ALLOW_UNVERIFIED_WEIGHTS"] = "1"

import pytest  # noqa: E402


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """An empty weights folder, private data and torch folders, and no downloads: no
    pretrained network (SAM2, Inception, LPIPS backbones) is available."""
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    return tmp_path


@pytest.fixture(scope="session")
def sam2_weights_folder(tmp_path_factory):
    """A folder holding a randomly initialised sam2.1 hiera-tiny in the official
    checkpoint format ({"model": state_dict}), found through $SEMLAB_WEIGHTS by tests
    that set it: the real loading code runs, nothing is downloaded."""
    pytest.importorskip("sam2")
    from semlab.segment.sam2_backend import make_random_checkpoint

    folder = tmp_path_factory.mktemp("sam2-weights")
    make_random_checkpoint("sam2.1_hiera_tiny", folder, image_size=512, seed=0)
    return folder


class NotebookRun:
    """An executed notebook: its cells' outputs, their text, Markdown and image count."""

    def __init__(self, nb):
        self.nb = nb
        self.outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        self.text = "".join(o.get("text", "") for o in self.outputs)
        self.markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in self.outputs)
        self.images = sum("image/png" in o.get("data", {}) for o in self.outputs)


@pytest.fixture
def run_notebook(tmp_path):
    """``run_notebook(name, params)``: executes notebooks/<name> (its jupytext ``.py``
    source, read in memory; ``X.ipynb`` names mean ``X.py``) with papermill (cwd
    notebooks/, output in tmp_path), asserts that no cell raised, returns a NotebookRun."""
    from pathlib import Path

    pm = pytest.importorskip("papermill")
    import nbformat

    from semlab.nbsource import read_notebook

    folder = Path(__file__).resolve().parents[1] / "notebooks"

    def run(name: str, params: dict) -> NotebookRun:
        stem = Path(name).stem
        out = tmp_path / f"{stem}.ipynb"
        pm.execute_notebook(read_notebook(folder / f"{stem}.py"), str(out), parameters=params,
                            kernel_name="python3", cwd=str(folder), progress_bar=False)
        done = NotebookRun(nbformat.read(str(out), as_version=4))
        errors = [o for o in done.outputs if o.output_type == "error"]
        assert not errors, f"{name}: " + "; ".join(f"{o.ename}: {o.evalue}" for o in errors)
        return done

    return run


@pytest.fixture
def tiny_generator():
    """A factory `(path, seed) -> path` of a small random 32-px Pix2Pix generator file in
    semlab's own format (for generate: checkpoint hashes, clashing names)."""
    def make(path, seed: int = 0):
        import torch

        from semlab.train import nets
        from semlab.train.checkpoint import atomic_torch_save
        from semlab.train.config import TrainConfig

        cfg = TrainConfig(ngf=8, ndf=8, threads=1)
        torch.manual_seed(seed)
        net = nets.generator(cfg, nets.mask_channels(cfg), 1, 32)
        return atomic_torch_save({"format": "semlab-generator-1", "config": cfg.to_dict(), "size": 32,
                                  "model": net.state_dict()}, path)

    return make
