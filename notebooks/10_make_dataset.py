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
#     question: How well do automatic masks (SAM2 or classical) match the true labels, and how fast?
# ---

# %% [markdown]
# # 10 · Make a dataset: unlabeled SEM images to canonical masks
#
# Training a mask-to-SEM translator needs pairs (image, mask). This notebook turns unlabeled
# SEM images into such pairs with **SAM2 automatic masks** or the **classical segmenter**
# (denoise, threshold, morphology), and maps every segment onto semlab's **canonical labels**
# (0 background, 1 pattern, 2 hole, 3 defect) by written rules, so a mask drawn by a person
# means the same thing as one the pipeline made. On simulated data, where the true masks are
# known, it scores the masks (structure classes by pixel IoU, particles as objects). With
# `DOMAIN = "real"` it imports and tiles real SEM frames (by default the ones packaged with
# semlab, with their stored frame split), segments them with the defaults made for
# uncalibrated images (per-frame polarity, noise-set denoising, illumination flattening, no
# edge offset) and hands the paired dataset to notebooks 20 and 21. At the end, the mask
# painter: how a person draws a mask in the same scheme.

# %% tags=["parameters"]
PROFILE = "cpu"
RUN_DIR = ""
SEED = 0
DOMAIN = "sim"
SOURCE = ""
PRESET = "ic-metal"
BACKEND = "classical"
SAM2_MODEL = "sam2.1_hiera_tiny"
SAM2_IMAGE_SIZE = 512
POINTS_PER_SIDE = 16
PRED_IOU_THRESH = 0.8
STABILITY_SCORE_THRESH = 0.95
DENOISE = "nlm"
THRESHOLD = "otsu"
CALIBRATE_EDGES = True
N_CALIBRATE = 16
REAL_DIR = ""

# %%
# %matplotlib inline
from pathlib import Path

from IPython.display import Markdown, display

from semlab.config import load_profile, profile_settings
from semlab.data.datasets import load_dataset, make_default_dataset
from semlab.data.samples import real_dir_default
from semlab.metrics.objects import detection_scores, size_table
from semlab.paths import data_dir
from semlab.runs import notebook_out, publish_outputs, save_figure, save_metrics

# %%
from semlab.segment.canonical import CanonicalRules
from semlab.segment.evaluate import (calibrate_on_dataset, class_iou_cis, defect_oracle, object_matches,
                                     score_against_truth)
from semlab.segment.pipeline import (import_real_sets, make_segmenter_with_fallback, polarity_summary, read_regions,
                                     segment_dataset)
from semlab.segment.summary import (fallback_markdown, format_score, make_dataset_metrics_doc, one_tile_per_frame,
                                    qa_summary, real_summary, seconds_per_image, size_table_markdown, truth_table_markdown)
from semlab.viz import calibration_figure, class_balance_figure, label_legend_figure, segmentation_grid, worst_cases_figure

# %%
settings = profile_settings(PROFILE)
REAL = load_profile(PROFILE).real  # the real sets of this profile (cpu: the line set only) and the tile size
N_SHOW = min(settings["n_show"], 6)
OUT = notebook_out(RUN_DIR, "10_make_dataset", DOMAIN)  # None without a run: nothing is saved
real_root = Path(REAL_DIR) if REAL_DIR else real_dir_default()
if DOMAIN == "real":  # import and tile the real frames, keeping the stored frame split
    source = Path(SOURCE) if SOURCE else import_real_sets(real_root, data_dir() / "real", tile=REAL.tile,
                                                          sets=REAL.sets, seed=SEED)
else:
    source = Path(SOURCE) if SOURCE else make_default_dataset(PRESET, PROFILE, seed=SEED, progress=False)
src = load_dataset(source)
has_truth = src.labeled
print(f"source: {source} ({len(src)} images, {'with' if has_truth else 'without'} ground-truth masks)")

# %% [markdown]
# ## 1. The backend
#
# SAM2 needs its checkpoint (for example `sam2.1_hiera_tiny.pt`, ~149 MB) in `data/weights/` or
# `$SEMLAB_WEIGHTS`. Without it the pipeline does not pretend: it says so here and in the
# report, and uses the classical backend instead.

# %%
backend_settings = ({"model": SAM2_MODEL, "image_size": SAM2_IMAGE_SIZE, "points_per_side": POINTS_PER_SIDE,
                     "pred_iou_thresh": PRED_IOU_THRESH, "stability_score_thresh": STABILITY_SCORE_THRESH}
                    if BACKEND == "sam2" else {"denoise": DENOISE, "threshold": THRESHOLD})
segmenter, note = make_segmenter_with_fallback(BACKEND, backend_settings)
if note["fallback_reason"]:
    display(Markdown(fallback_markdown(note)))
    backend_settings = {"denoise": DENOISE, "threshold": THRESHOLD}
print("backend used:", note["backend_used"])
segmenter.describe()

# %% [markdown]
# ## 2. Edge calibration (simulated data only)
#
# SEM edges carry a bright rim and are blurred by the beam, so a threshold may put pattern
# edges off the physical edge. One number, the edge offset, moves them; it is fitted on a few
# **training** images (never the test split) by trying offsets and keeping the one with the
# best mean IoU. Without ground truth (real frames) no offset is applied: an offset fitted on
# other data would move real edges by a bias they may not have.

# %%
classes = tuple(c["name"] for c in src.info.get("classes", [])) or CanonicalRules().classes
rules = CanonicalRules(classes=classes, polarity="auto")  # polarity decided per frame (manifest column)
if has_truth and CALIBRATE_EDGES:
    offset, cal_scores = calibrate_on_dataset(source, segmenter, rules, split="train", n=N_CALIBRATE)
    fig = calibration_figure(cal_scores, offset)
    save_figure(OUT, "edge_calibration", fig)
    display(fig)
    print(f"classes: {classes} | edge offset fitted on {N_CALIBRATE} training images: {offset:+.2f} px")
else:
    print(f"classes: {classes} | no ground truth to calibrate edges on: offset 0")

# %% [markdown]
# The curve is the mean IoU of the structure classes on the calibration images for each offset;
# the dashed line is the chosen one. A clear peak away from zero means the raw threshold edges
# were biased; a flat curve means the offset does not matter for these images.
#
# ## 3. Segment the whole source
#
# `segment_dataset` writes a new dataset folder (images, canonical masks, raw segments, a
# manifest with the QA columns); it resumes where it stopped and never writes into the source.
# The same runs from the shell: `semlab segment SOURCE --backend classical [--shard i/n]`.

# %%
seg_root = segment_dataset(source, backend=segmenter, rules=rules, progress=False)
seg = load_dataset(seg_root)
secs = seconds_per_image(seg)
print(f"{seg_root}: {len(seg)} usable, {len(seg.excluded)} excluded; "
      f"{1000 * sum(secs) / max(len(secs), 1):.0f} ms per image on average")
print(polarity_summary(seg_root))

# %%
show = one_tile_per_frame(seg)[:N_SHOW] if DOMAIN == "real" else (seg.split("test") or seg.ids)[:N_SHOW]
fig = segmentation_grid([seg.image(i) for i in show], [read_regions(seg_root / "segments" / f"{i}.png") for i in show],
                        [seg.mask(i) for i in show], [src.mask(i) for i in show] if has_truth else None,
                        titles=show)
save_figure(OUT, "segmentation_grid", fig, dpi=80)
fig

# %% [markdown]
# Each row: the SEM image (on real data a tile, a crop of a frame), the backend's raw regions
# after overlap resolution (random colours: only their outlines mean something), the canonical
# mask in the semlab palette, and, on simulated data, the true mask. The raw regions have no meaning of their own; the canonical
# mask is what the rules made of them.

# %%
label_legend_figure()

# %% [markdown]
# ## 4. Mask QA and class balance
#
# Every mask gets coverage per class, fragment counts and, for SAM2, the fraction of pixels no
# mask covered. Masks that break a QA rule are kept on disk but marked `flagged` with the reason
# in the manifest, and the dataset loader leaves them out; images that cannot be segmented at
# all (unreadable, blank, too small) are marked `error`.

# %%
rows = seg.all_rows
fig = class_balance_figure(rows, classes)
save_figure(OUT, "class_balance", fig)
display(fig)
print(qa_summary(rows, seg.excluded))

# %% [markdown]
# ## 5. Scores against the simulator's ground truth
#
# On the **test split**. The structure classes (background, pattern, hole) are scored by
# pixel IoU over all their pixels. Particles (`defect`) are 1-4 px in radius and blurred, so
# pixel IoU is the wrong yardstick for them: one pixel of edge is a third of a particle, and
# even an oracle told where each particle is and choosing its best threshold gets little more
# than half (the ceiling row). They are scored as **objects**, the way inspection tools count
# them: predicted and true particles matched one to one (Hungarian assignment on IoU, a match
# needs IoU >= 0.3; one blob over two particles finds one of them), then precision, recall
# and F1. 95% CIs resample whole test images.

# %%
score = ious = objects = objects_min_r = oracle = matches = None
if has_truth:
    score = score_against_truth(seg_root, source, split="test")
    ious = class_iou_cis(seg_root, source, split="test", n_boot=1000)
    matches = object_matches(seg_root, source, split="test", cls="defect")
    objects, objects_min_r = detection_scores(matches), detection_scores(matches, min_radius_px=3.0)
    oracle = defect_oracle(source, segmenter, split="test", max_images=40)
    print(format_score(score))
    display(Markdown(truth_table_markdown(ious, objects, objects_min_r, oracle)))
else:
    print("no ground truth: nothing to score")

# %% [markdown]
# Particles by size (equivalent radius of the true particle; a false alarm is binned by its
# own radius). The radius error is predicted minus true over the matched particles.

# %%
if matches:
    display(Markdown(size_table_markdown(size_table(matches))))

# %%
if score is not None and score["per_image"]:
    worst = score["per_image"][:min(4, len(score["per_image"]))]
    fig = worst_cases_figure([seg.image(i) for i, _ in worst], [seg.mask(i) for i, _ in worst],
                             [src.mask(i) for i, _ in worst], [s for _, s in worst], [i for i, _ in worst])
    save_figure(OUT, "worst_cases", fig, dpi=80)
    display(fig)

# %% [markdown]
# The worst test images by their own mean IoU. In the error maps, magenta is pattern the
# segmenter added, cyan is pattern it missed, yellow any other confusion (usually particles).
# Thin magenta/cyan seams along edges are sub-pixel edge placement; whole blobs are real
# mistakes.
#
# ## 6. Real SEM frames
#
# With `DOMAIN = "real"` the dataset above is real: tiles of the frames of `REAL_DIR` (by
# default the frames packaged with semlab), each tile in its frame's stored split, so that no
# test tile shares a frame with a training tile. No ground truth: judge the masks by eye. The
# polarity was decided per frame (is the pattern the bright phase, or is the frame inverted?)
# and is in the manifest column `polarity`. A CI over the tiles of one or two frames would
# describe those frames only.

# %%
real = real_summary(seg) if DOMAIN == "real" else None
if real:
    print(f"{real['n_tiles']} tiles of {real['n_frames']} frames ({', '.join(real['frames'])}); "
          f"polarity per tile: {real['polarity']}; mean pattern coverage {real['pattern_coverage']:.2f}")
else:
    print("simulated domain: the real frames are segmented in this notebook's real-domain run (DOMAIN='real')")

# %% [markdown]
# ## 6b. Label-free checks on every real frame
#
# Real frames have no true masks, so the masks are judged by physics, each check an error
# (lower is better): where the image's edges lie relative to the mask's boundary (the
# sub-pixel maximum of the gradient profile across it, px), whether the pattern is the bright
# phase, the mask's CD against the classical sub-pixel metrology CD of the image (lines: line
# width; contacts: diameter), the pitch against the FFT pitch, the CD variation along lines,
# contact roundness and diameter variation, and the frame-to-frame variation of the pattern
# fraction. A check is used only if it tracks true quality: on simulated frames with exact
# truth (at the real sets' pixel sizes), segmented with settings spanning good to bad, its
# Spearman rank correlation with the true IoU must reach 0.5 (`checks_validate.kept_checks`).
# Here a small version (one seed, 3 frames per set, 14 settings); `semlab checks` runs the full
# one (two seeds, 12 frames, 24 settings, particles and ic-metal too). The kept checks then
# compare the old defaults, the new defaults and a blurred global Otsu on a centred crop of
# every packaged real frame.

# %%
from semlab.segment.checks import check_table_markdown, real_check_table, real_crops
from semlab.segment.checks_validate import SMALL_SETTINGS, floors, validate_seeds, validation_markdown
from semlab.viz.segcheck import segcheck_figure, validation_figure

checks = table = None
if DOMAIN == "real":
    checks = validate_seeds((SEED,), presets=("line-space", "contacts"), n_images=3, settings=SMALL_SETTINGS,
                            n_boot=200, progress=False)
    display(Markdown(validation_markdown(checks)))
    save_figure(OUT, "check_validation", validation_figure(checks))
else:
    print("simulated domain: the label-free checks run in the real-domain run (DOMAIN='real')")

# %%
if DOMAIN == "real":
    crops = real_crops(crop=128)
    table = real_check_table(crops, kept=checks["kept"], progress=False)
    display(Markdown(check_table_markdown(table, floors(checks))))
    fig = segcheck_figure(crops, table["masks"])
    save_figure(OUT, "real_frame_masks", fig, dpi=70)
    display(fig)

# %% [markdown]
# Each row of the figure is a crop of one real frame (set, frame and its stored split; the
# micrometre litho frames block-averaged so that two periods fit), with the pattern outline of
# each method. The validation table says how far each check can be trusted at all; a check that
# is not kept says nothing about the masks and is left out of the real table. With 3 frames per
# set the CIs are wide; the full validation (`semlab checks`) has 12 frames and two seeds. The
# true masks' own values are the floor of each check (the CD reference is the image's mid-level
# metrology CD, a few % off the physical edge): a difference below it is not resolved, and the
# table says so, as it says where the new defaults do not beat the blurred Otsu on a kept check.

# %% [markdown]
# ## 7. Draw a mask yourself
#
# The mask painter edits a mask in the same canonical palette (rectangles, polygons, brush,
# eraser, fill, grid snapping, undo) and saves it as an indexed PNG. Below it opens on a test
# image and its canonical mask; in a live notebook draw on it with the mouse. The cell after it
# draws a line and a contact programmatically, as a script or a test would, and saves the mask.

# %%
from semlab.painter import MaskPainter

first = show[0]
painter = MaskPainter(mask=seg.mask(first), image=seg.image(first), grid=1)
painter

# %%
doc = painter.document
h, w = doc.shape
doc.rect(h * 0.45, 0, h * 0.55, w, "pattern")
doc.polygon([(h * 0.1, w * 0.1), (h * 0.1, w * 0.3), (h * 0.3, w * 0.2)], "defect")
doc.stroke([(h * 0.8, w * 0.1), (h * 0.8, w * 0.9)], 1.5, "pattern")
if OUT is not None:
    painted = doc.save(OUT / "painted_mask.png", overwrite=True)
    print("saved", painted)
fig = segmentation_grid([seg.image(first)], None, [painter.mask], titles=["painted"])
fig

# %%
publish_outputs(RUN_DIR, "10_make_dataset", DOMAIN, dataset=seg_root, source=source, backend=note["backend_used"])
doc = make_dataset_metrics_doc(seg, source=source, output=seg_root, backend=note, score=score, profile=PROFILE,
                               edge_offset_px=offset if has_truth and CALIBRATE_EDGES else 0.0,
                               n_calibrate=N_CALIBRATE if has_truth and CALIBRATE_EDGES else None,
                               ious=ious, objects=objects, objects_min_r=objects_min_r, oracle=oracle, real=real)
print("wrote", save_metrics(OUT, doc) or "nothing (RUN_DIR is empty)")
doc["metrics"]

# %% [markdown]
# These numbers go into the run's `metrics.json` and the report index; the segmented dataset's
# path goes into the run manifest (`publish_outputs`, key `dataset`, step
# `10_make_dataset[<domain>]`), where the notebooks after this one find it.
