"""No silent data loss through clashing file names (issue 15 item 5, [B]).

Probes: `x.png` beside `x.tif`, `a b` beside `a_b`, two non-ASCII names that map to one
plain id, and `sub/img.png` beside `sub__img.png` (the same relative name flattened).
On the old code each pair collapsed to one id: `import-images` imported 2 of 4 files
with exit code 0, `generate` overwrote its own output, `contours predict` crashed.
Now every file gets an id of its own (the clashing ones `<id>-<8 hex of the relative
path's sha256>`), before anything is written, with a warning and a manifest column.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from semlab import cli, io
from semlab.data import datasets as D

CLASHING = [("x.png", "x.tif"), ("a b.png", "a_b.png"), ("caf\u00e9.png", "caf\u00e8.png"),
            ("sub/img.png", "sub__img.png")]
ALONE = ["plain.png", "other/plain2.png"]


def _h8(rel: str) -> str:
    return hashlib.sha256(rel.encode()).hexdigest()[:8]


def _folder(root: Path, size: int = 64, kind: str = "image") -> dict[str, int]:
    """One file per name, each with its own constant value (image) or label (mask),
    so a lost or swapped file shows; returns {relative path: value}."""
    values = {}
    names = [n for pair in CLASHING for n in pair] + ALONE
    for k, rel in enumerate(names):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if kind == "image":
            v = 20 + 20 * k
            arr = np.full((size, size), v, np.uint8)
            arr[size // 4: size // 2, size // 4: 3 * size // 4] = 255 - v  # a structure for the segmenters
        else:
            v = k % 4
            arr = np.full((size, size), v, np.uint8)
        if p.suffix == ".tif":
            tifffile.imwrite(p, arr, photometric="minisblack")
        elif kind == "mask":
            io.write_mask(p, arr)
        else:
            Image.fromarray(arr).save(p)
        values[rel] = v
    return values


def test_unique_ids_give_every_file_its_own_plain_id(tmp_path):
    _folder(tmp_path / "src")
    files = sorted((tmp_path / "src").rglob("*.*"))
    ids, clashes = D.unique_ids(files, tmp_path / "src")
    assert len(set(ids.values())) == len(files) == 10
    for f, i in ids.items():
        rel = f.relative_to(tmp_path / "src").as_posix()
        assert io.validate_id(i) == i
        if any(rel in pair for pair in CLASHING):
            assert i == f"{D.safe_id(Path(rel))}-{_h8(rel)}"
        else:
            assert i == D.safe_id(Path(rel))
    assert sorted(clashes) == ["a_b", "caf_", "sub__img", "x"]
    assert clashes["x"] == ["x.png", "x.tif"] and clashes["sub__img"] == ["sub/img.png", "sub__img.png"]
    # the old id of each pair was one id for two files
    assert len({D.safe_id(Path(r)) for pair in CLASHING for r in pair}) == len(CLASHING)


def test_unique_ids_of_long_and_case_clashing_names_stay_valid(tmp_path):
    long = ["y" * 250 + ".png", "y" * 250 + ".tif", "Case.png", "case.png"]
    files = [tmp_path / n for n in long]
    ids, clashes = D.unique_ids(files, tmp_path)
    assert len(set(ids.values())) == 4 and len(clashes) == 2
    assert all(io.validate_id(i) == i and len(i) <= 186 for i in ids.values())  # room for a tile suffix


def test_import_images_keeps_every_clashing_file(tmp_path, capsys):
    values = _folder(tmp_path / "src")
    with pytest.warns(io.SemlabWarning, match=r"4 file names would share an item id|8 file names would share"):
        code = cli.main(["import-images", str(tmp_path / "src"), "--out", str(tmp_path / "ds"), "--quiet"])
    assert code == 0
    assert "10 ok, 0 failed" in capsys.readouterr().out
    ds = D.load_dataset(tmp_path / "ds")
    assert len(ds) == len(values) == 10
    rows = {r["id"]: r for r in ds.rows}
    src = tmp_path / "src"
    for rel, v in values.items():
        (iid,) = [i for i, r in rows.items() if Path(r["source"]) == src / rel]
        assert int(np.round(ds.image(iid)[0, 0] * 255)) == v  # the right pixels under the right id
        clashing = any(rel in pair for pair in CLASHING)
        assert (rows[iid]["renamed_from"] != "") == clashing
        if clashing:
            assert re.fullmatch(r".+-[0-9a-f]{8}", iid) and iid.endswith(_h8(rel))


def test_segment_of_a_folder_keeps_every_clashing_file(tmp_path, capsys):
    from semlab.segment.pipeline import segment_dataset

    values = _folder(tmp_path / "src")
    with pytest.warns(io.SemlabWarning, match="would share an item id"):
        out = segment_dataset(tmp_path / "src", tmp_path / "seg", progress=False)
    rows = io.read_manifest(out / "manifest.csv")
    assert len(rows) == len(values) and {r["source"] for r in rows} == set(values)
    assert {r["renamed_from"] for r in rows} == {"", "x", "a_b", "caf_", "sub__img"}


def test_generate_writes_one_image_per_clashing_mask(tiny_generator, tmp_path, capsys):
    from semlab.train.generate import Generator

    values = _folder(tmp_path / "masks", size=32, kind="mask")
    ckpt = tiny_generator(tmp_path / "g.pt", 0)
    with pytest.warns(io.SemlabWarning, match="would share an item id"):
        code = cli.main(["generate", "--checkpoint", str(ckpt), "--masks", str(tmp_path / "masks"),
                         "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0 and "10 generated, 0 kept" in capsys.readouterr().out
    outs = sorted((tmp_path / "out").glob("*.png"))
    assert len(outs) == len(values)
    gen = Generator(ckpt)
    ids, _ = D.unique_ids(sorted((tmp_path / "masks").rglob("*.*")), tmp_path / "masks")
    for f, i in ids.items():  # each output is its own mask's image, not another's
        want = io.to_uint8(gen(io.read_mask(f), seed=0))
        assert np.array_equal(io.to_uint8(io.read_image(tmp_path / "out" / f"{i}.png")), want)


def test_contours_predict_writes_every_clashing_image(tmp_path, capsys):
    from semlab.data.simulate import simulate

    src = tmp_path / "imgs"
    names = ["x.png", "x.tif", "a b.png", "a_b.png"]
    for k, n in enumerate(names):
        io.write_image(src / n, simulate("line-space", 64, k).image)
    with pytest.warns(io.SemlabWarning, match="would share an item id"):
        code = cli.main(["contours", "predict", str(src), "--out", str(tmp_path / "pred"), "--no-sam2",
                         "--format", "json", "--quiet"])
    assert code == 0
    files = sorted(p.name for p in (tmp_path / "pred").glob("*.json") if p.name != "predict.json")
    assert files == sorted(f"{D.safe_id(Path(n))}-{_h8(n)}.json" for n in names)
    rows = io.read_csv(tmp_path / "pred" / "structures.csv")
    assert {r["image"] for r in rows} == {str(src / n) for n in names}
