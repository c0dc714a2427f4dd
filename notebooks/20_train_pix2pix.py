# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: semlab,kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
#   semlab:
#     depends_on: []
# ---

# %% [markdown]
# # 20 · Train Pix2Pix: canonical masks to SEM images
#
# Pix2Pix (Isola et al. 2017) learns a mask -> SEM translator from pairs: a U-Net generator
# and a 70x70 PatchGAN discriminator that judges (mask, image) pairs, with lambda x L1 (100)
# pulling the output toward the real image. semlab keeps the original networks, losses and
# schedule (constant learning rate, then linear decay to zero) and trains them faster: images
# held in memory as uint8, batches, channels-last, bf16 autocast. Training checkpoints
# atomically and resumes exactly where it stopped.
#
# On simulated data the best any generator can do is known: the simulator's **noise-free
# image**. Shot and detector noise are unpredictable from the mask, so PSNR/SSIM of the
# noise-free image against the noisy one is the **upper bound**; this notebook shows how close
# Pix2Pix gets.

# %% tags=["parameters"]
PROFILE = "cpu"
RUN_DIR = ""
SEED = 0
DATASET = ""
PRESET = "ic-metal"
EPOCHS = None
EPOCHS_DECAY = None
BATCH_SIZE = None
PRECISION = "bf16"
NET_G = "unet"
UPSAMPLE = "transposed"
GAN_MODE = "vanilla"
DIFFAUG = ""
COMPARE_FP32 = True

# %%
# %matplotlib inline
from pathlib import Path

import numpy as np
from IPython.display import display

from semlab.config import profile_settings
from semlab.data.datasets import load_dataset, make_default_dataset
from semlab.io import write_json_atomic
from semlab.metrics.pixel import ci_table, format_ci_table, paired_scores
from semlab.runs import publish_outputs, save_figure, standalone_dir
from semlab.train import TrainConfig, train
from semlab.train.data import steps_per_epoch
from semlab.train.generate import Generator
from semlab.viz.preview import EpochPreview
from semlab.viz.training import loss_curves, translation_grid

# %%
settings = profile_settings(PROFILE)
N_SHOW = min(settings["n_show"], 6)
OUT = Path(RUN_DIR) / "20_train_pix2pix" if RUN_DIR else None
if OUT is not None:
    OUT.mkdir(parents=True, exist_ok=True)
source = Path(DATASET) if DATASET else make_default_dataset(PRESET, PROFILE, seed=SEED, progress=False)
ds = load_dataset(source)
train_ids, test_ids = ds.split("train"), ds.split("test")
run_root = (OUT if OUT is not None else standalone_dir("pix2pix", "sim", PROFILE))
print(f"dataset {source}: {len(train_ids)} training pairs, {len(test_ids)} test pairs; runs in {run_root}")

# %% [markdown]
# ## 1. Train
#
# Every epoch the generator is run on the same few validation masks (mask | generated | real),
# so you can watch the images form. Re-running this cell with the same folder resumes from
# the last checkpoint instead of starting over.

# %%
cfg = TrainConfig(model="pix2pix", dataset=str(source), out=str(run_root / "pix2pix"), seed=SEED,
                  n_epochs=EPOCHS if EPOCHS is not None else settings["train_epochs"],
                  n_epochs_decay=EPOCHS_DECAY if EPOCHS_DECAY is not None else settings["train_epochs_decay"],
                  batch_size=BATCH_SIZE or settings["train_batch"], precision=PRECISION,
                  channels_last=PRECISION == "bf16", netG=NET_G, upsample=UPSAMPLE, gan_mode=GAN_MODE,
                  diffaug=DIFFAUG, checkpoint_every=200)
val_ids = (ds.split("val") or train_ids)[:N_SHOW]
preview = EpochPreview(np.stack([ds.mask(i) for i in val_ids]), np.stack([ds.image(i) for i in val_ids]),
                       out_dir=run_root / "pix2pix" / "samples", show=True,
                       every=max(1, (cfg.n_epochs + cfg.n_epochs_decay) // 4))
result = train(cfg, progress=True, on_epoch=preview)
print(f"{result.steps} steps, {cfg.n_epochs}+{cfg.n_epochs_decay} epochs, batch {cfg.batch_size}, {cfg.precision}"
      + (f" (resumed from {result.resumed_from})" if result.resumed_from else ""))

# %%
fig = loss_curves({"pix2pix": result.log})
save_figure(OUT, "loss_curves", fig)
fig

# %% [markdown]
# Loss against training step (faint: every step; solid: moving average). `loss_D` is the
# discriminator's loss on real and generated pairs (about 0.69 x 2 / 2 when it cannot tell
# them apart), `loss_G_GAN` how well the generator fools it, `loss_G_L1` 100 x the mean
# absolute difference to the real image: it should fall steadily, and in the decay epochs
# flatten out.
#
# ## 2. Test set: how close to the best possible?

# %%
gen = Generator(result.generator_path)
test_masks = np.stack([ds.mask(i) for i in test_ids])
test_real = np.stack([ds.image(i) for i in test_ids])
test_clean = np.stack([ds.clean(i) for i in test_ids]) if ds.clean(test_ids[0]) is not None else None
fake = gen(test_masks, seed=SEED)
rows = {"Pix2Pix vs real (noisy) image": paired_scores(fake, test_real)}
if test_clean is not None:
    rows["noise-free image vs real: upper bound"] = paired_scores(test_clean, test_real)
    rows["Pix2Pix vs noise-free image"] = paired_scores(fake, test_clean)
table = ci_table(rows)
print(format_ci_table(table, f"comparison (test split, n={len(test_ids)})"))

# %% [markdown]
# The middle row is the ceiling: even a perfect generator cannot predict the shot noise, so it
# scores at best what the noise-free image scores against the noisy one. The gap between the
# first row and the ceiling is what training could still gain; the last row compares
# Pix2Pix with the noise-free truth (higher means the structure is right and the texture
# averages out correctly).

# %%
k = min(N_SHOW, len(test_ids))
fig = translation_grid(test_masks[:k], fake[:k], test_real[:k], titles=test_ids[:k])
save_figure(OUT, "test_grid", fig, dpi=80)
fig

# %% [markdown]
# Test masks the generator never saw (top), its images (middle) and the real simulated SEM
# images (bottom). Look for the bright edge rims, the dark halos beside them, the texture of
# the metal and the noise grain: a translator that only learned the mean gray levels would
# give flat, blurry images here.
#
# ## 3. bf16 versus fp32
#
# bf16 autocast is what makes training fast on this CPU (AMX). It must not change what the
# network learns: the same configuration in fp32, from the same seed, for the first epochs.

# %%
curves = None
if COMPARE_FP32 and settings["compare_epochs"] > 0 and PRECISION == "bf16":
    n_cmp = settings["compare_epochs"]
    cfg32 = TrainConfig(**{**cfg.to_dict(), "precision": "fp32", "channels_last": False,
                           "out": str(run_root / "pix2pix-fp32"), "n_epochs": cfg.n_epochs,
                           "max_steps": n_cmp * steps_per_epoch(len(train_ids), cfg.batch_size)})
    res32 = train(cfg32, progress=True)
    bf16_part = [r for r in result.log if r["step"] <= res32.steps]
    curves = {"bf16": bf16_part, "fp32": res32.log}
    fig = loss_curves(curves, smooth=10)
    save_figure(OUT, "fp32_vs_bf16", fig)
    display(fig)
    l1 = {k: float(np.mean([r["loss_G_L1"] for r in v[-len(v) // 4:]])) for k, v in curves.items()}
    print(f"mean L1 loss over the last quarter of {res32.steps} steps: bf16 {l1['bf16']:.3f}, fp32 {l1['fp32']:.3f}")
    t = {k: float(np.median([r["seconds"] for r in v])) for k, v in curves.items()}
    print(f"median step time: bf16 {t['bf16']:.3f} s, fp32 {t['fp32']:.3f} s ({t['fp32'] / t['bf16']:.1f}x)")
else:
    print("comparison skipped (COMPARE_FP32 off, PRECISION not bf16, or the profile has none)")

# %% [markdown]
# Both runs start from the same weights and see the same batches; the curves should overlap
# within their noise. A bf16 curve that drifts above the fp32 one would mean precision is
# costing quality.

# %%
publish_outputs(RUN_DIR, "20_train_pix2pix", generator=result.generator_path, dataset=source)
metrics = {"profile": PROFILE, "steps": result.steps, "precision": cfg.precision, "batch_size": cfg.batch_size,
           "epochs": cfg.n_epochs + cfg.n_epochs_decay, "n_test": len(test_ids),
           "psnr": table["Pix2Pix vs real (noisy) image"]["psnr"][0],
           "ssim": table["Pix2Pix vs real (noisy) image"]["ssim"][0]}
bound = table.get("noise-free image vs real: upper bound")
if bound:
    metrics.update(psnr_upper_bound=bound["psnr"][0], ssim_upper_bound=bound["ssim"][0],
                   psnr_gap_db=bound["psnr"][0] - metrics["psnr"], ssim_gap=bound["ssim"][0] - metrics["ssim"])
if curves:
    metrics["step_s_bf16"] = float(np.median([r["seconds"] for r in curves["bf16"]]))
    metrics["step_s_fp32"] = float(np.median([r["seconds"] for r in curves["fp32"]]))
if OUT is not None:
    print("wrote", write_json_atomic(OUT / "metrics.json", metrics))
metrics

# %% [markdown]
# The generator's path goes into the run manifest, where the evaluation and forensics
# notebooks find it. From the shell the same training is
# `semlab train DATASET --out RUN --precision bf16 --batch-size 8`, and
# `semlab generate --checkpoint RUN/generator.pt --masks MASKS --out IMAGES` turns any masks,
# hand-drawn ones included, into SEM images.
