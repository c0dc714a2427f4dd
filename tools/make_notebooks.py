"""Generate the semlab notebooks (without outputs) from the cell lists below.

    python tools/make_notebooks.py            # writes notebooks/*.ipynb
    python tools/make_notebooks.py --check    # exit 1 if a notebook on disk differs

Notebooks hold parameters, calls and prose; the logic lives in `semlab`. Editing a
notebook by hand is fine for exploring, but the committed version comes from here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_notebook

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbcells import code, md  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


EXPLORE_DATA = [
    md("""
# 00 · Explore the data: what the simulator makes, and how close it is to real SEM

semlab ships a physics-flavoured SEM simulator so that everything downstream (training,
evaluation, contour extraction) works without downloading data. This notebook answers two
questions: **what does the embedded simulator produce** (images, canonical label masks and
sub-pixel edge contours for each layout preset, and what each imaging effect adds), and
**how close is it to real SEM images** in the statistics a generator and a detector see:
intensity distributions, radially averaged power spectra and the level of pixel noise.
"""),
    code("""
PROFILE = "cpu"
RUN_DIR = ""
SEED = 0
PRESETS = ["ic-metal", "line-space", "contacts"]
REAL_DIR = ""
""", tags=("parameters",)),
    code("""
%matplotlib inline
from pathlib import Path

import numpy as np
from IPython.display import display

from semlab.config import profile_settings
from semlab.data.simulate import effect_ladder, simulate
from semlab.data.sources import crop_databar, list_images, tile_image
from semlab.io import read_image, read_image_meta, write_json_atomic
from semlab.metrics.spectral import mean_radial_spectrum, noise_sigma_estimate, spectral_slope
from semlab.paths import shared_real_dir
from semlab.viz import effect_ladder_figure, label_legend_figure, real_vs_sim_figure, sample_grid

settings = profile_settings(PROFILE)
SIZE, N_SHOW = settings["size"], settings["n_show"]
OUT = Path(RUN_DIR) / "00_explore_data" if RUN_DIR else None
if OUT is not None:
    OUT.mkdir(parents=True, exist_ok=True)
print(f"profile {PROFILE!r}: {SIZE} px images, {N_SHOW} samples per preset, seed {SEED}")
"""),
    md("""
## 1. Samples of each layout preset

`semlab.data.simulate.simulate(preset, size, seed)` returns the noisy image, the canonical
label mask, the noise-free image, the edge contours and the parameters it drew.
"""),
    code("""
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
    if OUT is not None:
        fig.savefig(OUT / f"samples_{preset}.png", dpi=90)
    display(fig)
"""),
    md("""
For each preset, each block of three rows shows the same samples three ways: the simulated SEM
image, its label mask in the canonical colours (legend below), and the image with the
sub-pixel pattern-edge contours (orange) that the contour metrics use as ground truth. The
contours should sit on the bright edge rims, not in the middle of a line or a space.
"""),
    code("""
label_legend_figure()
"""),
    md("""
The canonical label scheme: every mask in semlab, simulated or segmented, uses these ids, so
the same structure always has the same label whatever produced the mask.
"""),
    md("""
## 2. The effect ladder

`effect_ladder("ic-metal", ...)` renders one layout with the imaging effects switched on one
after another, from the bare two-level layout to the final noisy image.
"""),
    code("""
ladder = effect_ladder("ic-metal", size=SIZE, seed=SEED)
fig = effect_ladder_figure(ladder)
if OUT is not None:
    fig.savefig(OUT / "effect_ladder.png", dpi=90)
fig
"""),
    md("""
Read the panels left to right, top to bottom: each adds the effect named in its title (its
description underneath) to everything before it, on a fixed gray scale from 0 to 1. The
geometry never changes; only the image formation does, which is why one mask serves as the
ground truth for every panel.
"""),
    md("""
## 3. Real versus simulated

Real crops come from the shared real SEM images (`REAL_DIR`, or `../shared/data/real_sem`):
each image is read, its data bar removed and cut into tiles of the profile size, at the
image's own pixel size. Simulated crops come from the `line-space` preset, simulated at the
DSA images' pixel size read from their TIFF tags (so both show the same nm per pixel), and
from the `ic-metal` preset at its own field of view.
"""),
    code("""
real_dir = Path(REAL_DIR) if REAL_DIR else shared_real_dir()
real, real_px = {}, {}
if real_dir is None or not Path(real_dir).is_dir():
    print(f"No real SEM folder found ({REAL_DIR or '../shared/data/real_sem'}): the real side is skipped.")
else:
    for path in list_images(real_dir):
        group = path.parent.name if path.parent != Path(real_dir) else Path(real_dir).name
        raw = read_image(path)
        px_nm = read_image_meta(path).get("pixel_size_nm")
        if px_nm:
            real_px.setdefault(group, px_nm)
        img, bar_row = crop_databar(raw, mode="auto")
        if min(img.shape) < SIZE:
            print(f"skip {path.name}: {img.shape} is smaller than one {SIZE}-px tile")
            continue
        tiles = tile_image(img, SIZE)
        picked = [t for _, _, t in tiles[:: max(1, len(tiles) // 3)]][:3]
        real.setdefault(group, []).extend(np.ascontiguousarray(t, dtype=np.float32) for t in picked)
        print(f"{group}/{path.name}: {raw.shape} -> data bar at row {bar_row}, {len(tiles)} tiles, kept {len(picked)}")
# line-space is simulated at the DSA images' own pixel size (from their TIFF tags), so both
# sides show the same nm per pixel; ic-metal keeps its preset field of view.
dsa_px = real_px.get("dsa_lines")
ls_name = f"line-space @ {dsa_px:.2f} nm/px" if dsa_px else "line-space"
sim = {
    ls_name: [simulate("line-space", size=SIZE, seed=SEED + 1000 + i, pixel_nm=dsa_px, vertical=True).image
              for i in range(N_SHOW)],
    "ic-metal": [simulate("ic-metal", size=SIZE, seed=SEED + 1000 + i).image for i in range(N_SHOW)],
}
print({k: len(v) for k, v in real.items()}, {k: len(v) for k, v in sim.items()})
"""),
    code("""
fig = real_vs_sim_figure(real, sim, n_examples=2)
if OUT is not None:
    fig.savefig(OUT / "real_vs_sim.png", dpi=90)
fig
"""),
    md("""
Top: example crops of each group (real groups first, framed in blues and greens; simulated in
reds and oranges). Bottom left: intensity histograms (real solid, simulated dashed). Bottom
right: mean radially averaged power spectra with bootstrap 95% bands over crops, on log axes.
Where a simulated curve runs above a real one at high frequency the simulation is noisier or
sharper than the real images; a gap at low frequency reflects different pattern pitch and
field of view (real crops keep their own pixel size), not the noise model.
"""),
    code("""
rows = []
for kind, groups in (("real", real), ("sim", sim)):
    for name, crops in groups.items():
        freq, mean, lo, hi = mean_radial_spectrum(crops)
        rows.append({
            "group": f"{kind}/{name}",
            "n": len(crops),
            "noise_sigma": float(np.median([noise_sigma_estimate(c) for c in crops])),
            "spectral_slope": spectral_slope(freq, mean),
        })
print(f"{'group':<28}{'crops':>6}{'noise sigma':>13}{'spectral slope':>16}")
for r in rows:
    print(f"{r['group']:<28}{r['n']:>6}{r['noise_sigma']:>13.4f}{r['spectral_slope']:>16.2f}")
"""),
    md("""
Noise sigma is the robust per-pixel estimate of `noise_sigma_estimate` (median absolute
deviation of a Laplacian-difference high-pass, in units of the [0, 1] gray scale; it reads low
on blurred, spatially correlated noise). The spectral slope is the log-log slope of the mean
spectrum between 0.02 and 0.25 cycles/px: about 0 for white noise, steeper (more negative) for
smoother images. Similar values for real and simulated groups mean the simulator's noise level
and sharpness are in the right range.
"""),
    code("""
metrics = {
    "profile": PROFILE,
    "size_px": SIZE,
    "real_available": bool(real),
    "noise_sigma": {r["group"]: r["noise_sigma"] for r in rows},
    "spectral_slope": {r["group"]: r["spectral_slope"] for r in rows},
}
real_sig = [r["noise_sigma"] for r in rows if r["group"].startswith("real/")]
sim_sig = [r["noise_sigma"] for r in rows if r["group"].startswith("sim/")]
if real_sig and sim_sig:
    metrics["noise_sigma_ratio_sim_over_real"] = float(np.median(sim_sig) / np.median(real_sig))
if OUT is not None:
    print("wrote", write_json_atomic(OUT / "metrics.json", metrics))
else:
    print("RUN_DIR is empty: metrics.json not written")
metrics
"""),
    md("""
These numbers go into the run's `metrics.json` and the report index. The next notebooks build
paired datasets from the simulator and train generators on them.
"""),
]


MAKE_DATASET = [
    md("""
# 10 · Make a dataset: unlabeled SEM images to canonical masks

Training a mask-to-SEM translator needs pairs (image, mask). This notebook turns unlabeled
SEM images into such pairs with **SAM2 automatic masks** or the **classical segmenter**
(denoise, threshold, morphology), and maps every segment onto semlab's **canonical labels**
(0 background, 1 pattern, 2 hole, 3 defect) by written rules, so a mask drawn by a person
means the same thing as one the pipeline made. On simulated data, where the true masks are
known, it scores the masks; on the real SEM images it shows what the same pipeline does to
them. At the end, the mask painter: how a person draws a mask in the same scheme.
"""),
    code("""
PROFILE = "cpu"
RUN_DIR = ""
SEED = 0
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
""", tags=("parameters",)),
    code("""
%matplotlib inline
from pathlib import Path

import numpy as np
from IPython.display import Markdown, display

from semlab import labels
from semlab.config import profile_settings
from semlab.data.datasets import load_dataset, make_default_dataset
from semlab.data.sources import crop_databar, list_images, tile_image
from semlab.io import read_image, write_json_atomic
from semlab.painter import MaskPainter
from semlab.paths import shared_real_dir
from semlab.reports import publish_outputs
from semlab.segment.canonical import CanonicalRules
from semlab.segment.evaluate import calibrate_on_dataset, score_against_truth
from semlab.segment.pipeline import make_segmenter_with_fallback, read_regions, segment_dataset, segment_image
from semlab.textfmt import md_code
from semlab.viz import (calibration_figure, class_balance_figure, label_legend_figure,
                        segmentation_grid, worst_cases_figure)

settings = profile_settings(PROFILE)
N_SHOW = min(settings["n_show"], 6)
OUT = Path(RUN_DIR) / "10_make_dataset" if RUN_DIR else None
if OUT is not None:
    OUT.mkdir(parents=True, exist_ok=True)
source = Path(SOURCE) if SOURCE else make_default_dataset(PRESET, PROFILE, seed=SEED, progress=False)
src = load_dataset(source)
has_truth = src.labeled
print(f"source: {source} ({len(src)} images, {'with' if has_truth else 'without'} ground-truth masks)")
"""),
    md("""
## 1. The backend

SAM2 needs its checkpoint (for example `sam2.1_hiera_tiny.pt`, ~149 MB) in `data/weights/` or
`$SEMLAB_WEIGHTS`. Without it the pipeline does not pretend: it says so here and in the
report, and uses the classical backend instead.
"""),
    code("""
backend_settings = ({"model": SAM2_MODEL, "image_size": SAM2_IMAGE_SIZE, "points_per_side": POINTS_PER_SIDE,
                     "pred_iou_thresh": PRED_IOU_THRESH, "stability_score_thresh": STABILITY_SCORE_THRESH}
                    if BACKEND == "sam2" else {"denoise": DENOISE, "threshold": THRESHOLD})
segmenter, note = make_segmenter_with_fallback(BACKEND, backend_settings)
if note["fallback_reason"]:
    display(Markdown(f"**SAM2 was requested but is unavailable; using the classical backend.** "
                     f"Reason: {md_code(note['fallback_reason'])}"))
    backend_settings = {"denoise": DENOISE, "threshold": THRESHOLD}
print("backend used:", note["backend_used"])
segmenter.describe()
"""),
    md("""
## 2. Edge calibration (simulated data only)

SEM edges carry a bright rim and are blurred by the beam, so a threshold puts pattern edges
slightly outside the physical edge. One number, the edge offset, moves them back; it is fitted
on a few **training** images (never the test split) by trying offsets and keeping the one with
the best mean IoU. Without ground truth the offset stays 0.
"""),
    code("""
classes = tuple(c["name"] for c in src.info.get("classes", [])) or CanonicalRules().classes
rules = CanonicalRules(classes=classes)
if has_truth and CALIBRATE_EDGES:
    offset, cal_scores = calibrate_on_dataset(source, segmenter, rules, split="train", n=N_CALIBRATE)
    fig = calibration_figure(cal_scores, offset)
    if OUT is not None:
        fig.savefig(OUT / "edge_calibration.png", dpi=90)
    display(fig)
    print(f"classes: {classes} | edge offset fitted on {N_CALIBRATE} training images: {offset:+.2f} px")
else:
    print(f"classes: {classes} | no ground truth to calibrate edges on: offset 0")
"""),
    md("""
The curve is the mean IoU of the structure classes on the calibration images for each offset;
the dashed line is the chosen one. A clear peak away from zero means the raw threshold edges
were biased; a flat curve means the offset does not matter for these images.

## 3. Segment the whole source

`segment_dataset` writes a new dataset folder (images, canonical masks, raw segments, a
manifest with the QA columns); it resumes where it stopped and never writes into the source.
The same runs from the shell: `semlab segment SOURCE --backend classical [--shard i/n]`.
"""),
    code("""
seg_root = segment_dataset(source, backend=segmenter, rules=rules, progress=False)
seg = load_dataset(seg_root)
secs = [float(r["seconds"]) for r in seg.rows if r.get("seconds")]
print(f"{seg_root}: {len(seg)} usable, {len(seg.excluded)} excluded; "
      f"{np.mean(secs) * 1000:.0f} ms per image on average")
"""),
    code("""
show = (seg.split("test") or seg.ids)[:N_SHOW]
fig = segmentation_grid([seg.image(i) for i in show], [read_regions(seg_root / "segments" / f"{i}.png") for i in show],
                        [seg.mask(i) for i in show], [src.mask(i) for i in show] if has_truth else None,
                        titles=show)
if OUT is not None:
    fig.savefig(OUT / "segmentation_grid.png", dpi=80)
fig
"""),
    md("""
Each row: the SEM image, the backend's raw regions after overlap resolution (random colours:
only their outlines mean something), the canonical mask in the semlab palette, and, on
simulated data, the true mask. The raw regions have no meaning of their own; the canonical
mask is what the rules made of them.
"""),
    code("""
label_legend_figure()
"""),
    md("""
## 4. Mask QA and class balance

Every mask gets coverage per class, fragment counts and, for SAM2, the fraction of pixels no
mask covered. Masks that break a QA rule are kept on disk but marked `flagged` with the reason
in the manifest, and the dataset loader leaves them out; images that cannot be segmented at
all (unreadable, blank, too small) are marked `error`.
"""),
    code("""
rows = seg.all_rows
fig = class_balance_figure(rows, classes)
if OUT is not None:
    fig.savefig(OUT / "class_balance.png", dpi=90)
display(fig)
reasons = {}
for r in seg.excluded:
    reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
print(f"{len(rows)} images: {sum(r['status'] == 'ok' for r in rows)} ok, "
      f"{sum(r['status'] == 'flagged' for r in rows)} flagged, {sum(r['status'] == 'error' for r in rows)} errors")
for reason, n in sorted(reasons.items(), key=lambda x: -x[1])[:10]:
    print(f"  {n:4d} x {reason}")
"""),
    md("""
## 5. Scores against the simulator's ground truth

On the **test split**: IoU per class over all its pixels. *mean IoU* averages the classes
present; *structure mean IoU* averages background, pattern and hole only. Particles
(defects) are 1-4 px in radius and blurred, and a particle beside a line is barely brighter
than the line's edge rim, so their IoU is low and noisy (a test split holds a few dozen): even
an oracle told where each particle is and choosing its best threshold reaches only ~0.5-0.66
on the denoised 128-256 px images (`python tools/measure_segmentation.py --ceiling`).
"""),
    code("""
score = None
if has_truth:
    score = score_against_truth(seg_root, source, split="test")
    print(f"test split: {score['n']} images scored, {score['n_excluded']} excluded by QA")
    print(f"{'class':<12}{'IoU':>8}{'share of true pixels':>24}")
    for name, v in score["per_class"].items():
        share = score["true_pixel_fraction"][name]
        if share > 0 or not np.isnan(v):
            print(f"{name:<12}{v:>8.3f}{share:>24.5f}")
    print(f"mean IoU {score['mean_iou']:.3f} | structure mean IoU {score['mean_iou_structure']:.3f} | "
          f"frequency-weighted IoU {score['frequency_weighted_iou']:.3f}")
else:
    print("no ground truth: nothing to score")
"""),
    code("""
if score is not None and score["per_image"]:
    worst = score["per_image"][:min(4, len(score["per_image"]))]
    fig = worst_cases_figure([seg.image(i) for i, _ in worst], [seg.mask(i) for i, _ in worst],
                             [src.mask(i) for i, _ in worst], [s for _, s in worst], [i for i, _ in worst])
    if OUT is not None:
        fig.savefig(OUT / "worst_cases.png", dpi=80)
    display(fig)
"""),
    md("""
The worst test images by their own mean IoU. In the error maps, magenta is pattern the
segmenter added, cyan is pattern it missed, yellow any other confusion (usually particles).
Thin magenta/cyan seams along edges are sub-pixel edge placement; whole blobs are real
mistakes.

## 6. Real SEM images

The same backend and rules on tiles of the real images beside the project (no ground truth:
judge by eye). The edge offset fitted on simulated data is not applied to real images.
"""),
    code("""
real_dir = Path(REAL_DIR) if REAL_DIR else shared_real_dir()
tiles = []
if real_dir is not None and Path(real_dir).is_dir():
    for path in list_images(real_dir)[:3]:
        img, _ = crop_databar(read_image(path), mode="auto")
        size = min(512, min(img.shape))
        tiles.append((path.name, tile_image(img, size)[0][2]))
if tiles:
    real_rules = CanonicalRules(classes=("background", "pattern", "defect"))
    results = [segment_image(t, segmenter, real_rules) for _, t in tiles]
    fig = segmentation_grid([t for _, t in tiles], [r.canonical.regions for r in results],
                            [r.mask for r in results], titles=[n for n, _ in tiles])
    if OUT is not None:
        fig.savefig(OUT / "real_segmentation.png", dpi=80)
    display(fig)
    for (name, _), r in zip(tiles, results):
        print(f"{name}: QA {r.qa['status']} {r.qa['reason']} | pattern {r.qa['coverage_pattern']:.2f} | {r.seconds:.2f} s")
else:
    print("no real SEM folder found: skipped")
"""),
    md("""
## 7. Draw a mask yourself

The mask painter edits a mask in the same canonical palette (rectangles, polygons, brush,
eraser, fill, grid snapping, undo) and saves it as an indexed PNG. Below it opens on a test
image and its canonical mask; in a live notebook draw on it with the mouse. The cell after it
draws a line and a contact programmatically, as a script or a test would, and saves the mask.
"""),
    code("""
first = show[0]
painter = MaskPainter(mask=seg.mask(first), image=seg.image(first), grid=1)
painter
"""),
    code("""
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
"""),
    code("""
publish_outputs(RUN_DIR, "10_make_dataset", dataset=seg_root, source=source, backend=note["backend_used"])
metrics = {"profile": PROFILE, "source": str(source), "output": str(seg_root),
           "backend_requested": note["backend_requested"], "backend_used": note["backend_used"],
           "fallback_reason": note["fallback_reason"],
           "edge_offset_px": offset if has_truth and CALIBRATE_EDGES else 0.0,
           "n_ok": len(seg), "n_excluded": len(seg.excluded),
           "ms_per_image": float(np.mean(secs) * 1000) if secs else None}
if score is not None:
    metrics.update({"iou_" + k: v for k, v in score["per_class"].items()})
    metrics.update({k: score[k] for k in ("mean_iou", "mean_iou_structure", "frequency_weighted_iou", "n")})
if OUT is not None:
    print("wrote", write_json_atomic(OUT / "metrics.json", metrics))
metrics
"""),
    md("""
These numbers go into the run's `metrics.json` and the report index; the segmented dataset's
path goes into the run manifest (`publish_outputs`), where the notebooks after this one find
it.
"""),
]


TRAIN_PIX2PIX = [
    md("""
# 20 · Train Pix2Pix: canonical masks to SEM images

Pix2Pix (Isola et al. 2017) learns a mask -> SEM translator from pairs: a U-Net generator
and a 70x70 PatchGAN discriminator that judges (mask, image) pairs, with lambda x L1 (100)
pulling the output toward the real image. semlab keeps the original networks, losses and
schedule (constant learning rate, then linear decay to zero) and trains them faster: images
held in memory as uint8, batches, channels-last, bf16 autocast. Training checkpoints
atomically and resumes exactly where it stopped.

On simulated data the best any generator can do is known: the simulator's **noise-free
image**. Shot and detector noise are unpredictable from the mask, so PSNR/SSIM of the
noise-free image against the noisy one is the **upper bound**; this notebook shows how close
Pix2Pix gets.
"""),
    code("""
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
""", tags=("parameters",)),
    code("""
%matplotlib inline
from pathlib import Path

import numpy as np
from IPython.display import display

from semlab.config import profile_settings
from semlab.data.datasets import load_dataset, make_default_dataset
from semlab.io import write_json_atomic
from semlab.metrics.pixel import ci_table, format_ci_table, paired_scores
from semlab.paths import data_dir
from semlab.reports import publish_outputs
from semlab.train import TrainConfig, train
from semlab.train.data import steps_per_epoch
from semlab.train.generate import Generator
from semlab.viz.preview import EpochPreview
from semlab.viz.training import loss_curves, translation_grid

settings = profile_settings(PROFILE)
N_SHOW = min(settings["n_show"], 6)
OUT = Path(RUN_DIR) / "20_train_pix2pix" if RUN_DIR else None
if OUT is not None:
    OUT.mkdir(parents=True, exist_ok=True)
source = Path(DATASET) if DATASET else make_default_dataset(PRESET, PROFILE, seed=SEED, progress=False)
ds = load_dataset(source)
train_ids, test_ids = ds.split("train"), ds.split("test")
run_root = (OUT if OUT is not None else data_dir() / "runs" / f"pix2pix-{PROFILE}")
print(f"dataset {source}: {len(train_ids)} training pairs, {len(test_ids)} test pairs; runs in {run_root}")
"""),
    md("""
## 1. Train

Every epoch the generator is run on the same few validation masks (mask | generated | real),
so you can watch the images form. Re-running this cell with the same folder resumes from
the last checkpoint instead of starting over.
"""),
    code("""
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
"""),
    code("""
fig = loss_curves({"pix2pix": result.log})
if OUT is not None:
    fig.savefig(OUT / "loss_curves.png", dpi=90)
fig
"""),
    md("""
Loss against training step (faint: every step; solid: moving average). `loss_D` is the
discriminator's loss on real and generated pairs (about 0.69 x 2 / 2 when it cannot tell
them apart), `loss_G_GAN` how well the generator fools it, `loss_G_L1` 100 x the mean
absolute difference to the real image: it should fall steadily, and in the decay epochs
flatten out.

## 2. Test set: how close to the best possible?
"""),
    code("""
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
"""),
    md("""
The middle row is the ceiling: even a perfect generator cannot predict the shot noise, so it
scores at best what the noise-free image scores against the noisy one. The gap between the
first row and the ceiling is what training could still gain; the last row compares
Pix2Pix with the noise-free truth (higher means the structure is right and the texture
averages out correctly).
"""),
    code("""
k = min(N_SHOW, len(test_ids))
fig = translation_grid(test_masks[:k], fake[:k], test_real[:k], titles=test_ids[:k])
if OUT is not None:
    fig.savefig(OUT / "test_grid.png", dpi=80)
fig
"""),
    md("""
Test masks the generator never saw (top), its images (middle) and the real simulated SEM
images (bottom). Look for the bright edge rims, the dark halos beside them, the texture of
the metal and the noise grain: a translator that only learned the mean gray levels would
give flat, blurry images here.

## 3. bf16 versus fp32

bf16 autocast is what makes training fast on this CPU (AMX). It must not change what the
network learns: the same configuration in fp32, from the same seed, for the first epochs.
"""),
    code("""
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
    if OUT is not None:
        fig.savefig(OUT / "fp32_vs_bf16.png", dpi=90)
    display(fig)
    l1 = {k: float(np.mean([r["loss_G_L1"] for r in v[-len(v) // 4:]])) for k, v in curves.items()}
    print(f"mean L1 loss over the last quarter of {res32.steps} steps: bf16 {l1['bf16']:.3f}, fp32 {l1['fp32']:.3f}")
    t = {k: float(np.median([r["seconds"] for r in v])) for k, v in curves.items()}
    print(f"median step time: bf16 {t['bf16']:.3f} s, fp32 {t['fp32']:.3f} s ({t['fp32'] / t['bf16']:.1f}x)")
else:
    print("comparison skipped (COMPARE_FP32 off, PRECISION not bf16, or the profile has none)")
"""),
    md("""
Both runs start from the same weights and see the same batches; the curves should overlap
within their noise. A bf16 curve that drifts above the fp32 one would mean precision is
costing quality.
"""),
    code("""
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
"""),
    md("""
The generator's path goes into the run manifest, where the evaluation and forensics
notebooks find it. From the shell the same training is
`semlab train DATASET --out RUN --precision bf16 --batch-size 8`, and
`semlab generate --checkpoint RUN/generator.pt --masks MASKS --out IMAGES` turns any masks,
hand-drawn ones included, into SEM images.
"""),
]


TRAIN_CYCLEGAN = [
    md("""
# 21 · Train CycleGAN: masks and SEM images without pairs

CycleGAN (Zhu et al. 2017) needs no pairs: two generators (mask -> SEM and SEM -> mask) and
two discriminators, held together by cycle consistency (mask -> SEM -> mask must give the
mask back, and the other way round). It is what a user with masks from one place and SEM
images from another can train. Without pairs the generated image only has to look like *an*
SEM image of that layout, so pixel scores (PSNR, SSIM) against the paired real image are
expected to be far below Pix2Pix's, as in the seed project (PSNR 13.1 dB vs 33.8 dB).
"""),
    code("""
PROFILE = "cpu"
RUN_DIR = ""
SEED = 0
DATASET = ""
PRESET = "ic-metal"
MAX_STEPS = None
BATCH_SIZE = 1
PRECISION = "bf16"
NET_G = "resnet_9blocks"
LAMBDA_IDENTITY = 0.5
DIFFAUG = ""
""", tags=("parameters",)),
    code("""
%matplotlib inline
from pathlib import Path

import numpy as np

from semlab.config import profile_settings
from semlab.data.datasets import load_dataset, make_default_dataset
from semlab.io import write_json_atomic
from semlab.metrics.pixel import ci_table, format_ci_table, paired_scores
from semlab.paths import data_dir
from semlab.reports import publish_outputs
from semlab.train import TrainConfig, train
from semlab.train.generate import Generator
from semlab.viz.preview import EpochPreview
from semlab.viz.training import loss_curves, translation_grid

settings = profile_settings(PROFILE)
N_SHOW = min(settings["n_show"], 6)
OUT = Path(RUN_DIR) / "21_train_cyclegan" if RUN_DIR else None
if OUT is not None:
    OUT.mkdir(parents=True, exist_ok=True)
source = Path(DATASET) if DATASET else make_default_dataset(PRESET, PROFILE, seed=SEED, progress=False)
ds = load_dataset(source)
test_ids = ds.split("test")
run_root = (OUT if OUT is not None else data_dir() / "runs" / f"cyclegan-{PROFILE}")
steps = MAX_STEPS if MAX_STEPS is not None else settings["cyclegan_steps"]
print(f"dataset {source}: {len(ds.split('train'))} masks and images (used unpaired); "
      f"step budget: {steps or 'the whole schedule'}")
"""),
    md("""
## 1. Train (unpaired)

Masks and images are drawn in independent orders, so the pairs the dataset has are never
used. The identity loss (weight `LAMBDA_IDENTITY` x 10) asks the mask -> SEM generator to
leave an SEM image unchanged, which keeps its gray texture.
"""),
    code("""
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
if OUT is not None:
    fig.savefig(OUT / "loss_curves.png", dpi=90)
fig
"""),
    md("""
`loss_G_A` / `loss_D_A`: the mask -> SEM generator against its discriminator (least
squares: 0.25 each when D is undecided); `loss_cycle_A`: mask -> SEM -> mask, `loss_cycle_B`:
SEM -> mask -> SEM, both x 10. Falling cycle losses mean the two generators agree.

## 2. Test set
"""),
    code("""
from semlab.train.checkpoint import latest_checkpoint

gen = Generator(result.generator_path or latest_checkpoint(run_root / "cyclegan" / "checkpoints"))
test_masks = np.stack([ds.mask(i) for i in test_ids])
test_real = np.stack([ds.image(i) for i in test_ids])
fake = gen(test_masks, seed=SEED)
scores = {"CycleGAN vs real image": paired_scores(fake, test_real)}
clean = [ds.clean(i) for i in test_ids]
if clean[0] is not None:
    scores["noise-free vs real: upper bound"] = paired_scores(np.stack(clean), test_real)
table = ci_table(scores)
print(format_ci_table(table, f"comparison (test split, n={len(test_ids)})"))
k = min(N_SHOW, len(test_ids))
fig = translation_grid(test_masks[:k], fake[:k], test_real[:k], titles=test_ids[:k])
if OUT is not None:
    fig.savefig(OUT / "test_grid.png", dpi=80)
fig
"""),
    md("""
Test masks (top), CycleGAN's images (middle), the real images (bottom). With a short CPU
budget the images are rough; the point of this notebook is the method and its numbers at
equal settings, and `PROFILE="full"` on a GPU trains the seed's 200 epochs.
"""),
    code("""
publish_outputs(RUN_DIR, "21_train_cyclegan", generator=result.generator_path
                or latest_checkpoint(run_root / "cyclegan" / "checkpoints"), dataset=source)
metrics = {"profile": PROFILE, "steps": result.steps, "precision": cfg.precision,
           "psnr": table["CycleGAN vs real image"]["psnr"][0], "ssim": table["CycleGAN vs real image"]["ssim"][0]}
if "noise-free vs real: upper bound" in table:
    metrics["psnr_upper_bound"] = table["noise-free vs real: upper bound"]["psnr"][0]
if OUT is not None:
    print("wrote", write_json_atomic(OUT / "metrics.json", metrics))
metrics
"""),
]


NOTEBOOK_CELLS = {
    "00_explore_data.ipynb": EXPLORE_DATA,
    "10_make_dataset.ipynb": MAKE_DATASET,
    "20_train_pix2pix.ipynb": TRAIN_PIX2PIX,
    "21_train_cyclegan.ipynb": TRAIN_CYCLEGAN,
}

# notebooks a notebook needs (`semlab run` skips it when one of them failed)
DEPENDS_ON: dict[str, list[str]] = {
    "00_explore_data.ipynb": [],
    "10_make_dataset.ipynb": [],
    "20_train_pix2pix.ipynb": [],
    "21_train_cyclegan.ipynb": [],
}


def _load_cell_modules() -> None:
    """Notebooks whose cells live in tools/notebook_cells/nbNN_*.py: each module defines
    NAME (the .ipynb file name), CELLS and DEPENDS_ON, using `md` and `code`, which are
    provided as globals (no import needed)."""
    import importlib.util

    folder = Path(__file__).resolve().parent / "notebook_cells"
    for f in sorted(folder.glob("nb*.py")):
        spec = importlib.util.spec_from_file_location(f"semlab_nb_{f.stem}", f)
        mod = importlib.util.module_from_spec(spec)
        mod.md, mod.code = md, code
        spec.loader.exec_module(mod)
        NOTEBOOK_CELLS[mod.NAME] = mod.CELLS
        DEPENDS_ON[mod.NAME] = list(mod.DEPENDS_ON)


_load_cell_modules()


def build(cells, depends_on=()) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["semlab"] = {"depends_on": list(depends_on)}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    # deterministic cell ids, so regenerating gives identical files
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only compare with the notebooks on disk")
    ap.add_argument("--out", type=Path, default=NOTEBOOKS, help="output folder (default notebooks/)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stale = []
    for name, cells in NOTEBOOK_CELLS.items():
        nb = build(cells, DEPENDS_ON.get(name, []))
        nbformat.validate(nb)
        text = nbformat.writes(nb) + "\n"
        path = args.out / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
            continue
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        print("wrote", path)
    if stale:
        print("out of date:", ", ".join(stale), "(run python tools/make_notebooks.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
