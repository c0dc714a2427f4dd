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
#     question: How close are the simulator's images to real SEM in noise level and spectrum?
# ---

# %% [markdown]
# # 00 · Explore the data: what the simulator makes, and how close it is to real SEM
#
# semlab ships a physics-flavoured SEM simulator so that everything downstream (training,
# evaluation, contour extraction) works without downloading data. This notebook answers two
# questions: **what does the embedded simulator produce** (images, canonical label masks and
# sub-pixel edge contours for each layout preset, and what each imaging effect adds), and
# **how close is it to real SEM images** in the statistics a generator and a detector see:
# intensity distributions, radially averaged power spectra and the level of pixel noise.

# %% tags=["parameters"]
PROFILE = "cpu"
RUN_DIR = ""
SEED = 0
PRESETS = ["ic-metal", "line-space", "contacts"]
REAL_DIR = ""

# %%
# %matplotlib inline
from pathlib import Path

from IPython.display import Markdown, display

from semlab.config import profile_settings
from semlab.data.samples import real_dir_default
from semlab.data.simulate import effect_ladder, simulate
from semlab.data.sources import RealSample, sample_real_tiles
from semlab.metrics.explore import explore_metrics_doc, format_group_stats, group_stats
from semlab.paths import shared_real_dir
from semlab.runs import notebook_out, save_figure, save_metrics
from semlab.viz import effect_ladder_figure, label_legend_figure, real_vs_sim_figure, sample_grid

# %%
settings = profile_settings(PROFILE)
SIZE, N_SHOW = settings["size"], settings["n_show"]
OUT = notebook_out(RUN_DIR, "00_explore_data")  # None without a run: nothing is saved
print(f"profile {PROFILE!r}: {SIZE} px images, {N_SHOW} samples per preset, seed {SEED}")

# %% [markdown]
# ## 1. Samples of each layout preset
#
# `semlab.data.simulate.simulate(preset, size, seed)` returns the noisy image, the canonical
# label mask, the noise-free image, the edge contours and the parameters it drew.

# %%
samples = {p: [simulate(p, size=SIZE, seed=SEED + i) for i in range(N_SHOW)] for p in PRESETS}
for preset, results in samples.items():
    fig = sample_grid(
        [r.image for r in results],
        masks=[r.mask for r in results],
        contours=[r.contours for r in results],
        titles=[f"{preset} · seed {SEED + i}" for i in range(len(results))],
        ncols=4,
    )
    fig.suptitle(preset)
    save_figure(OUT, f"samples_{preset}", fig)
    display(fig)

# %% [markdown]
# For each preset, each block of three rows shows the same samples three ways: the simulated SEM
# image, its label mask in the canonical colours (legend below), and the image with the
# sub-pixel pattern-edge contours (orange) that the contour metrics use as ground truth. The
# contours should sit on the bright edge rims, not in the middle of a line or a space.

# %%
label_legend_figure()

# %% [markdown]
# The canonical label scheme: every mask in semlab, simulated or segmented, uses these ids, so
# the same structure always has the same label whatever produced the mask.

# %% [markdown]
# ## 2. The effect ladder
#
# `effect_ladder("ic-metal", ...)` renders one layout with the imaging effects switched on one
# after another, from the bare two-level layout to the final noisy image.

# %%
ladder = effect_ladder("ic-metal", size=SIZE, seed=SEED)
fig = effect_ladder_figure(ladder)
save_figure(OUT, "effect_ladder", fig)
fig

# %% [markdown]
# Read the panels left to right, top to bottom: each adds the effect named in its title (its
# description underneath) to everything before it, on a fixed gray scale from 0 to 1. The
# geometry never changes; only the image formation does, which is why one mask serves as the
# ground truth for every panel.

# %% [markdown]
# ## 3. Real versus simulated
#
# Real crops come from `REAL_DIR`; by default from `../shared/data/real_sem`, or, where that
# folder does not exist, from the real CD-SEM and litho frames packaged with semlab:
# each image is read, its data bar removed and cut into tiles of the profile size, at the
# image's own pixel size. Simulated crops come from the `line-space` preset, simulated at the
# DSA images' pixel size read from their TIFF tags (so both show the same nm per pixel), and
# from the `ic-metal` preset at its own field of view.

# %%
real_dir = Path(REAL_DIR) if REAL_DIR else (shared_real_dir() or real_dir_default())
if not Path(real_dir).is_dir():
    print(f"No real SEM folder found ({real_dir}): the real side is skipped.")
    sample = RealSample()
else:
    sample = sample_real_tiles(real_dir, SIZE, per_frame=3)
    print("\n".join(sample.log))
real, real_px = sample.tiles, sample.pixel_nm

# %%
# line-space is simulated at the DSA images' own pixel size (from their TIFF tags; the
# packaged CD-SEM lines' where ../shared is missing), so both
# sides show the same nm per pixel; ic-metal keeps its preset field of view.
dsa_px = real_px.get("dsa_lines") or real_px.get("cdsem-lines")  # the packaged lines without ../shared
ls_name = f"line-space @ {dsa_px:.2f} nm/px" if dsa_px else "line-space"
sim = {
    ls_name: [simulate("line-space", size=SIZE, seed=SEED + 1000 + i, pixel_nm=dsa_px, vertical=True).image
              for i in range(N_SHOW)],
    "ic-metal": [simulate("ic-metal", size=SIZE, seed=SEED + 1000 + i).image for i in range(N_SHOW)],
}
print({k: len(v) for k, v in real.items()}, {k: len(v) for k, v in sim.items()})

# %%
fig = real_vs_sim_figure(real, sim, n_examples=2)
save_figure(OUT, "real_vs_sim", fig)
fig

# %% [markdown]
# Top: example crops of each group (real groups first, framed in blues and greens; simulated in
# reds and oranges). Bottom left: intensity histograms (real solid, simulated dashed). Bottom
# right: mean radially averaged power spectra with bootstrap 95% bands over crops, on log axes.
# Where a simulated curve runs above a real one at high frequency the simulation is noisier or
# sharper than the real images; a gap at low frequency reflects different pattern pitch and
# field of view (real crops keep their own pixel size), not the noise model.

# %%
rows = group_stats(real, sim)
print(format_group_stats(rows))

# %% [markdown]
# Noise sigma is the robust per-pixel estimate of `noise_sigma_estimate` (median absolute
# deviation of a Laplacian-difference high-pass, in units of the [0, 1] gray scale; it reads low
# on blurred, spatially correlated noise). The spectral slope is the log-log slope of the mean
# spectrum between 0.02 and 0.25 cycles/px: about 0 for white noise, steeper (more negative) for
# smoother images. Similar values for real and simulated groups mean the simulator's noise level
# and sharpness are in the right range.

# %% [markdown]
# ## 3b. The simulator fitted to each real set, and the realism table
#
# `semlab fit-sim` estimated the simulator's parameters from the pixels of each packaged real
# set's train and val frames (gray levels, edge profile, blur, noise against signal and its
# spectrum, line-edge roughness, pitch and CD) and wrote a preset file (`semlab/data/presets/`).
# Here both the real frames and frames simulated with that preset file are measured by the same
# estimators, and `semlab realism`'s detectors try to tell each preset from the set's **test**
# frames: the preset as it was before the re-tuning, the re-tuned built-in preset, the fitted
# preset, and real against real (the floor: two halves of the real test tiles).

# %%
from semlab.data.fit_report import compare_set
from semlab.realism import compare_markdown
from semlab.viz.fit import fit_comparison_figure, side_by_side_figure

fits = {name: compare_set(name, n_frames=settings["fit_frames"]) for name in settings["fit_sets"]}

# %%
for name, c in fits.items():
    display(Markdown(f"**{name}** (real, {c.pixel_nm:.3g} nm/px):\n\n" + compare_markdown(c.realism)))
    for fig_name, fig in (("fit", fit_comparison_figure(c.real_fit, c.sim_fit, set_name=name)),
                          ("side", side_by_side_figure(c.real_frames, c.sim_frames, set_name=name, pixel_nm=c.pixel_nm))):
        save_figure(OUT, f"{fig_name}_{name}", fig, dpi=70)
        display(fig)

# %% [markdown]
# For each set: the realism table (balanced accuracy with 95% CIs; 0.5 is chance, the floor row
# is what two halves of the same real frames score), the fitted quantities of the real frames
# (blue, 95% bands over frames) against frames simulated with the fitted preset (orange), and
# crops of real and simulated frames on one gray scale. A preset row well above the floor means
# the detectors still find a difference; the figures show where (edge profile, noise, roughness,
# gray levels). With one test frame per set the CIs describe that frame only.

# %%
doc = explore_metrics_doc(rows, profile=PROFILE, size_px=SIZE, figure="real_vs_sim.png",
                          realism={name: c.realism for name, c in fits.items()})
print("wrote", save_metrics(OUT, doc) or "nothing (RUN_DIR is empty)")
doc["metrics"]

# %% [markdown]
# These numbers go into the run's `metrics.json` and the report index. The next notebooks build
# paired datasets from the simulator and train generators on them.

# %% [markdown]
# ## 4. A layout clip from GDSII
#
# Chip engineers start from a layout clip, not a painted mask: *what will this clip look like in
# the SEM?* `semlab.data.gds.demo_clip` writes a small GDSII clip with gdstk (a pad with a 3 x 3
# array of contact holes, a rotated array of lines, a line at 45 degrees, a bent wire and an
# L-shaped polygon). `plan_clip` reads it with the layer map `1/0=pattern,2/0=hole`, flattens the
# references, arrays and paths, and rasterises it with exact area coverage at the pixel size of the
# simulated ic-metal images, so a generator trained on them sees structures at the scale it knows.

# %%
from semlab.data.gds import demo_clip, plan_clip, render_with_generator
from semlab.data.simulate import get_preset, render_mask
from semlab.runs import find_generator
from semlab.viz.gds import gds_render_figure

GDS_PIXEL_NM = get_preset("ic-metal").field_of_view_nm / SIZE
clip = plan_clip(demo_clip(OUT), pixel_nm=GDS_PIXEL_NM, layers="1/0=pattern,2/0=hole", window="0,0,1.024,1.024")
layout = clip.rasterize()
print(f"{clip.layout.path.name}, cell {clip.layout.cell}: {clip.shape[1]}x{clip.shape[0]} px at {GDS_PIXEL_NM:g} nm/px")

# %%
sim_render = render_mask(layout.mask, "ic-metal", SEED, pixel_nm=GDS_PIXEL_NM)
generator = find_generator("pix2pix", "sim", RUN_DIR, PROFILE)
print(f"Pix2Pix generator: {generator}" if generator else f"Pix2Pix side skipped: {generator}")
p2p_render = render_with_generator(generator, layout.mask, seed=SEED)

# %%
renders = {"simulator (ic-metal imaging)": sim_render.image, "Pix2Pix (notebook 20)": p2p_render}
fig = gds_render_figure(layout.mask, layout.contours, renders, pixel_nm=GDS_PIXEL_NM, title="GDSII clip")
save_figure(OUT, "gds_clip", fig)
fig

# %% [markdown]
# Left: the rasterised layout in the canonical colours (pattern white, contact holes blue). Then the
# same clip rendered by the simulator (the physics baseline: rims, halos, blur and noise drawn from
# the ic-metal preset) and by the Pix2Pix generator of notebook 20. The orange lines are the
# layout's polygon edges, exact to a fraction of a pixel: the rendered edges should sit on them.
# Notebook 20 runs after this one in `semlab run`, so on a first run the Pix2Pix panel says that no
# generator exists yet; it appears once a generator has been trained (`semlab run` again, or
# notebook 20 opened on its own, which keeps its generator in `data/runs/`). The same rendering on a
# whole layout, tiled: `semlab simulate --gds FILE --pixel-nm P --tile N` and `semlab generate --gds`.
