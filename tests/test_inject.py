"""semlab.noise.inject and `semlab inject`: add vs replace, the output folder, resuming,
never writing into the input (issue 20 item 2)."""

import json

import numpy as np
import pytest

from semlab import io
from semlab.noise import registry
from semlab.noise.inject import inject_folder, inject_images
from semlab.noise.models import PoissonGaussian

SIG_MODEL, SIG_OWN = 0.04, 0.03


def _structure(n=128, shift=0):
    yy, xx = np.mgrid[0:n, 0:n]
    return (0.25 + 0.45 * (((xx + shift) // 32) % 2) + 0.05 * yy / n).astype(np.float32)


def _robust_std(x):
    return 1.4826 * float(np.median(np.abs(x - np.median(x))))


@pytest.fixture
def folders(tmp_path):
    """fit/: two "real" frames (white noise 0.04); gen/: three generated images with their
    own noise 0.03, one of them in a subfolder."""
    rng = np.random.default_rng(0)
    fit, gen = tmp_path / "fit", tmp_path / "gen"
    for k in range(2):
        c = _structure(256, 9 * k)
        io.write_image(fit / f"real{k}.png", np.clip(c + rng.normal(0, SIG_MODEL, c.shape), 0, 1))
    for k, name in enumerate(["a.png", "b.png", "sub/c.png"]):
        c = _structure(128, 5 * k)
        io.write_image(gen / name, np.clip(c + rng.normal(0, SIG_OWN, c.shape), 0, 1))
    return fit, gen


def _shas(folder):
    return {p.relative_to(folder).as_posix(): io.sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_add_and_replace_differ_as_documented():
    """add: the image's own noise stays (sqrt(own^2 + model^2)); replace: the image is
    denoised first, so the result's noise is about the model's level."""
    rng = np.random.default_rng(1)
    c = _structure(256)
    gen = [np.clip(c + rng.normal(0, SIG_OWN, c.shape), 0, 1).astype(np.float32) for _ in range(2)]
    m = PoissonGaussian(0.0, SIG_MODEL ** 2)
    added = inject_images(m, gen, mode="add", seed=0)
    replaced = inject_images(m, gen, mode="replace", seed=0)
    for a, r in zip(added, replaced):
        assert _robust_std(a - c) == pytest.approx(np.hypot(SIG_OWN, SIG_MODEL), rel=0.06)
        assert _robust_std(r - c) == pytest.approx(SIG_MODEL, rel=0.1)
    assert np.array_equal(added[0], inject_images(m, gen[:1], mode="add", seed=0)[0])  # per seed
    assert not np.array_equal(added[0], inject_images(m, gen[:1], mode="add", seed=1)[0])
    with pytest.raises(ValueError, match="mode must be one of"):
        inject_images(m, gen, mode="mix")


def test_inject_folder_writes_outputs_record_and_model_and_resumes(folders, tmp_path):
    from semlab.metrics.evaluate import read_folder
    from semlab.realism import load_side

    fit, gen = folders
    before = _shas(gen) | {f"fit/{k}": v for k, v in _shas(fit).items()}
    out = tmp_path / "out"
    rec = inject_folder("poisson-gaussian", fit, gen, out, tile=128, seed=3, progress=False)
    assert rec["written"] == 3 and rec["skipped"] == 0
    assert sorted(rec["items"]) == ["a.png", "b.png", "sub/c.png"]
    doc = json.loads((out / "inject.json").read_text())
    s = doc["settings"]
    assert s["model_kind"] == "poisson-gaussian" and s["mode"] == "add" and s["seed"] == 3
    assert len(s["params_sha256"]) == 64 and len(s["data_sha256"]) == 64
    model = registry.load(out / "model")
    assert model.meta.data_sha256 == s["data_sha256"]
    assert np.sqrt(model.b + model.a * 0.5) == pytest.approx(SIG_MODEL, rel=0.1)  # fitted on the real frames
    # the injected folder is read like any other by semlab realism and semlab evaluate
    side = load_side(out, tile=64)
    assert side.n == 3 * 4 and side.n_frames == 3
    names, imgs = read_folder(out)
    assert names == ["a", "b", "c"] and all(i.shape == (128, 128) for i in imgs)
    # resume: nothing rewritten; a damaged output is remade
    again = inject_folder("poisson-gaussian", fit, gen, out, tile=128, seed=3, progress=False)
    assert again["written"] == 0 and again["skipped"] == 3
    good = (out / "b.png").read_bytes()
    io.write_image(out / "b.png", np.zeros((128, 128)))
    again = inject_folder("poisson-gaussian", fit, gen, out, tile=128, seed=3, progress=False)
    assert again["written"] == 1 and (out / "b.png").read_bytes() == good
    # an interrupted run: an output written after the last record update is redone, not refused
    doc = json.loads((out / "inject.json").read_text())
    del doc["items"]["a.png"]
    (out / "inject.json").write_text(json.dumps(doc))
    again = inject_folder("poisson-gaussian", fit, gen, out, tile=128, seed=3, progress=False)
    assert again["written"] == 1 and again["skipped"] == 2
    # other settings in the same folder are refused
    with pytest.raises(ValueError, match="other settings"):
        inject_folder("poisson-gaussian", fit, gen, out, tile=128, seed=3, mode="replace", progress=False)
    # a saved model (--model DIR) gives the same images
    out2 = tmp_path / "out2"
    inject_folder(out / "model", None, gen, out2, seed=3, progress=False)
    assert all((out2 / n).read_bytes() == (out / n).read_bytes() for n in rec["items"])
    after = _shas(gen) | {f"fit/{k}": v for k, v in _shas(fit).items()}
    assert after == before  # inputs untouched


def test_inject_never_writes_into_its_input(folders, tmp_path):
    fit, gen = folders
    before = _shas(gen)
    for bad, match in ((gen, "input folder or inside it"), (gen / "sub", "input folder or inside it"),
                       (tmp_path, "holds the input"), (fit, "fit folder")):
        with pytest.raises(ValueError, match=match):
            inject_folder("poisson-gaussian", fit, gen, bad, tile=128, progress=False)
    assert _shas(gen) == before
    # a folder with files inject did not write
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="did not write"):
        inject_folder("poisson-gaussian", fit, gen, out, tile=128, progress=False)
    assert not (out / "a.png").exists()
    inject_folder("poisson-gaussian", fit, gen, out, tile=128, overwrite=True, progress=False)
    assert (out / "notes.txt").read_text() == "mine" and (out / "a.png").is_file()


def test_model_from_another_pixel_size_warns(folders, tmp_path):
    fit, gen = folders
    imgs = [io.read_image(p) for p in sorted(fit.glob("*.png"))]
    m = registry.get("spectral").fit(imgs, pixel_nm=1.0)
    with pytest.warns(UserWarning, match="fitted at 1 nm/px, used at 3 nm/px"):
        inject_folder(m, None, gen, tmp_path / "o", pixel_nm=3.0, progress=False)
    with pytest.warns(UserWarning, match="fitted at 1 nm/px"):
        inject_images(m, imgs[:1], pixel_nm=1.5)


def test_bit_depths_are_kept_and_mixed_fit_depths_refused(folders, tmp_path):
    fit, gen = folders
    g16 = tmp_path / "g16"
    io.write_image(g16 / "x.png", _structure(), bits=16)
    out = tmp_path / "o16"
    inject_folder("poisson-gaussian", fit, g16, out, tile=128, progress=False)
    assert io.read_image_meta(out / "x.png")["bit_depth"] == 16
    io.write_image(fit / "deep.png", np.clip(_structure(256) + 0.01, 0, 1), bits=16)
    with pytest.raises(ValueError, match="different bit depths"):
        inject_folder("poisson-gaussian", fit, gen, tmp_path / "o2", tile=128, progress=False)


def test_dataset_inputs_and_a_simulated_fit_set_with_clean_images(tmp_path):
    from semlab.data.datasets import simulate_dataset
    from semlab.realism import load_side

    ds = simulate_dataset(tmp_path / "sim", preset="line-space", n=3, size=64, seed=0, progress=False)
    out = tmp_path / "inj"
    rec = inject_folder("spectral", ds, ds, out, mode="replace", progress=False)
    assert rec["written"] == 3 and all(n.endswith(".png") for n in rec["items"])
    assert registry.load(out / "model").estimated_clean is False  # the dataset's clean images were used
    assert load_side(out, tile=64).n == 3
    px = json.loads((ds / "dataset.json").read_text())["pixel_size_nm"]
    assert registry.load(out / "model").meta.pixel_nm == px
    with pytest.warns(UserWarning, match=f"fitted at {px:g} nm/px, used at {2 * px:g} nm/px"):
        inject_folder("poisson-gaussian", ds, ds, tmp_path / "inj2", pixel_nm=2 * px, progress=False)


def test_cli_inject(folders, tmp_path, capsys):
    from semlab.cli import main

    fit, gen = folders
    out = tmp_path / "cli"
    args = ["inject", "--model", "patch-bank", "--fit", str(fit), "--in", str(gen), "--tile", "128", "--quiet"]
    assert main(args + ["--out", str(out)]) == 0
    assert "3 written" in capsys.readouterr().out
    assert main(args + ["--out", str(gen)]) == 2
    assert "never writes into its input" in capsys.readouterr().err
    assert main(["inject", "--model", "no-such", "--fit", str(fit), "--in", str(gen), "--out",
                 str(tmp_path / "x")]) == 2
    assert "unknown noise model" in capsys.readouterr().err


def test_select_model_and_figures(folders, tmp_path):
    """The notebook's helpers: every model fitted and scored by the stats detector, the
    one nearest chance chosen; the figures name the domain and n."""
    from matplotlib.figure import Figure

    from semlab.noise.inject import select_model
    from semlab.viz.injection import model_scores_figure, noise_curves_figure

    fit, gen = folders
    sel = select_model(fit, gen, tmp_path / "work", kinds=["poisson-gaussian", "spectrum-match"], split=None,
                       tile=64, n_boot=50)
    assert set(sel["scores"]) == {"poisson-gaussian", "spectrum-match"}
    dist = {k: abs(v["balanced_accuracy"] - 0.5) for k, v in sel["scores"].items()}
    assert sel["chosen"] == min(dist, key=dist.get)
    assert all(0 <= v["balanced_accuracy"] <= 1 and v["n_sim"] > 0 for v in sel["scores"].values())
    fig = model_scores_figure(sel, domain="sim", set_name="test set")
    assert isinstance(fig, Figure) and "simulated (target)" in fig.axes[0].get_title()
    real = [io.read_image(p) for p in sorted(fit.glob("*.png"))]
    clean = [_structure(256, 9 * k) for k in range(2)]
    inj = inject_images(PoissonGaussian(0.0, SIG_MODEL ** 2), clean, seed=0)
    f2 = noise_curves_figure({"real": (real, clean), "injected": (inj, clean)},
                             {"pg": PoissonGaussian(0.0, SIG_MODEL ** 2)}, domain="sim", set_name="x")
    lines = f2.axes[0].get_lines()
    assert len(lines) == 3 and "simulated (target)" in f2.axes[0].get_title()
    assert np.nanmedian(lines[0].get_ydata()) == pytest.approx(SIG_MODEL * 255, rel=0.15)  # the real set's noise
    # a study's per-generator selection has the same shape as select_model's
    bare = {k: {"balanced_accuracy": v["balanced_accuracy"]} for k, v in sel["scores"].items()}
    f3 = model_scores_figure({"scores": bare, "chosen": sel["chosen"]}, domain="real", generator="Pix2Pix")
    assert "real" in f3.axes[0].get_title() and "Pix2Pix" in f3.axes[0].get_title()
    with pytest.raises(ValueError, match="no scores"):
        model_scores_figure({"scores": {}, "chosen": None})
