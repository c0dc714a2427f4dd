"""Classical segmentation, canonicalisation rules, mask QA and the `segment` pipeline."""

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from semlab import io, labels
from semlab.data.datasets import load_dataset, simulate_dataset
from semlab.data.simulate import simulate
from semlab.segment.base import Segment, SegmentationError
from semlab.segment.canonical import (CanonicalRules, apply_edge_offset, calibrate_edge_offset,
                                      canonicalize, class_iou, paint_segments)
from semlab.segment.classical import ClassicalSegmenter
from semlab.segment.pipeline import merge_shards, segment_dataset, shard_of
from semlab.segment.qa import check_mask


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _film_with_hole_and_particle():
    """A bright film (0.5) over the left 2/3 on dark ground (0.15), with a dark hole
    (0.05) inside the film and a very bright particle (0.9) on the ground."""
    img = np.full((96, 96), 0.15, np.float32)
    film = np.zeros(img.shape, bool)
    film[:, :64] = True
    hole = _disc(img.shape, 48, 30, 8)
    particle = _disc(img.shape, 48, 82, 2)  # 13 px
    img[film] = 0.5
    img[hole] = 0.05
    img[particle] = 0.9
    segs = [Segment(film & ~hole), Segment(~film & ~particle), Segment(hole), Segment(particle)]
    return img, segs, film, hole, particle


def test_rules_pattern_hole_defect():
    img, segs, film, hole, particle = _film_with_hole_and_particle()
    c = canonicalize(img, segs, CanonicalRules(smooth_px=0, defect_max_area_frac=0.003))
    assert (c.mask[film & ~hole] == labels.PATTERN).all()
    assert (c.mask[hole] == labels.HOLE).all()
    assert (c.mask[particle] == labels.DEFECT).all()
    assert (c.mask[~film & ~particle] == labels.BACKGROUND).all()
    assert c.unlabeled_frac == 0.0


def test_rules_respect_the_class_set_and_polarity():
    img, segs, film, hole, particle = _film_with_hole_and_particle()
    c = canonicalize(img, segs, CanonicalRules(classes=("background", "pattern"), smooth_px=0))
    # without hole/defect classes: the hole is background, the bright particle is pattern
    assert (c.mask[hole] == labels.BACKGROUND).all() and (c.mask[particle] == labels.PATTERN).all()
    d = canonicalize(img, segs, CanonicalRules(classes=("background", "pattern"), polarity="dark", smooth_px=0))
    assert (d.mask[film & ~hole] == labels.BACKGROUND).all()
    assert (d.mask[~film & ~particle] == labels.PATTERN).all()


def test_overlaps_smaller_segment_wins_and_gaps_are_classified():
    img = np.full((40, 40), 0.1, np.float32)
    img[10:30, 10:30] = 0.6
    big = np.ones(img.shape, bool)
    inner = np.zeros(img.shape, bool)
    inner[10:30, 10:30] = True
    reg = paint_segments([Segment(inner), Segment(big)], img.shape)
    assert (reg[inner] == 0).all() and (reg[~inner] == 1).all()
    # SAM2 may leave pixels in no mask: those gaps are regions of their own
    c = canonicalize(img, [Segment(inner)], CanonicalRules(smooth_px=0))
    assert c.unlabeled_frac == pytest.approx(1 - inner.mean())
    assert (c.mask[inner] == labels.PATTERN).all() and (c.mask[~inner] == labels.BACKGROUND).all()


def test_canonicalize_is_deterministic_and_order_free():
    img, segs, *_ = _film_with_hole_and_particle()
    a = canonicalize(img, segs).mask
    b = canonicalize(img, segs[::-1]).mask
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("offset,iterations", [(1.0, 1), (2.0, 2)])
def test_edge_offset_equals_erosion(offset, iterations):
    m = np.zeros((50, 50), np.uint8)
    m[10:40, 5:45] = labels.PATTERN
    ref = ndimage.binary_erosion(m == labels.PATTERN, np.ones((3, 3), bool))
    for _ in range(iterations - 1):
        ref = ndimage.binary_erosion(ref, np.ones((3, 3), bool))
    out = apply_edge_offset(m, offset)
    assert ((out == labels.PATTERN) == ref).all()
    grown = apply_edge_offset(m, -1.0)
    assert (grown == labels.PATTERN).sum() == 32 * 42


def test_edge_offset_gives_freed_pixels_to_the_nearest_other_class():
    m = np.full((30, 30), labels.PATTERN, np.uint8)
    m[10:20, 10:20] = labels.HOLE
    out = apply_edge_offset(m, 1.0)
    assert (out[9:21, 9:21] == labels.HOLE).all()  # the hole grew by one pixel all round
    assert (out == labels.BACKGROUND).sum() == 0


def test_class_iou_against_a_direct_count():
    a = np.array([[0, 1, 1], [1, 3, 0]])
    b = np.array([[0, 1, 0], [1, 3, 3]])
    iou = class_iou(a, b)
    assert iou["background"] == pytest.approx(1 / 3) and iou["pattern"] == pytest.approx(2 / 3)
    assert iou["defect"] == pytest.approx(1 / 2) and np.isnan(iou["hole"])


def test_classical_segments_simulated_metal():
    seg = ClassicalSegmenter()
    rules = CanonicalRules(classes=("background", "pattern", "defect"))
    train = [simulate("ic-metal", 128, (2, i)) for i in range(4)]
    off, score = calibrate_edge_offset(((r.image, r.mask) for r in train), rules, seg)
    assert score[off] > score[0.0] + 0.02 and 0.25 <= off <= 1.5  # the rim puts raw edges outside
    seg.settings.edge_offset_px = off
    test = [simulate("ic-metal", 128, (3, i)) for i in range(4)]
    pred = np.stack([canonicalize(r.image, seg.segment(r.image), rules).mask for r in test])
    iou = class_iou(pred, np.stack([r.mask for r in test]))
    assert iou["background"] > 0.93 and iou["pattern"] > 0.9


def test_pixel_grid_calibration_for_other_backends():
    class Thresholder:  # a backend without sub-pixel support, like SAM2
        def segment(self, image):
            b = image > 0.3
            return [Segment(b), Segment(~b)]

    truth = np.zeros((40, 40), np.uint8)
    truth[10:30, 10:30] = labels.PATTERN
    img = np.full(truth.shape, 0.1, np.float32)
    img[9:31, 9:31] = 0.6  # the visible structure is one pixel too wide all round
    off, score = calibrate_edge_offset([(img, truth)], CanonicalRules(smooth_px=0), Thresholder())
    # on the pixel grid, offsets in (0, 1] all peel exactly the one outer layer off
    assert 0 < off <= 1.0 and score[off] == pytest.approx(1.0) and score[0.0] < 0.9


@pytest.mark.parametrize("denoise,threshold", [("bilateral", "otsu"), ("gaussian", "multiotsu"),
                                               ("tv", "li"), ("none", "sauvola")])
def test_classical_options_all_run(denoise, threshold):
    r = simulate("line-space", 96, 1)
    seg = ClassicalSegmenter(denoise=denoise, threshold=threshold, watershed=True)
    c = canonicalize(r.image, seg.segment(r.image))
    assert c.mask.shape == r.mask.shape and set(np.unique(c.mask)) <= {0, 1, 2, 3}
    assert class_iou(c.mask, r.mask)["pattern"] > 0.6


def test_classical_refuses_blank_and_tiny_images():
    seg = ClassicalSegmenter()
    with pytest.raises(SegmentationError, match="blank"):
        seg.segment(np.zeros((64, 64), np.float32), source="black.png")
    with pytest.raises(SegmentationError, match="at least 16 px"):
        seg.segment(np.random.default_rng(0).random((8, 40)).astype(np.float32))
    with pytest.raises(ValueError, match="denoise"):
        ClassicalSegmenter(denoise="median")


def test_qa_flags():
    ok = np.zeros((64, 64), np.uint8)
    ok[:, 10:30] = labels.PATTERN
    assert check_mask(ok)["status"] == "ok"
    assert "no structure" in check_mask(np.zeros((64, 64), np.uint8))["reason"]
    assert "everything merged" in check_mask(np.ones((64, 64), np.uint8))["reason"]
    speck = np.zeros((64, 64), np.uint8)
    speck[::4, ::4] = labels.PATTERN
    speck[:, 40:] = labels.PATTERN
    r = check_mask(speck)
    assert r["status"] == "flagged" and "shattered" in r["reason"] and r["fragments_pattern"] > 100
    assert "no segment" in check_mask(ok, unlabeled_frac=0.5)["reason"]


# ---------------------------------------------------------------------------------
# the pipeline

def _folder_with_bad_inputs(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    for i in range(3):
        io.write_image(src / f"good_{i}.png", simulate("line-space", 64, i).image)
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(src / "black.png")
    io.write_image(src / "tiny.png", simulate("line-space", 64, 9).image[:8, :8])
    return src


def test_segment_folder_flags_bad_inputs_and_goes_on(tmp_path):
    src = _folder_with_bad_inputs(tmp_path)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in src.iterdir())
    out = segment_dataset(src, tmp_path / "seg", progress=False)
    ds = load_dataset(out)
    assert sorted(ds.ids) == ["good_0", "good_1", "good_2"]
    bad = {r["id"]: r for r in ds.excluded}
    assert set(bad) == {"corrupt", "black", "tiny"}
    assert all(r["status"] == "error" for r in bad.values())
    assert "corrupt.png" in bad["corrupt"]["reason"]
    assert "blank" in bad["black"]["reason"] and "at least 16 px" in bad["tiny"]["reason"]
    for i in ds.ids:
        m = ds.mask(i)
        assert m.shape == (64, 64) and set(np.unique(m)) <= {0, 1, 2, 3}
        assert Image.open(out / "masks" / f"{i}.png").mode == "P"
    assert sorted((p.name, p.stat().st_mtime_ns) for p in src.iterdir()) == before  # source untouched


def test_segment_dataset_resumes_and_refuses_other_settings(tmp_path):
    src = simulate_dataset(tmp_path / "sim", preset="ic-metal", n=6, size=64, progress=False)
    out = segment_dataset(src, progress=False)
    assert out.parent == tmp_path and out.name.startswith("sim-seg-classical-")
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["complete"] and [c["name"] for c in meta["classes"]] == ["background", "pattern", "defect"]
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "masks").iterdir()}
    segment_dataset(src, progress=False)  # nothing left to do: no file rewritten
    assert {p.name: p.stat().st_mtime_ns for p in (out / "masks").iterdir()} == stamp
    with pytest.raises(Exception, match="another dataset"):
        segment_dataset(src, out, settings={"denoise": "gaussian"}, progress=False)
    other = segment_dataset(src, settings={"denoise": "gaussian"}, progress=False)
    assert other != out and other.name.startswith("sim-seg-classical-")
    with pytest.raises(Exception, match="new folder"):
        segment_dataset(src, src, progress=False)


def test_shards_split_the_work_and_merge(tmp_path):
    src = simulate_dataset(tmp_path / "sim", preset="line-space", n=10, size=64, progress=False)
    out = tmp_path / "seg"
    segment_dataset(src, out, shard=(0, 2), progress=False)
    part = load_dataset(out)
    assert not part.info["complete"]
    assert {r["id"] for r in part.all_rows} == {f"{i:06d}" for i in range(10) if shard_of(f"{i:06d}", 2) == 0}
    segment_dataset(src, out, shard=(1, 2), progress=False)
    full = load_dataset(out)
    assert full.info["complete"] and len(full.all_rows) == 10
    merge_shards(out)  # idempotent
    assert len(load_dataset(out).all_rows) == 10


def test_sam2_without_weights_falls_back_and_says_so(tmp_path, monkeypatch):
    from semlab import cli

    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    src = simulate_dataset(tmp_path / "sim", preset="line-space", n=3, size=64, progress=False)
    out = segment_dataset(src, backend="sam2", progress=False)
    meta = json.loads((out / "dataset.json").read_text())
    assert out.name.startswith("sim-seg-classical-") and meta["backend_used"] == "classical"
    assert "sam2.1_hiera_tiny.pt" in meta["fallback_reason"]
    rc = cli.main(["segment", str(src), "--backend", "sam2", "--no-fallback", "--out", str(tmp_path / "x"), "--quiet"])
    assert rc == 2 and not (tmp_path / "x").exists()


def test_cli_segment(tmp_path, capsys):
    from semlab import cli

    src = _folder_with_bad_inputs(tmp_path)
    rc = cli.main(["segment", str(src), "--out", str(tmp_path / "o"), "--classes", "background,pattern",
                   "--edge-offset-px", "0.5", "--quiet"])
    assert rc == 0 and "segmented dataset" in capsys.readouterr().out
    meta = json.loads((tmp_path / "o" / "dataset.json").read_text())
    assert meta["identity"]["rules"]["classes"] == ["background", "pattern"]
    assert meta["identity"]["rules"]["edge_offset_px"] == 0.5
    assert cli.main(["segment", str(src), "--shard", "3/2"]) == 2
