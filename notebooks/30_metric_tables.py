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
#     question: Which mask -> SEM translator is best, and is the difference real?
# ---

# %% [markdown]
# # 30 · Metric tables: how good are the generated SEM images, and how sure are we?
#
# The seed project reported one number per metric (Pix2Pix: FID 14.3, LPIPS 0.033, PSNR
# 33.8 dB, SSIM 0.951; CycleGAN: FID 55.5, LPIPS 0.628, PSNR 13.1 dB, SSIM 0.370) with no
# sample size and no uncertainty. This notebook scores every mask -> SEM translator of the
# run on the same test images and answers three questions:
#
# 1. **Which model is best, and is the difference real?** Every value comes with a 95%
#    bootstrap confidence interval; overlapping intervals mean the data cannot tell.
# 2. **How far from the best possible?** On simulated data the noise-free image is what a
#    perfect generator would predict, so its scores are the ceiling.
# 3. **What do single numbers hide?** Per-image distributions, the worst cases as images,
#    and how FID-type distances change with the number of images alone.
# 4. **Does the image show the structure that was asked for?** Mask fidelity: a segmenter
#    run on the generated images, scored against the input masks (mIoU, EPE in nm), and
#    what happens with idealised masks, as a person paints them.
#
# The models: **Pix2Pix** (notebook 20) and **CycleGAN** (notebook 21) when the run has
# them; the **simulator (physics baseline)**, i.e. semlab's own image formation applied to
# the test masks with imaging parameters it has to guess (no training at all); and the
# **noise-free image (upper bound)**.
#
# The **target** image of a mask is the image the generator should reproduce: on simulated
# data the simulator's image, labelled "simulated (target)" (never "real"), on real data
# the real SEM frame the mask was segmented from.
#
# `DOMAIN="real"` scores the real-domain models (notebooks 20 and 21 with `DOMAIN="real"`)
# against held-out **real** CD-SEM tiles of frames they never saw. The physics baseline
# then renders the same segmented masks with the simulator's built-in preset of the set's
# kind at the set's pixel size: a real competitor, with no training at all. There is no
# upper bound on real data. The last section puts the simulated and the real domain side
# by side.

# %% tags=["parameters"]
PROFILE = "cpu"
RUN_DIR = ""
SEED = 0
DOMAIN = "sim"
REAL_DIR = ""
DATASET = ""
PRESET = "ic-metal"
N_EVAL = None
FID_INF = True
LPIPS_NET = "alex"
SEM_STEPS = None

# %%
# %matplotlib inline
import numpy as np
from IPython.display import Markdown, display

from semlab.data.datasets import load_dataset
from semlab.metrics import fidelity, tables
from semlab.metrics.evaluate import comparison_table
from semlab.metrics.sem_encoder import EncoderConfig, cached_sem_encoder
from semlab.paths import data_dir
from semlab.runs import domain_doc, notebook_out, publish_outputs, save_figure, save_metrics
from semlab.train.realsets import domain_dataset
from semlab.viz.fidelity import experiment_table_figure, fidelity_examples_figure, fidelity_scores_figure, idealised_figure
from semlab.viz.metrics import (metric_distributions_figure, model_gallery_figure, sample_size_figure,
                                worst_pairs_figure)

# %%
study = tables.profile_settings(PROFILE)
OUT = notebook_out(RUN_DIR, "30_metric_tables", DOMAIN)  # None without a run: nothing is saved
source, real_set = domain_dataset(DOMAIN, RUN_DIR, DATASET, preset=PRESET, profile=PROFILE, seed=SEED,
                                  real_dir=REAL_DIR)
ds = load_dataset(source)
test_ids = tables.eval_ids(ds, real_set, N_EVAL or study["n_eval"], PROFILE)
real = np.stack([ds.image(i) for i in test_ids])
masks = np.stack([ds.mask(i) for i in test_ids])
physics = tables.physics_setting(ds, real_set, PRESET)
generators = tables.find_generators(RUN_DIR, PROFILE, DOMAIN)
display(Markdown(tables.inputs_markdown(source, len(test_ids), real.shape[1], generators)))
print(real_set.label("test", test_ids) if real_set else "simulated domain",
      "| physics baseline: preset %r at %s" % (physics[0], "%.4g nm/px" % physics[1] if physics[1] else
                                                 "the preset's own pixel size (none stated)"))

# %% [markdown]
# Missing generators are left out of the tables below (run notebooks 20 and 21 first, or
# the whole pipeline with `semlab run`). Missing weights make FID/KID or LPIPS
# *unavailable*: those cells then say which file to put into `data/weights/`; they are
# never computed with a randomly initialised network.
#
# ## 1. The images being scored

# %%
fakes = tables.model_images(ds, test_ids, generators, preset=physics[0], pixel_nm=physics[1], seed=SEED)
fig = model_gallery_figure(masks, fakes, real, k=min(3, len(test_ids)), titles=test_ids[:3])
save_figure(OUT, "models_gallery", fig, dpi=80)
fig

# %% [markdown]
# Each row is one test mask (left), what each model makes of it, and the target SEM image
# (right). The physics baseline has the right kind of edges and noise but its own guess
# of brightness, contrast and blur; the noise-free image is the simulated target without its
# shot noise. Keep these pictures in mind when reading the numbers.
#
# ## 2. A feature space that fits SEM: the SEM encoder
#
# FID measures distances in the features of an ImageNet network. semlab also trains a
# small encoder on the **target training images only** (self-supervised, SimCLR) and reports
# **FD_sem** and **KD_sem**: the Frechet and kernel distances in its features. They need no
# downloaded weights but are only comparable between models scored with the *same*
# encoder, whose hash is printed here and stored with the results.

# %%
train_real = [ds.image(i) for i in ds.split("train")[:study["sem_train"]]]
enc_cfg = EncoderConfig(steps=SEM_STEPS or study["sem_steps"], width=study["sem_width"], seed=SEED,
                        crop=min(64, real.shape[1]))
encoder = cached_sem_encoder(train_real, data_dir() / "cache" / "sem_encoder", enc_cfg, source=str(source))
print(encoder.describe())
print(f"file {encoder.path}")
print(f"SimCLR loss: first step {encoder.meta['training']['loss_first']:.3f}, "
      f"last 10 steps {encoder.meta['training']['loss_last10']:.3f}")

# %% [markdown]
# ## 3. The table
#
# All models against the same target test images. Paired metrics (PSNR, SSIM, MS-SSIM,
# LPIPS) compare each generated image with the target image of its mask; set metrics (FID,
# KID, FD_sem, KD_sem, spectral distance) compare the two sets as distributions. Arrows:
# higher is better for PSNR/SSIM/MS-SSIM, lower for everything else. The best model per
# column is in bold; the upper bound is a reference, never marked. The last two columns are
# the mask fidelity of section 4: `mask_miou` (higher is better) and `mask_epe_nm` (lower).

# %%
results, per_image = tables.evaluate_models(real, fakes, sem_encoder=encoder, fid_inf=FID_INF,
                                            n_boot=study["n_boot"], seed=SEED, lpips_net=LPIPS_NET,
                                            cache_dir=data_dir() / "cache" / "fid")
label = real_set.label("test", test_ids) if real_set else f"simulated (target), {source.name}, test: {len(test_ids)} tiles"
fid_args = fidelity.scoring_args(ds, test_ids, real_set)  # the mask-fidelity segmenter (section 4)
fid = fidelity.fidelity_table(fakes, masks, real, n_boot=study["n_boot"], seed=SEED, **fid_args)
results = fidelity.add_fidelity(results, fid)
display(Markdown(comparison_table(results, "markdown", reference=[tables.UPPER_BOUND])))
display(Markdown(tables.summary_text(results)))
print("wrote", *(tables.write_comparison(results, OUT) if OUT is not None else ["nothing (RUN_DIR is empty)"]))

# %% [markdown]
# **The seed's four columns**, for comparison with its single numbers (FID and LPIPS read
# "unavailable" without their weights):

# %%
display(Markdown(comparison_table(tables.seed_table(results), "markdown", reference=[tables.UPPER_BOUND])))

# %% [markdown]
# How to read it: two models differ only where their intervals do not overlap. FID, KID,
# FD_sem and KD_sem depend on the number of images (FID and FD_sem are biased upward at
# small n, section 6), so compare them only at equal n, as here. `fid_inf` / `fd_sem_inf`
# extrapolate to infinitely many images (Chong & Forsyth 2020); with a few dozen images the
# extrapolation is rough, see its R² in the CSV notes.
#
# ## 4. Mask fidelity: does the generated image show the structure that was asked for?
#
# Semantic image synthesis is judged this way (SPADE and OASIS report the mIoU of a
# segmenter run on their outputs): the classical segmenter reads every generated image, and
# its mask is scored against the mask the image was generated from. **IoU** per structure
# class (background, pattern, hole; particles are too small and are left out) over all
# pixels, **mIoU** their mean, and the **EPE** in nm: the symmetric mean distance between
# the edges of the input mask and those found in the image. 95% CIs resample whole images.
#
# The segmenter makes errors of its own, so the last row runs it on the **target images**
# themselves: that is the ceiling, and a model is only as far from perfect as it falls below
# it. On simulated data the segmenter's edge offset is first fitted on a few training pairs
# (as notebook 10 does); on real data the masks *are* this segmenter's reading of the real
# tiles, so the ceiling is near 1 by construction and the rows say how well a generated
# image reproduces what the segmenter saw in the real one.

# %%
print(fidelity.describe_args(fid_args))
display(Markdown(fidelity.fidelity_markdown(fid, label)))
fig = fidelity_scores_figure(fid, title=f"mask fidelity: {label}")
save_figure(OUT, "mask_fidelity", fig)
display(fig)
fig = fidelity_examples_figure(masks, {**fakes, fidelity.CEILING: real}, fid, k=min(2, len(test_ids)),
                               titles=test_ids[:2], title=label)
save_figure(OUT, "mask_fidelity_examples", fig, dpi=80)
fig

# %% [markdown]
# Each example row: the input mask, then per model the generated image with the input
# mask's edges in orange and the mask the segmenter found in it. Edges that wander off the
# orange lines, lines that merge or break, and holes that are missing are what lowers mIoU
# and raises the EPE. A model close to the ceiling draws what it was asked for, whatever its
# PSNR; a model far below it may look realistic and still show another layout.
#
# ### The seed's limitation as an experiment: idealised masks
#
# A person paints masks with straight edges and sharp corners, and a GDS clip gives them so;
# the models learned from masks segmented from SEM images (or simulated with line-edge
# roughness and rounded corners). `idealise_masks` makes each test mask rectilinear: every
# edge a straight line at its mean position, corners sharp, round contacts square, particles
# kept. The first trained model (the physics baseline if none) generates from both, and
# each arm is scored for fidelity (against its own input masks) and realism (the realism
# stats detector against the same target images, and FD_sem / KD_sem).

# %%
gen_name, gen = fidelity.experiment_generator(generators, physics)
exp = fidelity.idealised_experiment(gen, masks, real, name=gen_name, sem_encoder=encoder, n_boot=study["n_boot"],
                                    seed=SEED, dataset_images=fakes[gen_name], dataset_fidelity=fid[gen_name],
                                    **fid_args)
display(Markdown(fidelity.experiment_markdown(exp, label)))
fig = idealised_figure(exp, k=min(2, len(test_ids)), title=label)
save_figure(OUT, "idealised_masks", fig, dpi=80)
display(fig)
fig = experiment_table_figure(exp, title=f"idealised vs dataset masks, {gen_name}: {label}")
save_figure(OUT, "idealised_table", fig)
fig

# %% [markdown]
# How to read it: if the idealised arm keeps the fidelity of the dataset arm, the model
# draws sharp layouts as faithfully as the ones it learned; if its mIoU falls or its EPE
# rises, the model has learned the rounding and roughness of its training masks and bends
# a drawn mask towards them. A higher detector accuracy for the idealised arm means its
# images are easier to tell from the targets: straight, sharp edges are not what SEM images
# of these structures look like. The gap between the two arms is how far a user's drawn
# masks are from what the model learned.
#
# ## 5. Per-image distributions and the worst cases

# %%
fig = metric_distributions_figure(per_image)
save_figure(OUT, "per_image_distributions", fig)
fig

# %% [markdown]
# A mean can hide a bimodal model: mostly good with a few failures. Violins show the
# whole spread over test images (the line is the median).

# %%
candidates = [m for m in ("Pix2Pix", "CycleGAN") if m in fakes] or [tables.PHYSICS]
worst_model = candidates[0]
worst = tables.worst_indices(per_image[worst_model], "ssim", k=min(4, len(test_ids)))
fig = worst_pairs_figure(masks, fakes[worst_model], real, worst, model=worst_model,
                         titles=[f"{test_ids[i]}: SSIM {per_image[worst_model]['ssim'][i]:.3f}" for i in worst])
save_figure(OUT, "worst_cases", fig, dpi=80)
fig

# %% [markdown]
# The lowest-SSIM test images of the first trained model (the physics baseline if none was
# trained): mask, generated image, target image and their absolute difference. Bright
# difference along edges means misplaced or blurred edges; a uniform glow means wrong
# brightness; speckle everywhere is the unpredictable shot noise and cannot be avoided.
#
# ## 6. What single numbers hide: distance against the number of images
#
# Two sets drawn from the **same** distribution have a true distance of zero. Their
# measured FD is not zero: it falls as the sets grow, because FD is biased by roughly
# (feature dimensions) / n. KD is unbiased: it scatters around zero at every n. The same
# bias inflates every FID reported without its n.

# %%
pairs = tables.sample_size_sets(physics[0], real.shape[1], max(study["curve_ns"]), seed=SEED)
spaces, inception_missing = tables.feature_spaces(encoder)
if inception_missing:
    print(f"FID / KID against n: {inception_missing}")
curves = tables.sample_size_studies(spaces, pairs, study["curve_ns"], repeats=study["curve_repeats"], seed=SEED)
fig = sample_size_figure(curves["SEM encoder"], what="SEM encoder")
save_figure(OUT, "distance_vs_n", fig)
display(fig)
if "FID Inception" in curves:
    fig = sample_size_figure(curves["FID Inception"], what="FID Inception")
    save_figure(OUT, "fid_vs_n", fig)
    display(fig)

# %% [markdown]
# Left: FD_sem falls with n for both pairs; the *same-distribution* curve shows the pure
# bias, which at small n can be as large as a real difference between models. Right: KD_sem
# of the same-distribution pair stays near zero at every n, while the physics baseline's
# stays clearly above. With the FID Inception weights in `data/weights/` a second plot shows
# the same for FID and KID (2048 Inception dimensions: a bias about 8 times that of FD_sem at
# equal n); without them the line above it says which file is missing.

# %%
doc = tables.tables_metrics_doc(results, generators, curves["SEM encoder"], encoder, source=source, n=len(test_ids),
                                profile=PROFILE, figure="models_gallery.png", real=real_set, physics=physics,
                                ids=test_ids)
doc["metrics"].update({**fidelity.fidelity_doc_metrics(fid), **fidelity.experiment_doc_metrics(exp)})
print("wrote", save_metrics(OUT, doc) or "nothing (RUN_DIR is empty)")
if OUT is not None:
    publish_outputs(RUN_DIR, "30_metric_tables", DOMAIN, table=OUT / "metrics.csv", sem_encoder=encoder.path,
                    generated=tables.save_model_images(fakes, masks, generators, OUT, seed=SEED))  # for notebook 40
doc["metrics"]

# %% [markdown]
# ## 7. The simulated and the real domain side by side
#
# The same keys from both domains of this run (the simulated domain runs first). They are
# **not** the same experiment: on the simulated side every image, target included, comes
# from the simulator; on the real side the targets are real CD-SEM tiles of held-out frames
# and the masks are segmented from them. Compare how far each model is from its target in
# each domain, not the raw numbers across domains; a CI over the tiles of one or two real
# frames describes those frames only.

# %%
docs = {"sim": domain_doc(RUN_DIR, "30_metric_tables", "sim"), "real": domain_doc(RUN_DIR, "30_metric_tables", "real")}
docs[DOMAIN] = doc
display(Markdown(tables.domains_markdown(docs, tables.domain_keys(doc) + fidelity.domain_keys(doc))))

# %% [markdown]
# The same table for any two folders of images comes from the shell:
# `semlab evaluate --real REAL --fake FAKE --paired --fid-inf --out table.csv,table.md,table.tex`
# (add `--sem-encoder FILE` for FD_sem / KD_sem with the encoder printed above).
