"""The real domain of notebooks 20-40 (issue 16 item 4): real tiles by set and frame, the
stored frame split kept through training, fold groups of the detector, the per-set
dataset, the physics baseline's preset and pixel size, and the run's real dataset."""

import json
from pathlib import Path

import numpy as np
import pytest

from semlab.data import samples
from semlab.train import realsets


@pytest.fixture(scope="module")
def lines_dataset(tmp_path_factory):
    """The packaged cdsem-lines frames imported in 128-px tiles with the stored frame split
    and segmented by the classical backend: the dataset notebook 10 builds for DOMAIN="real"."""
    from semlab.data.datasets import import_images
    from semlab.segment.pipeline import segment_dataset

    root = tmp_path_factory.mktemp("real-lines")
    imported = import_images(samples.path("cdsem-lines"), root / "imported", tile=128, progress=False)
    return segment_dataset(imported, root / "seg", backend="classical", progress=False)


def test_real_split_keeps_every_test_tiles_frame_out_of_train(lines_dataset):
    from semlab.data.datasets import load_dataset
    from semlab.io import read_manifest

    ds = load_dataset(lines_dataset)
    sp = realsets.real_split(ds)
    assert sp.set == "cdsem-lines" and list(sp.tiles) == ["train", "val", "test"]
    # independent reference: the stored split of samples.json, frame by frame, and the manifest rows
    stored = samples.stored_split("cdsem-lines")
    rows = [r for r in read_manifest(Path(lines_dataset) / "manifest.csv") if r.get("status", "ok") in ("", "ok")]
    for split in ("train", "val", "test"):
        want = sorted({r["group"] for r in rows if stored[Path(r["source"]).name] == split})
        assert sp.frames[split] == want and len(want) == 1
        assert sorted(sp.tiles[split]) == sorted(r["id"] for r in rows if r["split"] == split)
    index = realsets.tile_index(ds)
    test_frames = {index[i].frame for i in sp.tiles["test"]}
    train_frames = {index[i].frame for i in sp.tiles["train"]}
    assert test_frames and train_frames and not test_frames & train_frames
    nt, nf = sp.n("test")
    assert nf == 1 and 0 < nt <= 70  # 896x1280 px below the data bar: 7 x 10 tiles of 128 px
    assert sp.label("test") == f"cdsem-lines (real), test split: {nt} tiles of 1 frame"
    # tile positions come from the ids: every tile lies inside the cropped frame
    assert all(0 <= t.row <= 896 - 128 and 0 <= t.col <= 1280 - 128 for t in index.values())


def test_a_frame_in_two_splits_is_refused_by_name():
    T = realsets.Tile
    index = {"a_r0_c0": T("s", "a", "train", 0, 0), "a_r0_c128": T("s", "a", "test", 0, 128),
             "b_r0_c0": T("s", "b", "test", 0, 0)}
    with pytest.raises(ValueError, match=r"\['a'\] hold both train and test"):
        realsets.check_frames_disjoint(index, ["a_r0_c0"], ["a_r0_c128", "b_r0_c0"])
    realsets.check_frames_disjoint(index, ["a_r0_c0"], ["b_r0_c0"])  # disjoint: no error


def test_fold_groups_by_frame_when_enough_else_by_blocks():
    T = realsets.Tile
    index = {f"{f}_r{r}_c{c}": T("s", f, "test", r, c) for f in ("a", "b") for r in (0, 128, 256, 384)
             for c in (0, 128, 256, 384)}
    ids = list(index)
    groups, how = realsets.fold_groups(index, ids, n_splits=2)
    assert how.startswith("folds grouped by frame") and sorted(set(groups)) == ["a", "b"]
    groups, how = realsets.fold_groups(index, ids, n_splits=3, block=2)
    assert "blocks of 2x2 tiles" in how and "8 blocks" in how
    g = dict(zip(ids, groups))
    assert g["a_r0_c0"] == g["a_r128_c128"] == g["a_r0_c128"] != g["a_r0_c256"] != g["b_r0_c0"]
    # every block is 4 neighbouring tiles of one frame
    assert sorted(np.unique(groups, return_counts=True)[1].tolist()) == [4] * 8


def _two_set_dataset(root: Path) -> Path:
    from semlab.data.datasets import DatasetWriter

    w = DatasetWriter(root, kind="segmented", identity={"test": "two sets"},
                      info={"classes": [{"id": 0, "name": "background"}, {"id": 1, "name": "pattern"}]})
    rng = np.random.default_rng(0)
    for set_name, frames in (("cdsem-contacts", ("c1", "c2", "c3")), ("user-lines", ("u1", "u2", "u3"))):
        for frame, split in zip(frames, ("train", "val", "test")):
            for c in (0, 32):
                img = rng.random((32, 32)).astype(np.float32)
                w.add(f"{frame}_r00000_c{c:05d}", img, split=split, group=frame, source=f"/x/{set_name}/{frame}.tif",
                      mask=(img > 0.5).astype(np.uint8))
    return w.close()


def test_set_dataset_holds_one_set_with_its_splits(tmp_path):
    from semlab.data.datasets import load_dataset

    ds = load_dataset(_two_set_dataset(tmp_path / "both"))
    assert realsets.sets_of(ds) == ["cdsem-contacts", "user-lines"]
    assert realsets.select_sets(ds, ("cdsem-lines",)) == ["cdsem-contacts"]  # none present: the first set
    assert realsets.select_sets(ds, ("user-lines",)) == ["user-lines"]
    assert realsets.select_sets(ds, ()) == ["cdsem-contacts", "user-lines"]
    sub = load_dataset(realsets.set_dataset(ds, "user-lines", tmp_path / "sub"))
    assert sorted(sub.ids) == sorted(i for i in ds.ids if i.startswith("u"))
    assert {i: sub.row(i)["split"] for i in sub.ids} == {i: ds.row(i)["split"] for i in sub.ids}
    np.testing.assert_array_equal(sub.mask("u2_r00000_c00032"), ds.mask("u2_r00000_c00032"))
    again = realsets.set_dataset(ds, "user-lines", tmp_path / "sub")  # complete: reused
    assert again == tmp_path / "sub" and sorted(load_dataset(again).ids) == sorted(sub.ids)
    with pytest.raises(ValueError, match="holds the real sets"):
        realsets.real_split(ds)
    with pytest.raises(ValueError, match="no tiles of the real set 'nope'"):
        realsets.real_split(ds, "nope")
    assert realsets.real_split(ds, "user-lines").frames == {"train": ["u1"], "val": ["u2"], "test": ["u3"]}


def test_physics_baseline_preset_and_pixel_size_of_a_set(lines_dataset):
    from semlab.data.datasets import load_dataset

    assert realsets.set_preset("cdsem-lines") == "line-space"
    assert realsets.set_preset("cdsem-contacts") == "contacts"
    assert realsets.set_preset("my-folder", np.array([[0, 2]])) == "contacts"
    assert realsets.set_preset("my-folder", np.array([[0, 1]])) == "ic-metal"
    px = realsets.set_pixel_nm(load_dataset(lines_dataset), "cdsem-lines")
    # the Hitachi PixelSize of the three frames: 0.824-0.827 nm (samples.json)
    assert px == pytest.approx(samples.info("cdsem-lines")["pixel_nm"], rel=0.01)


def test_held_out_ids_spread_over_both_frames():
    sp = realsets.RealSplit("s", {"val": [f"v{i}" for i in range(10)], "test": [f"t{i}" for i in range(10)]},
                            {"val": ["v"], "test": ["t"]})
    ids = realsets.held_out_ids(sp, ("val", "test"), 6)
    assert len(ids) == 6 and ids[0] == "v0" and ids[-1] == "t9" and sum(i.startswith("t") for i in ids) == 3
    assert realsets.held_out_ids(sp, ("test",)) == sp.tiles["test"]


def test_the_runs_real_dataset_and_a_clear_error_without_it(tmp_path, lines_dataset):
    from semlab import runs

    run = tmp_path / "run"
    run.mkdir()
    (run / runs.MANIFEST).write_text(json.dumps({"outputs": {"10_make_dataset[sim]": {"dataset": str(tmp_path)}}}))
    missing = runs.find_dataset("real", run)
    assert not missing and "10_make_dataset[real]" in str(missing)
    with pytest.raises(FileNotFoundError, match=r"DOMAIN='real'"):
        realsets.real_dataset(run)
    (run / runs.MANIFEST).write_text(json.dumps({"outputs": {"10_make_dataset[real]": {"dataset": str(lines_dataset)}}}))
    assert runs.find_dataset("real", run) == Path(lines_dataset)
    folder, sp = realsets.domain_dataset("real", run)
    assert folder == Path(lines_dataset) and sp.set == "cdsem-lines"  # one set only: the dataset itself


def test_domains_side_by_side_say_which_is_which():
    from semlab.metrics import keys as K
    from semlab.metrics.tables import domains_markdown
    from semlab.runs import metric, metrics_doc

    k = K.key(K.PIX2PIX, K.PSNR)
    sim = metrics_doc("30_metric_tables", "sim", "sim-ic-metal, test split", 40, {k: metric(25.0, 24.0, 26.0, n=40)},
                      headline=[k])
    real = metrics_doc("30_metric_tables", "real", "cdsem-lines (real), test split: 70 tiles of 1 frame", 70,
                       {k: metric(14.5, 14.0, 15.0, n=70)}, headline=[k])
    md = domains_markdown({"sim": sim, "real": real}, [k, K.key(K.CYCLEGAN, K.PSNR)])
    assert "simulated domain (target: simulated images)" in md and "real domain (target: real SEM tiles)" in md
    assert "25 [24, 26]" in md and "14.5 [14, 15]" in md and "70 tiles of 1 frame" in md
    assert "cyclegan" not in md  # in neither doc: no empty row
    assert "Not run (yet)" in domains_markdown({"sim": sim, "real": None})


def test_translator_doc_on_real_tiles_names_set_tiles_and_frames(lines_dataset):
    """Notebooks 20/21 on real tiles: scored against the held-out real tiles only (no upper
    bound: a real frame has no noise-free image), the doc names set, n tiles and n frames."""
    from semlab.data.datasets import load_dataset
    from semlab.metrics import keys as K
    from semlab.metrics.keys import doc_problems
    from semlab.metrics.pixel import paired_scores
    from semlab.metrics.translators import score_translator, translator_metrics_doc

    ds = load_dataset(lines_dataset)
    sp = realsets.real_split(ds)
    ids = sp.tiles["test"][:8]

    def gen(masks, seed=0):  # a mask-only "generator": two gray levels
        return np.where(masks > 0, 0.7, 0.3).astype(np.float32)

    scores = score_translator(gen, ds, ids, "Fake", seed=0)
    assert scores.target == "real" and not scores.has_bound
    doc = translator_metrics_doc("20_train_pix2pix", K.PIX2PIX, scores, source=lines_dataset, real=sp, profile="smoke")
    assert doc_problems(doc) == [] and doc["domain"] == "real" and doc["n"] == 8
    assert doc["set"] == "cdsem-lines (real), test split: 8 tiles of 1 frame" and doc["extra"]["n_frames"] == 1 and doc["extra"]["frames"] == ["Test02"]
    assert doc["extra"]["train_frames"] == ["Test03"] and K.key(K.UPPER_BOUND, K.PSNR) not in doc["metrics"]
    ref = paired_scores(gen(np.stack([ds.mask(i) for i in ids])), np.stack([ds.image(i) for i in ids]))["psnr"].mean()
    assert doc["metrics"][K.key(K.PIX2PIX, K.PSNR)]["value"] == pytest.approx(ref)
