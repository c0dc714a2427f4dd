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
#     domains: [sim, real]
#     question: How close does Pix2Pix get to the best possible mask -> SEM image, and does bf16 cost quality?
# ---

# %% [markdown]
# # 20 · Train Pix2Pix: canonical masks to SEM images
#
# Pix2Pix (Isola et al. 2017) learns a mask -> SEM translator from pairs: a U-Net generator
# and a 70x70 PatchGAN discriminator that judges (mask, image) pairs, with lambda x L1 (100)
# pulling the output toward the target image. semlab keeps the original networks, losses and
# schedule (constant learning rate, then linear decay to zero) and trains them faster: images
# held in memory as uint8, batches, channels-last, bf16 autocast. Training checkpoints
# atomically and resumes exactly where it stopped.
#
# On simulated data the best any generator can do is known: the simulator's **noise-free
# image**. Shot and detector noise are unpredictable from the mask, so PSNR/SSIM of the
# noise-free image against the noisy one is the **upper bound**; this notebook shows how close
# Pix2Pix gets.
#
# The **target** image of a mask is the image the generator should reproduce: on simulated
# data the simulator's image, labelled "simulated (target)" (never "real"), on real data
# the real SEM frame the mask was segmented from.
#
# `DOMAIN` chooses the data. `"sim"`: the simulated dataset (exact masks, noise-free
# images). `"real"`: real CD-SEM tiles of notebook 10 (`DOMAIN="real"`) and their
# segmented masks, one model per real set (the cpu profile trains the line set only);
# the stored frame split keeps every test tile's frame out of training, and the model
# is scored against held-out **real** tiles. There is no upper bound on real data (no
# noise-free image exists), and a CI over the tiles of one or two frames describes those
# frames only.

# %% tags=["parameters"]
PROFILE = "cpu"
RUN_DIR = ""
SEED = 0
DOMAIN = "sim"
REAL_DIR = ""
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
import numpy as np
from IPython.display import Markdown, display

from semlab.config import domain_settings
from semlab.data.datasets import load_dataset
from semlab.metrics.translators import score_translator, sets_markdown, train_sets, translator_metrics_doc
from semlab.runs import notebook_out, publish_outputs, save_figure, save_metrics, standalone_dir
from semlab.train import TrainConfig, train
from semlab.train.checkpoint import latest_checkpoint
from semlab.train.generate import Generator
from semlab.train.precision import compare_precision
from semlab.train.realsets import domain_dataset, other_sets
from semlab.viz.preview import EpochPreview
from semlab.viz.training import loss_curves, translation_grid

# %%
settings = domain_settings(PROFILE, DOMAIN)
N_SHOW = min(settings["n_show"], 6)
OUT = notebook_out(RUN_DIR, "20_train_pix2pix", DOMAIN)  # None without a run: nothing is saved
source, real = domain_dataset(DOMAIN, RUN_DIR, DATASET, preset=PRESET, profile=PROFILE, seed=SEED, real_dir=REAL_DIR)
ds = load_dataset(source)
train_ids, test_ids = ds.split("train"), ds.split("test")
run_root = (OUT if OUT is not None else standalone_dir("pix2pix", DOMAIN, PROFILE))
print(f"dataset {source}: {len(train_ids)} training pairs, {len(test_ids)} test pairs; runs in {run_root}")
print(real.describe() if real else "simulated domain")

# %% [markdown]
# ## 1. Train
#
# Every epoch the generator is run on the same few validation masks (mask | generated | target),
# so you can watch the images form. Re-running this cell with the same folder resumes from
# the last checkpoint instead of starting over.

# %%
cfg = TrainConfig(model="pix2pix", dataset=str(source), out=str(run_root / "pix2pix"), seed=SEED,
                  n_epochs=EPOCHS if EPOCHS is not None else settings["train_epochs"],
                  n_epochs_decay=EPOCHS_DECAY if EPOCHS_DECAY is not None else settings["train_epochs_decay"],
                  batch_size=BATCH_SIZE or settings["train_batch"], precision=PRECISION,
                  channels_last=PRECISION == "bf16", netG=NET_G, upsample=UPSAMPLE, gan_mode=GAN_MODE,
                  diffaug=DIFFAUG, checkpoint_every=200, max_steps=settings["train_steps"])
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
# absolute difference to the target image: it should fall steadily, and in the decay epochs
# flatten out.
#
# ## 2. Test set: how close to the best possible?

# %%
generator_path = result.generator_path or latest_checkpoint(run_root / "pix2pix" / "checkpoints")
scores = score_translator(Generator(generator_path), ds, test_ids, "Pix2Pix", seed=SEED)
print(scores.text())
print(real.label("test") if real else "")

# %% [markdown]
# On simulated data the middle row is the ceiling: even a perfect generator cannot predict the
# shot noise, so it scores at best what the noise-free image scores against the noisy one. The gap between the
# first row and the ceiling is what training could still gain; the last row compares
# Pix2Pix with the noise-free truth (higher means the structure is right and the texture
# averages out correctly). On real data there is one row: Pix2Pix against the held-out real
# tiles (the set, n tiles and n frames are printed under it); a CI over the tiles of one or
# two frames describes those frames only, not the tool or other wafers.

# %%
k = min(N_SHOW, len(test_ids))
fig = translation_grid(scores.masks[:k], scores.fake[:k], scores.real[:k], titles=test_ids[:k])
save_figure(OUT, "test_grid", fig, dpi=80)
fig

# %% [markdown]
# Test masks the generator never saw (top), its images (middle) and the target SEM
# images (bottom). Look for the bright edge rims, the dark halos beside them, the texture of
# the metal and the noise grain: a translator that only learned the mean gray levels would
# give flat, blurry images here.
#
# ## 3. bf16 versus fp32
#
# bf16 autocast is what makes training fast on this CPU (AMX). It must not change what the
# network learns: the same configuration in fp32, from the same seed, for the first epochs.

# %%
precision = None
if COMPARE_FP32 and settings["compare_epochs"] > 0 and PRECISION == "bf16":
    precision = compare_precision(cfg, result.log, settings["compare_epochs"], len(train_ids))
    fig = loss_curves(precision.curves, smooth=10)
    save_figure(OUT, "fp32_vs_bf16", fig)
    display(fig)
    print(precision.summary())
else:
    print("comparison skipped (COMPARE_FP32 off, PRECISION not bf16, or none in this profile and domain)")

# %% [markdown]
# Both runs start from the same weights and see the same batches; the curves should overlap
# within their noise. A bf16 curve that drifts above the fp32 one would mean precision is
# costing quality.

# %% [markdown]
# ## Further real sets: one model per set
#
# In the real domain every real set gets its own model, trained with the same settings on
# that set's training frames and scored on its held-out test frames. The cpu profile trains
# the line set only (its 2-minute budget); `PROFILE="full"` trains every set. Nothing runs
# here in the simulated domain.

# %%
more = train_sets(cfg, other_sets(DOMAIN, RUN_DIR, DATASET, profile=PROFILE, seed=SEED, real_dir=REAL_DIR),
                  "Pix2Pix", seed=SEED)
display(Markdown(sets_markdown(more)))

# %%
publish_outputs(RUN_DIR, "20_train_pix2pix", DOMAIN, generator=generator_path, dataset=source,
                real_set=real.set if real else None)
doc = translator_metrics_doc("20_train_pix2pix", "pix2pix", scores, source=source, real=real, other_sets=more,
                             step_s=precision.step_s if precision else None, profile=PROFILE, steps=result.steps,
                             precision=cfg.precision, batch_size=cfg.batch_size,
                             epochs=cfg.n_epochs + cfg.n_epochs_decay)
print("wrote", save_metrics(OUT, doc) or "nothing (RUN_DIR is empty)")
doc["metrics"]

# %% [markdown]
# The generator's path goes into the run manifest, where the evaluation and forensics
# notebooks find it. From the shell the same training is
# `semlab train DATASET --out RUN --precision bf16 --batch-size 8`, and
# `semlab generate --checkpoint RUN/generator.pt --masks MASKS --out IMAGES` turns any masks,
# hand-drawn ones included, into SEM images.
