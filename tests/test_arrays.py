"""semlab.arrays.as_gray_stack: the one image-stack validator, on hand-checked cases
(values worked out by hand, error messages spelled out)."""

import re

import numpy as np
import pytest
import torch

from semlab.arrays import INT_SCALE, as_gray_stack


def _err(match_text: str):
    return pytest.raises(ValueError, match="^" + re.escape(match_text) + "$")


# --------------------------------------------------------------------------- accepted forms and values


def test_uint8_and_uint16_are_scaled_to_unit_range():
    u8 = np.array([[0, 51], [255, 102]], np.uint8)
    out = as_gray_stack([u8])
    assert out.dtype == np.float32 and out.shape == (1, 2, 2)
    np.testing.assert_array_equal(out[0], np.array([[0.0, 0.2], [1.0, 0.4]], np.float32))
    u16 = np.array([[0, 13107], [65535, 26214]], np.uint16)  # 13107 = 65535 / 5
    np.testing.assert_allclose(as_gray_stack(u16, dtype=np.float64)[0], [[0.0, 0.2], [1.0, 0.4]], rtol=0, atol=1e-15)
    assert INT_SCALE[np.dtype(np.uint8)] == 255 and INT_SCALE[np.dtype(np.uint16)] == 65535
    # scale_int=False keeps the integer values (then a range check of [0, 1] refuses 255)
    assert as_gray_stack(u8, scale_int=False, value_range=None).max() == 255.0
    with _err("images: values must be in [0, 1] (semlab's image convention; uint8 and uint16 are scaled), "
              "image 0 has values in [0, 255]"):
        as_gray_stack(u8, scale_int=False)


def test_bool_and_other_integers_keep_their_values():
    b = np.array([[True, False], [False, True]])
    np.testing.assert_array_equal(as_gray_stack(b)[0], [[1, 0], [0, 1]])
    i64 = np.array([[0, 1], [1, 0]], np.int64)  # 0/1 ints are valid gray levels; not divided by anything
    np.testing.assert_array_equal(as_gray_stack(i64)[0], [[0, 1], [1, 0]])
    with _err("images: values must be in [0, 1] (semlab's image convention; uint8 and uint16 are scaled), "
              "image 0 has values in [0, 255]"):
        as_gray_stack(np.array([[0, 255]], np.int64))


def test_accepted_shapes():
    a = np.zeros((3, 4, 5), np.float32)
    assert as_gray_stack(a).shape == (3, 4, 5)
    assert as_gray_stack(a[0]).shape == (1, 4, 5)  # one 2-D array: one image
    assert as_gray_stack(a[:, None]).shape == (3, 4, 5)  # (N, 1, H, W)
    assert as_gray_stack((a[0], a[1])).shape == (2, 4, 5)  # a tuple of (H, W)
    assert as_gray_stack(list(a), dtype=np.float64).dtype == np.float64


def test_torch_tensors_are_detached_and_converted():
    t = torch.full((2, 1, 3, 3), 0.25, requires_grad=True)
    out = as_gray_stack(t)
    assert isinstance(out, np.ndarray) and out.shape == (2, 3, 3) and np.all(out == 0.25)
    out = as_gray_stack([torch.zeros(3, 3), torch.ones(3, 3)])
    assert out.shape == (2, 3, 3) and out[1].min() == 1.0


def test_no_copy_when_none_is_needed_and_the_input_is_never_modified():
    a = np.linspace(0, 1, 2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    assert as_gray_stack(a) is a  # already float32 (N, H, W) in range
    b = a.copy()
    b[1, 0, 0] = 1.0005  # inside the rounding margin: clipped in the result only
    out = as_gray_stack(b)
    assert out[1, 0, 0] == 1.0 and b[1, 0, 0] == np.float32(1.0005)
    assert as_gray_stack(b, tol=1e-6, value_range=None) is b
    with pytest.raises(ValueError, match=r"image 1 has values in \[0\.548387, 1\.0005\]"):
        as_gray_stack(b, tol=1e-6)


def test_value_range_none_takes_any_finite_values():
    x = np.array([[[-3.0, 7.5]]])
    np.testing.assert_array_equal(as_gray_stack(x, value_range=None), x.astype(np.float32))
    np.testing.assert_array_equal(as_gray_stack(x, value_range=(-5, 10))[0], [[-3.0, 7.5]])


def test_mixed_shapes_when_allowed_give_a_list():
    imgs = [np.zeros((4, 4)), np.ones((6, 5), np.uint8) * 255]
    out = as_gray_stack(imgs, same_shape=False)
    assert isinstance(out, list) and [o.shape for o in out] == [(4, 4), (6, 5)]
    assert out[1].dtype == np.float32 and np.all(out[1] == 1.0)
    out = as_gray_stack(np.zeros((2, 3, 3)), same_shape=False)  # a stack as a list of its images
    assert isinstance(out, list) and len(out) == 2 and out[0].shape == (3, 3)


def test_min_count_zero_allows_an_empty_stack():
    assert as_gray_stack([], min_count=0).shape == (0, 0, 0)
    assert as_gray_stack([], min_count=0, same_shape=False) == []


# --------------------------------------------------------------------------- refusals and their messages


def test_error_messages_name_what_and_the_offending_image():
    ok = np.zeros((4, 4))
    with _err("real images: no images (an empty stack)"):
        as_gray_stack([], what="real images")
    with _err("real images: no images (an empty stack)"):
        as_gray_stack(np.zeros((0, 4, 4)), what="real images")
    with _err("set 'a': 1 image(s), at least 2 needed"):
        as_gray_stack([ok], what="set 'a'", min_count=2)
    with _err("real images: image 2 has shape (4, 5) but image 0 has (4, 4); all images must have one (H, W) "
              "shape"):
        as_gray_stack([ok, ok, np.zeros((4, 5))], what="real images")
    with _err("images: image(s) [1, 3] contain NaN or infinity"):
        as_gray_stack([ok, ok + np.nan, ok, ok - np.inf])
    with _err("images: image(s) [0] contain NaN or infinity"):
        as_gray_stack(np.full((1, 4, 4), np.nan), value_range=None)
    with _err("fakes: values must be in [0, 1] (semlab's image convention; uint8 and uint16 are scaled), "
              "image 1 has values in [0, 1.5]"):
        as_gray_stack([ok, np.array([[0.0, 1.5]])], what="fakes", same_shape=False)
    with _err("images: image 1 of shape (3, 8) is too small (at least 4 px a side needed)"):
        as_gray_stack([np.zeros((8, 8)), np.zeros((3, 8))], min_size=4, same_shape=False)


def test_error_messages_for_the_wrong_form():
    forms = "(H, W), (N, H, W), (N, 1, H, W) or a list of (H, W) arrays"
    with _err(f"images: expected gray images as {forms}; got shape (16,)"):
        as_gray_stack(np.zeros(16))
    with _err(f"images: expected gray images as {forms}; got shape (2, 3, 8, 8) (3 channels)"):
        as_gray_stack(np.zeros((2, 3, 8, 8)))
    with _err(f"images: expected gray images as {forms}; got shape (1, 1, 1, 4, 4)"):
        as_gray_stack(np.zeros((1, 1, 1, 4, 4)))
    with _err(f"images: expected gray images as {forms}; got int"):
        as_gray_stack(3)
    with _err("images: image 1 has shape (2, 4, 4); expected a gray (H, W) array"):
        as_gray_stack([np.zeros((4, 4)), np.zeros((2, 4, 4))])
    with _err("real images: expected a list or (N, H, W) array of images, got one (H, W) array (4, 4)"):
        as_gray_stack(np.zeros((4, 4)), what="real images", single=False)
    with _err("images: image 0 has dtype <U1; expected gray levels as float, uint8 or uint16"):
        as_gray_stack([np.array([["a", "b"]])])
    with _err("images: the stack has dtype complex128; expected gray levels as float, uint8 or uint16"):
        as_gray_stack(np.zeros((1, 2, 2), complex))


# --------------------------------------------------------------------------- the callers share the rules


def test_callers_share_the_rules():
    """Where the old validators disagreed, the callers now agree: uint8 is scaled for
    spectra, attribution statistics and the detectors alike (the old spectrum code took
    uint8 as 0..255, the old attribution check refused it)."""
    from semlab.forensics.attribution_stats import attribution_spectrum
    from semlab.forensics.detector import stack_sets
    from semlab.forensics.spectrum import radial_spectra

    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (3, 16, 16)).astype(np.uint8)
    f = u8 / np.float64(255)
    np.testing.assert_allclose(radial_spectra(u8)[1], radial_spectra(f)[1], rtol=1e-6)
    maps = rng.normal(size=(3, 16, 16))
    a, b = attribution_spectrum(maps, u8, of="product"), attribution_spectrum(maps, f, of="product")
    np.testing.assert_allclose(a["attribution_power"], b["attribution_power"], rtol=1e-5)
    x, _, _ = stack_sets(list(u8), f)
    np.testing.assert_allclose(x[:3], x[3:], atol=1e-7)
    with pytest.raises(ValueError, match=r"generated images: image\(s\) \[2\] contain NaN"):
        stack_sets(u8, np.concatenate([f[:2], np.full((1, 16, 16), np.nan)]))
