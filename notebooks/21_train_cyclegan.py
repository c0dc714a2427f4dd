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
#     question: How close does an unpaired CycleGAN get to the target SEM images of its masks?
# ---

# %% [markdown]
# # 21 · Train CycleGAN: masks and SEM images without pairs
#
# CycleGAN (Zhu et al. 2017) needs no pairs: two generators (mask -> SEM and SEM -> mask) and
# two discriminators, held together by cycle consistency (mask -> SEM -> mask must give the
# mask back, and the other way round). It is what a user with masks from one place and SEM
# images from another can train. Without pairs the generated image only has to look like *an*
# SEM image of that layout, so pixel scores (PSNR, SSIM) against the paired target image are
# expected to be far below Pix2Pix's, as in the seed project (PSNR 13.1 dB vs 33.8 dB).
#
# The **target** image of a mask is the image the generator should reproduce: on simulated
# data the simulator's image, labelled "simulated (target)" (never "real"), on real data
# the real SEM frame the mask was segmented from.
#
# `DOMAIN="real"` trains on real CD-SEM tiles of notebook 10 (`DOMAIN="real"`) and their
# segmented masks, one model per real set (the cpu profile: the line set only), and scores
# it against held-out **real** tiles of frames it never saw. A CI over the tiles of one or
# two frames describes those frames only.

# %% tags=["parameters"]
PROFILE = "cpu"
RUN_DIR = ""
SEED = 0
DOMAIN = "sim"
REAL_DIR = ""
DATASET = ""
PRESET = "ic-metal"
MAX_STEPS = None
BATCH_SIZE = 1
PRECISION = "bf16"
NET_G = "resnet_9blocks"
LAMBDA_IDENTITY = 0.5
DIFFAUG = ""

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
from semlab.train.realsets import domain_dataset, other_sets
from semlab.viz.preview import EpochPreview
from semlab.viz.training import loss_curves, translation_grid

# %%
settings = domain_settings(PROFILE, DOMAIN)
N_SHOW = min(settings["n_show"], 6)
OUT = notebook_out(RUN_DIR, "21_train_cyclegan", DOMAIN)  # None without a run: nothing is saved
source, real = domain_dataset(DOMAIN, RUN_DIR, DATASET, preset=PRESET, profile=PROFILE, seed=SEED, real_dir=REAL_DIR)
ds = load_dataset(source)
test_ids = ds.split("test")
run_root = (OUT if OUT is not None else standalone_dir("cyclegan", DOMAIN, PROFILE))
steps = MAX_STEPS if MAX_STEPS is not None else settings["cyclegan_steps"]
print(f"dataset {source}: {len(ds.split('train'))} masks and images (used unpaired); "
      f"step budget: {steps or 'the whole schedule'}")
print(real.describe() if real else "simulated domain")

# %% [markdown]
# ## 1. Train (unpaired)
#
# Masks and images are drawn in independent orders, so the pairs the dataset has are never
# used. The identity loss (weight `LAMBDA_IDENTITY` x 10) asks the mask -> SEM generator to
# leave an SEM image unchanged, which keeps its gray texture.

# %%
cfg = TrainConfig(model="cyclegan", dataset=str(source), out=str(run_root / "cyclegan"), seed=SEED,
                  n_epochs=settings["cyclegan_epochs"], n_epochs_decay=settings["cyclegan_epochs_decay"],
                  batch_size=BATCH_SIZE, precision=PRECISION, channels_last=PRECISION == "bf16", netG=NET_G,
                  lambda_identity=LAMBDA_IDENTITY, diffaug=DIFFAUG, max_steps=steps, checkpoint_every=100)
val_ids = (ds.split("val") or ds.split("train"))[:N_SHOW]
preview = EpochPreview(np.stack([ds.mask(i) for i in val_ids]), np.stack([ds.image(i) for i in val_ids]),
                       out_dir=run_root / "cyclegan" / "samples", show=True)
result = train(cfg, progress=True, on_epoch=preview)
print(f"{result.steps} steps, batch {cfg.batch_size}, {cfg.precision}")
fig = loss_curves({"cyclegan": result.log}, keys=("loss_G_A", "loss_D_A", "loss_cycle_A", "loss_cycle_B"))
save_figure(OUT, "loss_curves", fig)
fig

# %% [markdown]
# `loss_G_A` / `loss_D_A`: the mask -> SEM generator against its discriminator (least
# squares: 0.25 each when D is undecided); `loss_cycle_A`: mask -> SEM -> mask, `loss_cycle_B`:
# SEM -> mask -> SEM, both x 10. Falling cycle losses mean the two generators agree.
#
# ## 2. Test set

# %%
generator_path = result.generator_path or latest_checkpoint(run_root / "cyclegan" / "checkpoints")
scores = score_translator(Generator(generator_path), ds, test_ids, "CycleGAN", seed=SEED)
print(scores.text())
print(real.label("test") if real else "")
k = min(N_SHOW, len(test_ids))
fig = translation_grid(scores.masks[:k], scores.fake[:k], scores.real[:k], titles=test_ids[:k])
save_figure(OUT, "test_grid", fig, dpi=80)
fig

# %% [markdown]
# Test masks (top), CycleGAN's images (middle), the target images (bottom). With a short CPU
# budget the images are rough; the point of this notebook is the method and its numbers at
# equal settings, and `PROFILE="full"` on a GPU trains the seed's 200 epochs. On real data the
# bottom row is the held-out real tiles; the scores above name the set, n tiles and n
# frames, and a CI over the tiles of one or two frames describes those frames only.

# %% [markdown]
# ## Further real sets: one model per set
#
# In the real domain every real set gets its own model, trained with the same settings on
# that set's training frames and scored on its held-out test frames. The cpu profile trains
# the line set only (its 2-minute budget); `PROFILE="full"` trains every set. Nothing runs
# here in the simulated domain.

# %%
more = train_sets(cfg, other_sets(DOMAIN, RUN_DIR, DATASET, profile=PROFILE, seed=SEED, real_dir=REAL_DIR),
                  "CycleGAN", seed=SEED)
display(Markdown(sets_markdown(more)))

# %%
publish_outputs(RUN_DIR, "21_train_cyclegan", DOMAIN, generator=generator_path, dataset=source,
                real_set=real.set if real else None)
doc = translator_metrics_doc("21_train_cyclegan", "cyclegan", scores, source=source, real=real, other_sets=more,
                             profile=PROFILE, steps=result.steps, precision=cfg.precision)
print("wrote", save_metrics(OUT, doc) or "nothing (RUN_DIR is empty)")
doc["metrics"]
