"""Object-level detection scores (semlab.metrics.objects): one-to-one matching."""

import itertools
import math

import numpy as np
import pytest

from semlab.metrics import objects as O


def _hand_example():
    """Two true squares side by side under one merged predicted blob, a shifted pair and
    a pair that overlaps too little (hand-computed IoUs in the test)."""
    t = np.zeros((30, 30), np.int32)
    p = np.zeros((30, 30), np.int32)
    t[0:4, 0:4] = 1          # T1, 16 px
    t[0:4, 5:9] = 2          # T2, 16 px; one column gap
    p[0:4, 0:9] = 1          # P1 covers both and the gap: 36 px, IoU 16/36 with each
    t[10:14, 10:14] = 3      # T3
    p[10:14, 11:15] = 2      # P2: inter 12, union 20, IoU 0.6
    t[20:22, 20:22] = 4      # T4, 4 px
    p[20:24, 21:25] = 3      # P3: inter 2, union 18, IoU 0.11 < 0.3
    return t, p


def test_merged_blob_matches_only_one_true_object():
    t, p = _hand_example()
    iou, at, ap = O.iou_matrix(t, p)
    assert iou[0, 0] == pytest.approx(16 / 36) and iou[1, 0] == pytest.approx(16 / 36)
    assert iou[2, 1] == pytest.approx(0.6) and iou[3, 2] == pytest.approx(2 / 18)
    assert list(at) == [16, 16, 16, 4] and list(ap) == [36, 16, 16]
    m = O.match_objects(t, p)
    assert m.n_matched == 2  # P1 takes one of T1/T2, P2 takes T3; T4 and P3 are unmatched
    matched_true = {a for a, _, _ in m.pairs}
    assert 2 in matched_true and len(matched_true & {0, 1}) == 1 and 3 not in matched_true
    s = O.detection_scores([m], n_boot=50)
    assert (s["n_true"], s["n_pred"], s["n_matched"]) == (4, 3, 2)
    assert s["precision"]["value"] == pytest.approx(2 / 3)
    assert s["recall"]["value"] == pytest.approx(0.5)
    assert s["f1"]["value"] == pytest.approx(4 / 7)
    # size error: the blob's radius minus a square's, and 0 for the shifted square
    err = (math.sqrt(36 / math.pi) - math.sqrt(16 / math.pi)) / 2
    assert s["size"]["radius_error_px"]["value"] == pytest.approx(err)


def test_threshold_is_inclusive_and_configurable():
    t, p = _hand_example()
    assert O.match_objects(t, p, min_iou=0.6).n_matched == 1  # only IoU 0.6 itself
    assert O.match_objects(t, p, min_iou=0.1).n_matched == 3  # P3 now matches T4
    with pytest.raises(ValueError, match="min_iou"):
        O.match_objects(t, p, min_iou=0)


def _random_labels(rng, n, shape=(12, 12)):
    lab = np.zeros(shape, np.int32)
    for k in range(1, n + 1):
        y, x = rng.integers(0, shape[0] - 2, 2)
        h, w = rng.integers(2, 6, 2)
        lab[y:y + h, x:x + w] = k
    return lab


def _brute(t, p, min_iou):
    ti = [v for v in np.unique(t) if v]
    pi = [v for v in np.unique(p) if v]
    iou = np.zeros((len(ti), len(pi)))
    for a, va in enumerate(ti):
        for b, vb in enumerate(pi):
            x, y = t == va, p == vb
            iou[a, b] = (x & y).sum() / (x | y).sum()
    best = (0, 0.0)
    for k in range(min(len(ti), len(pi)), 0, -1):
        for rows in itertools.combinations(range(len(ti)), k):
            for cols in itertools.permutations(range(len(pi)), k):
                vals = [iou[r, c] for r, c in zip(rows, cols)]
                if all(v >= min_iou for v in vals):
                    best = max(best, (k, sum(vals)))
    return iou, best


@pytest.mark.parametrize("seed", range(40))
def test_matching_agrees_with_brute_force(seed):
    rng = np.random.default_rng(seed)
    t, p = _random_labels(rng, int(rng.integers(0, 5))), _random_labels(rng, int(rng.integers(0, 5)))
    iou_ref, (count, total) = _brute(t, p, O.MIN_IOU)
    iou, _, _ = O.iou_matrix(t, p)
    np.testing.assert_allclose(iou, iou_ref.reshape(iou.shape))
    m = O.match_objects(t, p)
    assert m.n_matched == count
    assert sum(v for _, _, v in m.pairs) == pytest.approx(total)
    assert len({a for a, _, _ in m.pairs}) == len({b for _, b, _ in m.pairs}) == m.n_matched


def test_bootstrap_cis_and_size_table():
    rng = np.random.default_rng(1)
    matches = []
    for _ in range(12):
        t, p = _random_labels(rng, 4, (20, 20)), _random_labels(rng, 4, (20, 20))
        matches.append(O.match_objects(t, p))
    s = O.detection_scores(matches, n_boot=300)
    for k in ("precision", "recall", "f1"):
        v = s[k]
        assert v["ci_low"] <= v["value"] <= v["ci_high"] and v["ci_low"] < v["ci_high"]
    p, r = s["precision"]["value"], s["recall"]["value"]
    assert s["f1"]["value"] == pytest.approx(2 * p * r / (p + r))
    rows = O.size_table(matches, bins=(0.0, 1.5, 2.0, math.inf), n_boot=100)
    assert sum(row["n_true"] for row in rows) == s["n_true"]
    assert sum(row["n_matched"] for row in rows) == s["n_matched"]
    # identical images: every bootstrap sample is the same, so the CI collapses
    same = O.detection_scores([matches[0]] * 5, n_boot=50)
    assert same["f1"]["ci_low"] == pytest.approx(same["f1"]["ci_high"])
    big = O.detection_scores(matches, min_radius_px=2.0, n_boot=50)
    assert big["n_true"] == sum(int((m.true_radius >= 2.0).sum()) for m in matches)


def test_label_objects_connectivity_and_bad_input():
    m = np.zeros((5, 5), bool)
    m[0, 0] = m[1, 1] = True
    assert O.label_objects(m).max() == 1 and O.label_objects(m, connectivity=1).max() == 2
    with pytest.raises(ValueError, match="shape"):
        O.iou_matrix(np.zeros((3, 3), int), np.zeros((3, 4), int))
    with pytest.raises(ValueError, match="no images"):
        O.detection_scores([])
