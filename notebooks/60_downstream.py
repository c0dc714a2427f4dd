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
#     question: Do synthetic SEM images train a segmenter that works on the target domain's images?
# ---

# %% [markdown]
# # 60 · Downstream: do synthetic images help a real task?
#
# The seed calls this the core goal: train a task model on generated images and test it on
# real SEM images. FID and detector accuracy are proxies; a segmenter that works is the test
# users care about. A small U-Net (`semlab.downstream`, bf16 and channels-last like the GANs)
# learns the canonical classes from each training set, with the same augmentation (flips,
# 90-degree rotations, intensity jitter), the same steps x batch, and the checkpoint chosen
# on the target domain's validation split:
#
# - **real only**, at N tiles (N = 10 and all in the cpu profile; 10, 30, 100 and all in
#   `full`; the table says how many frames they come from);
# - **each synthetic source alone**: simulator presets and the run's generators rendering
#   layouts the test set never saw;
# - **real N plus the best synthetic source** (chosen on validation).
#
# `DOMAIN="sim"`: the target is the simulator with exact masks, and the test split is drawn
# from **held-out parameter ranges** (a domain shift, listed below). `DOMAIN="real"`: the
# target is the packaged CD-SEM set, trained on tiles of its train frames with the
# QA-passed reference masks of notebook 10, tested on tiles of its test frames. There are no
# human masks for these frames: the score is the **agreement with the reference masks**
# (never called accuracy; it favours models trained on the same kind of masks), and the
# real-domain metric is the metrology difference in nm from the classical sub-pixel
# measurement of the image itself.

# %% tags=["parameters"]
PROFILE = "cpu"
RUN_DIR = ""
SEED = 0
DOMAIN = "sim"
REAL_DIR = ""
DATASET = ""

# %%
# %matplotlib inline
import time

from IPython.display import Markdown, display

from semlab.downstream.experiment import conclusion, downstream_experiment, experiment_metrics_doc
from semlab.runs import notebook_out, save_figure, save_metrics
from semlab.viz.downstream import efficiency_figure, predictions_figure, worst_cases_figure

# %%
T0 = time.perf_counter()
OUT = notebook_out(RUN_DIR, "60_downstream", DOMAIN)  # None without a run: nothing is saved
res = downstream_experiment(DOMAIN, PROFILE, run_dir=RUN_DIR or None, dataset=DATASET,
                            overrides={"real_dir": REAL_DIR} if REAL_DIR else None)
print(f"{res.domain_name}; test: {res.test_label}; score: {res.metric}")
display(Markdown("\n".join([f"- held-out test range: {k} {v}" for k, v in res.shift.items()] + [
    f"- {n}" for n in res.notes])))

# %% [markdown]
# ## 1. Data efficiency

# %%
fig = efficiency_figure(res)
save_figure(OUT, "efficiency", fig)
display(fig)
display(res.table().round(3))

# %% [markdown]
# mIoU over the structure classes present in the test set against the number of target-domain
# training tiles (log scale; the frames they come from in brackets), with 95% bands from a
# two-level bootstrap (seeds, then test tiles, both drawn with replacement); synthetic-only
# sources are horizontal lines (they use no real tile), and real+synthetic mixes sit at their
# real N. Where a mix's band lies above real-only's at the same N, synthetic images helped at
# that N. In the simulated domain the synthetic sources are **domain-randomised** simulator
# renderings of new layouts (wide pitch, line width, dose, blur and contrast ranges, written
# out in the specs, so they do not depend on the preset's fitted ranges), and one more line,
# "reference: test ranges", is a segmenter trained on the simulator drawn from the held-out
# test ranges themselves: never a candidate (nobody knows the shift in advance), it shows how
# much a source that covered the shift could add at most.
#
# ## 2. Predictions on test tiles, and the worst cases

# %%
fig = predictions_figure(res)
save_figure(OUT, "predictions", fig)
display(fig)
fig = worst_cases_figure(res)
save_figure(OUT, "worst_cases", fig)
display(fig)

# %% [markdown]
# Top: test tiles with their reference masks and the predictions of the real-only model and
# of the best synthetic source. Bottom: the tiles where the real-only model agrees least with
# the reference, with their tile mIoU. In the real domain the reference is the classical
# segmenter's QA-passed mask, not a human label: a disagreement can be the reference's error.
#
# ## 3. Summary

# %%
display(Markdown(res.summary.get("text") or "No summary: too few training sets ran."))
display(Markdown("**Conclusion (generated from the numbers above)**\n\n" + conclusion(res)))
elapsed = time.perf_counter() - T0
doc = experiment_metrics_doc(res)
print("wrote", save_metrics(OUT, doc) or "nothing (RUN_DIR is empty)")
print(f"this notebook took {elapsed / 60:.1f} min in the {PROFILE!r} profile")

# %% [markdown]
# The summary and the conclusion are generated from the numbers: "synthetic-only reaches X% of
# real-only" compares the best synthetic source (chosen on the target's validation split, which
# is drawn from the training ranges and cannot see the shift) with the model trained on every
# real tile; "real+synthetic beats real-only up to N = Y" needs non-overlapping 95% CIs. When
# no mix beats real-only, the conclusion says why with the numbers: how close real-only at
# small N already is to real-only at all tiles, and the headroom the test-range reference shows. In the real
# domain, a CI over the tiles of one or two test frames describes those frames only. The full
# matrix (N = 10, 30, 100, all; three seeds; every source and mix) runs in `PROFILE="full"`
# and from the command line: `semlab downstream experiment --domain sim --profile full --out DIR`
# (fields changed with `--set NAME=VALUE`; DIR/runs.jsonl is rewritten after every run and
# `semlab downstream summary DIR` tables whatever has finished), or for a labelled dataset of
# your own: `semlab downstream --train real --train preset:line-space --train
# real+preset:line-space --test DATASET --out DIR --json`.
