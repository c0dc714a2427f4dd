"""`semlab segment --calibrate-on DATASET` (issue 19 item 3): the classical threshold,
edge offset and morphology fitted on a few labelled images."""

import json

import numpy as np
import pytest

from semlab import cli
from semlab.data.datasets import load_dataset, simulate_dataset
from semlab.segment.calibrate import (GRID, calibrate, coordinate_search, grid_search, prepare_pairs,
                                      structure_iou)
from semlab.segment.canonical import CanonicalRules
from semlab.segment.classical import ClassicalSettings
from semlab.segment.evaluate import score_against_truth

# a small grid keeps the exhaustive reference on the test split fast
SMALL = {"threshold": ("otsu", "li"), "edge_offset_px": (0.0, 0.5, 1.0, 1.5), "min_area_px": (4, 32)}
SPLITS = {"train": 0.4, "val": 0.1, "test": 0.5}


class _Sets(dict):
    """Simulated labelled datasets, made on first use (96 px, 16 images, half test)."""

    def __init__(self, root):
        super().__init__()
        self.root = root

    def __missing__(self, preset):
        self[preset] = simulate_dataset(self.root / preset, preset=preset, n=16, size=96, seed=1, splits=SPLITS,
                                        progress=False)
        return self[preset]


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    return _Sets(tmp_path_factory.mktemp("cal"))


def _prepared(root, split):
    ds = load_dataset(root)
    return prepare_pairs(((i, ds.image(i), ds.mask(i)) for i in ds.split(split)), ClassicalSettings(),
                         CanonicalRules(polarity="bright"))


@pytest.mark.slow  # ~10 s each on one core: the exhaustive reference grid on the test split
@pytest.mark.parametrize("preset", ["ic-metal", "line-space", "contacts"])
def test_three_labelled_images_reach_the_test_split_optimum(sets, preset):
    """Fitted on 3 training images, the settings score within 0.01 mean structure IoU of
    the best combination of the grid chosen on the test split itself."""
    root = sets[preset]
    fitted, rec = calibrate(root, ClassicalSettings(), CanonicalRules(polarity="bright"), n=3, grid=SMALL)
    assert rec["n"] == 3 and rec["split"] == "train" and rec["search"] == "exhaustive grid"
    assert rec["iou_after"] >= rec["iou_before"]
    assert {k: getattr(fitted, k) for k in SMALL} == rec["fitted"]
    test = _prepared(root, "test")
    assert len(test) >= 4
    best, optimum = grid_search(test, ClassicalSettings(), CanonicalRules(polarity="bright"), SMALL)
    got = structure_iou(test, fitted, CanonicalRules(polarity="bright"))
    assert got <= optimum + 1e-12
    assert got >= optimum - 0.01, (preset, rec["fitted"], got, best, optimum)


def test_coordinate_search_never_beats_the_exhaustive_optimum(sets):
    train = _prepared(sets["ic-metal"], "train")[:3]
    rules = CanonicalRules(polarity="bright")
    _, opt = grid_search(train, ClassicalSettings(), rules, SMALL)
    vals, sc, trials = coordinate_search(train, ClassicalSettings(), rules, SMALL)
    assert sc <= opt + 1e-12 and sc == pytest.approx(structure_iou(train, ClassicalSettings(**vals), rules))
    assert sc >= structure_iou(train, ClassicalSettings(), rules)  # never worse than where it started
    # at most the grid's combinations, plus the start (min_area_px 12 is not on the grid)
    assert len(trials) <= int(np.prod([len(v) for v in SMALL.values()])) + 1
    # threshold and offset are swept jointly: the best pair for the start's min_area is tried
    pairs = {(t["threshold"], t["edge_offset_px"]) for t in trials if t["min_area_px"] == ClassicalSettings().min_area_px}
    assert len(pairs) == 8


def test_refusals(sets, tmp_path):
    with pytest.raises(ValueError, match="test split"):
        calibrate(sets["ic-metal"], split="test")
    with pytest.raises(KeyError, match="not a classical setting"):
        calibrate(sets["ic-metal"], grid={"no_such": (1, 2)})
    assert set(GRID) == {"threshold", "edge_offset_px", "min_area_px", "open_px"}


def test_cli_calibrate_on_records_the_fit_and_scores_like_evaluate(sets, tmp_path, capsys, monkeypatch):
    """The CLI writes the fitted settings into dataset.json (record and identity); its
    masks score on the test split exactly as `structure_iou` said (independent code:
    `score_against_truth` on the written masks)."""
    import semlab.segment.calibrate as cal

    monkeypatch.setattr(cal, "GRID", SMALL)  # time: the default grid is searched the same way
    root = sets["line-space"]
    out = tmp_path / "seg"
    assert cli.main(["segment", str(root), "--calibrate-on", str(root), "--out", str(out), "--quiet"]) == 0
    info = json.loads((out / "dataset.json").read_text())
    cal = info["calibration"]
    assert cal["n"] == 3 and cal["ids"] == load_dataset(root).split("train")[:3]
    seg_id = info["identity"]["segmenter"]
    for k, v in cal["fitted"].items():
        assert seg_id[k] == v
    fitted = ClassicalSettings(**{k: v for k, v in seg_id.items() if k != "backend"})
    sc = score_against_truth(out, root, "test")
    assert sc["n_excluded"] == 0
    ds = load_dataset(root)
    rules = CanonicalRules(classes=tuple(c["name"] for c in ds.info["classes"]), polarity="auto")  # as the CLI
    assert info["identity"]["rules"] == json.loads(json.dumps(rules.describe()))
    test = prepare_pairs(((i, ds.image(i), ds.mask(i)) for i in ds.split("test")), fitted, rules)
    assert sc["mean_iou_structure"] == pytest.approx(structure_iou(test, fitted, rules), abs=1e-9)
    assert cli.main(["segment", str(root), "--calibrate-on", str(root), "--backend", "sam2",
                     "--out", str(tmp_path / "x")]) == 2
    assert "classical" in capsys.readouterr().err
