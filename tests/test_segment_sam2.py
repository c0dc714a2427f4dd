"""SAM2 backend with a randomly initialised hiera-tiny checkpoint (offline, 512-px model).

Random weights give meaningless masks; the quality thresholds are set to 0 so that the
generator still returns some, which is enough to test the plumbing, types and determinism.
"""

from importlib.resources import files

import numpy as np
import pytest

pytest.importorskip("sam2")
torch = pytest.importorskip("torch")

from semlab.data.simulate import simulate  # noqa: E402
from semlab.segment.base import Segment, SegmentationError  # noqa: E402
from semlab.segment.sam2_backend import SAM2_MODELS, Sam2Segmenter, Sam2Settings  # noqa: E402
from semlab.segment.sam2_model import build_sam2_model  # noqa: E402
from semlab.weights import KNOWN, WeightsNotFound  # noqa: E402

FAST = dict(model="sam2.1_hiera_tiny", image_size=512, points_per_side=4, pred_iou_thresh=0.0,
            stability_score_thresh=0.0, box_nms_thresh=0.95)


@pytest.fixture(scope="module")
def segmenter(sam2_weights_folder):
    with pytest.MonkeyPatch.context() as mp:  # found through $SEMLAB_WEIGHTS, never downloaded
        mp.setenv("SEMLAB_WEIGHTS", str(sam2_weights_folder))
        mp.setenv("SEMLAB_OFFLINE", "1")
        return Sam2Segmenter(Sam2Settings(**FAST))


@pytest.fixture(scope="module")
def image():
    return simulate("ic-metal", (96, 160), 0).image  # not square: catches transposed masks


def test_random_checkpoint_is_in_the_official_format(sam2_weights_folder):
    f = sam2_weights_folder / "sam2.1_hiera_tiny.pt"
    assert f.is_file() and [p.name for p in sam2_weights_folder.iterdir()] == [f.name]
    sd = torch.load(f, map_location="cpu", weights_only=True)
    assert list(sd) == ["model"] and "image_encoder.trunk.patch_embed.proj.weight" in sd["model"]


def test_segments_have_the_image_shape_and_are_deterministic(segmenter, image, sam2_weights_folder):
    segs = segmenter.segment(image, source="sim-0")
    assert len(segs) >= 1
    for g in segs:
        assert isinstance(g, Segment) and g.source == "sam2"
        assert g.mask.shape == image.shape and g.mask.dtype == bool and g.mask.any()
        assert type(g.score) is float and type(g.stability) is float
        assert len(g.info["bbox"]) == 4 and len(g.info["point_coords"][0]) == 2
    areas = [g.area for g in segs]
    assert areas == sorted(areas, reverse=True)

    again = segmenter.segment(image)
    assert len(again) == len(segs)
    for a, b in zip(segs, again):
        assert np.array_equal(a.mask, b.mask) and a.score == b.score and a.stability == b.stability
        assert a.info == b.info

    d = segmenter.describe()
    assert d["model"] == "sam2.1_hiera_tiny" and d["image_size"] == 512
    assert d["config"] == "configs/sam2.1/sam2.1_hiera_t.yaml"
    assert d["checkpoint"] == str(sam2_weights_folder / "sam2.1_hiera_tiny.pt")
    assert len(d["checkpoint_sha256"]) == 16 and d["settings"]["points_per_side"] == 4


def test_explicit_checkpoint_and_fp32(sam2_weights_folder, image, monkeypatch, tmp_path):
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path))  # nothing in data/weights
    monkeypatch.delenv("SEMLAB_WEIGHTS", raising=False)
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    seg = Sam2Segmenter(Sam2Settings(**{**FAST, "bf16": False},
                                     checkpoint=str(sam2_weights_folder / "sam2.1_hiera_tiny.pt")))
    segs = seg.segment(image)
    assert segs and all(g.mask.shape == image.shape for g in segs)


def test_missing_checkpoint_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    with pytest.raises(WeightsNotFound) as e:
        Sam2Segmenter(Sam2Settings(**FAST))
    assert "sam2.1_hiera_tiny.pt" in str(e.value) and KNOWN["sam2.1_hiera_tiny"].url in str(e.value)


def test_unusable_images_raise_segmentation_error(segmenter):
    with pytest.raises(SegmentationError, match="at least 64 px"):
        segmenter.segment(np.random.default_rng(0).random((40, 200)).astype(np.float32), source="tiny.png")
    with pytest.raises(SegmentationError, match="blank") as e:
        segmenter.segment(np.zeros((128, 128), np.float32), source="black.png")
    assert e.value.source == "black.png"
    with pytest.raises(SegmentationError):
        segmenter.segment(np.zeros((128, 128, 3), np.float32))


def test_bad_settings():
    with pytest.raises(KeyError, match="sam2.1_hiera_tiny"):
        Sam2Segmenter(Sam2Settings(model="sam3"))
    with pytest.raises(ValueError, match="image_size"):
        Sam2Segmenter(Sam2Settings(image_size=300))


def test_model_table_matches_the_package_and_registry():
    root = files("sam2")
    for name, (config, weights_name) in SAM2_MODELS.items():
        assert (root / config).is_file(), config
        assert KNOWN[weights_name].filename == f"{name}.pt"
    assert SAM2_MODELS["sam2_hiera_tiny"][0] == "configs/sam2/sam2_hiera_t.yaml"
    assert SAM2_MODELS["sam2.1_hiera_base_plus"][0] == "configs/sam2.1/sam2.1_hiera_b+.yaml"


def test_sam2_config_builds():
    net = build_sam2_model("sam2_hiera_tiny", None, 512)  # SAM 2 (not 2.1) config composes and builds
    assert net.image_size == 512 and not net.training


def test_segment_dataset_end_to_end_with_sam2(sam2_weights_folder, tmp_path, monkeypatch):
    """The real loading and inference code through `semlab segment`: canonical masks, the
    manifest's QA columns, and bad inputs recorded without stopping the batch."""
    import json

    from PIL import Image

    from semlab import io
    from semlab.data.datasets import load_dataset
    from semlab.segment.pipeline import segment_dataset

    monkeypatch.setenv("SEMLAB_WEIGHTS", str(sam2_weights_folder))
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    src = tmp_path / "raw"
    src.mkdir()
    for i in range(2):
        io.write_image(src / f"img_{i}.png", simulate("ic-metal", 96, i).image)
    io.write_image(src / "small.png", simulate("ic-metal", 96, 5).image[:40, :40])  # < min_side 64
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(src / "black.png")
    settings = {k: v for k, v in FAST.items()}
    out = segment_dataset(src, backend="sam2", settings=settings, fallback=False, progress=False)
    meta = json.loads((out / "dataset.json").read_text())
    assert out.name.startswith("raw-seg-sam2-") and meta["backend_used"] == "sam2" and not meta["fallback_reason"]
    assert meta["identity"]["segmenter"]["model"] == "sam2.1_hiera_tiny"
    ds = load_dataset(out)
    rows = {r["id"]: r for r in ds.all_rows}
    assert set(rows) == {"img_0", "img_1", "small", "black"}
    assert rows["small"]["status"] == "error" and "at least 64 px" in rows["small"]["reason"]
    assert rows["black"]["status"] == "error" and "blank" in rows["black"]["reason"]
    for i in ("img_0", "img_1"):
        r = rows[i]
        assert r["backend"] == "sam2" and r["status"] in ("ok", "flagged") and int(r["n_segments"]) >= 1
        assert 0.0 <= float(r["unlabeled_frac"]) <= 1.0
        m = io.read_mask(out / "masks" / f"{i}.png")
        assert m.shape == (96, 96) and set(np.unique(m)) <= {0, 1, 2, 3}
        cover = sum(float(r[f"coverage_{c}"]) for c in ("background", "pattern", "hole", "defect"))
        assert cover == pytest.approx(1.0, abs=1e-3)
