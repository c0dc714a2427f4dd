"""Tests for semlab.painter: MaskDocument geometry/history/files and the MaskPainter widget
(driven headlessly by calling its event handlers)."""

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.draw import polygon2mask

from semlab import io as sio
from semlab.labels import CLASSES, MaskError, colorize, palette_bytes
from semlab.painter import MaskDocument, resolve_label

H, W = 48, 64


def _disk(r: int) -> np.ndarray:
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r


def _band_reference(shape, row: int, col0: int, col1: int, r: int) -> np.ndarray:
    """Pixels (row, col0..col1) dilated by a disk of radius r (scipy, independent of painter)."""
    line = np.zeros(shape, dtype=bool)
    line[row, col0 : col1 + 1] = True
    return ndimage.binary_dilation(line, structure=_disk(r)) if r > 0 else line


# ------------------------------------------------------------------ labels


def test_resolve_label_ids_and_names():
    assert [resolve_label(c.id) for c in CLASSES] == [0, 1, 2, 3]
    assert resolve_label("pattern") == 1 and resolve_label(" Hole ") == 2
    assert resolve_label(np.uint8(3)) == 3
    for bad in (7, -1, "metal", 1.5, True, None):
        with pytest.raises(ValueError, match="background"):
            resolve_label(bad)


def test_unknown_label_is_refused_and_leaves_mask_untouched():
    doc = MaskDocument(shape=(H, W))
    with pytest.raises(ValueError, match="unknown label id 7"):
        doc.rect(0, 0, 10, 10, 7)
    with pytest.raises(ValueError, match="'metal'"):
        doc.stroke([(5, 5)], 2, "metal")
    assert not doc.mask.any() and not doc.can_undo
    doc.rect(0, 0, 10, 10, "defect")
    assert (doc.mask[:10, :10] == 3).all()


def test_mask_is_a_read_only_view_and_input_is_validated():
    doc = MaskDocument(np.eye(8, dtype=np.int64) * 2)
    assert doc.mask.dtype == np.uint8 and doc.shape == (8, 8)
    with pytest.raises(ValueError):
        doc.mask[0, 0] = 1
    with pytest.raises(MaskError, match="9"):
        MaskDocument(np.full((4, 4), 9))
    with pytest.raises(MaskError):
        MaskDocument(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError):
        MaskDocument(shape=(0, 5))
    with pytest.raises(ValueError):
        MaskDocument(grid=0)


# ------------------------------------------------------------------ geometry


@pytest.mark.parametrize(
    "corners",
    [(2, 3, 10, 20), (10, 20, 2, 3), (10, 3, 2, 20), (2.3, 3.7, 9.2, 19.5), (9.2, 19.5, 2.3, 3.7)],
)
def test_rect_pixel_count_closed_form(corners):
    doc = MaskDocument(shape=(H, W))
    n = doc.rect(*corners, "pattern")
    r0, c0, r1, c1 = corners
    rows = int(np.ceil(max(r0, r1)) - np.floor(min(r0, r1)))
    cols = int(np.ceil(max(c0, c1)) - np.floor(min(c0, c1)))
    assert n == rows * cols == 8 * 17
    ref = np.zeros((H, W), np.uint8)
    ref[2:10, 3:20] = 1
    np.testing.assert_array_equal(doc.mask, ref)


def test_rect_is_clipped_and_degenerate_rect_is_empty():
    doc = MaskDocument(shape=(H, W))
    assert doc.rect(-5, -7, 4, 500, 2) == 4 * W
    assert (doc.mask[:4] == 2).all() and not doc.mask[4:].any()
    assert doc.rect(20, 5, 20, 30, 1) == 0  # zero area on a pixel border
    assert doc.rect(100, 100, 120, 130, 1) == 0  # outside
    assert doc.history == ["rect hole"]


def test_polygon_matches_skimage_polygon2mask():
    rng = np.random.default_rng(3)
    doc = MaskDocument(shape=(H, W))
    for label in (1, 2, 3, 1):
        pts = np.column_stack([rng.uniform(-3, H + 3, 6), rng.uniform(-3, W + 3, 6)])
        doc.clear()
        doc.polygon(pts, label)
        # pixel (i, j) has its centre at (i + 0.5, j + 0.5); skimage puts it at (i, j)
        ref = polygon2mask((H, W), pts - 0.5)
        np.testing.assert_array_equal(doc.mask == label, ref)


def test_grid_aligned_polygon_covers_whole_blocks():
    doc = MaskDocument(shape=(H, W))
    n = doc.polygon([(8, 8), (8, 24), (32, 24), (32, 8)], "pattern")
    assert n == 24 * 16
    assert (doc.mask[8:32, 8:24] == 1).all() and doc.mask.sum() == n
    with pytest.raises(ValueError, match="at least 3"):
        doc.polygon([(0, 0), (5, 5)], 1)


@pytest.mark.parametrize("r", [0, 1, 2, 3, 5])
def test_horizontal_brush_stroke_is_a_disk_dilated_line(r):
    doc = MaskDocument(shape=(H, W))
    doc.stroke([(20.5, 10.5), (20.5, 40.5)], radius=r, label="pattern")
    np.testing.assert_array_equal(doc.mask == 1, _band_reference((H, W), 20, 10, 40, r))


def test_brush_polyline_dot_and_eraser():
    doc = MaskDocument(shape=(H, W))
    # an L-shaped polyline = union of the two dilated segments
    doc.stroke([(10.5, 5.5), (10.5, 30.5), (40.5, 30.5)], 2, "hole")
    ref = _band_reference((H, W), 10, 5, 30, 2)
    vert = np.zeros((H, W), bool)
    vert[10:41, 30] = True
    ref |= ndimage.binary_dilation(vert, structure=_disk(2))
    np.testing.assert_array_equal(doc.mask == 2, ref)
    # a single point is a dot (disk), clipped at the border
    doc.clear()
    doc.stroke([(0.5, 0.5)], 3, 1)
    ref = np.zeros((H, W), bool)
    ref[0, 0] = True
    np.testing.assert_array_equal(doc.mask == 1, ndimage.binary_dilation(ref, structure=_disk(3)))
    # the eraser paints background
    doc.clear("pattern")
    doc.erase([(20.5, 10.5), (20.5, 40.5)], 3)
    np.testing.assert_array_equal(doc.mask == 0, _band_reference((H, W), 20, 10, 40, 3))
    with pytest.raises(ValueError):
        doc.stroke([(1, 1)], -1, 1)
    with pytest.raises(ValueError):
        doc.stroke([(np.nan, 1)], 1, 1)


def test_snapping_to_grid_8():
    doc = MaskDocument(shape=(64, 100), grid=8)
    assert doc.snap((13, 21)) == (16.0, 24.0)
    assert doc.snap((3.9, 4.1)) == (0.0, 8.0)
    assert doc.snap((-2, 11.9)) == (0.0, 8.0)
    assert doc.snap((63.5, 99)) == (64.0, 100.0)  # the image border is a snap target too
    for r, c in np.random.default_rng(0).uniform(0, 60, (50, 2)):
        sr, sc = doc.snap((r, c))
        assert sr % 8 == 0 and sc % 8 == 0 and abs(sr - r) <= 4 and abs(sc - c) <= 4
    # shapes: vertices move to multiples of 8, so whole 8 x 8 blocks are painted
    doc.rect(3, 5, 13, 21, "pattern")
    ref = np.zeros((64, 100), np.uint8)
    ref[0:16, 8:24] = 1
    np.testing.assert_array_equal(doc.mask, ref)
    doc.clear()
    doc.polygon([(7, 7), (9, 30), (33, 31), (31, 6)], "pattern")
    ref[:] = 0
    ref[8:32, 8:32] = 1
    np.testing.assert_array_equal(doc.mask, ref)
    doc.grid = 1
    assert doc.snap((13.3, 21.7)) == (13.3, 21.7)


def test_flood_fill_is_4_connected():
    m = np.zeros((10, 10), np.uint8)
    m[0:5, 0:5] = 1
    m[5:10, 5:10] = 1  # touches the first square only diagonally
    doc = MaskDocument(m)
    n = doc.fill(1.5, 1.5, "defect")
    assert n == 25
    assert (doc.mask[0:5, 0:5] == 3).all() and (doc.mask[5:, 5:] == 1).all()
    assert doc.fill(1.5, 1.5, 3) == 0  # already that class: no step
    assert doc.history == ["fill defect"]
    with pytest.raises(ValueError, match="outside"):
        doc.fill(10.5, 0, 1)


# ------------------------------------------------------------------ history


def test_undo_redo_sequence():
    doc = MaskDocument(shape=(H, W))
    states = [doc.mask.copy()]
    doc.rect(0, 0, 10, 10, 1)
    states.append(doc.mask.copy())
    doc.stroke([(20.5, 5.5), (20.5, 50.5)], 3, "hole")
    states.append(doc.mask.copy())
    doc.polygon([(30, 30), (30, 60), (45, 45)], 3)
    states.append(doc.mask.copy())
    assert doc.history == ["rect pattern", "brush hole", "polygon defect"]
    assert doc.undo() == "polygon defect"
    np.testing.assert_array_equal(doc.mask, states[2])
    assert doc.undo() == "brush hole"
    assert doc.undo() == "rect pattern"
    np.testing.assert_array_equal(doc.mask, states[0])
    assert doc.undo() is None and not doc.can_undo
    assert doc.redo() == "rect pattern"
    assert doc.redo() == "brush hole"
    np.testing.assert_array_equal(doc.mask, states[2])
    doc.erase([(0.5, 0.5)], 1)  # a new action drops the redo branch
    assert not doc.can_redo and doc.redo() is None
    doc.undo()
    np.testing.assert_array_equal(doc.mask, states[2])


def test_history_is_bounded_and_no_op_leaves_no_step():
    doc = MaskDocument(shape=(16, 16), max_history=3)
    for i in range(6):
        doc.rect(i, 0, i + 1, 16, 1 + i % 3)
    doc.rect(0, 0, 1, 16, 1)  # already pattern: no step
    assert len(doc.history) == 3
    while doc.undo():
        pass
    assert (doc.mask[:3] != 0).all() and not doc.mask[3:].any()


def test_transaction_groups_and_rolls_back():
    doc = MaskDocument(shape=(H, W))
    with doc.transaction("strokes"):
        doc.stroke([(5.5, 5.5), (5.5, 20.5)], 1, 1)
        doc.stroke([(15.5, 5.5), (15.5, 20.5)], 1, 2)
    assert doc.history == ["strokes"]
    before = doc.mask.copy()
    with pytest.raises(RuntimeError):
        with doc.transaction("broken"):
            doc.clear(3)
            raise RuntimeError("boom")
    np.testing.assert_array_equal(doc.mask, before)
    assert doc.history == ["strokes"]
    doc.begin("drag")
    doc.stroke([(30.5, 30.5)], 2, 3)
    assert doc.can_undo
    doc.undo()  # commits the open step, then undoes it
    np.testing.assert_array_equal(doc.mask, before)


def test_new_clear_and_set_mask_are_undoable():
    doc = MaskDocument(shape=(H, W))
    doc.rect(0, 0, 5, 5, 1)
    doc.new(20, 30)
    assert doc.shape == (20, 30) and not doc.mask.any()
    doc.clear("pattern")
    assert (doc.mask == 1).all()
    doc.set_mask(np.full((7, 9), 2))
    assert doc.shape == (7, 9)
    doc.undo()
    doc.undo()
    assert doc.shape == (20, 30) and not doc.mask.any()
    doc.undo()
    assert doc.shape == (H, W) and doc.mask.sum() == 25


def test_class_counts_and_observer():
    doc = MaskDocument(shape=(10, 10))
    seen = []
    doc.observe(seen.append)
    doc.rect(0, 0, 2, 10, "pattern")
    doc.rect(5, 5, 6, 7, "defect")
    assert doc.class_counts() == {"background": 78, "pattern": 20, "hole": 0, "defect": 2}
    doc.undo()
    assert seen == ["rect pattern", "rect defect", "undo rect defect"]


# ------------------------------------------------------------------ files


def test_save_load_roundtrip_is_an_indexed_png_with_semlab_palette(tmp_path):
    rng = np.random.default_rng(1)
    m = rng.integers(0, 4, (H, W)).astype(np.uint8)
    doc = MaskDocument(m)
    p = doc.save(tmp_path / "sub" / "mask.png")
    assert p.is_file() and doc.path == p
    with Image.open(p) as im:
        assert im.mode == "P"
        assert im.getpalette()[:12] == palette_bytes()[:12]
        np.testing.assert_array_equal(np.asarray(im), m)
    doc2 = MaskDocument(shape=(3, 3))
    doc2.load(p)
    np.testing.assert_array_equal(doc2.mask, m)
    np.testing.assert_array_equal(sio.read_mask(p), m)
    doc2.undo()  # loading is undoable
    assert doc2.shape == (3, 3)


def test_save_refuses_to_overwrite(tmp_path):
    p = tmp_path / "mask.png"
    doc = MaskDocument(shape=(8, 8))
    doc.rect(0, 0, 4, 4, 1)
    doc.save(p)
    data = p.read_bytes()
    doc.clear(2)
    with pytest.raises(FileExistsError, match="mask.png"):
        doc.save(p)
    assert p.read_bytes() == data
    doc.save(p, overwrite=True)
    assert (sio.read_mask(p) == 2).all()
    with pytest.raises(ValueError, match=".png"):
        doc.save(tmp_path / "mask.jpg")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(IsADirectoryError):
        doc.save(tmp_path / "dir.png", overwrite=True)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["dir.png", "mask.png"]


def test_load_accepts_rgb_and_refuses_bad_files(tmp_path):
    m = np.zeros((6, 6), np.uint8)
    m[1:3, 1:5] = 2
    Image.fromarray(colorize(m)).save(tmp_path / "rgb.png")
    doc = MaskDocument(shape=(4, 4))
    doc.load(tmp_path / "rgb.png")
    np.testing.assert_array_equal(doc.mask, m)
    rgb = colorize(m)
    rgb[0, 0] = (0, 255, 0)  # green is no class colour
    Image.fromarray(rgb).save(tmp_path / "green.png")
    with pytest.raises(MaskError, match="0, 255, 0"):
        doc.load(tmp_path / "green.png")
    with pytest.raises(MaskError, match="not found"):
        doc.load(tmp_path / "missing.png")
    np.testing.assert_array_equal(doc.mask, m)  # unchanged after failures


# ------------------------------------------------------------------ widget (headless)


@pytest.fixture
def painter_cls():
    pytest.importorskip("ipywidgets")
    pytest.importorskip("ipycanvas")
    from semlab.painter import MaskPainter

    return MaskPainter


def _check_render(p):
    """The mask layer's pixels equal colorize(mask) with alpha = opacity, zoomed."""
    z = p.zoom
    shown = p._shown_rgba
    assert shown.shape == (p.mask.shape[0] * z, p.mask.shape[1] * z, 4)
    np.testing.assert_array_equal(shown[::z, ::z, :3], colorize(p.mask))
    np.testing.assert_array_equal(shown[z - 1 :: z, z - 1 :: z, :3], colorize(p.mask))
    assert (shown[..., 3] == round(p.opacity.value * 255)).all()
    rgba = p.render_rgba()
    np.testing.assert_array_equal(rgba[..., :3], colorize(p.mask))


def test_painter_constructs_headless_and_displays(painter_cls):
    p = painter_cls(shape=(256, 256))
    assert p.zoom == 2 and (p.canvas.width, p.canvas.height) == (512, 512)
    assert p.mask.shape == (256, 256) and not p.mask.any()
    bundle = p._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert p.widget.children and "pattern" in p.status.value
    p2 = painter_cls(shape=(64, 32), zoom=3, grid=4)
    assert (p2.canvas.width, p2.canvas.height) == (96, 192) and p2.document.grid == 4
    with pytest.raises(ValueError):
        painter_cls(np.zeros((8, 8), np.uint8), image=np.zeros((9, 9)))
    assert painter_cls(image=np.zeros((9, 7))).mask.shape == (9, 7)  # blank mask of the image size


def test_painter_brush_eraser_and_render(painter_cls):
    p = painter_cls(shape=(H, W), zoom=4)
    sent = []
    orig = p._mask_layer.put_image_data
    p._mask_layer.put_image_data = lambda data, x=0, y=0: (sent.append((data.shape, x, y)), orig(data, x, y))
    p.tool.value = "brush"
    p.label = "hole"
    p.radius.value = 2
    # canvas (x, y) -> pixel (y // 4, x // 4): a drag from pixel (20, 10) to (20, 40)
    p._on_mouse_down(10 * 4 + 1, 20 * 4 + 2)
    for col in range(11, 41, 3):
        p._on_mouse_move(col * 4 + 2, 20 * 4 + 1)
    p._on_mouse_up(40 * 4 + 3, 20 * 4 + 3)
    np.testing.assert_array_equal(p.mask == 2, _band_reference((H, W), 20, 10, 40, 2))
    assert p.document.history == ["brush hole"]  # one drag = one undo step
    assert sent and all(shape[0] < H * 4 for shape, _, _ in sent)  # only changed boxes re-sent
    _check_render(p)
    p.tool.value = "eraser"
    p.radius.value = 0
    p._on_mouse_down(20 * 4, 20 * 4)
    p._on_mouse_up(20 * 4, 20 * 4)
    assert p.mask[20, 20] == 0 and (p.mask == 2).sum() == _band_reference((H, W), 20, 10, 40, 2).sum() - 1
    _check_render(p)
    p.opacity.value = 0.35
    _check_render(p)
    p.undo_button.click()
    p.undo_button.click()
    assert not p.mask.any()
    _check_render(p)
    p.redo_button.click()
    assert (p.mask == 2).any()


def test_painter_rect_polygon_fill(painter_cls):
    p = painter_cls(shape=(H, W), zoom=2)
    p.tool.value = "rect"
    p.label = 1
    p._on_mouse_down(41, 31)  # pixel (15, 20)
    p._on_mouse_move(20, 25)
    p._on_mouse_up(11, 20)  # pixel (10, 5)
    ref = np.zeros((H, W), np.uint8)
    ref[10:16, 5:21] = 1  # both end pixels included
    np.testing.assert_array_equal(p.mask, ref)

    # polygon: three clicks, then a double-click on the last vertex closes it
    clock = [100.0]
    p._clock = lambda: clock[0]
    p.tool.value = "polygon"
    p.label = "defect"
    p.grid.value = 8
    for x, y in [(61, 59), (2 * 41, 2 * 39), (2 * 57, 2 * 41)]:  # (row, col) ~ (30, 30), (39, 41), (41, 57)
        clock[0] += 1.0
        p._on_mouse_down(x, y)
        p._on_mouse_up(x, y)
    assert len(p._poly) == 3 and p.document.history == ["rect pattern"]
    clock[0] += 0.1
    p._on_mouse_down(2 * 57 + 1, 2 * 41)
    assert p._poly == []
    ref2 = polygon2mask((H, W), np.array([(32, 32), (40, 40), (40, 56)], float) - 0.5)
    np.testing.assert_array_equal(p.mask == 3, ref2)

    # polygon closed with Enter; fewer than 3 vertices is reported, not raised
    p.grid.value = 1
    p._on_mouse_down(0, 0)
    p._on_key_down("Enter", False, False, False)
    assert "at least 3" in p.message and p._poly == []

    # fill the background around everything with "hole"
    p.tool.value = "fill"
    p.label = "hole"
    p._on_mouse_down(2 * W - 1, 2 * H - 1)
    assert ((p.mask == 2) == (ref2 == 0) & (ref == 0)).all()
    _check_render(p)
    p._on_key_down("z", False, True, False)  # ctrl+z
    assert not (p.mask == 2).any()


def test_painter_grid_snapping_from_widget(painter_cls):
    p = painter_cls(shape=(64, 64), zoom=4)
    p.grid.value = 8
    assert p.document.grid == 8
    p.tool.value = "rect"
    p._on_mouse_down(4 * 3, 4 * 5)  # (row, col) (5, 3) -> (8, 0)
    p._on_mouse_up(4 * 22, 4 * 13)  # (13, 22) -> (16, 24)
    ref = np.zeros((64, 64), np.uint8)
    ref[8:16, 0:24] = 1
    np.testing.assert_array_equal(p.mask, ref)


def test_painter_load_errors_go_to_status(painter_cls, tmp_path):
    p = painter_cls(shape=(H, W))
    p.document.rect(0, 0, 4, 4, 1)  # programmatic edits are shown
    _check_render(p)
    before = p.mask
    p.path.value = str(tmp_path / "missing.png")
    p.load_button.click()  # must not raise
    assert p.message.startswith("error") and "MaskError" in p.status.value and "not found" in p.message
    np.testing.assert_array_equal(p.mask, before)
    (tmp_path / "junk.png").write_bytes(b"not a png")
    p.path.value = str(tmp_path / "junk.png")
    p.load_button.click()
    assert "error" in p.message
    p.path.value = ""
    p.save_button.click()
    assert "error" in p.message and ".png" in p.message


def test_painter_save_refuses_overwrite_and_loads_other_sizes(painter_cls, tmp_path):
    img = np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W)
    p = painter_cls(image=img)
    assert p.mask.shape == (H, W) and p.opacity.value == 0.5
    p.document.rect(0, 0, 10, 10, 3)
    target = tmp_path / "m.png"
    p.path.value = str(target)
    p.save_button.click()
    assert "saved" in p.message and target.is_file()
    data = target.read_bytes()
    p.document.clear(1)
    p.save_button.click()
    assert "FileExistsError" in p.message and target.read_bytes() == data
    p.overwrite.value = True
    p.save_button.click()
    assert (sio.read_mask(target) == 1).all()
    # a mask of another size resizes the canvas and drops the (now mismatched) image
    sio.write_mask(tmp_path / "small.png", np.full((20, 30), 2, np.uint8))
    p.path.value = str(tmp_path / "small.png")
    p.load_button.click()
    assert p.mask.shape == (20, 30) and p.image is None
    assert (p.canvas.width, p.canvas.height) == (30 * p.zoom, 20 * p.zoom)
    _check_render(p)
    p.undo()
    assert p.mask.shape == (H, W)
    _check_render(p)


def test_paint_opens_a_file(painter_cls, tmp_path):
    from semlab.painter import paint

    m = np.zeros((16, 16), np.uint8)
    m[4:8] = 1
    sio.write_mask(tmp_path / "a.png", m)
    p = paint(tmp_path / "a.png")
    np.testing.assert_array_equal(p.mask, m)
    assert p.path.value.endswith("a.png") and p.zoom == 32 and not p.document.can_undo
