"""Tests for semlab.labels: scheme, palette, colour -> label mapping."""

import numpy as np
import pytest

from semlab import labels as L


def test_scheme_constants():
    assert [c.id for c in L.CLASSES] == [0, 1, 2, 3]
    assert [c.name for c in L.CLASSES] == ["background", "pattern", "hole", "defect"]
    assert L.CLASSES[2].rgb == (0, 0, 255) and L.CLASSES[3].rgb == (255, 0, 0)
    assert (L.BACKGROUND, L.PATTERN, L.HOLE, L.DEFECT) == (0, 1, 2, 3)
    with pytest.raises(Exception):
        L.CLASSES[0].name = "x"


def test_class_by_name():
    assert L.class_by_name("Hole").id == 2
    with pytest.raises(KeyError) as e:
        L.class_by_name("via")
    assert "background" in str(e.value) and "defect" in str(e.value)


def test_palette_and_colorize():
    pal = L.palette_bytes()
    assert len(pal) == 768
    assert pal[:12] == [0, 0, 0, 255, 255, 255, 0, 0, 255, 255, 0, 0]
    assert not any(pal[12:])
    m = np.array([[0, 1], [2, 3]])
    rgb = L.colorize(m)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[1, 0].tolist() == [0, 0, 255] and rgb[1, 1].tolist() == [255, 0, 0]
    with pytest.raises(L.MaskError):
        L.colorize(np.array([[4]]))


def test_rgb_nearest_within_tolerance():
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[0, 0] = (250, 240, 245)  # near white
    rgb[1, 1] = (20, 10, 230)  # near blue
    rgb[2, 3] = (230, 25, 5)  # near red
    out = L.labels_from_array(rgb, mode="RGB")
    exp = np.zeros((3, 4), np.uint8)
    exp[0, 0], exp[1, 1], exp[2, 3] = 1, 2, 3
    np.testing.assert_array_equal(out, exp)
    rgba = np.concatenate([rgb, np.full((3, 4, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(L.labels_from_array(rgba, mode="RGBA"), exp)


def test_rgb_unexpected_colour_lists_colour_count_and_bbox():
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[2:5, 3:7] = (0, 255, 0)  # green: 12 px, bbox (2, 3, 4, 6)
    rgb[8, 9] = (128, 128, 128)  # gray: 1 px at (8, 9)
    with pytest.raises(L.MaskError) as e:
        L.labels_from_array(rgb, mode="RGB", source="user_mask.png")
    msg = str(e.value)
    assert msg.startswith("user_mask.png")
    assert "(0, 255, 0)" in msg and "12 px" in msg and "(2, 3, 4, 6)" in msg
    assert "(128, 128, 128)" in msg and "(8, 9)" in msg
    assert isinstance(e.value, ValueError)


def test_rgb_restricted_classes():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    with pytest.raises(L.MaskError, match=r"\(255, 0, 0\)"):
        L.labels_from_array(rgb, mode="RGB", classes=(0, 1, 2))


def test_at_most_ten_listed():
    rgb = np.zeros((1, 30, 3), np.uint8)
    rgb[0, :, 1] = np.arange(100, 130)  # 30 distinct greens
    with pytest.raises(L.MaskError) as e:
        L.labels_from_array(rgb, mode="RGB")
    assert "30 unexpected" in str(e.value) and "and 20 more" in str(e.value)
    assert str(e.value).count(" px ") == 10


def test_gray_ids_and_black_white():
    g = np.array([[0, 1, 2, 3]], np.uint8)
    np.testing.assert_array_equal(L.labels_from_array(g, mode="L"), g)
    bw = np.array([[0, 255, 255, 0]], np.uint8)
    np.testing.assert_array_equal(L.labels_from_array(bw, mode="L"), [[0, 1, 1, 0]])
    np.testing.assert_array_equal(L.labels_from_array(bw.astype(np.uint16), mode="I;16"), [[0, 1, 1, 0]])
    np.testing.assert_array_equal(L.labels_from_array(np.array([[True, False]]), mode="1"), [[1, 0]])
    with pytest.raises(L.MaskError) as e:
        L.labels_from_array(np.array([[0, 7, 7], [128, 1, 0]], np.uint8), mode="L", source="g.png")
    msg = str(e.value)
    assert "value 7: 2 px" in msg and "(0, 1, 0, 2)" in msg and "value 128: 1 px" in msg
    with pytest.raises(L.MaskError, match="value 2"):
        L.labels_from_array(np.array([[0, 1, 2]], np.uint8), mode="L", classes=(0, 1))


def test_palette_same_and_foreign():
    idx = np.array([[0, 1], [2, 3]], np.uint8)
    np.testing.assert_array_equal(L.labels_from_array(idx, mode="P", palette=L.palette_bytes()), idx)
    # another palette: index 5 is near-red, index 9 is white, index 0 black
    pal = [0] * 768
    pal[15:18] = [240, 10, 10]
    pal[27:30] = [255, 255, 255]
    other = np.array([[0, 5], [9, 9]], np.uint8)
    np.testing.assert_array_equal(L.labels_from_array(other, mode="P", palette=pal), [[0, 3], [1, 1]])
    pal[15:18] = [0, 200, 0]
    with pytest.raises(L.MaskError, match=r"\(0, 200, 0\)"):
        L.labels_from_array(other, mode="P", palette=pal)


def test_vectorised_speed_large_mask():
    rng = np.random.default_rng(1)
    m = rng.integers(0, 4, (1024, 1024))
    rgb = L.colorize(m).astype(np.int16) + rng.integers(-10, 11, (1024, 1024, 3))
    out = L.labels_from_array(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB")
    np.testing.assert_array_equal(out, m)
