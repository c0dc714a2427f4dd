"""Tests for semlab.io: images, masks, atomic writes, CSV/JSON, metadata."""

import hashlib
import json
import os
import warnings

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from semlab import io as sio
from semlab import paths
from semlab.labels import MaskError, colorize


def _no_temp(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------ atomic / hashing / csv


def test_atomic_write_success_and_failure(tmp_path):
    target = tmp_path / "out.bin"
    sio.write_bytes_atomic(target, b"hello")
    assert target.read_bytes() == b"hello"
    with pytest.raises(RuntimeError):
        with sio.atomic_write(target) as f:
            f.write(b"partial")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"hello"  # old content untouched
    fresh = tmp_path / "fresh.bin"
    with pytest.raises(RuntimeError):
        with sio.atomic_write(fresh) as f:
            f.write(b"partial")
            raise RuntimeError("boom")
    assert not fresh.exists()
    assert _no_temp(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_text_json_sha(tmp_path):
    sio.write_text_atomic(tmp_path / "a.txt", "äb\n")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "äb\n"
    sio.write_json_atomic(tmp_path / "a.json", {"b": 1, "a": [np.int64(2), 3.5]})
    text = (tmp_path / "a.json").read_text()
    assert json.loads(text) == {"a": [2, 3.5], "b": 1}
    assert text.index('"a"') < text.index('"b"') and '\n  "a"' in text
    data = os.urandom(3_000_000)
    (tmp_path / "big").write_bytes(data)
    assert sio.sha256_file(tmp_path / "big") == hashlib.sha256(data).hexdigest()


def test_csv_roundtrip(tmp_path):
    rows = [{"id": "a", "split": "train", "n": 1}, {"id": "b,c", "split": "val", "n": 2}]
    sio.write_csv_atomic(tmp_path / "m.csv", rows, ["id", "split", "n"])
    back = sio.read_csv(tmp_path / "m.csv")
    assert back == [{"id": "a", "split": "train", "n": "1"}, {"id": "b,c", "split": "val", "n": "2"}]
    with pytest.raises(ValueError):
        sio.write_csv_atomic(tmp_path / "bad.csv", [{"zzz": 1}], ["id"])
    assert not (tmp_path / "bad.csv").exists() and _no_temp(tmp_path) == []


# ------------------------------------------------------------------ images


def test_png_8bit_and_16bit_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (17, 23), dtype=np.uint8)
    sio.write_image(tmp_path / "a.png", u8)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), u8)
    img = sio.read_image(tmp_path / "a.png")
    assert img.dtype == np.float32 and img.shape == (17, 23)
    np.testing.assert_allclose(img, u8 / 255.0, atol=1e-7)
    f = rng.random((9, 11)).astype(np.float32)
    sio.write_image(tmp_path / "b.png", f, bits=16)
    back = sio.read_image(tmp_path / "b.png")
    np.testing.assert_allclose(back, f, atol=1.0 / 65535)
    assert sio.read_image_meta(tmp_path / "b.png")["bit_depth"] == 16


def test_to_uint8_to_float():
    f = np.array([[0.0, 0.5, 1.0, 1.7, -0.2]])
    np.testing.assert_array_equal(sio.to_uint8(f), [[0, 128, 255, 255, 0]])
    u = np.arange(256, dtype=np.uint8)[None]
    np.testing.assert_array_equal(sio.to_uint8(sio.to_float(u)), u)
    np.testing.assert_allclose(sio.to_float(u)[0, 51], 0.2, atol=1e-7)


def test_16bit_tiff_scaled_not_clipped(tmp_path):
    a = np.array([[0, 4096, 65535], [100, 30000, 65000]], np.uint16)
    tifffile.imwrite(tmp_path / "x.tif", a)
    img = sio.read_image(tmp_path / "x.tif")
    np.testing.assert_allclose(img, a.astype(np.float64) / 65535.0, rtol=1e-6)
    assert img[0, 2] == 1.0 and abs(img[0, 1] - 4096 / 65535) < 1e-7
    mm = sio.read_image(tmp_path / "x.tif", scale16="minmax")
    np.testing.assert_allclose(mm, a.astype(np.float64) / 65535.0, rtol=1e-6)  # range is 0..65535
    b = np.array([[1000, 2000, 3000]], np.uint16)
    tifffile.imwrite(tmp_path / "y.tif", b)
    np.testing.assert_allclose(sio.read_image(tmp_path / "y.tif", scale16="minmax"), [[0, 0.5, 1]], atol=1e-7)
    np.testing.assert_allclose(sio.read_image(tmp_path / "y.tif"), b / 65535.0, rtol=1e-6)
    meta = sio.read_image_meta(tmp_path / "x.tif")
    assert meta["bit_depth"] == 16 and meta["shape"] == (2, 3) and meta["pixel_size_nm"] is None


def test_float_tiff_clipped_with_warning(tmp_path):
    a = np.array([[-0.5, 0.25, 1.5]], np.float32)
    tifffile.imwrite(tmp_path / "f.tif", a)
    with pytest.warns(sio.SemlabWarning, match="clipped"):
        img = sio.read_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(img, [[0.0, 0.25, 1.0]])


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_rgb_converted_to_luma_with_warning(tmp_path, suffix):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    path = tmp_path / f"rgb{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, rgb, photometric="rgb")
    else:
        Image.fromarray(rgb).save(path)
    with pytest.warns(sio.SemlabWarning, match="rgb"):
        img = sio.read_image(path)
    r, g, b = (rgb[..., i].astype(np.float64) / 255 for i in range(3))
    np.testing.assert_allclose(img, 0.299 * r + 0.587 * g + 0.114 * b, atol=1e-6)


def test_palette_tiff_identity_gray_gives_indices(tmp_path):
    idx = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    im = Image.fromarray(idx)
    im.putpalette([v for i in range(256) for v in (i, i, i)])
    assert im.mode == "P"
    im.save(tmp_path / "p.tif")
    im.save(tmp_path / "p.png")
    for name in ("p.tif", "p.png"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            img = sio.read_image(tmp_path / name)
        np.testing.assert_allclose(img, idx / 255.0, atol=1e-7)
    assert sio.read_image_meta(tmp_path / "p.tif")["mode"] == "P"


def test_palette_colour_converted_with_warning(tmp_path):
    idx = np.array([[0, 1], [2, 1]], np.uint8)
    im = Image.fromarray(idx)
    pal = [0] * 768
    pal[3:9] = [255, 0, 0, 10, 20, 30]
    im.putpalette(pal)
    im.save(tmp_path / "c.png")
    with pytest.warns(sio.SemlabWarning, match="palette"):
        img = sio.read_image(tmp_path / "c.png")
    exp = np.array([[0, 0.299 * 255], [0.299 * 10 + 0.587 * 20 + 0.114 * 30, 0.299 * 255]]) / 255
    np.testing.assert_allclose(img, exp, atol=1e-6)


def test_read_errors(tmp_path):
    with pytest.raises(sio.ImageReadError, match="not found") as e:
        sio.read_image(tmp_path / "missing.png")
    assert "missing.png" in str(e.value)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(sio.ImageReadError, match="empty"):
        sio.read_image(tmp_path / "empty.png")
    sio.write_image(tmp_path / "ok.png", np.random.default_rng(0).random((64, 64)))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(sio.ImageReadError, match="trunc.png"):
        sio.read_image(tmp_path / "trunc.png")
    (tmp_path / "junk.png").write_bytes(b"this is not an image at all")
    with pytest.raises(sio.ImageReadError, match="junk.png.*unsupported"):
        sio.read_image(tmp_path / "junk.png")
    (tmp_path / "junk.tif").write_bytes(b"II*\x00garbage-garbage")
    with pytest.raises(sio.ImageReadError, match="junk.tif"):
        sio.read_image(tmp_path / "junk.tif")
    tifffile.imwrite(tmp_path / "pages.tif", np.zeros((3, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(sio.ImageReadError, match="pages.tif: 3-D stack"):
        sio.read_image(tmp_path / "pages.tif")
    tifffile.imwrite(tmp_path / "planes.tif", np.zeros((5, 8, 8), np.uint8), photometric="minisblack", planarconfig="separate")
    with pytest.raises(sio.ImageReadError, match="planes.tif: 3-D stack"):
        sio.read_image(tmp_path / "planes.tif")
    Image.new("L", (4, 4)).save(tmp_path / "anim.gif", save_all=True, append_images=[Image.new("L", (4, 4), 9)])
    with pytest.raises(sio.ImageReadError, match="anim.gif: 3-D stack"):
        sio.read_image(tmp_path / "anim.gif")
    for exc in (sio.ImageReadError,):
        assert issubclass(exc, ValueError)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_zero_size_tiff(tmp_path):
    path = tmp_path / "zero.tif"
    try:
        tifffile.imwrite(path, np.zeros((0, 5), np.uint8))
    except Exception:
        pytest.skip("tifffile cannot write a zero-size image")
    with pytest.raises(sio.ImageReadError, match="zero.tif: zero-size"):
        sio.read_image(path)


# ------------------------------------------------------------------ masks


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mask=arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24)), elements=st.integers(0, 3)),
    noise_seed=st.integers(0, 2**31 - 1),
    noise_amp=st.integers(0, 27),  # sqrt(3) * 27 < 48
)
def test_mask_roundtrip_property(tmp_path, mask, noise_seed, noise_amp):
    p = tmp_path / "m.png"
    sio.write_mask(p, mask)
    np.testing.assert_array_equal(sio.read_mask(p), mask)
    assert Image.open(p).mode == "P"
    rgb = colorize(mask)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(sio.read_mask(tmp_path / "rgb.png"), mask)
    rng = np.random.default_rng(noise_seed)
    noisy = np.clip(rgb.astype(np.int16) + rng.integers(-noise_amp, noise_amp + 1, rgb.shape), 0, 255)
    Image.fromarray(noisy.astype(np.uint8)).save(tmp_path / "noisy.png")
    np.testing.assert_array_equal(sio.read_mask(tmp_path / "noisy.png"), mask)


def test_gray_mask_files(tmp_path):
    m = np.array([[0, 1, 2], [3, 2, 1]], np.uint8)
    Image.fromarray(m).save(tmp_path / "g.png")
    np.testing.assert_array_equal(sio.read_mask(tmp_path / "g.png"), m)
    Image.fromarray(m * 85).save(tmp_path / "g2.png")  # 0, 85, 170, 255: not ids
    with pytest.raises(MaskError, match="value 85"):
        sio.read_mask(tmp_path / "g2.png")
    bw = np.array([[0, 255], [255, 0]], np.uint8)
    Image.fromarray(bw).save(tmp_path / "bw.png")
    np.testing.assert_array_equal(sio.read_mask(tmp_path / "bw.png"), [[0, 1], [1, 0]])


def test_unexpected_mask_colour_message_and_no_output(tmp_path):
    rgb = colorize(np.zeros((20, 30), np.uint8))
    rgb[5:8, 10:15] = (0, 160, 0)
    src = tmp_path / "user.png"
    Image.fromarray(rgb).save(src)
    out = tmp_path / "converted.png"

    def convert():
        with sio.atomic_write(out) as f:
            m = sio.read_mask(src)
            f.write(m.tobytes())

    with pytest.raises(MaskError) as e:
        convert()
    msg = str(e.value)
    assert str(src) in msg and "(0, 160, 0)" in msg and "15 px" in msg and "(5, 10, 7, 14)" in msg
    assert not out.exists() and _no_temp(tmp_path) == []


def test_write_mask_refuses_bad_ids(tmp_path):
    with pytest.raises(MaskError, match="4"):
        sio.write_mask(tmp_path / "m.png", np.array([[0, 4]]))
    assert list(tmp_path.iterdir()) == []


def test_read_pair_size_mismatch(tmp_path):
    sio.write_image(tmp_path / "img.png", np.zeros((10, 12), np.float32))
    sio.write_mask(tmp_path / "mask.png", np.zeros((10, 11), np.uint8))
    with pytest.raises(MaskError) as e:
        sio.read_pair(tmp_path / "img.png", tmp_path / "mask.png")
    msg = str(e.value)
    assert "img.png" in msg and "mask.png" in msg and "(10, 12)" in msg and "(10, 11)" in msg
    sio.write_mask(tmp_path / "mask.png", np.ones((10, 12), np.uint8))
    img, m = sio.read_pair(tmp_path / "img.png", tmp_path / "mask.png")
    assert img.shape == m.shape == (10, 12) and m.sum() == 120


def test_mask_missing_file(tmp_path):
    with pytest.raises(sio.ImageReadError, match="not found"):
        sio.read_mask(tmp_path / "nope.png")


# ------------------------------------------------------------------ real data


def _dsa_dir():
    real = paths.shared_real_dir()
    if real is None or not (real / "dsa_lines").is_dir():
        pytest.skip("real SEM data not available")
    return real / "dsa_lines"


@pytest.mark.parametrize("name,expected", [("Sample_Image_1.tif", 0.752), ("Sample_Image_2.tif", 0.744)])
def test_zeiss_pixel_size(name, expected):
    meta = sio.read_image_meta(_dsa_dir() / name)
    assert meta["pixel_size_nm"] == pytest.approx(expected, abs=0.001)
    assert meta["shape"] == (2304, 3072) and meta["bit_depth"] == 8


def test_zeiss_palette_tiff_reads_raw_indices():
    path = _dsa_dir() / "Sample_Image_1.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img = sio.read_image(path)
    np.testing.assert_allclose(img, tifffile.imread(path) / 255.0, atol=1e-7)
