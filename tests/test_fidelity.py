"""Mask fidelity (issue 16 item 5): the segmenter on generated images scored against the
input masks (IoU per class, mIoU, EPE in nm with bootstrap CIs), the ceiling row, the
columns of the metric tables, and the idealised-mask experiment."""

import numpy as np
import pytest

from semlab import labels
from semlab.metrics import fidelity as F
from semlab.metrics import keys as K


@pytest.fixture(scope="module")
def sims():
    """Six simulated ic-metal images (64 px, 8 nm/px) with their masks and noise-free images."""
    from semlab.data.simulate import simulate

    return [simulate("ic-metal", 64, (3, i)) for i in range(6)]


def _lines(shape=(48, 64), width=8, pitch=16, start=4, horizontal=False):
    """Vertical (or horizontal) lines of `width` px every `pitch` px as a label map."""
    h, w = shape
    m = np.zeros(shape, np.int64)
    n = h if horizontal else w
    for x0 in range(start, n - width, pitch):
        if horizontal:
            m[x0:x0 + width, :] = labels.PATTERN
        else:
            m[:, x0:x0 + width] = labels.PATTERN
    return m


def test_the_clean_image_of_a_mask_is_faithful_and_a_shuffled_pairing_is_not(sims):
    masks = np.stack([s.mask for s in sims])
    clean = np.stack([s.clean for s in sims])
    px = sims[0].params["pixel_nm"]
    good = F.mask_fidelity(clean, masks, pixel_nm=px, polarity="bright", n_boot=200)
    bad = F.mask_fidelity(clean[::-1].copy(), masks, pixel_nm=px, polarity="bright", n_boot=200)
    assert good.classes == ("background", "pattern")  # particles are not scored; no holes in ic-metal
    assert good.miou[0] > 0.9 and good.iou["pattern"][0] > 0.85
    assert bad.miou[0] < 0.6 and bad.epe[0] > 2 * good.epe[0]
    assert good.epe[0] < 1.0 * px  # within a pixel on average
    assert good.predicted.shape == masks.shape and set(np.unique(good.predicted)) <= {0, 1}


@pytest.mark.parametrize("k", [1, 2, 3])
def test_epe_of_a_mask_shifted_by_k_px_is_k_times_the_pixel_size(k):
    px = 2.5
    true = np.stack([_lines(), _lines(horizontal=True)])
    shifted = np.stack([_lines(start=4 + k), _lines(start=4 + k, horizontal=True)])
    s = F.score_masks(shifted, true, pixel_nm=px, n_boot=100)
    assert s.epe[0] == pytest.approx(k * px, abs=1e-9)
    assert s.per_image_epe_nm == pytest.approx([k * px, k * px], abs=1e-9)
    assert s.epe_nm["pattern"][0] == pytest.approx(k * px, abs=1e-9)
    # closed form of the IoU: lines of width 8 shifted by k overlap by 8 - k
    assert s.iou["pattern"][0] == pytest.approx((8 - k) / (8 + k))


def test_epe_of_concentric_discs_matches_the_radius_difference_and_the_contour_metric():
    """Independent reference: semlab.contours' nearest distances on marching-squares contours."""
    from semlab.contours.extract import mask_contours
    from semlab.contours.metrics import nearest_distances

    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 31.7, xx - 32.2)
    a, b = (r < 10).astype(np.int64), (r < 13).astype(np.int64)
    s = F.score_masks(b[None], a[None], pixel_nm=1.0, n_boot=50)
    ca, cb = mask_contours(a.astype(float)), mask_contours(b.astype(float))
    ref = np.concatenate([nearest_distances(ca, cb), nearest_distances(cb, ca)]).mean()
    assert s.epe[0] == pytest.approx(3.0, abs=0.35) and s.epe[0] == pytest.approx(ref, abs=0.3)


def test_iou_equals_sklearns_jaccard_score_and_defect_pixels_are_left_out():
    from sklearn.metrics import jaccard_score

    rng = np.random.default_rng(0)
    true = rng.integers(0, 3, size=(5, 24, 24))
    true[:, :3, :3] = labels.DEFECT
    pred = np.where(rng.random(true.shape) < 0.7, true, rng.integers(0, 4, size=true.shape))
    s = F.score_masks(pred, true, pixel_nm=1.0, n_boot=100)
    keep = true != labels.DEFECT
    ref = jaccard_score(true[keep].ravel(), pred[keep].ravel(), labels=[0, 1, 2], average=None)
    assert [s.iou[c][0] for c in ("background", "pattern", "hole")] == pytest.approx(ref)
    assert s.miou[0] == pytest.approx(ref.mean())


def test_confidence_intervals_contain_their_point_estimates(sims):
    masks = np.stack([s.mask for s in sims])
    imgs = np.stack([s.image for s in sims])
    s = F.mask_fidelity(imgs, masks, pixel_nm=8.0, polarity="bright", n_boot=300)
    for v in [s.miou, s.epe, *s.iou.values(), *s.epe_nm.values()]:
        assert v[1] <= v[0] <= v[2]
    assert s.miou[2] - s.miou[1] > 0  # images differ: the interval has a width
    rows = F.fidelity_rows(s)
    assert [r["metric"] for r in rows] == [K.MASK_MIOU, K.MASK_EPE]
    assert all(r["ci_low"] <= r["value"] <= r["ci_high"] and r["n"] == 6 for r in rows)


def _hole_rectangularity(mask: np.ndarray) -> float:
    """Mean area / bounding-box area of the holes: 1 for squares, pi/4 for discs."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask == labels.HOLE)
    boxes = ndi.find_objects(lab)
    return float(np.mean([(lab[b] == i + 1).sum() / lab[b].size for i, b in enumerate(boxes)]))


def _n_vertices(region: np.ndarray) -> int:
    from semlab.contours.extract import mask_contours, simplify_contour

    return sum(len(simplify_contour(c, 0.75)) - 1 for c in mask_contours(region.astype(float)))


def test_idealised_masks_have_straight_edges_sharp_corners_and_the_same_classes(sims):
    from semlab.data.simulate import simulate

    contacts = simulate("contacts", 128, (5, 0)).mask
    metal = np.stack([s.mask for s in sims])
    for masks in (contacts[None], metal):
        ideal = F.idealise_masks(masks)
        assert ideal.shape == masks.shape and ideal.dtype == np.uint8
        for m, i in zip(masks, ideal):
            assert set(np.unique(m)) == set(np.unique(i))
            assert (i[m == labels.DEFECT] == labels.DEFECT).all()  # particles kept as painted
        before = sum(_n_vertices(np.isin(m, (1, 2))) + _n_vertices(m == 2) for m in masks)
        after = sum(_n_vertices(np.isin(i, (1, 2))) + _n_vertices(i == 2) for i in ideal)
        assert after < 0.7 * before, (before, after)
    ideal = F.idealise_masks(contacts)  # one (H, W) mask in, one out
    assert ideal.shape == contacts.shape
    assert _hole_rectangularity(ideal) > 0.97 > 0.9 > _hole_rectangularity(contacts)
    # idealising moves edges by about a pixel, not more: still the same layout
    change = F.score_masks(ideal[None], contacts[None], pixel_nm=1.0, n_boot=50)
    assert change.miou[0] > 0.7 and change.epe[0] < 2.0


def test_a_tilted_line_stays_tilted_and_straight():
    yy, xx = np.mgrid[:96, :96]
    tilt = np.tan(np.deg2rad(4.0))
    rough = np.sin(yy / 3.0) * 0.8  # line-edge roughness
    m = ((xx - 40.5 - tilt * yy + rough > 0) & (xx - 55.5 - tilt * yy - rough < 0)).astype(np.int64)
    ideal = F.idealise_masks(m)
    ref = ((xx - 40.5 - tilt * yy > 0) & (xx - 55.5 - tilt * yy < 0)).astype(np.int64)  # the mean edges
    assert F.score_masks(ideal[None], ref[None], pixel_nm=1.0, n_boot=20).epe[0] < 0.2
    assert F.score_masks(m[None], ref[None], pixel_nm=1.0, n_boot=20).epe[0] > 0.4  # the rough one is not straight
    assert _n_vertices(ideal == 1) < _n_vertices(m == 1)


def test_bad_input_gets_a_clear_error():
    m = np.zeros((2, 32, 32), np.int64)
    with pytest.raises(ValueError, match="differ in shape"):
        F.mask_fidelity(np.zeros((2, 32, 30), np.float32), m, pixel_nm=1.0)
    with pytest.raises(ValueError, match="integer label maps"):
        F.score_masks(m, m.astype(np.float32), pixel_nm=1.0)
    with pytest.raises(ValueError, match="labels must be in 0..3"):
        F.score_masks(m + 5, m, pixel_nm=1.0)
    with pytest.raises(ValueError, match="pixel_nm must be > 0"):
        F.score_masks(m, m, pixel_nm=0.0)
    with pytest.raises(ValueError, match="none of the scored classes"):
        F.score_masks(m + 3, m + 3, pixel_nm=1.0)
    # no pixel size known (a user's JPEGs): IoU still, the EPE in nm says why it is missing
    s = F.score_masks(np.roll(_lines()[None], 1, axis=2), _lines()[None], pixel_nm=None, n_boot=20)
    assert s.iou["pattern"][0] == pytest.approx(7 / 9) and np.isnan(s.epe[0])
    assert F.fidelity_rows(s)[1]["status"] == "unavailable: no pixel size"


def test_a_blank_generated_image_counts_as_all_background(sims):
    masks = np.stack([s.mask for s in sims[:2]])
    imgs = np.stack([sims[0].clean, np.full_like(sims[1].clean, 0.5)])
    s = F.mask_fidelity(imgs, masks, pixel_nm=8.0, polarity="bright", n_boot=50)
    assert (s.predicted[1] == 0).all() and "image 1" in s.notes[0] and "blank" in s.notes[0]
    assert s.per_image_miou[1] < 0.5 < s.per_image_miou[0]


def test_fidelity_columns_reach_the_tables_and_metrics_docs(sims):
    from semlab.metrics.evaluate import comparison_table

    masks = np.stack([s.mask for s in sims])
    target = np.stack([s.image for s in sims])
    fakes = {"Pix2Pix": np.stack([s.clean for s in sims]), "simulator (physics baseline)": target[::-1].copy()}
    fid = F.fidelity_table(fakes, masks, target, pixel_nm=8.0, polarity="bright", n_boot=100, progress=False)
    assert list(fid) == ["Pix2Pix", "simulator (physics baseline)", F.CEILING]
    results = F.add_fidelity({name: [] for name in fakes}, fid)
    table = comparison_table(results, "markdown")
    assert "mask_miou" in table and "mask_epe_nm" in table and "**" in table  # the best marked
    assert F.CEILING not in results  # the ceiling is a reference, not a model
    doc = F.fidelity_doc_metrics(fid)
    assert doc[K.key(K.SEGMENTER_CEILING, K.MASK_MIOU)]["value"] == pytest.approx(fid[F.CEILING].miou[0])
    assert doc[K.key(K.SEGMENTER_CEILING, K.MASK_EPE)]["unit"] == "nm"
    md = F.fidelity_markdown(fid, "simulated (target), 6 tiles")
    rows = md.splitlines()
    assert "Pix2Pix" in rows[2] and "physics baseline" in rows[3] and "ceiling" in rows[4]  # the reference last
    assert "IoU pattern" in md and "simulated (target), 6 tiles" in md


def test_translator_scores_and_doc_carry_mask_fidelity(tmp_path):
    from semlab.data.datasets import load_dataset, simulate_dataset
    from semlab.metrics.keys import doc_problems
    from semlab.metrics.translators import score_translator, translator_metrics_doc

    root = simulate_dataset(tmp_path / "sim", preset="ic-metal", n=40, size=64, seed=1, progress=False)
    ds = load_dataset(root)
    ids = ds.split("test")[:4] or ds.ids[:4]

    gen = F.PhysicsGenerator("ic-metal", 8.0)  # the simulator as a "generator": it draws what it is given
    scores = score_translator(gen, ds, ids, "Fake", seed=0)
    assert set(scores.fidelity) == {"Fake", F.CEILING}
    assert scores.table[scores.vs_real][K.MASK_MIOU] == scores.fidelity["Fake"].miou
    assert "mask fidelity, Fake: mIoU" in scores.text()
    doc = translator_metrics_doc("20_train_pix2pix", K.PIX2PIX, scores, source=root, profile="smoke")
    assert doc_problems(doc) == []
    m = doc["metrics"]
    assert m[K.key(K.PIX2PIX, K.MASK_MIOU)]["value"] == pytest.approx(scores.fidelity["Fake"].miou[0])
    assert m[K.key(K.PIX2PIX, K.MASK_EPE)]["unit"] == "nm"
    assert K.key(K.SEGMENTER_CEILING, K.MASK_MIOU) in m
    assert m[K.key(K.PIX2PIX, K.MASK_MIOU)]["value"] > 0.8  # the structure is there
    assert m[K.key(K.SEGMENTER_CEILING, K.MASK_MIOU)]["value"] > 0.9  # the edge offset was fitted on training pairs


def test_idealised_experiment_reports_fidelity_and_realism_side_by_side(sims):
    from semlab.viz.fidelity import (experiment_table_figure, fidelity_examples_figure, fidelity_scores_figure,
                                     idealised_figure)

    masks = np.stack([s.mask for s in sims])
    target = np.stack([s.image for s in sims])
    gen = F.PhysicsGenerator("ic-metal", 8.0)
    res = F.idealised_experiment(gen, masks, target, pixel_nm=8.0, polarity="bright", n_boot=100,
                                 name="simulator (physics baseline)")
    assert list(res.fidelity) == [F.DATASET_MASKS, F.IDEALISED_MASKS]
    ideal = res.masks[F.IDEALISED_MASKS]
    assert (ideal == F.idealise_masks(masks)).all() and res.images[F.IDEALISED_MASKS].shape == masks.shape
    for arm in res.fidelity:
        r = res.realism[arm]
        assert 0 <= r["ci_low"] <= r["balanced_accuracy"] <= r["ci_high"] <= 1 and r["n_pos"] == 6
        assert res.fidelity[arm].miou[0] > 0.8  # the physics baseline draws what it is given
    assert res.change.miou[0] < 1.0  # idealising changed the masks
    md = F.experiment_markdown(res, "simulated (target), 6 tiles")
    assert "idealised masks" in md and "dataset masks" in md and "6 tiles" in md
    doc = F.experiment_doc_metrics(res)
    assert {K.key(K.IDEALISED_MASKS, K.MASK_MIOU), K.key(K.DATASET_MASKS, K.REALISM_BALANCED_ACCURACY)} <= set(doc)
    assert len(idealised_figure(res, k=2).axes) == 12
    assert len(experiment_table_figure(res).axes) == 1
    calls = []
    small = F.idealised_experiment(lambda m, seed=0: calls.append(len(m)) or gen(m, seed=seed), masks, target,
                                   pixel_nm=[8.0] * 6, polarity=["bright"] * 6, n_boot=50, max_n=3,
                                   dataset_images=res.images[F.DATASET_MASKS],
                                   dataset_fidelity=res.fidelity[F.DATASET_MASKS])
    assert calls == [3]  # the idealised arm only: the dataset arm's images and segmentation are reused
    assert small.change.n == 3 and (small.masks[F.DATASET_MASKS] == masks[[0, 2, 5]]).all()
    assert (small.fidelity[F.DATASET_MASKS].predicted == res.fidelity[F.DATASET_MASKS].predicted[[0, 2, 5]]).all()
    fid = {"gen": res.fidelity[F.DATASET_MASKS], F.CEILING: res.fidelity[F.IDEALISED_MASKS]}
    assert len(fidelity_examples_figure(masks, {"gen": target}, fid, k=2).axes) == 6
    assert len(fidelity_scores_figure(fid, title="x").axes) == 2
