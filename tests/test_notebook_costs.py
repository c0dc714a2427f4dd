"""The cost cuts of notebooks 30, 40 and 50 (design.md §9 caps): each one keeps its numbers.

Generators run in the precision they were trained in, the SEM encoder trains channels-last,
the cpu profile's detector trains under bf16 autocast, and the SegSEM experiment
reuses what it computed (EPE for the Hausdorff distance, simulations within a process)."""

from __future__ import annotations

import numpy as np
import pytest


def _generator_file(path, precision: str, seed: int = 0, size: int = 32):
    import torch

    from semlab.train import nets
    from semlab.train.checkpoint import atomic_torch_save
    from semlab.train.config import TrainConfig

    cfg = TrainConfig(ngf=8, ndf=8, threads=1, precision=precision)
    torch.manual_seed(seed)
    net = nets.generator(cfg, nets.mask_channels(cfg), 1, size)
    return atomic_torch_save({"format": "semlab-generator-1", "config": cfg.to_dict(), "size": size,
                              "model": net.state_dict()}, path)


def test_generator_runs_in_its_training_precision_and_stays_close_to_fp32(tmp_path):
    from semlab.train.generate import Generator

    masks = np.random.default_rng(0).integers(0, 4, (3, 32, 32))
    g16 = Generator(_generator_file(tmp_path / "g16.pt", "bf16"))
    g32 = Generator(_generator_file(tmp_path / "g32.pt", "fp32"))
    a = g16(masks, seed=1)  # trained in bf16: bf16 autocast by default
    assert np.array_equal(a, g16(masks, seed=1, precision="bf16"))
    b = g16(masks, seed=1, precision="fp32")
    assert np.array_equal(b, g32(masks, seed=1))  # same weights and seed: the fp32 path is the old one
    assert not np.array_equal(a, b)  # bf16 was really used ...
    assert np.abs(a - b).max() < 0.05 and np.abs(a - b).mean() < 0.01  # ... and changes images by little
    assert np.array_equal(np.stack([g16(m, seed=1) for m in masks]), a)  # still one image at a time
    with pytest.raises(ValueError, match="precision"):
        g16(masks, precision="fp16")


def test_sem_encoder_trains_channels_last_deterministically():
    import torch

    from semlab.metrics.sem_encoder import EncoderConfig, train_sem_encoder

    rng = np.random.default_rng(0)
    imgs = [rng.random((40, 40)).astype(np.float32) for _ in range(8)]
    cfg = EncoderConfig(steps=3, batch_size=4, crop=32, width=4)
    e1 = train_sem_encoder(imgs, cfg, progress=False)
    e2 = train_sem_encoder(imgs, cfg, progress=False)
    assert e1.net.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    for (k, v), w in zip(e1.net.state_dict().items(), e2.net.state_dict().values()):
        assert torch.equal(v, w), k
    f = e1.features(imgs)
    assert f.shape == (8, e1.dim) and np.isfinite(f).all()
    # features do not depend on the batch (eval mode, channels-last inference)
    assert np.allclose(e1.features(imgs[:3]), f[:3], atol=1e-5)


def test_detector_precision_and_folds_per_profile():
    from semlab.config import load_profile
    from semlab.forensics.study import study_settings

    cpu, full, smoke = (load_profile(n).forensics.detector for n in ("cpu", "full", "smoke"))
    assert (cpu.precision, cpu.n_splits) == ("bf16", 5)
    assert (full.precision, full.n_splits, full.epochs) == ("fp32", 5, 15)  # the full profile is unchanged
    assert smoke.precision == "fp32"
    assert study_settings("cpu")["precision"] == "bf16"
    assert study_settings("cpu", precision="fp32")["precision"] == "fp32"


def test_run_detectors_trains_in_the_profiles_precision():
    from semlab.forensics import study
    from semlab.forensics.study_types import FakeSets

    rng = np.random.default_rng(0)
    real = rng.random((12, 32, 32)).astype(np.float32) * 0.5
    fake = np.clip(real + 0.3, 0, 1).astype(np.float32)  # brighter: easy to tell apart
    masks = np.zeros((12, 32, 32), np.uint8)
    sets = FakeSets(dataset=None, splits=("test",), ids=[f"i{k}" for k in range(12)], real=real, masks=masks,
                    fakes={"bright": fake}, sources={}, missing={}, seconds={})
    out = {}
    for prec in ("bf16", "fp32"):
        det = study.run_detectors(sets, profile="smoke", seed=0, precision=prec, epochs=2)
        out[prec] = det["bright"].main
        assert out[prec].config["precision"] == prec and out[prec].config["n_splits"] == 3
    # the same folds, and scores that differ only by rounding
    assert np.array_equal(out["bf16"].fold, out["fp32"].fold)
    assert not np.array_equal(out["bf16"].scores, out["fp32"].scores)
    assert np.corrcoef(out["bf16"].scores, out["fp32"].scores)[0, 1] > 0.99


def test_segsem_simulations_are_remembered_and_equal_fresh_ones():
    from semlab.contours import experiment_config as C
    from semlab.data.simulate import simulate

    cfg = C.experiment_config("smoke")
    a = C.build_items(cfg)
    b = C.build_items(cfg)
    assert all(x.image is y.image for x, y in zip(a, b))  # the second call simulated nothing
    fresh = simulate(a[0].preset, cfg.size, (cfg.seed, 0, 0, 0))  # what build_items asks for, without memory
    assert a[0].id.endswith("-000") and np.array_equal(fresh.image, a[0].image)
    assert np.array_equal(fresh.mask, a[0].mask)
    assert len(fresh.contours) == len(a[0].contours)
    assert all(np.array_equal(u, v) for u, v in zip(fresh.contours, a[0].contours))


def test_notebook_40_reuses_exactly_the_images_notebook_30_generated(tmp_path):
    from semlab.data.datasets import load_dataset, simulate_dataset
    from semlab.forensics import study
    from semlab.metrics import tables
    from semlab.train.generate import Generator

    src = simulate_dataset(tmp_path / "sim", preset="line-space", n=12, size=32, seed=3, progress=False)
    ds = load_dataset(src)
    g1, g2 = _generator_file(tmp_path / "g1.pt", "bf16"), _generator_file(tmp_path / "g2.pt", "fp32", seed=1)
    gens = {"Pix2Pix": g1, "CycleGAN": g2}
    fresh = study.fake_sets(src, gens, ("val", "test"), simulator=False, seed=2)
    # notebook 30: the test split only, saved with the generators' hashes and the seed
    ids30 = ds.split("test")
    masks30 = np.stack([ds.mask(i) for i in ids30])
    fakes30 = {name: Generator(path)(masks30, seed=2) for name, path in gens.items()}
    found = {name: {"path": str(path), "found": True} for name, path in gens.items()}
    f = tables.save_model_images(fakes30, masks30, {**found, "other": {"path": None, "found": False}}, tmp_path, seed=2)
    reuse = tables.reusable_images(f, gens, seed=2)
    assert set(reuse) == {"Pix2Pix", "CycleGAN"} and len(reuse["Pix2Pix"]) == len(set(map(tables.mask_key, masks30)))
    again = study.fake_sets(src, gens, ("val", "test"), simulator=False, seed=2, reuse=reuse)
    for name in gens:  # identical to generating everything: reuse changes nothing but the cost
        assert np.array_equal(again.fakes[name], fresh.fakes[name])
        assert f"{len(ids30)} of {fresh.n_pairs} images as notebook 30 generated them" in again.sources[name]
    # reused images are really taken (a marked one shows up) ...
    k = fresh.ids.index(ids30[0])
    marked = {"Pix2Pix": {key: np.zeros_like(v) if key == tables.mask_key(masks30[0]) else v
                          for key, v in reuse["Pix2Pix"].items()}}
    assert not study.fake_sets(src, gens, ("val", "test"), simulator=False, seed=2, reuse=marked).fakes["Pix2Pix"][k].any()
    # ... and never from another seed or another generator file
    assert tables.reusable_images(f, gens, seed=3) == {}
    assert set(tables.reusable_images(f, {"Pix2Pix": g2, "CycleGAN": g2}, seed=2)) == {"CycleGAN"}
    assert tables.reusable_images(tmp_path / "none.npz", gens) == {}
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        tables.reusable_images(tmp_path / "bad.npz", gens)
