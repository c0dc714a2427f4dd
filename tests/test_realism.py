"""semlab.realism and `semlab realism`: the one realism protocol."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from semlab import cli
from semlab.io import write_image
from semlab.realism import group_bootstrap, load_side, realism, render_preset_side

FIELDS = {"detector", "balanced_accuracy", "auc", "ci_low", "ci_high", "n_sim", "n_real", "n_frames_real", "tile",
          "pixel_nm", "grouping"}


def _frame(rng, n=128, noise=0.05):
    """A smooth random pattern (thresholded blurred noise, blurred again) plus white noise."""
    f = ndimage.gaussian_filter(rng.normal(size=(n, n)), 4) > 0
    return np.clip(0.3 + 0.3 * ndimage.gaussian_filter(f.astype(float), 1.0) + rng.normal(0, noise, (n, n)), 0, 1)


def _folder(path, seed, n_frames, noise, n=128):
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n_frames):
        write_image(path / f"f{i:02d}.png", _frame(rng, n, noise))
    return path


def test_trivially_separable_sides_score_about_one(tmp_path):
    sim = _folder(tmp_path / "sim", 1, 6, noise=0.01)
    real = _folder(tmp_path / "real", 2, 6, noise=0.12)
    res = realism(sim, real, tile=32, epochs=3, power=str(sim), n_boot=300)
    assert res["grouping"] == "frame"  # 6 real frames
    for r in res["records"]:
        assert FIELDS <= set(r)
        assert r["balanced_accuracy"] >= 0.95, r
        assert r["ci_low"] <= r["balanced_accuracy"] <= r["ci_high"]
        assert r["auc"] >= 0.97
        assert r["n_sim"] == r["n_real"] == 96 and r["n_frames_real"] == 6 and r["tile"] == 32
        assert r["power"]["ok"] and r["power"]["balanced_accuracy"] == r["balanced_accuracy"]
        assert r["floor"] is not None


def test_two_halves_of_one_distribution_score_about_a_half(tmp_path):
    sim = _folder(tmp_path / "a", 3, 6, noise=0.05)
    real = _folder(tmp_path / "b", 4, 6, noise=0.05)
    res = realism(sim, real, tile=32, epochs=3, power=None, n_boot=500)
    for r in res["records"]:
        assert r["ci_low"] <= 0.5 <= r["ci_high"], r
        assert abs(r["balanced_accuracy"] - 0.5) < 0.15, r
        assert r["power"] is None
        f = r["floor"]  # 3 frames against 3: near chance, its CI over so few groups is narrow
        assert abs(f["balanced_accuracy"] - 0.5) < 0.15, f
    assert any("power control not run" in n for n in res["notes"])


def test_grouping_by_blocks_below_five_real_frames(tmp_path):
    sim = _folder(tmp_path / "sim", 5, 3, noise=0.01)
    real = _folder(tmp_path / "real", 6, 3, noise=0.1)
    res = realism(sim, real, tile=32, detectors=("stats",), power=None, n_boot=200)
    assert res["grouping"] == "block2x2"
    assert any("spatial blocks of 2x2 tiles" in n for n in res["notes"])
    side = load_side(real, tile=32, name="real")
    g = side.groups("block2x2")
    assert len(np.unique(g)) == 3 * 4  # 4x4 tiles per frame -> 2x2 blocks of 2x2 tiles
    assert len(np.unique(side.groups("frame"))) == 3
    one = load_side(real / "f00.png", tile=32, name="real")  # one frame: the floor splits it left/right
    assert one.n_frames == 1


def test_cli_json_fields_and_table(tmp_path, capsys):
    sim = _folder(tmp_path / "sim", 7, 5, noise=0.01)
    real = _folder(tmp_path / "real", 8, 5, noise=0.1)
    out = tmp_path / "res.json"
    rc = cli.main(["realism", "--sim", str(sim), "--real", str(real), "--tile", "32", "--detectors", "stats,spectrum",
                   "--power", "none", "--json", "--out", str(out)])
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert [r["detector"] for r in lines] == ["stats", "spectrum"]
    for r in lines:
        assert FIELDS <= set(r) and r["grouping"] == "frame" and r["pixel_nm"] is None
    saved = json.loads(out.read_text())
    assert [r["detector"] for r in saved["records"]] == ["stats", "spectrum"]
    rc = cli.main(["realism", "--sim", str(sim), "--real", str(real), "--tile", "32", "--detectors", "stats",
                   "--power", "none", "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| stats |" in text and "grouping: frame" in text


def test_bad_input_gives_one_line_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    real = _folder(tmp_path / "real", 9, 5, noise=0.1)
    small = _folder(tmp_path / "small", 10, 3, noise=0.1, n=24)
    for sim, want in ((empty, "no images"), (small, "smaller than one 32-px tile"),
                      (tmp_path / "missing", "not found")):
        rc = cli.main(["realism", "--sim", str(sim), "--real", str(real), "--tile", "32", "--detectors", "stats"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and want in err and len(err.splitlines()) == 1, err
    rc = cli.main(["realism", "--sim", str(real), "--real", str(real), "--tile", "32", "--detectors", "nope"])
    assert rc == 2 and "unknown detector" in capsys.readouterr().err


def test_scale_matching_resamples_a_dataset_to_the_real_pixel_size(tmp_path):
    from semlab.data.datasets import simulate_dataset

    ds = simulate_dataset(tmp_path / "sim", preset="line-space", n=3, size=64, pixel_nm=2.0, progress=False)
    side = load_side(ds, tile=32, name="sim", pixel_nm=1.0)
    assert side.pixel_nm == 1.0 and side.preset == "line-space"
    assert set(side.frame_shapes.values()) == {(128, 128)}
    assert side.n == 3 * 16
    assert any("resampled from 2 nm to 1 nm" in n for n in side.notes)


def test_preset_side_is_rendered_at_the_real_pixel_size(tmp_path):
    real = load_side(_folder(tmp_path / "real", 11, 2, noise=0.1, n=96), tile=32, name="real")
    assert real.pixel_nm is None  # PNGs: unknown
    real.pixel_nm = 1.5
    side = render_preset_side("contacts", like=real, tile=32, seed=0)
    assert side.pixel_nm == 1.5 and side.n >= real.n and side.n_frames >= real.n_frames
    assert side.tiles.shape[1:] == (32, 32) and side.source == "preset:contacts"
    with pytest.raises(KeyError, match="unknown preset"):
        render_preset_side("nope", like=real, tile=32)


def test_group_bootstrap_resamples_groups():
    y = np.array([0] * 40 + [1] * 40)
    s = np.where(y == 1, 1.0, -1.0)
    g = np.repeat(np.arange(8), 10)
    m = group_bootstrap(y, s, g, n_boot=200)
    assert m["balanced_accuracy"] == (1.0, 1.0, 1.0) and m["auc"][0] == 1.0
    s2 = s.copy()
    s2[:10] = 1.0  # one whole real group misclassified: the CI is wide (groups, not tiles)
    ba, lo, hi = m2 = group_bootstrap(y, s2, g, n_boot=500)["balanced_accuracy"]
    assert ba == pytest.approx(0.875) and lo <= 0.76 and hi == 1.0, m2


def test_compare_presets_ranks_the_generating_preset_first_and_reads_preset_files(tmp_path):
    """Real side: frames of the line-space preset. Rendered again (other seeds), line-space
    is hard to separate; contacts are trivially separable; a preset file of line-space
    reads like line-space; the floor row is there."""
    from semlab.data.simulate import simulate
    from semlab.realism import compare_markdown, compare_presets

    real = tmp_path / "real"
    real.mkdir()
    for i in range(6):
        write_image(real / f"f{i}.png", simulate("line-space", 128, seed=100 + i).image)  # its own field of view
    res = compare_presets(real, {"same": "line-space", "other": "contacts"}, tile=64, real_split=None, n_boot=200,
                          n_splits=3)
    rows = {r["label"]: r for r in res["rows"]}
    assert rows["other"]["stats"]["balanced_accuracy"] >= 0.9
    assert rows["same"]["stats"]["balanced_accuracy"] < rows["other"]["stats"]["balanced_accuracy"] - 0.2
    assert "real vs real (floor)" in rows and res["grouping"] == "frame" and res["n_frames"] == 6
    text = compare_markdown(res)
    assert "| same |" in text and "6 frame(s)" in text and "0.5 is chance" in text
    with pytest.raises(KeyError):
        compare_presets(real, {"bad": "no-such-preset"}, tile=64, real_split=None)
    packaged = Path(__file__).resolve().parents[1] / "semlab" / "data" / "presets" / "cdsem-lines.yaml"
    res = compare_presets(real, {"fitted": packaged}, tile=64, real_split=None, n_boot=100, n_splits=3,
                          detectors=("stats",))
    assert res["rows"][0]["preset"] == "line-space@cdsem-lines" and res["rows"][0]["n_sim"] >= res["n_real"]
