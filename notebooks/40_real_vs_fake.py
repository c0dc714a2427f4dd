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
#     question: Can a detector tell generated SEM images from real ones, and which features give them away?
# ---

# %% [markdown]
# # 40 · Real vs fake: what gives generated SEM images away?
#
# The seed project trained a classifier that told generated from real SEM images apart with
# 0.96 accuracy (Pix2Pix) and 0.99 (CycleGAN), although the similarity metrics looked good.
# This notebook asks **which features give the fakes away, and how strongly**. For every
# mask -> SEM model available (Pix2Pix and CycleGAN from notebooks 20 and 21, two Pix2Pix
# generators trained here that differ only in their upsampling layer, and the simulator
# itself as a physics baseline) it makes images from held-out masks and pairs each with the
# real image of the same mask. Then it measures: how well a small CNN separates real from
# generated (cross-validated, grouped by mask, with confidence intervals); how much of that a
# logistic regression on the radially averaged power spectrum alone achieves; where in
# frequency the generated images differ (spectra, difference maps, narrow peaks); and where
# the detector looks (Captum attributions on correct and wrong predictions, their share on
# pattern edges, their spectrum). The last section turns the numbers into a conclusion.
#
# `DOMAIN` chooses what "real" means. `"sim"`: the simulated dataset's images (the
# simulator against itself, so the physics baseline sits at chance by construction).
# `"real"`: held-out **real** CD-SEM tiles (frames the real-domain generators of notebooks
# 20 and 21 never saw) against images generated from their segmented masks, with the
# simulator rendering the same masks at the set's pixel size as the physics baseline. Folds
# are grouped by frame where there are enough frames, else by blocks of neighbouring tiles
# (printed below); every number names the set, n tiles and n frames, and a CI over the tiles
# of one or two frames describes those frames only. The transposed-vs-resize pair is trained
# in the simulated domain only.

# %% tags=["parameters"]
PROFILE = "cpu"
RUN_DIR = ""
SEED = 0
DOMAIN = "sim"
REAL_DIR = ""
DATASET = ""
PRESET = "ic-metal"
TRAIN_UPSAMPLING = True
MAX_PAIRS = None

# %%
# %matplotlib inline
import time

from IPython.display import Markdown, display

from semlab.forensics import study
from semlab.metrics.tables import domains_markdown, reusable_images
from semlab.runs import (domain_doc, notebook_out, publish_outputs, run_outputs, save_figure, save_metrics,
                         standalone_dir, step_name)
from semlab.textfmt import md_code, md_escape
from semlab.viz.forensics import (confusion_matrices_figure, detector_metrics_figure, fake_sets_figure,
                                  radial_spectra_figure, roc_curves_figure, spectral_peaks_figure,
                                  spectrum_difference_figure)
from semlab.viz.saliency import attribution_spectrum_figure, region_enrichment_figure, saliency_gallery
from semlab.viz.training import loss_curves

# %%
T0 = time.perf_counter()
settings = study.study_settings(PROFILE, max_pairs=MAX_PAIRS)
OUT = notebook_out(RUN_DIR, "40_real_vs_fake", DOMAIN)  # None without a run: nothing is saved
dataset, dataset_note, real_set = study.resolve_domain(DOMAIN, RUN_DIR, DATASET, preset=PRESET, profile=PROFILE,
                                                       seed=SEED, real_dir=REAL_DIR)
generators, missing = study.find_generators(RUN_DIR, PROFILE, DOMAIN)
print(f"profile {PROFILE!r}, {DOMAIN} domain, dataset {dataset} ({dataset_note})")
display(Markdown("\n".join(["**Generators of this run:**"]
                            + [f"- {md_escape(name)}: {md_code(path)}" for name, path in generators.items()]
                            + [f"- **{md_escape(name)}: missing.** {md_escape(why)}" for name, why in missing.items()])))

# %% [markdown]
# Pix2Pix and CycleGAN come from notebooks 20 and 21 of this run (or from their standalone run
# folders). A model listed as missing is left out of every table and figure below and named
# again in the conclusion; the rest of the study still runs.
#
# ## 1. Transposed vs resize-convolution upsampling
#
# Transposed convolutions with stride 2 overlap unevenly and can imprint a periodic pattern
# with a 2-px (0.5 cycles/px) or 4-px (0.25 cycles/px) period: the "checkerboard artifact"
# (Odena et al. 2016). Nearest-neighbour resize followed by a convolution avoids the uneven
# overlap. To see whether that is what gives a generator away, two Pix2Pix generators are
# trained here with **identical** data, seed, schedule and widths; only `upsample` differs
# (`"transposed"` vs `"resize"`). Re-running the notebook reuses finished trainings.

# %%
pair = {}
if TRAIN_UPSAMPLING and DOMAIN == "sim":
    pair_root = OUT / "upsampling" if OUT is not None else standalone_dir("forensics-upsampling", "sim", PROFILE)
    pair = study.train_upsampling_pair(dataset, pair_root, profile=PROFILE, seed=SEED)
    generators.update({name: g.path for name, g in pair.items()})
    print(study.pair_summary(pair))
    fig = loss_curves({name: g.log for name, g in pair.items()}, smooth=10)
    save_figure(OUT, "upsampling_losses", fig)
    display(fig)
else:
    missing.update({name: f"not trained (TRAIN_UPSAMPLING = {TRAIN_UPSAMPLING}, DOMAIN = {DOMAIN!r})"
                    for name in study.UPSAMPLING_MODELS})
    print("the transposed-vs-resize comparison is skipped (TRAIN_UPSAMPLING off, or the real domain)")

# %% [markdown]
# The losses of the two trainings (faint: every step, solid: moving average). They should
# look alike: the comparison is only fair if both generators learned about equally well.
# With the CPU budget both are short trainings, so their images are rough; what matters here
# is the difference between the two, at equal budgets.
#
# ## 2. The image sets
#
# Each model renders the masks of the held-out splits (the generators were trained on the
# `train` split); image *i* of every set comes from the same mask as real image *i*. The
# simulator baseline applies semlab's own image formation to the same masks, with imaging
# parameters drawn at random per image, as any generator would have to choose them. Images
# notebook 30 already generated from the same masks, with the same generator file and seed,
# are taken from its output instead of being generated again (the table's sources say how many).

# %%
reuse = reusable_images(run_outputs(RUN_DIR).get(step_name("30_metric_tables", DOMAIN), {}).get("generated"),
                        generators, SEED)  # images notebook 30 made with the same generators: not made twice
sets = study.domain_fake_sets(dataset, real_set, generators, settings, missing=missing, seed=SEED, preset=PRESET,
                              reuse=reuse)
print(f"{sets.n_pairs} masks from split(s) {', '.join(sets.splits)}; {sets.grouping}"
      + (" (the smoke profile has too few images per split: it uses all of them, including the generators' "
         "training masks)" if "train" in sets.splits else ""))
display(Markdown(sets.table()))
fig = fake_sets_figure(sets.masks, sets.real, sets.fakes, n=3, zoom=max(16, sets.real.shape[1] // 4),
                       titles=sets.ids[:3])
save_figure(OUT, "image_sets", fig)
fig

# %% [markdown]
# For three masks: the mask, the real image and each model's image (columns), and under each
# row the centre of every image enlarged without interpolation (the cyan square). The
# enlargement is where pixel-scale differences show: the grain of the shot noise in real
# images, smooth or blotchy texture in generated ones, a regular 2- or 4-px pattern where an
# upsampling layer leaves its trace.
#
# ## 3. Can a detector tell them apart?
#
# For each model, a small CNN (full resolution in its first layer, so pixel-scale artifacts
# stay visible) is trained by k-fold cross-validation grouped by mask: the real image and the
# fake of one mask are always in the same fold, so the detector cannot score by recognising
# a layout it saw in training. Every image gets one out-of-fold prediction. On the same
# folds, a logistic regression sees only each image's radially averaged power spectrum (how
# much power at each spatial scale; orientation and phase discarded).

# %%
detections = study.run_detectors(sets, profile=PROFILE, seed=SEED)
print(study.detections_summary(detections))
fig = detector_metrics_figure(study.detection_results(detections))
save_figure(OUT, "detector_metrics", fig)
fig

# %% [markdown]
# One row per model and detector, one panel per metric: the bar is the out-of-fold estimate,
# the whisker its 95% bootstrap confidence interval, the dashed line chance (0.5). A bar
# whose interval crosses the dashed line means *not distinguishable from real with this many
# images*. When the spectrum-only row reaches the CNN's row, the power spectrum alone carries
# the signal.

# %%
main = {name: d.main for name, d in detections.items()}
fig = roc_curves_figure(main)
save_figure(OUT, "roc_curves", fig)
display(fig)
fig = confusion_matrices_figure(main)
save_figure(OUT, "confusion_matrices", fig)
fig

# %% [markdown]
# ROC curves of the CNN's out-of-fold scores (the diagonal is chance) and its confusion
# matrices (rows: true class; fractions of each true class, counts in brackets). An
# asymmetric matrix, e.g. real images often called generated but not the reverse, shows
# which side the detector's threshold favours.
#
# ## 4. Spectra: where in frequency do the fakes differ?

# %%
spectral = study.spectral_study(sets, n_boot=settings["n_boot"], seed=SEED, threshold=settings["peak_threshold"])
fig = radial_spectra_figure(spectral.comparison)
save_figure(OUT, "radial_spectra", fig)
display(fig)
display(Markdown(spectral.band_table()))

# %% [markdown]
# Left: the mean radially averaged power spectrum of each set with a 95% bootstrap band
# (log-log). Right: each set's power relative to the real images in dB; the bootstrap is
# paired (the same masks are resampled for every set), so the layouts cancel. Below 0 dB at
# high frequency means the generator's images are too smooth (missing noise grain and fine
# texture); above 0 dB means extra fine structure. Bins beyond the dotted Nyquist line hold
# only diagonal frequencies, where a checkerboard sits. The table gives the same ratio per
# frequency band with its confidence interval.

# %%
fig = spectrum_difference_figure(spectral.differences)
save_figure(OUT, "spectrum_differences", fig)
fig

# %% [markdown]
# The generated-minus-real 2-D spectra in dB (zero frequency in the centre): red where a
# generator adds power, blue where it lacks power. A uniform blue rim is missing noise;
# isolated red spots at fixed positions (for instance at +-0.25 or +-0.5 cycles/px) are
# periodic artifacts; a cross along the axes points at horizontal/vertical structure such
# as scan lines or straight edges rendered differently.

# %%
display(Markdown(spectral.peak_table()))
for name, ratio in spectral.ratios.items():
    if name in study.UPSAMPLING_MODELS or spectral.peaks[name]:
        fig = spectral_peaks_figure(ratio, spectral.peaks[name],
                                    title=f"{name} / real: {len(spectral.peaks[name])} narrow peak(s)")
        save_figure(OUT, f"spectral_peaks_{study.slug(name)}", fig)
        display(fig)

# %% [markdown]
# Narrow peaks of each model's mean spectrum relative to the real one (robust z-score against
# a local median background; each +-f pair counted once). The maps show the ratio of the mean
# spectra in log10 with the peaks circled. A peak on the *upsampling grid* (both frequency
# components multiples of 1/8 cycles/px: periods of 2, 4 or 8 px) is the signature of x2
# upsampling layers; the transposed-conv and resize-conv generators are always shown so they
# can be compared.
#
# ## 5. Where does the detector look?
#
# Each image is explained by the fold model that never saw it. The profile chooses the
# methods by cost: saliency (the signed input gradient: one backward pass), integrated
# gradients from a blurred copy of the image (the blur removes noise and fine texture, the
# cues under suspicion) and Grad-CAM on the last convolution (coarse). Shown: the most
# confident correct predictions and the most confidently wrong ones.

# %%
saliency = study.saliency_study(sets, detections, profile=PROFILE, seed=SEED)
for name, s in saliency.items():
    if len(s.index) == 0:
        continue
    fig = saliency_gallery(s.images, s.maps, labels=s.labels, probabilities=s.probabilities, max_rows=len(s.index))
    fig.suptitle(s.title(), fontsize=9)
    save_figure(OUT, f"saliency_{study.slug(name)}", fig, dpi=80)
    display(fig)

# %% [markdown]
# Rows: images (true class, predicted class and P(generated) in the title; the first rows are
# correct predictions, then wrong ones when there are any); columns: the image and |attribution|
# of each method on top of it, each scaled to its own 99th percentile (compare *where*, not
# how much, between methods). Evidence spread evenly over flat regions points at texture or
# noise; evidence concentrated on edges points at edge profiles; a regular dot pattern at
# an upsampling artifact. For a detector at chance the maps show what an untrained-in-effect
# network responds to, not evidence.

# %%
fig = region_enrichment_figure({name: s.regions for name, s in saliency.items()})
save_figure(OUT, "region_enrichment", fig)
display(fig)
fig = attribution_spectrum_figure({name: s.spectrum for name, s in saliency.items()})
save_figure(OUT, "attribution_spectrum", fig)
fig

# %% [markdown]
# Top: the share of |saliency| in each region of the mask divided by the region's share of
# the pixels, over real and generated images (1 = no preference; whiskers: bootstrap CI over
# images). The edge zone is the band within a few px of a label boundary. Bottom: the
# spectrum of the saliency maps on the real images (the same images for every model, so the
# curves compare the detectors), each map scaled to unit power, against the images' own
# spectrum (dashed); right, the share above 0.25 cycles/px. A detector keyed on noise grain
# or pixel-scale artifacts has its saliency at high frequencies, far above the images' own
# share. Part of that share comes from the detector itself: the gradients of stride-2
# convolutions carry a fine grid of their own (visible in the saliency galleries). The
# simulator baseline shows how much the architecture alone produces where its detector is at
# chance (the simulated domain); compare the generators with it rather than with zero. In the
# real domain the baseline is detected too, so its maps show what separates the simulator
# from real frames.
#
# ## 6. Results and conclusion

# %%
final = study.StudyResults(sets, detections, spectral, saliency, settings)
rows = study.results_table(final)
display(Markdown(study.format_results_table(rows)))

# %% [markdown]
# One row per model: the CNN's accuracy, balanced accuracy and AUC, the spectrum-only
# accuracy (all with 95% CIs), the number of spectral peaks (on the upsampling grid in
# brackets), the power at 0.25-0.5 cycles/px relative to the real images, the edge
# enrichment of |saliency| and the saliency's high-frequency share. The conclusion below is
# written from these numbers by `semlab.forensics.study.conclusion`: a result whose interval
# includes 0.5 is called *at chance*, and differences whose intervals overlap are not claimed.

# %%
display(Markdown(study.conclusion(rows)))

# %%
elapsed = time.perf_counter() - T0
doc = study.study_metrics_doc(final, profile=PROFILE, dataset=dataset.name, seconds=elapsed)
print("wrote", save_metrics(OUT, doc) or "nothing (RUN_DIR is empty)")
if OUT is not None:
    paths = study.write_results(final, OUT)
    print("wrote", len(paths), "tables")
    from semlab.forensics.injection import save_fake_sets  # notebook 45 reuses these images

    publish_outputs(RUN_DIR, "40_real_vs_fake", DOMAIN, results=paths["csv"], conclusion=paths["conclusion"],
                    fake_sets=save_fake_sets(sets, OUT, generators))
print(f"{doc['set']}; {sets.grouping}")
print(f"this notebook took {elapsed / 60:.1f} min in the {PROFILE!r} profile")

# %% [markdown]
# ## 7. The simulated and the real domain side by side
#
# The detector's numbers of both domains of this run (the simulated domain runs first).
# Simulated: "real" are the simulator's own images, so the physics baseline is at chance by
# construction. Real: "real" are held-out CD-SEM tiles, and the physics baseline is a
# genuine competitor; its distance from chance says how far the simulator is from these
# frames. A CI over the tiles of one or two frames describes those frames only.

# %%
docs = {"sim": domain_doc(RUN_DIR, "40_real_vs_fake", "sim"), "real": domain_doc(RUN_DIR, "40_real_vs_fake", "real")}
docs[DOMAIN] = doc
display(Markdown(domains_markdown(docs, study.domain_keys())))

# %% [markdown]
# The results table (CSV and Markdown), the conclusion, the spectral band ratios and peaks,
# and every detector's metrics and out-of-fold predictions are written to
# `RUN_DIR/40_real_vs_fake/`, the key numbers to its `metrics.json`. Time (the time of this
# run is printed above): on the 2-core development machine with no other job running, the
# `cpu` profile took 1.9 min under papermill with three models (Pix2Pix and CycleGAN absent;
# half of it the two Pix2Pix trainings of section 1) and about 2.5 min with all five. When
# other jobs share the two cores it took 7-12 min, almost all of it in those trainings,
# which a second run in the same folder reuses.
