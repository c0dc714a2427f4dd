"""The real SEM frames packaged with semlab (semlab.data.samples): API, attribution,
stored frame split, data-bar rows, and the package data of a non-editable install."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tifffile

from semlab import paths
from semlab.data import samples as S
from semlab.data import sources
from semlab.data.datasets import assign_split, unique_ids
from semlab.io import read_image

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = {"cdsem-lines": 3, "cdsem-contacts": 4, "litho-lines": 6}


@pytest.fixture
def no_shared(monkeypatch, tmp_path):
    """A fresh clone: no ../shared beside the project, no $SEMLAB_REAL_SEM that exists."""
    monkeypatch.delenv("SEMLAB_ROOT", raising=False)
    monkeypatch.setenv("SEMLAB_REAL_SEM", str(tmp_path / "missing"))
    monkeypatch.chdir(tmp_path)
    assert paths.shared_real_dir() is None
    return tmp_path


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- API


def test_packaged_sets_and_frames_exist_with_their_catalogue():
    assert S.list_sets() == sorted(PACKAGED)
    for name, n in PACKAGED.items():
        folder = S.path(name)
        assert folder.is_dir() and folder.parent == S.real_dir_default()
        assert (ROOT / "semlab" / "data") in folder.parents
        fr = S.frames(name)
        assert len(fr) == n and all(p.is_file() for p in fr)
        e = S.info(name)
        for key in ("frames", "pixel_nm_source", "databar_row", "licence", "source", "split", "sha256"):
            assert key in e, (name, key)
        assert set(e["databar_row"]) == set(e["frames"]) == set(e["frame_pixel_nm"])
        for p in fr:  # the files are the catalogued ones, bit for bit
            assert _sha(p) == e["sha256"][p.name], p
    # the attribution sits beside the frames and names every source and licence
    readme = (S.real_dir_default() / "README.md").read_text()
    for needle in ("IacopoMochi/SMILE2", "Nynra/pytools-litho-analysis", "Unlicense", "MIT", "GPL"):
        assert needle in readme
    for lic in {S.info(n)["licence_file"] for n in PACKAGED}:
        assert (S.real_dir_default() / lic).is_file()


def test_frames_are_readable_and_match_the_catalogued_size():
    for name in PACKAGED:
        e = S.info(name)
        for p in S.frames(name):
            img = read_image(p)
            assert img.ndim == 2 and img.size > 0 and np.isfinite(img).all(), p
            if e["size"]:
                assert list(img.shape) == e["size"], p


def test_catalogued_pixel_sizes_match_the_tool_tags():
    """Independent of semlab.io: parse the Zeiss CZ_SEM tag and the Hitachi XPComment text."""
    for p in S.frames("cdsem-contacts"):
        with tifffile.TiffFile(p) as t:
            val, unit = t.pages[0].tags[34118].value["ap_image_pixel_size"][1:3]
        assert unit == "pm"
        assert S.info("cdsem-contacts")["frame_pixel_nm"][p.name] == pytest.approx(val / 1000, rel=1e-6)
    for p in S.frames("cdsem-lines"):
        with tifffile.TiffFile(p) as t:
            text = bytes(t.pages[0].tags[40092].value).decode("utf-16-le")
        px = float(re.search(r"PixelSize=([0-9.]+)", text).group(1))
        assert S.info("cdsem-lines")["frame_pixel_nm"][p.name] == pytest.approx(px, rel=1e-9)
        assert S.info("cdsem-lines")["pixel_nm"] == pytest.approx(px, rel=0.02)  # one size within 2%
    litho = S.info("litho-lines")["frame_pixel_nm"]
    # a same-scale crop of test1.jpg (not packaged), whose bar prints 147 um over 2048 px
    assert litho["test_analysis_lines.jpg"] == pytest.approx(147_000 / 2048, rel=1e-3)


def test_info_is_a_copy():
    e = S.info("litho-lines")
    e["databar_row"].clear()
    e["frames"].append("x.jpg")
    assert len(S.info("litho-lines")["databar_row"]) == 6 and len(S.frames("litho-lines")) == 6


def test_unknown_set_errors_name_the_set():
    with pytest.raises(KeyError, match=r"unknown sample set 'cdsem-line'.*cdsem-lines"):
        S.path("cdsem-line")
    with pytest.raises(KeyError, match="nope"):
        S.frames("nope")
    with pytest.raises(KeyError, match="nope"):
        S.info("nope")


def test_gpl_frames_are_never_packaged():
    dsa = S.catalogue()["shared"]["dsa-lines"]
    packaged = {p.name for p in S.real_dir_default().rglob("*")} | {_sha(p) for p in S.real_dir_default().rglob("*.*")
                                                                     if p.suffix in (".tif", ".jpg")}
    assert not set(dsa["frames"]) & packaged
    assert not set(dsa["sha256"].values()) & packaged
    assert "dsa-lines" not in S.list_sets()


def test_without_shared_folder(no_shared):
    """A fresh clone with no ../shared: the packaged sets still work, DSA is absent with a
    clear error."""
    assert S.shared_sets() == {n: S.path(n) for n in PACKAGED}
    assert len(S.frames("cdsem-lines")) == 3 and S.real_dir_default().is_dir()
    with pytest.raises(KeyError, match=r"'dsa-lines' is not packaged \(GPL-2.0.*not found"):
        S.frames("dsa-lines")


def test_shared_dsa_frames_used_in_place_when_present():
    real = paths.shared_real_dir()
    if real is None or not (real / "dsa_lines").is_dir():
        pytest.skip("../shared/data/real_sem/dsa_lines not available")
    sets = S.shared_sets()
    assert sets["dsa-lines"] == real / "dsa_lines"
    assert [p.name for p in S.frames("dsa-lines")] == S.info("dsa-lines")["frames"]
    for p in S.frames("dsa-lines"):
        assert _sha(p) == S.info("dsa-lines")["sha256"][p.name]


# --------------------------------------------------------------------------- frame split


def test_frame_split_small_sets_fill_every_split():
    for n, want in {3: (1, 1, 1), 4: (2, 1, 1), 5: (3, 1, 1), 9: (7, 1, 1)}.items():
        fr = [f"frame{i:02d}" for i in range(n)]
        for seed in range(5):
            got = S.frame_split(fr, seed=seed)
            assert set(got) == set(fr)
            c = Counter(got.values())
            assert (c["train"], c["val"], c["test"]) == want, (n, seed, got)
            assert got == S.frame_split(list(reversed(fr)), seed=seed)  # order does not matter
    # the seed decides which frame goes where
    fr = ["a", "b", "c", "d"]
    assert len({tuple(sorted(S.frame_split(fr, seed=s).items())) for s in range(10)}) > 1
    # fewer units than splits: train first, then test
    assert S.frame_split(["x"]) == {"x": "train"}
    assert sorted(S.frame_split(["x", "y"]).values()) == ["test", "train"]


def test_frame_split_groups_share_a_split():
    fr = ["a1", "a2", "a3", "b", "c", "d"]
    for seed in range(8):
        got = S.frame_split(fr, seed=seed, groups={"a1": "a", "a2": "a", "a3": "a"})
        assert got["a1"] == got["a2"] == got["a3"]
        assert set(got.values()) == {"train", "val", "test"}
    with pytest.raises(ValueError, match="not in the set"):
        S.frame_split(["a"], groups={"zz": "g"})


def test_frame_split_large_sets_hash_like_assign_split_but_never_empty():
    for n in (10, 11, 12, 15, 40):
        fr = [f"img_{i}" for i in range(n)]
        for seed in range(25):
            got = S.frame_split(fr, seed=seed)
            assert set(got.values()) == {"train", "val", "test"}, (n, seed)
            ref = {f: assign_split(seed, f) for f in fr}  # independent reference: the dataset hash
            if set(ref.values()) == {"train", "val", "test"}:
                assert got == ref
            else:  # only the frames needed to fill an empty split moved
                moved = sum(got[f] != ref[f] for f in fr)
                assert 1 <= moved <= 2


def test_stored_split_equals_frame_split_and_every_split_is_filled():
    cat = S.catalogue()
    for name, e in {**cat["sets"], **cat["shared"]}.items():
        want = S.frame_split(e["frames"], seed=e["split_seed"], groups=e.get("groups"))
        assert e["split"] == want, name
        assert set(e["split"].values()) == {"train", "val", "test"}, name
        for key in set((e.get("groups") or {}).values()):  # one field of view, one split
            members = [f for f, g in e["groups"].items() if g == key] + ([key] if key in e["frames"] else [])
            assert len({e["split"][f] for f in members}) == 1, (name, key)


def _copy_sets(dst: Path, names) -> Path:
    for n in names:
        shutil.copytree(S.path(n), dst / n)
    return dst


def test_import_splits_every_set_in_every_split_and_stored_split_reused(tmp_path):
    root = _copy_sets(tmp_path / "real", ["cdsem-lines", "cdsem-contacts"])
    files = sources.list_images(root)
    ids, _ = unique_ids(files, root)
    got = S.import_splits(ids, root)
    for name in ("cdsem-lines", "cdsem-contacts"):
        mine = {f.name: got[ids[f]] for f in files if f.parent.name == name}
        assert mine == S.stored_split(name)  # recognised by content, whatever the path
        assert set(mine.values()) == {"train", "val", "test"}
    # frames that are not catalogued: each folder is split on its own, never an empty split
    other = tmp_path / "user"
    rng = np.random.default_rng(0)
    for folder, n in (("lines", 3), ("contacts", 4), ("misc", 12)):
        (other / folder).mkdir(parents=True)
        for i in range(n):
            tifffile.imwrite(other / folder / f"f{i}.tif", rng.integers(0, 255, (40, 40), dtype=np.uint8))
    files = sources.list_images(other)
    ids, _ = unique_ids(files, other)
    got = S.import_splits(ids, other, seed=3)
    for folder in ("lines", "contacts", "misc"):
        assert {got[ids[f]] for f in files if f.parent.name == folder} == {"train", "val", "test"}, folder
    # the old per-frame hash leaves a small set without a test frame
    old = {f.name: assign_split(0, ids[f]) for f in files if f.parent.name == "contacts"}
    assert set(old.values()) != {"train", "val", "test"}


def test_import_images_tiles_take_their_frame_split(tmp_path):
    """import_images on two small real sets: every tile's split is its frame's, every set is
    in every split, and no test tile's frame is in train."""
    from semlab.data.datasets import import_images
    from semlab.io import read_manifest

    if "split_by" not in import_images.__code__.co_varnames:
        pytest.fail("import_images has no split_by='frame' path yet (see semlab.data.samples.import_splits)")
    root = _copy_sets(tmp_path / "real", ["cdsem-lines", "cdsem-contacts"])
    out = import_images(root, tmp_path / "ds", tile=256, progress=False)
    rows = [r for r in read_manifest(out / "manifest.csv") if (r.get("status") or "ok") == "ok"]
    by_frame: dict[str, set] = {}
    for r in rows:
        by_frame.setdefault(r["group"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_frame.values())
    train = {g for g, s in by_frame.items() if s == {"train"}}
    test = {g for g, s in by_frame.items() if s == {"test"}}
    assert train and test and not train & test
    for name in ("cdsem-lines", "cdsem-contacts"):
        splits = {next(iter(s)) for g, s in by_frame.items() if g.startswith(name)}
        assert splits == {"train", "val", "test"}, name
    ids, _ = unique_ids(sources.list_images(root), root)
    for f, g in ids.items():  # the packaged frames keep their stored split
        assert by_frame[g] == {S.stored_split(f.parent.name)[f.name]}, f


# --------------------------------------------------------------------------- data bars


def _shipped_frames():
    out = [(n, p) for n in PACKAGED for p in S.frames(n)]
    real = paths.shared_real_dir()
    if real is not None:
        for entry in {**S.catalogue()["sets"], **S.catalogue()["shared"]}.values():
            folder = real / entry["folder"].replace("-", "_")
            for f in entry["frames"]:
                if (folder / f).is_file():
                    out.append(("shared:" + folder.name, folder / f))
    return out


def _catalogued_row(path: Path):
    for e in {**S.catalogue()["sets"], **S.catalogue()["shared"]}.values():
        if path.name in e["frames"] and _sha(path) == e["sha256"][path.name]:
            return e["databar_row"][path.name]
    raise AssertionError(f"{path} is not catalogued")


@pytest.mark.parametrize("label,path", _shipped_frames(), ids=[f"{lab}/{p.name}" for lab, p in _shipped_frames()])
def test_databar_row_on_every_shipped_frame(label, path):
    img = read_image(path)
    want = _catalogued_row(path)
    row = sources.detect_databar(img)
    cropped, bar = sources.crop_databar(img)
    if want is None:
        assert row is None and bar is None and cropped.shape == img.shape
    else:
        assert row is not None and abs(row - want) <= 2, (path.name, row, want)
        assert cropped.shape[0] == bar == row


def test_catalogue_databar_rows_match_the_data_readme():
    """The rows stored in samples.json are the ones ../shared/data/README.md states."""
    rows = {n: S.info(n)["databar_row"] for n in PACKAGED}
    assert rows["cdsem-contacts"] == {"Ctest1.tif": 676, "Ctest2.tif": 699, "Ctest3.tif": 699, "Ctest4.tif": 699}
    assert set(rows["cdsem-lines"].values()) == {896}
    assert rows["litho-lines"].pop("test_analysis_lines.jpg") is None
    assert set(rows["litho-lines"].values()) == {2048}


# --------------------------------------------------------------------------- non-editable install


def test_package_data_found_from_a_wheel_install(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "semlab", src / "semlab", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / f, src / f)
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "whl"), str(src)], check=True, env=env, capture_output=True)
    wheel = next((tmp_path / "whl").glob("semlab-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, env=env, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import json, semlab.data.samples as S\n"
        "from semlab.io import read_image\n"
        "fr = S.frames('cdsem-lines')\n"
        "print(json.dumps({'module': S.__file__, 'frames': [str(p) for p in fr],\n"
        "  'shapes': [list(read_image(p).shape) for p in fr], 'sets': S.list_sets(),\n"
        "  'contacts': len(S.frames('cdsem-contacts')), 'litho': len(S.frames('litho-lines')),\n"
        "  'real_dir': str(S.real_dir_default())}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SEMLAB_ROOT", "SEMLAB_REAL_SEM", "SEMLAB_DATA")}
    env["PYTHONPATH"] = str(tmp_path / "site")
    res = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    site = str((tmp_path / "site").resolve())
    assert got["module"].startswith(site), got["module"]  # the installed copy, not the checkout
    assert got["real_dir"].startswith(site)
    assert len(got["frames"]) == 3 and all(f.startswith(site) for f in got["frames"])
    assert got["shapes"] == [[960, 1280]] * 3
    assert got["sets"] == sorted(PACKAGED) and got["contacts"] == 4 and got["litho"] == 6
