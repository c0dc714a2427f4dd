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
#     question: Does real SEM noise, injected into generated images, hide them from a detector retrained on them?
# ---

# %% [markdown]
# # 45 · Residual-noise injection: can generated SEM images be made statistically real?
#
# Notebook 40 shows how generated images give themselves away; in the simulated domain the
# power spectrum alone separates every trained generator from its targets, because the
# generators lack the high-frequency power of SEM noise. The seed's proposal: learn the
# residual noise of real SEM images and inject it into generated ones as a post-processing
# step. This notebook tests that proposal the hard way.
#
# - **Fit** each `semlab.noise` model on the *train* split's real tiles: `poisson-gaussian`
#   (variance linear in the signal), `spectral` (the 2-D noise spectrum, scaled by the
#   signal), `patch-bank` (real residual patches, picked by local intensity),
#   `spectrum-match` (moves each image's radial amplitude spectrum to the real one, keeping
#   its phase) and, in the `full` profile, `learned` (a small conditional CNN).
# - **Choose** one model per generator on the *validation* split, by the `stats` detector of
#   `semlab realism`. Nothing is chosen on test.
# - **Report** on the *test* split, before and after injection: a CNN detector **retrained
#   from scratch** on the injected images (an old detector would only show that it learned
#   the old tells), the `stats` and spectrum-only detectors, and image quality.
#
# `DOMAIN="real"`: the real side is held-out **real** CD-SEM tiles and the noise is fitted
# on the real train frames. `DOMAIN="sim"`: the real side is the simulator's images,
# "simulated (target)", whose noise-free images exist, so PSNR and SSIM against them show
# whether injection keeps the structure. Every table names the set, n tiles and n frames.

# %% tags=["parameters"]
PROFILE = "cpu"
RUN_DIR = ""
SEED = 0
DOMAIN = "sim"
REAL_DIR = ""
DATASET = ""
PRESET = "ic-metal"
MODE = ""
KINDS = []

# %%
# %matplotlib inline
import time

from IPython.display import Markdown, display

from semlab.config import load_profile
from semlab.forensics import study
from semlab.forensics.injection import injection_study, run_sem_encoder, study_fake_sets
from semlab.forensics.injection_report import (conclusion, injection_metrics_doc, results_markdown,
                                               selection_markdown)
from semlab.runs import notebook_out, save_figure, save_metrics
from semlab.viz.injection import before_after_figure, model_scores_figure, residuals_figure
from semlab.viz.saliency import saliency_gallery

# %%
T0 = time.perf_counter()
cfg = load_profile(PROFILE).noise
settings = study.study_settings(PROFILE)  # notebook 40's: the study takes max_pairs of its pairs
settings["splits"] = ("val", "test")  # the choice needs the val split (the full profile's notebook 40 scores test only)
OUT = notebook_out(RUN_DIR, "45_residual_noise", DOMAIN)  # None without a run: nothing is saved
dataset, dataset_note, real_set = study.resolve_domain(DOMAIN, RUN_DIR, DATASET, preset=PRESET, profile=PROFILE,
                                                       seed=SEED, real_dir=REAL_DIR)
generators, missing = study.find_generators(RUN_DIR, PROFILE, DOMAIN)
sets, sets_note = study_fake_sets(RUN_DIR, DOMAIN, dataset, real_set, generators, settings,
                                  max_pairs=cfg.max_pairs, missing=missing, seed=SEED, preset=PRESET)
print(f"profile {PROFILE!r}, {DOMAIN} domain, dataset {dataset} ({dataset_note})")
print(f"generated images: {sets_note}")
print(f"{sets.n_pairs} held-out masks (val + test); {sets.grouping}")
display(Markdown(sets.table()))

# %% [markdown]
# The generators of this run (notebooks 20 and 21) and the simulator rendering the same
# masks (the physics baseline). A generator listed as missing is left out below. The pairs
# are an even spread of the held-out pairs notebook 40 scores; when notebook 40 ran in this
# run its images are reused instead of being generated again.
#
# ## 1. Fit the noise models, choose one per generator on validation

# %%
encoder, encoder_note = run_sem_encoder(RUN_DIR, DOMAIN)
print(encoder_note)
res = injection_study(DOMAIN, dataset, real_set, sets, kinds=KINDS or cfg.kinds, mode=MODE or cfg.mode,
                      profile=PROFILE, seed=SEED, max_fit=cfg.max_fit, encoder=encoder,
                      detector={"n_splits": cfg.n_splits, "epochs": cfg.epochs}, progress=True, tile=cfg.tile)
print("fitted on", res.data.describe())
display(Markdown(selection_markdown(res)))
for g, sel in res.selection.items():
    fig = model_scores_figure({**sel, "split": "val"}, domain=DOMAIN, generator=g)
    save_figure(OUT, f"choice_{study.slug(g)}", fig, dpi=70)
    display(fig)

# %% [markdown]
# Balanced accuracy of the `stats` detector (a logistic regression on per-tile intensity,
# gradient and spectrum statistics, grouped cross-validation) separating the injected
# *validation* images of each generator from the real validation tiles, for every model; the
# chosen model (bold) is the one nearest chance (0.5).
#
# ## 2. What the noise looks like

# %%
for g in res.injected.fakes:
    fig = residuals_figure(res, g)
    save_figure(OUT, f"residuals_{study.slug(g)}", fig, dpi=80)
    display(fig)

# %% [markdown]
# For two test masks: the real tile, the generated image and the injected image, each beside
# its residual (the image minus its non-local-means denoised version, one gray scale for
# all). Right: the residuals' mean radial power spectra (95% bands over images) and the
# residual's standard deviation against the local signal level. Injected curves that sit on
# the real curves mean the noise has the right power at every scale and the right
# dependence on the signal; a generated curve far below the real one is the missing noise
# that gives the generator away.
#
# ## 3. A detector retrained from scratch, before and after (test split)

# %%
fig = before_after_figure(res)
save_figure(OUT, "detector_before_after", fig)
display(fig)
display(Markdown(results_markdown(res)))

# %% [markdown]
# Gray: the generator's own images; blue: the same images after injection with the chosen
# model. Each detector is trained again on the injected images (grouped k-fold, a real tile
# and the image generated from its mask always in one fold). In the cpu profile the
# detectors see 64-px sub-tiles of the 128-px images (the noise is injected into the whole
# images): four times the pairs, each sub-tile in its image's fold, but not four times the
# independent evidence, so the CIs resample whole images (a cluster bootstrap). The goal is a retrained CNN at
# most 0.60 with an upper CI at most 0.70, while on un-injected images it stays at least 0.95
# (otherwise it has no power to begin with). The spectrum detector is secondary:
# `spectrum-match` equalises exactly what it reads. PSNR and SSIM against the noise-free
# image (simulated domain only) show whether structure survives; their "what real noise
# costs" line is the simulated target against its own noise-free image. FD_sem and KD_sem
# (when notebook 30 ran in this run) are distances to the real tiles in the features of
# notebook 30's SEM encoder: injection should not raise them.
#
# ## 4. Where does the retrained detector look now?

# %%
if cfg.saliency:
    first = next(iter(res.injected.fakes), None)
    for label, s, det in (("before", res.test, res.before), ("after injection", res.injected, res.after)):
        sal = study.saliency_study(s, {first: det[first]}, profile=PROFILE, seed=SEED) if first else {}
        for name, x in sal.items():
            if len(x.index):
                fig = saliency_gallery(x.images, x.maps, labels=x.labels, probabilities=x.probabilities,
                                       max_rows=min(4, len(x.index)))
                fig.suptitle(f"{name}, {label}: {x.title()}", fontsize=9)
                save_figure(OUT, f"saliency_{study.slug(name)}_{label.split()[0]}", fig, dpi=80)
                display(fig)

# %% [markdown]
# Saliency of the retrained CNN on test images it never trained on, before and after
# injection. Evidence spread over flat regions points at noise or texture; evidence on the
# edges points at edge profiles, which injected noise cannot fix.
#
# ## 5. Conclusion

# %%
display(Markdown(conclusion(res)))

# %%
elapsed = time.perf_counter() - T0
test_ids = sorted({i.split("#")[0] for i in res.test.ids})  # sub-tiles are named <id>#<k>
label = (real_set.label("test", test_ids) if real_set is not None
         else f"{dataset.name} (simulated), test split: {len(test_ids)} images")
if cfg.tile:
    label += f"; {res.test.n_pairs} pairs of {cfg.tile}-px sub-tiles"
doc = injection_metrics_doc(res, profile=PROFILE, label=label, seconds=elapsed)
print("wrote", save_metrics(OUT, doc) or "nothing (RUN_DIR is empty)")
print(f"{label}; {res.test.grouping}")
print(f"this notebook took {elapsed / 60:.1f} min in the {PROFILE!r} profile")
