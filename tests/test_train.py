"""Training: Pix2Pix steps, exact resume after SIGKILL, NaN guard, generate, bench."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from semlab.data.datasets import simulate_dataset
from semlab.train import TrainConfig, train
from semlab.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from semlab.train.data import epoch_order, steps_per_epoch
from semlab.train.diffaug import diff_augment
from semlab.train.losses import gan_loss

TINY = {"ngf": 8, "ndf": 8, "threads": 1}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return simulate_dataset(tmp_path_factory.mktemp("d") / "sim", preset="ic-metal", n=20, size=32, progress=False)


def _state(path):
    return load_checkpoint(path)["model"]


def test_epoch_order_is_a_seeded_permutation_and_shards_like_distributed_sampler():
    a = epoch_order(10, 0, 3)
    assert sorted(a) == list(range(10)) and np.array_equal(a, epoch_order(10, 0, 3))
    assert not np.array_equal(a, epoch_order(10, 0, 4))
    parts = [epoch_order(10, 0, 3, rank=r, world=3) for r in range(3)]
    assert all(len(p) == 4 for p in parts)  # padded to a multiple of the world size
    assert set(np.concatenate(parts)) == set(range(10))
    assert steps_per_epoch(10, 3, world=3) == 2


def test_gan_losses_against_closed_forms():
    x = torch.tensor([[0.0, 2.0]])
    assert gan_loss(x, True, "vanilla").item() == pytest.approx(float(np.mean(np.log1p(np.exp(-np.array([0.0, 2.0]))))))
    assert gan_loss(x, False, "lsgan").item() == pytest.approx(2.0)
    assert gan_loss(x, True, "hinge").item() == pytest.approx(0.5)  # mean(relu(1 - x)) = (1 + 0) / 2
    assert gan_loss(x, True, "hinge", for_discriminator=False).item() == pytest.approx(-1.0)
    assert gan_loss([x, x * 0], False, "lsgan").item() == pytest.approx(1.0)  # averaged over scales


def test_diffaug_keeps_shapes_and_mask_channels():
    torch.manual_seed(0)
    x = torch.rand(3, 5, 16, 16) * 2 - 1
    y = diff_augment(x, "color", image_channels=slice(4, 5))
    assert torch.equal(y[:, :4], x[:, :4]) and not torch.equal(y[:, 4], x[:, 4])
    z = diff_augment(x, "translation,cutout")
    assert z.shape == x.shape and (z == 0).float().mean() > 0.2  # a quarter cut out per image
    x.requires_grad_(True)
    diff_augment(x, "translation,cutout,color", slice(4, 5)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="policy"):
        diff_augment(x, "rotate")


def test_pix2pix_trains_checkpoints_and_generates(dataset, tmp_path):
    cfg = TrainConfig(dataset=str(dataset), out=str(tmp_path / "run"), n_epochs=1, n_epochs_decay=1,
                      checkpoint_every=4, **TINY)
    res = train(cfg, progress=False)
    from semlab.data.datasets import load_dataset

    spe = steps_per_epoch(len(load_dataset(dataset).split("train")), 1)
    assert res.steps == 2 * spe and res.epochs_done == 2 and res.generator_path.is_file()
    assert len(list_checkpoints(tmp_path / "run" / "checkpoints")) == 2  # keep_checkpoints
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(log) == 1 + res.steps
    # the learning rate decays linearly in the second epoch
    assert res.log[0]["lr"] == pytest.approx(2e-4) and res.log[-1]["lr"] == pytest.approx(1e-4)
    from semlab.train.generate import Generator

    g = Generator(res.generator_path)
    m = load_dataset(dataset).mask(load_dataset(dataset).ids[0])
    a, b = g(m, seed=3), g(m, seed=3)
    assert a.shape == m.shape and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="outside"):
        g(np.full((32, 32), 7))
    # the same folder refuses other settings
    with pytest.raises(ValueError, match="other settings"):
        train(TrainConfig(**{**cfg.to_dict(), "lr": 1e-3}), progress=False)


def test_non_finite_loss_stops_with_a_clear_message(dataset, tmp_path, monkeypatch):
    from semlab.train import loop
    from semlab.train.pix2pix import Pix2PixTrainer

    real_step = Pix2PixTrainer.train_step
    calls = {"n": 0}

    def flaky(self, mask, img):
        calls["n"] += 1
        out = real_step(self, mask, img)
        if calls["n"] == 6:
            out["loss_G_L1"] = float("nan")
        return out

    monkeypatch.setattr(Pix2PixTrainer, "train_step", flaky)
    cfg = TrainConfig(dataset=str(dataset), out=str(tmp_path / "nan"), n_epochs=1, n_epochs_decay=0,
                      checkpoint_every=4, **TINY)
    with pytest.raises(loop.TrainingDiverged, match="non-finite loss at step 6.*ckpt-000000004"):
        train(cfg, progress=False)
    assert [p.name for p in list_checkpoints(tmp_path / "nan" / "checkpoints")] == ["ckpt-000000004.pt"]


def _train_cmd(dataset, out, extra=()):
    return [sys.executable, "-m", "semlab", "train", str(dataset), "--out", str(out), "--epochs", "2",
            "--epochs-decay", "1", "--checkpoint-every", "5", "--quiet",
            "--set", "ngf=8", "--set", "ndf=8", "--set", "threads=1", *extra]


@pytest.mark.slow
def test_resume_after_sigkill_gives_identical_weights(dataset, tmp_path):
    """Kill a training process mid-epoch, resume it, and compare with an uninterrupted run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = subprocess.run(_train_cmd(dataset, tmp_path / "ref"), env=env, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr[-2000:]
    slow = ["--set", 'extra={"step_delay_s": 0.2}']  # 1 s between checkpoints: time to kill mid-epoch
    proc = subprocess.Popen(_train_cmd(dataset, tmp_path / "run", slow), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckdir = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline:
        ck = latest_checkpoint(ckdir)
        if ck is not None:  # the first checkpoint (step 5) lies inside the first epoch
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    last = load_checkpoint(latest_checkpoint(ckdir))
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "run" / "generator.pt").exists()
    assert 0 < last["step_in_epoch"], "the kill should land mid-epoch"
    # no temporary checkpoint left behind, and the log matches the checkpoint
    assert not [p for p in ckdir.iterdir() if p.name.startswith(".")]
    resumed = subprocess.run(_train_cmd(dataset, tmp_path / "run", slow[:0]), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _state(tmp_path / "ref" / "generator.pt"), _state(tmp_path / "run" / "generator.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la = (tmp_path / "ref" / "log.csv").read_text().splitlines()
    lb = (tmp_path / "run" / "log.csv").read_text().splitlines()
    strip = lambda rows: [",".join(c for i, c in enumerate(r.split(",")) if i != 3) for r in rows]  # drop seconds
    assert strip(la) == strip(lb)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_two_process_ddp_ends_with_identical_weights(dataset, tmp_path, model):
    """torchrun with 2 CPU processes (gloo): each trains on its half of every epoch,
    DistributedDataParallel averages the gradients, and both end with the same weights."""
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    import socket

    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        port = so.getsockname()[1]
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
           "-m", "semlab", "train", str(dataset),
           "--out", str(tmp_path / "ddp"), "--epochs", "1", "--epochs-decay", "1", "--checkpoint-every", "3",
           "--quiet", "--model", model, "--set", "ngf=8", "--set", "ndf=8", "--set", "threads=1"]
    if model == "cyclegan":
        cmd += ["--set", "max_steps=4"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = __import__("json").loads((tmp_path / "ddp" / "ddp_ranks.json").read_text())
    assert ranks["world_size"] == 2 and ranks["identical"] and len(set(ranks["digests"])) == 1
    from semlab.data.datasets import load_dataset

    n_train = len(load_dataset(dataset).split("train"))
    last = load_checkpoint(latest_checkpoint(tmp_path / "ddp" / "checkpoints"))
    if model == "pix2pix":
        assert last["step"] == 2 * steps_per_epoch(n_train, 1, world=2)  # each rank saw half of each epoch
        assert (tmp_path / "ddp" / "generator.pt").is_file()
    else:
        assert last["step"] == 4


def test_cyclegan_trains_resumes_its_pools_and_generates(dataset, tmp_path):
    from semlab.train.cyclegan import ImagePool
    from semlab.train.generate import Generator

    cfg = TrainConfig(model="cyclegan", dataset=str(dataset), out=str(tmp_path / "cg"), n_epochs=1, n_epochs_decay=0,
                      max_steps=6, checkpoint_every=3, pool_size=4, **TINY)
    assert cfg.netG == "resnet_9blocks" and cfg.norm == "instance" and cfg.gan_mode == "lsgan" and not cfg.dropout
    res = train(cfg, progress=False)
    assert res.steps == 6 and {"loss_cycle_A", "loss_idt_B", "loss_D_B"} <= set(res.log[-1])
    st = load_checkpoint(latest_checkpoint(tmp_path / "cg" / "checkpoints"))
    assert len(st["trainer"]["pool_B"]) == 4  # the image pool is part of the checkpoint
    # max_steps grows: the run resumes from step 6
    res2 = train(TrainConfig(**{**cfg.to_dict(), "max_steps": 8}), progress=False)
    assert res2.resumed_from == "ckpt-000000006.pt" and res2.steps == 8
    # resumed at the limit: nothing more is trained and no checkpoint is written
    res3 = train(TrainConfig(**{**cfg.to_dict(), "max_steps": 8}), progress=False)
    assert res3.resumed_from == "ckpt-000000008.pt" and res3.steps == 8 and len(res3.log) == 8
    assert latest_checkpoint(tmp_path / "cg" / "checkpoints").name == "ckpt-000000008.pt"
    g = Generator(latest_checkpoint(tmp_path / "cg" / "checkpoints"))
    out = g(np.zeros((2, 32, 32), np.int64))
    assert out.shape == (2, 32, 32) and np.isfinite(out).all()
    pool = ImagePool(2)
    torch.manual_seed(0)
    first = pool.query(torch.ones(2, 1, 4, 4))
    assert torch.equal(first, torch.ones(2, 1, 4, 4)) and len(pool.items) == 2


def test_generate_cli_turns_a_folder_of_masks_into_images(dataset, tmp_path):
    from PIL import Image

    from semlab import cli, io, labels
    from semlab.data.datasets import load_dataset

    cfg = TrainConfig(dataset=str(dataset), out=str(tmp_path / "g"), n_epochs=1, n_epochs_decay=0, **TINY)
    gpath = train(cfg, progress=False).generator_path
    ds = load_dataset(dataset)
    masks = tmp_path / "masks"
    masks.mkdir()
    io.write_mask(masks / "a.png", ds.mask(ds.ids[0]))
    Image.fromarray(labels.colorize(ds.mask(ds.ids[1]))).save(masks / "b_rgb.png")  # a hand-drawn RGB mask
    out = tmp_path / "out"
    assert cli.main(["generate", "--checkpoint", str(gpath), "--masks", str(masks), "--out", str(out), "--quiet"]) == 0
    a = io.read_image(out / "a.png")
    assert a.shape == (32, 32) and (out / "b_rgb.png").is_file()
    before = (out / "a.png").stat().st_mtime_ns
    assert cli.main(["generate", "--checkpoint", str(gpath), "--masks", str(masks), "--out", str(out), "--quiet"]) == 0
    assert (out / "a.png").stat().st_mtime_ns == before  # existing outputs are kept
    again = tmp_path / "again"
    cli.main(["generate", "--checkpoint", str(gpath), "--masks", str(masks), "--out", str(again), "--quiet"])
    assert np.array_equal(io.read_image(again / "a.png"), a)  # deterministic for a seed
