"""semlab.forensics.injection: noise injection, the validation-split choice of a noise
model, and the study's split handling (notebook 45)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from semlab.forensics.injection import choose_models, inject, split_sets
from semlab.forensics.study_types import FakeSets


class Gauss:
    """A white Gaussian noise model of known sigma (the study only calls `sample`)."""

    def __init__(self, sigma: float):
        self.sigma = sigma

    kind = "test-gauss"

    def check_use(self, **kw):
        return []

    def sample(self, clean, rng):
        return np.clip(clean + rng.normal(0.0, self.sigma, clean.shape), 0, 1).astype(np.float32)


def _clean(n: int, size: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = ndimage.gaussian_filter(rng.random((size, size)), 3)
        x = (x > np.median(x)).astype(np.float32) * 0.4 + 0.3
        out.append(ndimage.gaussian_filter(x, 1.0))
    return np.stack(out).astype(np.float32)


def _sets(n: int = 40, sigma: float = 0.05, seed: int = 0) -> tuple[FakeSets, np.ndarray]:
    clean = _clean(n, seed=seed)
    rng = np.random.default_rng(seed + 1)
    real = np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 1).astype(np.float32)
    ids = [f"t{k:03d}" for k in range(n)]
    sets = FakeSets(dataset=Path("mem"), splits=("val",), ids=ids, real=real, masks=np.zeros_like(real, np.uint8),
                    fakes={"G": clean.copy()}, sources={"G": "noise-free"}, missing={})
    return sets, clean


def test_inject_is_deterministic_per_seed_and_add_differs_from_replace():
    sets, clean = _sets(8)
    noisy = sets.real  # clean + N(0, 0.05)
    m = Gauss(0.02)
    a1, a2 = inject(m, noisy, mode="add", seed=3), inject(m, noisy, mode="add", seed=3)
    assert np.array_equal(a1, a2)
    assert not np.array_equal(a1, inject(m, noisy, mode="add", seed=4))
    # add: the image's own noise stays and the model's adds in quadrature
    assert np.std(a1 - clean) == pytest.approx(np.hypot(0.05, 0.02), rel=0.12)
    # replace: the own noise is removed first, so what is left is close to the model's level
    r = inject(m, noisy, mode="replace", seed=3)
    assert np.std(r - clean) < 0.7 * np.std(a1 - clean)
    with pytest.raises(ValueError, match="mode"):
        inject(m, noisy, mode="swap")


def test_choose_models_picks_the_model_that_matches_the_real_noise():
    val, _ = _sets(48, sigma=0.05)
    sel = choose_models(val, {"none": Gauss(0.0), "right": Gauss(0.05), "far": Gauss(0.2)}, seed=0, n_splits=4)
    assert sel["G"]["chosen"] == "right"
    s = sel["G"]["scores"]
    # noise-free images against noisy real tiles: trivially separable; the matched noise is not
    assert s["none"]["balanced_accuracy"] > 0.9 and s["far"]["balanced_accuracy"] > 0.9
    assert s["right"]["balanced_accuracy"] < 0.75
    assert s["right"]["ci_low"] <= s["right"]["balanced_accuracy"] <= s["right"]["ci_high"]


def test_split_sets_cuts_val_and_test_by_the_real_split():
    sets, _ = _sets(10)
    sets.fold_groups = [f"g{k // 2}" for k in range(10)]

    class Split:  # a RealSplit's tiles
        tiles = {"train": [], "val": sets.ids[:4], "test": sets.ids[4:]}

    parts = split_sets(sets, "mem", Split())
    assert parts["val"].ids == sets.ids[:4] and parts["test"].ids == sets.ids[4:]
    assert np.array_equal(parts["test"].fakes["G"], sets.fakes["G"][4:])
    assert parts["test"].fold_groups == sets.fold_groups[4:] and parts["test"].splits == ("test",)


def test_fake_sets_round_trip_and_reuse_by_notebook_45(tmp_path):
    """Notebook 40's saved image sets come back identical (read without pickle), and
    `study_fake_sets` takes the wanted pairs from them instead of generating; another
    generator, a missing mask or a damaged file makes it generate and say why."""
    import json

    from semlab.data.datasets import simulate_dataset
    from semlab.forensics.injection import load_fake_sets, save_fake_sets, study_fake_sets
    from semlab.forensics.study import domain_fake_sets
    from semlab.runs import MANIFEST

    ds = simulate_dataset(tmp_path / "ds", preset="line-space", n=10, size=32, seed=1, progress=False,
                          splits={"train": 0.4, "val": 0.3, "test": 0.3})
    settings = {"splits": ("val", "test"), "max_pairs": None, "profile": "smoke", "n_splits": 2}
    full = domain_fake_sets(ds, None, {}, settings)  # the simulator baseline only
    out = tmp_path / "run" / "40_real_vs_fake[sim]"
    assert save_fake_sets(full, None) is None
    save_fake_sets(full, out, {"G": tmp_path / "g.pt"})
    back = load_fake_sets(out)
    assert back.ids == full.ids and np.array_equal(back.real, full.real) and np.array_equal(back.masks, full.masks)
    assert all(np.array_equal(back.fakes[k], full.fakes[k]) for k in full.fakes)
    run = tmp_path / "run"
    (run / MANIFEST).write_text(json.dumps({"outputs": {"40_real_vs_fake[sim]": {"fake_sets": str(out)}}}))
    # notebook 45 takes an even spread of notebook 40's pairs
    sets, note = study_fake_sets(run, "sim", ds, None, {}, settings, max_pairs=3)
    keep = np.linspace(0, full.n_pairs - 1, 3).round().astype(int)
    assert note.startswith("reused") and sets.ids == [full.ids[k] for k in keep]
    name = next(iter(full.fakes))
    assert np.array_equal(sets.fakes[name], full.fakes[name][[full.ids.index(i) for i in sets.ids]])
    # generated afresh (no run): the same masks, and the same images (same settings and seed)
    fresh, note = study_fake_sets(None, "sim", ds, None, {}, settings, max_pairs=3)
    assert note.startswith("generated") and fresh.ids == sets.ids
    assert np.array_equal(fresh.fakes[name], sets.fakes[name])
    # other generators than the saved ones: generated again
    note = study_fake_sets(run, "sim", ds, None, {"G": tmp_path / "other.pt"}, settings, max_pairs=3)[1]
    assert note.startswith("generated") and "other generators" in note
    # a damaged array file is refused with its name, and the study falls back to generating
    np.savez(out / "fake_sets.npz", real=np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="fake_sets.npz"):
        load_fake_sets(out)
    sets, note = study_fake_sets(run, "sim", ds, None, {}, settings, max_pairs=3)
    assert "could not be read" in note and sets.ids == fresh.ids
    # an object array (a pickle inside the npz) is never loaded
    np.savez(out / "fake_sets.npz", real=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="fake_sets.npz"):
        load_fake_sets(out)


def test_subtile_sets_keeps_each_parents_group_and_choice_works_on_subtiles():
    from semlab.forensics.injection import subtile_sets

    sets, _ = _sets(6)
    sets.fold_groups = ["a", "a", "b", "b", "c", "c"]
    sub = subtile_sets(sets, 16)  # 48 px -> 3 x 3 sub-tiles
    assert sub.n_pairs == 54 and sub.real.shape[1:] == (16, 16)
    k = sub.ids.index("t004#4")  # the middle sub-tile of image 4
    assert np.array_equal(sub.real[k], sets.real[4, 16:32, 16:32])
    assert np.array_equal(sub.fakes["G"][k], sets.fakes["G"][4, 16:32, 16:32])
    assert sub.groups[k] == "c" and sub.n_groups == 3 and "9 sub-tiles of 16 px" in sub.grouping
    with pytest.raises(ValueError, match="tile must be"):
        subtile_sets(sets, 64)
    val, _ = _sets(12, sigma=0.05)
    sel = choose_models(val, {"none": Gauss(0.0), "right": Gauss(0.05)}, seed=0, n_splits=3, tile=24)
    assert sel["G"]["chosen"] == "right" and sel["G"]["scores"]["right"]["n_pos"] == 48


def test_noise_study_cli_runs_the_protocol_and_never_writes_over_other_files(tmp_path, capsys):
    """`semlab noise-study` end to end on a tiny simulated dataset (the physics baseline
    only, smoke-profile detectors, 16-px sub-tiles): the three outputs, the chosen model
    recorded, and an --out holding someone else's file refused."""
    import json

    from semlab.cli import main
    from semlab.data.datasets import simulate_dataset

    ds = simulate_dataset(tmp_path / "ds", preset="line-space", n=12, size=32, seed=2, progress=False,
                          splits={"train": 0.5, "val": 0.25, "test": 0.25})
    out = tmp_path / "study"

    def args(o):
        return ["noise-study", "--domain", "sim", "--dataset", str(ds), "--profile", "smoke", "--out", str(o),
                "--generators", "simulator (physics baseline)", "--kinds", "poisson-gaussian,spectrum-match",
                "--tile", "16", "--max-pairs", "0", "--epochs", "1", "--n-splits", "2", "--quiet"]

    assert main(args(out)) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["extra"]["chosen"]["simulator (physics baseline)"] in ("poisson-gaussian", "spectrum-match")
    from semlab.data.datasets import load_dataset

    assert doc["n"] == 4 * len(load_dataset(ds).split("test"))  # 4 sub-tiles of 16 px per 32-px test image
    assert "physics.before.detector_balanced_accuracy" in doc["metrics"]
    assert (out / "detector_before_after.png").is_file() and "Conclusion" in (out / "results.md").read_text()
    assert main(args(out)) == 2 and "earlier study" in capsys.readouterr().err  # not overwritten without --overwrite
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(args(tmp_path / "mine")) == 2
    assert "did not write" in capsys.readouterr().err and (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_selection_markdown_says_when_the_validation_split_cannot_choose():
    from types import SimpleNamespace

    from semlab.forensics.injection_report import selection_markdown

    r = {"balanced_accuracy": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    tie = SimpleNamespace(selection={"Pix2Pix": {"chosen": "a", "scores": {"a": r, "b": dict(r)}}}, fit_failed={})
    text = selection_markdown(tie)
    assert "cannot tell the models apart" in text and "**1.00 [1.00, 1.00]**" in text
    b = {**r, "balanced_accuracy": 0.6}
    apart = SimpleNamespace(selection={"Pix2Pix": {"chosen": "b", "scores": {"a": r, "b": b}}}, fit_failed={})
    assert "cannot tell" not in selection_markdown(apart)


def _fake_study(ba_before: float, ba_after: float, d_before: float, d_after: float):
    from types import SimpleNamespace as NS

    def det(ba):
        m = {"balanced_accuracy": NS(value=ba, lo=ba - 0.02, hi=min(1.0, ba + 0.02)),
             "roc_auc": NS(value=ba, lo=ba - 0.02, hi=min(1.0, ba + 0.02))}
        return NS(main=NS(metrics=m))

    return NS(domain="real", mode="add", chosen={"G": "spectral"}, injected=NS(fakes={"G": None}),
              test=NS(n_pairs=128), before={"G": det(ba_before)}, after={"G": det(ba_after)},
              stats_before={"G": {}}, stats_after={"G": {}},
              quality={"G": {"before": {"log_spectrum_distance": d_before},
                             "after": {"log_spectrum_distance": d_after}}})


def test_conclusion_names_a_tell_that_is_not_the_noise_spectrum():
    """The generated conclusion: when injection matched the spectrum but the retrained CNN
    still separates, it says the detector reads something else; not when the spectrum
    stayed far, and a met goal is called met."""
    from semlab.forensics.injection_report import conclusion

    text = conclusion(_fake_study(1.0, 1.0, 10.0, 1.9))
    assert "misses the goal" in text and "from 10.00 to 1.90 dB" in text and "not the noise spectrum" in text
    assert "not the noise spectrum" not in conclusion(_fake_study(1.0, 1.0, 10.0, 8.0))
    assert "meets the goal" in conclusion(_fake_study(1.0, 0.55, 10.0, 1.0))


def test_run_sem_encoder_loads_notebook_30s_encoder_and_says_why_not(tmp_path):
    """Notebook 45 scores FD_sem with the encoder notebook 30 published in the same run;
    without one, or with a file that is not an encoder (a pickle), it says why and goes on."""
    import json
    import pickle

    from semlab.forensics.injection import run_sem_encoder
    from semlab.metrics.sem_encoder import EncoderConfig, compute_fd_sem, train_sem_encoder

    rng = np.random.default_rng(0)
    imgs = rng.random((8, 32, 32)).astype(np.float32)
    enc_file = tmp_path / "enc.pt"
    enc = train_sem_encoder(imgs, EncoderConfig(steps=2, batch_size=4, crop=32, width=4), out=enc_file,
                            progress=False)
    run = tmp_path / "run"
    run.mkdir()
    enc_none, note = run_sem_encoder(run, "sim")
    assert enc_none is None and "30_metric_tables[sim]" in note
    (run / "manifest.json").write_text(json.dumps({"outputs": {"30_metric_tables[sim]": {"sem_encoder": str(enc_file)}}}))
    got, note = run_sem_encoder(run, "sim")
    assert got is not None and got.sha256 == enc.sha256 and "encoder" in note
    a, b = rng.random((6, 32, 32)).astype(np.float32), rng.random((6, 32, 32)).astype(np.float32)
    assert compute_fd_sem(a, b, got)["fd_sem"] == pytest.approx(compute_fd_sem(a, b, enc)["fd_sem"])
    assert run_sem_encoder(run, "real")[0] is None  # the other domain's step published nothing
    bad = tmp_path / "bad.pt"
    bad.write_bytes(pickle.dumps({"format": "x"}))
    (run / "manifest.json").write_text(json.dumps({"outputs": {"30_metric_tables[sim]": {"sem_encoder": str(bad)}}}))
    got, note = run_sem_encoder(run, "sim")
    assert got is None and str(bad) in note
