"""Layouts from GDSII (issue 18): exact rasterisation, flattening, holes, contours,
`simulate --gds`, `generate --gds`, bad input. Every GDS file is written by gdstk here."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

gdstk = pytest.importorskip("gdstk")

from semlab import io, labels  # noqa: E402
from semlab import cli  # noqa: E402
from semlab.data import gds  # noqa: E402


def _lib(precision: float = 1e-9):
    return gdstk.Library("TEST", unit=1e-6, precision=precision)


def _write(tmp_path, lib, name="clip.gds"):
    p = tmp_path / name
    lib.write_gds(str(p))
    return p


def _flat(tmp_path, polys, layer=1, name="flat.gds", precision=1e-9):
    lib = _lib(precision)
    c = lib.new_cell("TOP")
    for pts in polys:
        c.add(gdstk.Polygon(pts, layer=layer))
    return _write(tmp_path, lib, name)


def _run(capsys, argv):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _ref_coverage(pts, shape):
    """Independent reference: each pixel's area of the polygon by clipping the polygon
    against that pixel square (gdstk boolean, one pixel at a time)."""
    h, w = shape
    poly = gdstk.Polygon(pts)
    out = np.zeros(shape)
    for r in range(h):
        for c in range(w):
            sq = gdstk.rectangle((c, r), (c + 1, r + 1))
            out[r, c] = sum(p.area() for p in gdstk.boolean(poly, sq, "and", precision=1e-9))
    return out


# ------------------------------------------------------------------ exact coverage


def test_coverage_is_the_exact_area_per_pixel():
    rng = np.random.default_rng(3)
    ang = np.sort(rng.uniform(0, 2 * np.pi, 7))
    rad = rng.uniform(2.5, 4.5, 7)
    star = np.column_stack([6.3 + rad * np.cos(ang), 5.1 + rad * np.sin(ang)])
    for pts in (star, star[::-1], np.array([[1.3, 0.2], [10.7, 2.9], [4.1, 9.6]])):
        got = gds.polygon_coverage([pts], (11, 13))
        np.testing.assert_allclose(got, _ref_coverage(pts, (11, 13)), atol=2e-6)
    # a rectangle: coverage is the product of the overlaps along x and y (analytic)
    x0, y0, x1, y1 = 1.25, 0.6, 4.5, 3.2
    rect = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    ox = np.clip(np.minimum(np.arange(6) + 1, x1) - np.maximum(np.arange(6), x0), 0, 1)
    oy = np.clip(np.minimum(np.arange(5) + 1, y1) - np.maximum(np.arange(5), y0), 0, 1)
    np.testing.assert_allclose(gds.polygon_coverage([rect], (5, 6)), np.outer(oy, ox), atol=1e-6)


def test_a_keyhole_polygon_covers_its_outline_minus_its_hole():
    outer = gdstk.rectangle((0.5, 0.5), (9.5, 7.5))
    hole = gdstk.rectangle((3.25, 2.75), (6.5, 5.0))
    (key,) = gdstk.boolean(outer, hole, "not", precision=1e-9)
    cov = gds.polygon_coverage([key.points], (8, 10))
    want = gds.polygon_coverage([outer.points], (8, 10)) - gds.polygon_coverage([hole.points], (8, 10))
    np.testing.assert_allclose(cov, want, atol=1e-6)
    rings = gds.boundary_rings([key])  # the cut cancels: the outline and the hole
    assert sorted(round(abs(gdstk.Polygon(r[:-1]).area()), 6) for r in rings) == [7.3125, 63.0]


# ------------------------------------------------------------------ must show


def test_rasterised_area_equals_polygon_area_within_half_a_pixel_times_the_perimeter(tmp_path):
    rot = np.array([[math.cos(0.4), -math.sin(0.4)], [math.sin(0.4), math.cos(0.4)]])
    polys = [
        np.array([[0, 0], [0.31, 0], [0.31, 0.07], [0, 0.07]]) @ rot.T + [0.12, 0.05],  # rotated bar
        np.array([[0.05, 0.4], [0.45, 0.4], [0.45, 0.47], [0.12, 0.47], [0.12, 0.7], [0.05, 0.7]]),  # L
        np.array([[0.55, 0.1], [0.9, 0.33], [0.6, 0.62]]),  # triangle
    ]
    path = _flat(tmp_path, polys)
    px = 3.7
    clip = gds.plan_clip(path, pixel_nm=px, window="0,0,1,0.8")
    ras = clip.rasterize()
    stored = gdstk.read_gds(str(path), unit=1e-6).cells[0].polygons  # on the file's 1 nm grid
    area_px = sum(p.area() for p in stored) * (1000 / px) ** 2
    perim_px = sum(p.perimeter() for p in stored) * 1000 / px
    assert area_px == pytest.approx(sum(gdstk.Polygon(p).area() for p in polys) * (1000 / px) ** 2, rel=1e-3)
    n = int((ras.mask == labels.PATTERN).sum())
    assert abs(n - area_px) <= 0.5 * perim_px
    assert ras.coverage["pattern"].sum() == pytest.approx(area_px, rel=1e-6)  # exact coverage
    assert clip.shape == (math.ceil(800 / px), math.ceil(1000 / px))


def test_contours_of_the_rendered_noise_free_image_sit_on_the_polygon_edges(tmp_path):
    from semlab.contours.classical import calibrate_edge_offset, extract_classical_contours
    from semlab.contours.metrics import edge_placement_error
    from semlab.data.simulate import render_mask, simulate

    lib = _lib()
    c = lib.new_cell("TOP")
    for k in range(5):  # vertical lines, edges at sub-pixel positions
        c.add(gdstk.rectangle((0.0453 + 0.0917 * k, -0.05), (0.0921 + 0.0917 * k, 0.6), layer=1))
    path = _write(tmp_path, lib)
    clip = gds.plan_clip(path, pixel_nm=2.0, window="0,0,0.5,0.5")
    ras = clip.rasterize()
    c0 = ras.contours[0]
    assert c0.dtype == np.float32 and c0.shape[1] == 2 and np.array_equal(c0[0], c0[-1])  # the simulator's format
    for seed in (0, 1, 2):
        # the extractor's edge offset (rims, blur) calibrated on a procedural image of the same
        # imaging parameters (same preset and seed), as on a real tool; then the clip's edges
        sim = simulate("line-space", 256, seed, pixel_nm=clip.pixel_nm, ler_sigma_nm=0.0)
        settings, _ = calibrate_edge_offset([(sim.clean, sim.contours)])
        r = render_mask(ras.mask, "line-space", seed, pixel_nm=clip.pixel_nm)
        err = edge_placement_error(extract_classical_contours(r.clean, settings).contours, ras.contours,
                                   shape=ras.mask.shape)
        assert len(err.epe) > 500
        assert np.abs(err.epe).mean() < 0.5, seed


def test_rotated_reference_and_array_place_the_same_pixels_as_flat_polygons(tmp_path):
    unit = np.array([[0.0, 0.0], [0.12, 0.0], [0.12, 0.03], [0.05, 0.08], [0.0, 0.03]])
    th, org = 0.61, np.array([0.31, 0.22])
    lib = _lib()
    u = lib.new_cell("UNIT")
    u.add(gdstk.Polygon(unit, layer=1))
    w = lib.new_cell("WIRE")
    w.add(gdstk.FlexPath([(0, 0), (0.2, 0)], 0.03, layer=1))
    top = lib.new_cell("TOP")
    top.add(gdstk.Reference(u, tuple(org), rotation=th))
    top.add(gdstk.Reference(u, (0.45, 0.05), columns=3, rows=2, spacing=(0.15, 0.12)))
    top.add(gdstk.Reference(w, (0.05, 0.5)))
    hier = _write(tmp_path, lib, "hier.gds")
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    flat = [unit @ rot.T + org] + [unit + [0.45 + 0.15 * i, 0.05 + 0.12 * j] for i in range(3) for j in range(2)]
    flat.append(np.array([[0.05, 0.485], [0.25, 0.485], [0.25, 0.515], [0.05, 0.515]]))  # the path at its width
    flat_path = _flat(tmp_path, flat, precision=1e-12)  # rotated points: stored to 1 pm, not rounded to 1 nm
    kw = {"pixel_nm": 2.5, "window": "0,0,0.8,0.6"}
    a, b = gds.plan_clip(hier, cell="TOP", **kw).rasterize(), gds.plan_clip(flat_path, **kw).rasterize()
    assert (a.mask == labels.PATTERN).sum() > 1000
    assert np.array_equal(a.mask, b.mask)
    np.testing.assert_allclose(a.coverage["pattern"], b.coverage["pattern"], atol=1e-5)


def test_a_hole_inside_a_pattern_is_class_hole_and_outside_it_background(tmp_path):
    lib = _lib()
    c = lib.new_cell("TOP")
    c.add(gdstk.rectangle((0, 0), (0.4, 0.4), layer=1))
    c.add(gdstk.rectangle((0.1, 0.1), (0.2, 0.25), layer=2))  # inside the pattern
    c.add(gdstk.rectangle((0.5, 0.1), (0.6, 0.2), layer=2))  # outside it
    path = _write(tmp_path, lib)
    with pytest.warns(io.SemlabWarning, match="outside the pattern"):
        clip = gds.plan_clip(path, pixel_nm=5.0)
    ras = clip.rasterize()
    assert (ras.mask == labels.HOLE).sum() == 20 * 30
    assert (ras.mask == labels.PATTERN).sum() == 80 * 80 - 20 * 30
    assert ras.mask[:, 100:].max() == labels.BACKGROUND  # the stray hole is background
    assert len(ras.contours) == 2  # the pattern's outline and its hole


def test_generate_gds_gives_the_images_of_generate_masks_on_the_same_mask(tmp_path, capsys, tiny_generator):
    path = gds.demo_clip(tmp_path, "demo.gds")
    g = tiny_generator(tmp_path / "g.pt", 0)
    argv = ["generate", "--checkpoint", str(g), "--quiet", "--seed", "3"]
    code, text, err = _run(capsys, argv + ["--gds", str(path), "--pixel-nm", "8", "--window", "0,0,1.024,1.024",
                                           "--tile", "64", "--out", str(tmp_path / "o")])
    assert code == 0, err
    assert "4 generated, 0 kept" in text
    code, text, err = _run(capsys, argv + ["--masks", str(tmp_path / "o" / "masks"), "--out", str(tmp_path / "o2")])
    assert code == 0, err
    meta = json.loads((tmp_path / "o" / "dataset.json").read_text())
    assert meta["layers"] == "1/0=pattern,2/0=hole" and len(meta["gds"]["tiles"]) == 4
    for t in meta["gds"]["tiles"]:
        a = io.read_image(tmp_path / "o" / "images" / f"{t['id']}.png")
        assert np.array_equal(a, io.read_image(tmp_path / "o2" / f"{t['id']}.png"))
    # a re-run keeps everything
    code, text, _ = _run(capsys, argv + ["--gds", str(path), "--pixel-nm", "8", "--window", "0,0,1.024,1.024",
                                         "--tile", "64", "--out", str(tmp_path / "o")])
    assert code == 0 and "0 generated, 4 kept" in text


# ------------------------------------------------------------------ simulate --gds, tiles


def test_simulate_gds_writes_tiles_that_stitch_back_and_records_the_map(tmp_path, capsys):
    path = gds.demo_clip(tmp_path, "demo.gds")
    out = tmp_path / "ds"
    code, text, err = _run(capsys, ["simulate", "--gds", str(path), "--pixel-nm", "10", "--tile", "48",
                                    "--layers", "2/0=hole, 1/0=pattern", "--out", str(out), "--quiet"])
    assert code == 0, err
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["layers"] == "1/0=pattern,2/0=hole" and meta["kind"] == "simulated-gds"
    assert {c["name"] for c in meta["classes"]} == {"background", "pattern", "hole"}
    clip = gds.plan_clip(path, pixel_nm=10.0)
    whole = clip.rasterize()
    tiles = meta["gds"]["tiles"]
    assert len(tiles) == 4 and meta["gds"]["shape_px"] == [96, 96]
    masks = {t["id"]: io.read_mask(out / "masks" / f"{t['id']}.png") for t in tiles}
    tiled = gds.plan_clip(path, pixel_nm=10.0, tile=48)
    stitched = tiled.stitch(masks)
    h, w = whole.mask.shape
    assert np.array_equal(stitched[:h, :w], whole.mask) and not stitched[h:, :].any()
    doc = json.loads((out / "contours" / f"{tiles[0]['id']}.json").read_text())
    assert doc["units"] == "px" and doc["order"] == "row,col" and doc["contours"]
    code, text, _ = _run(capsys, ["simulate", "--gds", str(path), "--pixel-nm", "10", "--tile", "48",
                                  "--out", str(out), "--quiet"])
    assert code == 0  # same clip: resumed


# ------------------------------------------------------------------ bad input


@pytest.fixture
def clip_file(tmp_path):
    lib = _lib()
    c = lib.new_cell("TOP")
    c.add(gdstk.rectangle((0, 0), (0.3, 0.2), layer=1))
    c.add(gdstk.rectangle((0.05, 0.05), (0.1, 0.1), layer=7, datatype=3))
    lib.new_cell("OTHER").add(gdstk.rectangle((0, 0), (0.1, 0.1), layer=1))
    return _write(tmp_path, lib)


BAD = [
    ("notgds", [], "not a GDSII file"),
    ("truncated", [], "not a valid GDSII file"),
    ("file", [], "2 top cells (OTHER, TOP); choose one with --cell"),
    ("file", ["--cell", "NOPE"], "no cell 'NOPE'; cells: OTHER, TOP"),
    ("file", ["--cell", "TOP", "--window", "5,5,6,6"], "lies outside the layout of cell TOP"),
    ("file", ["--cell", "TOP", "--window", "1,1,0,2"], "--window '1,1,0,2': expected x0,y0,x1,y1"),
    ("file", ["--cell", "TOP", "--layers", "9/0=pattern"], "no polygons on the mapped layers (9/0); layers found: 1/0, 7/3"),
    ("file", ["--cell", "TOP", "--layers", "1/0=metal"], "unknown class 'metal'"),
    ("file", ["--cell", "TOP", "--layers", "1=pattern"], "'1=pattern' is not LAYER/DATATYPE=CLASS"),
    ("file", ["--cell", "TOP", "--pixel-nm", "0.01"], "over the limit of 1.0 Mpx"),
    ("file", ["--cell", "TOP", "NO-PIXEL"], "--pixel-nm is required with --gds"),
]


@pytest.mark.parametrize("which,extra,message", BAD)
def test_bad_input_gets_one_line_naming_the_problem_and_writes_nothing(tmp_path, capsys, monkeypatch, clip_file,
                                                                       which, extra, message):
    monkeypatch.setenv("SEMLAB_MAX_IMAGE_PIXELS", "1000000")
    path = clip_file
    if which == "notgds":
        path = tmp_path / "layout.gds"
        path.write_text("this is not a layout\n")
    elif which == "truncated":
        path = tmp_path / "cut.gds"
        path.write_bytes(clip_file.read_bytes()[:60])
    pixel = [] if "--pixel-nm" in extra or "NO-PIXEL" in extra else ["--pixel-nm", "5"]
    args = ["--gds", str(path), *pixel, *[e for e in extra if e != "NO-PIXEL"]]
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, _, err = _run(capsys, ["simulate", *args, "--out", str(out), "--quiet"])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    if which in ("notgds", "truncated", "file") and "--layers" not in extra and "--window" not in extra:
        assert str(path) in err or "--pixel-nm" in err
    assert not out.exists()


def test_layers_not_in_the_map_are_ignored_with_a_warning_listing_them(clip_file):
    with pytest.warns(io.SemlabWarning, match=r"layers 7/3 of cell TOP are not in the layer map .*layers found: 1/0, 7/3"):
        clip = gds.plan_clip(clip_file, cell="TOP", pixel_nm=5.0)
    assert (clip.rasterize().mask == labels.PATTERN).sum() == 60 * 40


@pytest.mark.parametrize("argv,message", [
    (["generate", "--checkpoint", "g.pt", "--out", "o"], "exactly one of --masks FOLDER and --gds FILE"),
    (["generate", "--checkpoint", "g.pt", "--masks", "m", "--gds", "f.gds", "--out", "o"], "exactly one of"),
    (["generate", "--checkpoint", "g.pt", "--masks", "m", "--tile", "64", "--out", "o"], "--tile apply only with --gds"),
    (["simulate", "--cell", "TOP", "--out", "o"], "--cell apply only with --gds"),
])
def test_cli_refuses_mixed_sources(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, argv)
    assert code == 2 and message in err
    assert not (tmp_path / "o").exists()


def test_simulate_gds_refuses_n_and_size(tmp_path, capsys, clip_file):
    code, _, err = _run(capsys, ["simulate", "--gds", str(clip_file), "--cell", "TOP", "--pixel-nm", "5", "--n", "3",
                                 "--out", str(tmp_path / "o")])
    assert code == 2 and "--n and --size do not apply with --gds" in err


def test_generate_gds_needs_square_power_of_two_tiles(tmp_path, capsys, clip_file, tiny_generator):
    g = tiny_generator(tmp_path / "g.pt", 0)
    with pytest.warns(io.SemlabWarning, match="layers 7/3"):
        code, _, err = _run(capsys, ["generate", "--checkpoint", str(g), "--gds", str(clip_file), "--cell", "TOP",
                                     "--pixel-nm", "5", "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2 and "power-of-two tiles: pass --tile 256" in err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ bench, figure


def test_bench_gds_times_rasterising_and_the_simulator_in_one_run():
    from semlab import bench

    (rec,) = bench.run("gds", window_um=0.5, pixel_nm=4.0, tile=64)
    assert rec["name"] == "gds" and rec["n_tiles"] == 4 and rec["megapixels"] == round(128 * 128 / 1e6, 2)
    assert rec["rasterize_s"] > 0 and rec["simulate_s"] > 0
    assert rec["ratio"] == pytest.approx(rec["rasterize_s"] / rec["simulate_s"], rel=2e-3)


def test_gds_render_figure_shows_a_missing_generator_with_its_reason(tmp_path):
    from matplotlib.figure import Figure

    from semlab.runs import Missing
    from semlab.viz.gds import gds_render_figure

    clip = gds.plan_clip(gds.demo_clip(tmp_path), pixel_nm=16.0)
    ras = clip.rasterize()
    why = Missing("no trained pix2pix generator: run notebook 20")
    assert gds.render_with_generator(why, ras.mask) is why
    fig = gds_render_figure(ras.mask, ras.contours, {"simulator": np.zeros(ras.mask.shape), "Pix2Pix": why})
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert any("run notebook 20" in t.get_text().replace("\n", " ") for t in fig.axes[2].texts)


def test_render_with_generator_runs_a_found_generator_on_the_clip(tmp_path, tiny_generator):
    from semlab.train.generate import Generator

    clip = gds.plan_clip(gds.demo_clip(tmp_path), pixel_nm=8.0, window="0,0,1.024,1.024")
    ras = clip.rasterize()
    g = tiny_generator(tmp_path / "g.pt", 0)
    img = gds.render_with_generator(g, ras.mask, seed=2)
    assert img.shape == (128, 128) and np.array_equal(img, Generator(g)(ras.mask, seed=2))


def test_overlapping_polygons_merge_and_paths_keep_their_width(tmp_path):
    lib = _lib()
    c = lib.new_cell("TOP")
    c.add(gdstk.rectangle((0, 0), (0.2, 0.1), layer=1), gdstk.rectangle((0.1, 0.05), (0.3, 0.15), layer=1))
    c.add(gdstk.FlexPath([(0.0, 0.3), (0.3, 0.3)], 0.04, layer=1))  # flush ends: a 0.3 x 0.04 bar
    clip = gds.plan_clip(_write(tmp_path, lib), pixel_nm=5.0, window="0,0,0.3,0.4")
    cov = clip.rasterize().coverage["pattern"]
    assert cov.max() <= 1.0 and cov.sum() * 25e-6 == pytest.approx(0.02 + 0.02 - 0.005 + 0.012, rel=1e-6)


def test_generate_gds_refuses_another_clip_in_its_folder_unless_overwrite(tmp_path, capsys, tiny_generator):
    path = gds.demo_clip(tmp_path, "demo.gds")
    g = tiny_generator(tmp_path / "g.pt", 0)
    argv = ["generate", "--checkpoint", str(g), "--quiet", "--gds", str(path), "--pixel-nm", "8", "--tile", "64",
            "--out", str(tmp_path / "o")]
    assert _run(capsys, argv + ["--window", "0,0,1.024,1.024"])[0] == 0
    before = sorted(p.name for p in (tmp_path / "o" / "images").iterdir())
    code, _, err = _run(capsys, argv + ["--window", "0,0,0.512,0.512"])
    assert code == 2 and "holds the rendering of another layout clip" in err
    assert sorted(p.name for p in (tmp_path / "o" / "images").iterdir()) == before
    code, text, err = _run(capsys, argv + ["--window", "0,0,0.512,0.512", "--overwrite"])
    assert code == 0 and "1 generated" in text
    assert sorted(p.name for p in (tmp_path / "o" / "masks").iterdir()) == ["r000000_c000000.png"]
    assert sorted(p.name for p in (tmp_path / "o" / "images").iterdir()) == ["generate.json", "r000000_c000000.png"]
