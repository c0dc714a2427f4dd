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
#     question: How accurate are SAM2, classical and hybrid contours against exact edges, in and out of distribution?
# ---

# %% [markdown]
# # 50 · SegSEM contours: SAM2 where confident, a classical fallback elsewhere
#
# OPC and CD metrology need sub-pixel contours of every structure in an SEM image. SegSEM
# fine-tunes SAM2's image encoder on a few (~60) images and falls back to a traditional
# contour algorithm where SAM2 is not confident. This notebook answers: **how accurate are
# the contours of each approach** -- the classical fallback alone, SAM2 zero-shot, SAM2
# fine-tuned (decoder only, full, encoder only) and the hybrid -- measured against the
# simulator's exact edges with 5-fold cross-validation and confidence intervals, **how
# robust are they out of distribution** (another dose, more blur, more noise, other
# feature sizes), **what the fallback and its threshold contribute** (hybrid versus each
# part alone, error and fallback rate against the threshold), and **what the extractor
# measures on real line/space images** (line width and line-edge roughness of the DSA
# images). Without SAM2 weights everything still runs: the SAM2 rows say they are
# unavailable and why, and the hybrid is reported as what it then is -- the fallback on
# every structure.

# %% tags=["parameters"]
PROFILE = "cpu"
RUN_DIR = ""
SEED = 0
SAM2_MODEL = "sam2.1_hiera_tiny"
SAM2_CHECKPOINT = ""
SAM2_STEPS = None
REAL_DIR = ""

# %%
# %matplotlib inline
from pathlib import Path

from IPython.display import Markdown, display

from semlab.contours.experiment import (METHOD_LABELS, build_items, default_experiment_dir, experiment_config,
                                        measure_real_lines, ood_examples, run_experiment, segsem_metrics_doc,
                                        test_set_label)
from semlab.contours.hybrid import HybridExtractor, sam2_unavailable_reason
from semlab.paths import shared_real_dir
from semlab.runs import notebook_out, publish_outputs, save_figure, save_metrics
from semlab.viz import sample_grid
from semlab.viz.contours import (contour_gallery_figure, contour_overlay_figure, epe_distribution_figure,
                                 line_statistics_figure)
from semlab.viz.segsem import fallback_sweep_figure, method_ci_figure

# %%
config = experiment_config(PROFILE, seed=SEED, sam2_model=SAM2_MODEL, sam2_checkpoint=SAM2_CHECKPOINT or None,
                           sam2_steps=SAM2_STEPS)
OUT = notebook_out(RUN_DIR, "50_segsem_contours")  # None without a run: nothing is saved
EXP_DIR = OUT / "experiment" if OUT is not None else default_experiment_dir(config)
SAM2_REASON = sam2_unavailable_reason(SAM2_MODEL, SAM2_CHECKPOINT or None)
print(f"profile {PROFILE!r}: {config.n_per_preset} images x {len(config.presets)} presets ({', '.join(config.presets)}) "
      f"at {config.size} px, {config.folds}-fold CV, {config.ood_n} images per OOD set, seed {SEED}")
print(f"results in {EXP_DIR}")
if SAM2_REASON is None:
    print(f"SAM2 {SAM2_MODEL}: available; fine-tuning {config.sam2_steps or 'until early stopping'} steps per fold")
else:
    print(f"SAM2 unavailable: {SAM2_REASON}.\nEvery SAM2 row below says so; the hybrid uses the classical fallback "
          "on every structure.")

# %% [markdown]
# ## 1. The data: simulated images with exact contours
#
# `build_items(config)` simulates the training images (`ic-metal` routing and `line-space`
# gratings, half each) with the simulator's exact pattern edges; `build_ood_items` the
# out-of-distribution sets, each moving one parameter outside the training range.

# %%
items = build_items(config)
show = [it for preset in config.presets for it in [x for x in items if x.preset == preset][:2]]
fig = sample_grid([it.image for it in show], contours=[it.contours for it in show],
                  titles=[f"{it.id} ({it.pixel_nm:.2f} nm/px, fold {it.fold})" for it in show], ncols=4)
save_figure(OUT, "training_images", fig)
fig

# %% [markdown]
# Top row: training images of both presets; bottom row: the same images with the exact
# pattern edges (orange) every method is scored against. The metal routing has bends,
# line-ends and enclosed spaces; the gratings have line-edge roughness and occasional
# line-ends. Each image belongs to one test fold.

# %%
ood = ood_examples(config)
fig = sample_grid([it.image for it in ood], contours=[it.contours for it in ood],
                  titles=[f"{test_set_label(it.test_set, short=True)} ({it.preset})" for it in ood],
                  ncols=min(5, len(ood)))
save_figure(OUT, "ood_images", fig)
fig

# %% [markdown]
# One image of each out-of-distribution set (title: what changed, and the preset; the tables
# below give the ranges).
# Low dose and extra detector noise make the images grainier, stronger blur widens every
# edge, and the feature-size sets change the pitch well outside what any model saw in
# training.

# %% [markdown]
# ## 2. Run the experiment
#
# `run_experiment(config, EXP_DIR)` runs every fold (classical offset calibrated on the
# fold's training images; SAM2 fine-tuned and the hybrid's threshold calibrated on them
# when weights exist) and every out-of-distribution set. Each stage is written to
# `EXP_DIR` as it finishes; a re-run with the same settings reuses it.

# %%
result = run_experiment(config, EXP_DIR, progress=False)
tables = result.write_tables(OUT if OUT is not None else EXP_DIR)
print(f"{len(result.rows)} image scores in {result.seconds:.1f} s"
      + (f"; reused: {', '.join(result.reused)}" if result.reused else ""))
print("edge offsets per fold (px at the reference edge width):", [round(f["offset_px"], 3) for f in result.folds])
print("tables:", ", ".join(str(p) for p in tables.values()))

# %% [markdown]
# ## 3. Results with confidence intervals (cross-validation)
#
# Mean over the test images of the five folds, with 95 % percentile-bootstrap intervals
# over images. EPE is the signed distance of every predicted edge point to the nearest true
# edge (+: outside the pattern), in nm; Hausdorff 95 also catches missed structures; CD bias
# is measured on cut lines of the line/space images.

# %%
display(Markdown(result.markdown("cv")))

# %% [markdown]
# How to read it: lower mean |EPE|, 3 sigma and Hausdorff and higher IoU are better; a mean
# EPE near 0 means no systematic bias (the fallback's edge offset is calibrated per fold, so
# its bias is small by construction). Rows marked unavailable have no numbers because the
# SAM2 weights are missing on this machine -- they are never computed on random weights. The
# hybrid's fallback rate says how many structures used the classical contour.

# %%
fig = method_ci_figure(result.ci_by_test_set("epe_mean_abs"), metric_label="mean |EPE| (nm)",
                       notes=result.unavailable_notes())
save_figure(OUT, "epe_by_method_and_test_set", fig)
fig

# %% [markdown]
# Each row is a method, each colour a test set: the cross-validation set first, then the
# out-of-distribution sets. The distance between a method's points shows how much it loses
# out of distribution; overlapping intervals mean the difference is not resolved with this
# many images.

# %% [markdown]
# ## 4. Contour overlays
#
# A typical test image of each preset (the one with the median hybrid error), with the true
# edges (green, dashed) and each available method's contours; the right panel zooms into
# the centre, where sub-pixel differences become visible.

# %%
for iid in result.examples():
    it, preds = result.predict(iid, result.overlay_methods())
    fig = contour_overlay_figure(it.image, it.contours, {METHOD_LABELS[m]: cs for m, cs in preds.items()},
                                 inset=(it.image.shape[0] // 2, it.image.shape[1] // 2, max(16, it.image.shape[0] // 5)),
                                 title=f"{it.id} (fold {it.fold})")
    save_figure(OUT, f"overlay_{it.preset}", fig)
    display(fig)

# %% [markdown]
# Where the lines coincide the methods agree. Without SAM2 the hybrid's contours are the
# fallback's, drawn on top of them. Systematic offsets show as a coloured line running
# parallel to the dashed truth; roughness of the extracted edge that the truth does not have
# is noise the extractor did not average out.

# %% [markdown]
# ## 5. EPE distributions

# %%
epe_cv = {METHOD_LABELS[m]: v for m, v in result.epe_values("cv").items()}
fig = epe_distribution_figure(epe_cv, unit="nm")
save_figure(OUT, "epe_distribution_cv", fig)
fig

# %% [markdown]
# The distribution of the signed EPE of every edge point of every cross-validation test
# image, per method (bar: median; whiskers: 5-95 %). A narrow violin centred on 0 is an
# unbiased, precise extractor; long tails are edges placed on the wrong feature (a rim, a
# defect) and matter most for OPC.

# %%
epe_sets = {test_set_label(ts, config.folds, short=True): result.epe_values(ts)["hybrid"] for ts in result.test_sets
            if "hybrid" in result.epe_values(ts)}
fig = epe_distribution_figure(epe_sets, unit="nm")
save_figure(OUT, "epe_distribution_hybrid_by_test_set", fig)
fig

# %% [markdown]
# The hybrid's EPE on each test set. Wider violins out of distribution show which imaging
# change hurts most; a shifted median is a bias the calibrated edge offset no longer
# removes (the offset depends on blur and rim width, so a blurrier image moves the edges).

# %% [markdown]
# ## 6. Fallback rate against the threshold (ablation of the threshold)
#
# `result.sweep("encoder")`: for every threshold, which structures keep SAM2's contour
# (confidence >= threshold), the resulting pooled |EPE| and the share that falls back; the
# rightmost point always falls back (the fallback alone), a threshold of 0 keeps SAM2
# wherever it gave a mask. The thresholds chosen on each fold's validation images are
# marked.

# %%
sweep = result.sweep("encoder")
fig = fallback_sweep_figure(sweep)
save_figure(OUT, "fallback_sweep", fig)
fig

# %% [markdown]
# Blue: the hybrid's error at each threshold; gray: its fallback rate. If the confidence is
# informative, the error first falls as the least confident SAM2 masks are replaced by the
# fallback and then rises towards the fallback-only level as good SAM2 masks are replaced
# too; the minimum is where the threshold should sit. Without SAM2 weights the curve is
# flat at the fallback's error with a fallback rate of 1 at every threshold, as the red box
# says.

# %% [markdown]
# ## 7. Out of distribution

# %%
for ts in result.test_sets[1:]:
    display(Markdown(result.markdown(ts)))

# %% [markdown]
# The same table for each out-of-distribution set (fold 0's models: the same classical
# offset, SAM2 weights and threshold that produced fold 0's cross-validation scores).
# Compare each row with its cross-validation value above: the loss out of distribution is
# the price of the training range.

# %% [markdown]
# ## 8. Failure gallery
#
# The images where the hybrid's mean |EPE| is largest, over all test sets, with the true
# edges and the hybrid's contours.

# %%
panels = []
for r in result.worst("hybrid"):
    it, preds = result.predict(r["image"], ["hybrid"])
    panels.append({"image": it.image, "true": it.contours, "pred": {METHOD_LABELS[m]: cs for m, cs in preds.items()},
                   "title": f"{it.id}: mean |EPE| {r['epe_mean_abs']:.2f} nm"})
fig = contour_gallery_figure(panels, ncols=2)
save_figure(OUT, "failure_gallery", fig)
fig

# %% [markdown]
# Typical failures: at low dose, dark noise specks inside lines kept as holes (small
# closed contours inside a line, with no dashed truth nearby) and bright specks in the
# spaces taken for pattern; narrow spaces closed by blur (two lines merged); line-ends and
# corners where the edge bends faster than the extractor's smoothing follows. These are
# the structures a confident SAM2 should take over from the fallback.

# %% [markdown]
# ## 9. Real DSA line/space images
#
# The same extractor on the real directed-self-assembly images (`REAL_DIR/dsa_lines`, by
# default `../shared/data/real_sem/dsa_lines`): tiles at each image's own pixel size (from its
# TIFF tags), contours by the hybrid (the fallback on every structure without SAM2 weights),
# then line width (CD), LWR and LER per line on cut lines every pixel.

# %%
real_root = REAL_DIR or shared_real_dir()
real_extractor = HybridExtractor.from_weights(SAM2_MODEL, SAM2_CHECKPOINT or None, config.sam2_image_size)
real = measure_real_lines(Path(real_root) / "dsa_lines" if real_root else None, tile=config.real_tile,
                          tiles=config.real_tiles, extractor=real_extractor)
print(real.status(real_extractor) if real.available
      else f"No real DSA folder found ({real.reason}): the real-image part is skipped.")
for ex in real.examples:
    fig = contour_overlay_figure(ex["image"], None, {"hybrid": ex["contours"]},
                                 inset=(ex["image"].shape[0] // 2, ex["image"].shape[1] // 2, ex["image"].shape[0] // 6),
                                 title=f"{ex['name']}: {ex['summary']['n_structures']} structures, "
                                       f"fallback rate {ex['summary']['fallback_rate']:.2f}")
    save_figure(OUT, f"real_{Path(ex['name']).stem}", fig)
    display(fig)

# %% [markdown]
# The extracted contours on one tile of each real image, with a zoom. The contours should
# follow each line's edges, including their roughness, without closing across the spaces;
# broken or merged lines show as contours that end inside a line or cross a space. The title
# counts the structures: many more structures than lines means lines broken into pieces,
# which happens on the noisiest image (`Sample_Image_1`), where the fallback's global
# threshold meets noise as strong as the line/space contrast.

# %%
display(Markdown(real.markdown()))
if real.lines:
    fig = line_statistics_figure(real.lines, unit=real.rows[0]["unit"])
    save_figure(OUT, "real_line_statistics", fig)
    display(fig)

# %% [markdown]
# Per image: the mean line width (CD) with its spread over lines, the LWR and the LER (3
# sigma of each edge around a straight fit), in nm. The classical edge offset is not
# calibrated on real images (there is no ground truth), so the CD carries an unknown
# constant edge bias, while LWR and LER -- spreads -- do not. Differences between the three
# images reflect their different pitch, contrast and noise; the per-line points show how
# uniform each grating is, and isolated high LER points are lines the extractor broke or
# merged (look for them in the overlays above) rather than rough lines.

# %%
doc = segsem_metrics_doc(result, real, sweep, profile=PROFILE, figure="epe_by_method_and_test_set.png")
print("wrote", save_metrics(OUT, doc) or "nothing (RUN_DIR is empty)")
if OUT is not None:
    publish_outputs(RUN_DIR, "50_segsem_contours", experiment=EXP_DIR, table=tables["csv"])
{k: v for k, v in doc["metrics"].items() if not k.startswith("real/")}

# %% [markdown]
# The key numbers go into the run's `metrics.json` (and the report index): the
# cross-validated mean |EPE| with its interval per method (or why a method is unavailable),
# the hybrid's fallback rate, the out-of-distribution errors and the real images' line
# statistics. `EXP_DIR` holds every per-image score (`fold-*/result.json`, `ood/*/`), the
# long results table (`results.csv`) and, with SAM2 weights, the fine-tuned models.
