"""Bad input (issue 19): a frame of pure noise, a frame with no edges and a frame with an
uncropped data bar each get a QA flag with a reason, and the batch goes on."""

import numpy as np
import pytest

from semlab import io
from semlab.data.datasets import load_dataset
from semlab.data.simulate import simulate
from semlab.data.sources import detect_databar
from semlab.segment.classical import ClassicalSegmenter
from semlab.segment.pipeline import segment_dataset, segment_image
from semlab.segment.qa import QARules, add_input_flags, input_checks


def _noise(seed=0, size=128):
    return np.clip(0.5 + 0.12 * np.random.default_rng(seed).standard_normal((size, size)), 0, 1).astype(np.float32)


def _gradient(size=128, noise=0.0):
    yy, xx = np.mgrid[:size, :size] / (size - 1)
    g = 0.2 + 0.5 * xx + 0.15 * yy ** 2
    return np.clip(g + noise * np.random.default_rng(1).standard_normal(g.shape), 0, 1).astype(np.float32)


def _with_databar(img, rows=20):
    """A frame with a burned-in bar: a black band with white text-like strokes and a rule."""
    out = img.copy()
    h, w = out.shape
    out[h - rows:] = 0.0
    out[h - rows + 4:h - rows + 6, 8:w // 3] = 1.0
    for x in range(w // 2, w - 10, 7):
        out[h - rows + 8:h - 6, x:x + 2] = 1.0
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_white_noise_scores_about_one(seed):
    """The structure-to-noise ratio is normalised so that white noise gives 1 (the closed
    form 4.653 / (4 sqrt(pi)) for the spread of blurred unit noise), whatever its level."""
    for sigma in (0.03, 0.1):
        img = (0.5 + sigma * np.random.default_rng(seed).standard_normal((256, 256))).astype(np.float32)
        c = input_checks(img)
        assert 0.8 < c["structure_to_noise"] < 1.25
        assert c["input_reasons"] and c["input_reasons"][0].startswith("pure noise")


@pytest.mark.parametrize("preset,size", [("ic-metal", 64), ("line-space", 128), ("contacts", 128), ("particles", 128)])
def test_simulated_frames_pass(preset, size):
    """No simulated frame of any preset is flagged as bad input (the safe direction)."""
    for k in range(3):
        c = input_checks(simulate(preset, size, (3, k)).image)
        assert c["input_reasons"] == [], (preset, k, c)
        assert c["structure_to_noise"] > QARules().min_structure_to_noise


def test_real_frame_crops_pass_and_uncropped_bars_are_flagged():
    """The packaged real frames: a crop above the data bar passes; the frame as stored,
    with its bar, is flagged at the row the catalogue gives."""
    from semlab.data import samples

    for name in ("cdsem-lines", "cdsem-contacts"):
        f = samples.frames(name)[0]
        img = io.read_image(f)
        row = samples.info(name)["databar_row"][f.name]
        c = input_checks(img)
        assert c["databar_row"] == row == detect_databar(img)
        assert any(r.startswith(f"uncropped data bar from row {row}") for r in c["input_reasons"])
        crop = input_checks(img[:row][:384, :384])
        assert crop["input_reasons"] == [] and crop["databar_row"] == ""


def test_smooth_gradient_has_no_edges_and_mask_is_flagged():
    g = _gradient()
    c = input_checks(g)
    assert c["input_contrast"] < 1e-3 and c["input_reasons"][0].startswith("no edges")
    res = segment_image(g, ClassicalSegmenter())
    assert res.qa["status"] == "flagged" and "no edges" in res.qa["reason"]
    # a noisy gradient is no better: the noise is all there is
    c = input_checks(_gradient(noise=0.05))
    assert c["input_reasons"] and c["input_reasons"][0].startswith("pure noise")


def test_add_input_flags_keeps_mask_reasons():
    qa = {"status": "flagged", "reason": "pattern covers 1% < 2%: no structure found"}
    add_input_flags(qa, {"input_contrast": 0.001, "structure_to_noise": 0.5, "databar_row": "",
                         "input_reasons": ["no edges: x"]})
    assert qa["reason"] == "no edges: x; pattern covers 1% < 2%: no structure found"
    ok = add_input_flags({"status": "ok", "reason": ""}, {"input_reasons": [], "databar_row": ""})
    assert ok["status"] == "ok" and ok["reason"] == ""


def test_batch_goes_on_past_bad_frames(tmp_path):
    """A folder with a good frame, pure noise, a smooth gradient, a constant frame and a
    frame with an uncropped data bar: every bad one is recorded with its reason (the
    constant one cannot be segmented at all: status error), the good one is ok and is
    the only one the dataset loader keeps."""
    src = tmp_path / "frames"
    src.mkdir()
    good = simulate("line-space", 128, (0, 4)).image
    frames = {"good": good, "noise": _noise(), "gradient": _gradient(), "constant": np.full((128, 128), 0.4, np.float32),
              "bar": _with_databar(simulate("line-space", 128, (0, 5)).image)}
    for name, img in frames.items():
        io.write_image(src / f"{name}.png", img)
    out = segment_dataset(src, tmp_path / "seg", progress=False)
    rows = {r["id"]: r for r in io.read_manifest(out / "manifest.csv")}
    assert set(rows) == set(frames)
    assert rows["good"]["status"] == "ok", rows["good"]["reason"]
    assert rows["noise"]["status"] == "flagged" and "pure noise" in rows["noise"]["reason"]
    assert rows["gradient"]["status"] == "flagged" and "no edges" in rows["gradient"]["reason"]
    assert rows["constant"]["status"] == "error" and "blank" in rows["constant"]["reason"]
    assert rows["bar"]["status"] == "flagged" and "uncropped data bar from row 108" in rows["bar"]["reason"]
    assert load_dataset(out).ids == ["good"]
