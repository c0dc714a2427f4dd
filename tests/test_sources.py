"""Tests for semlab.data.sources: listing, data-bar detection, tiling."""

import numpy as np
import pytest
from PIL import Image

from semlab import paths
from semlab.data import sources as S
from semlab.io import read_image


def test_list_images_miic_layout(tmp_path):
    for rel in ["Anomaly_train/b.jpg", "Anomaly_train/a.JPG", "Normal/x.tif", "Normal/sub/y.png",
                ".hidden/z.png", "Normal/.w.png", "notes.txt", "Normal/q.jpeg"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    got = [p.relative_to(tmp_path).as_posix() for p in S.list_images(tmp_path)]
    assert got == ["Anomaly_train/a.JPG", "Anomaly_train/b.jpg", "Normal/q.jpeg", "Normal/sub/y.png", "Normal/x.tif"]


def test_list_images_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        S.list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    with pytest.raises(ValueError, match="no images .* found in .*empty"):
        S.list_images(tmp_path / "empty")


def _with_bar(h=300, w=256, bar=40, seed=0, light=False):
    rng = np.random.default_rng(seed)
    img = np.clip(0.5 + 0.1 * rng.standard_normal((h, w)), 0, 1).astype(np.float32)
    bg, fg = (1.0, 0.0) if light else (0.0, 1.0)
    img[h - bar:] = bg
    img[h - bar + 10:h - bar + 18, 20:60] = fg  # "text"
    img[h - bar + 25:h - bar + 27, 80:200] = fg  # scale bar
    return img


@pytest.mark.parametrize("light", [False, True])
def test_detect_synthetic_bar(light):
    img = _with_bar(light=light)
    assert S.detect_databar(img) == 260
    assert S.detect_databar((img * 255).astype(np.uint8)) == 260
    cropped, row = S.crop_databar(img)
    assert row == 260 and cropped.shape == (260, 256)


def test_no_bar_on_synthetic_images():
    rng = np.random.default_rng(5)
    y = np.arange(256)
    cases = {
        "noise": rng.random((256, 256)),
        "dark_noise": 0.1 * rng.random((256, 256)),
        "h_grating": np.repeat(((y // 16) % 2).astype(float), 256).reshape(256, 256),
        "v_grating": np.tile(((y // 16) % 2).astype(float), (256, 1)),
        "h_grating_noisy": np.clip(np.repeat(((y // 12) % 2) * 0.8 + 0.1, 256).reshape(256, 256)
                                   + 0.05 * rng.standard_normal((256, 256)), 0, 1),
        "constant": np.zeros((256, 256)),
    }
    for name, img in cases.items():
        assert S.detect_databar(img) is None, name


def test_crop_modes():
    img = _with_bar()
    same, row = S.crop_databar(img, "none")
    assert same is img and row is None
    kept, row = S.crop_databar(img, 100)
    assert kept.shape == (100, 256) and row == 100
    with pytest.raises(ValueError):
        S.crop_databar(img, "sometimes")
    with pytest.raises(ValueError):
        S.crop_databar(img, 0)


def _real():
    real = paths.shared_real_dir()
    if real is None:
        pytest.skip("real SEM data (../shared/data/real_sem) not available")
    return real


def test_real_databars():
    real = _real()
    litho = real / "litho_lines"
    big = ["legacy_analysis_test.jpg", "test1.jpg", "test_analysis_raw_half_lines.jpg", "test_stack1.jpg"]
    for name in big:
        if not (litho / name).exists():
            pytest.skip(f"{name} missing")
        img = read_image(litho / name)
        assert img.shape == (2168, 2048)
        row = S.detect_databar(img)
        assert row is not None and abs(row - 2048) <= 3, (name, row)
        cropped, _ = S.crop_databar(img)
        # independent check: the bar is pure black; no cropped row may be mostly black
        black_rows = (np.asarray(Image.open(litho / name))[: cropped.shape[0]] < 16).mean(1) > 0.3
        assert not black_rows.any(), name
    others = [litho / "test_analysis_lines.jpg", *sorted((real / "dsa_lines").glob("*.tif"))]
    for p in others:
        assert S.detect_databar(read_image(p)) is None, p.name


@pytest.mark.parametrize("shape,tile,overlap", [((100, 130), 32, 0), ((100, 130), 32, 8), ((64, 64), 64, 0),
                                                ((70, 50, 3), (20, 25), (5, 4))])
def test_tiling_roundtrip_and_coverage(shape, tile, overlap):
    rng = np.random.default_rng(0)
    img = rng.random(shape).astype(np.float32)
    tiles = S.tile_image(img, tile, overlap)
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    cover = np.zeros(shape[:2], int)
    for r, c, t in tiles:
        assert t.shape[:2] == (th, tw)
        np.testing.assert_array_equal(t, img[r:r + th, c:c + tw])
        cover[r:r + th, c:c + tw] += 1
    assert cover.min() >= 1
    assert max(r for r, _, _ in tiles) == shape[0] - th and max(c for _, c, _ in tiles) == shape[1] - tw
    np.testing.assert_allclose(S.untile(tiles, shape), img, atol=1e-6)
    # averaging: add a per-tile constant, the result is the mean of the constants
    shifted = [(r, c, t + k) for k, (r, c, t) in enumerate(tiles)]
    acc = np.zeros(shape[:2])
    for k, (r, c, _) in enumerate(tiles):
        acc[r:r + th, c:c + tw] += k
    expected = img + (acc / cover).reshape(shape[:2] + (1,) * (len(shape) - 2))
    np.testing.assert_allclose(S.untile(shifted, shape), expected, atol=1e-5)


def test_tiling_counts_and_errors():
    img = np.zeros((100, 130))
    assert len(S.tile_image(img, 32)) == 4 * 5
    assert len(S.tile_image(img, 50, 0)) == 2 * 3
    with pytest.raises(ValueError):
        S.tile_image(np.zeros((10, 10)), 16)
    with pytest.raises(ValueError):
        S.tile_image(img, 16, 16)
    with pytest.raises(ValueError):
        S.untile([(0, 0, np.zeros((10, 10)))], (20, 20))


def test_sample_real_tiles_keeps_evenly_spaced_tiles_and_logs_bad_frames(tmp_path):
    from PIL import Image

    from semlab.data.sources import sample_real_tiles, tile_image

    rng = np.random.default_rng(0)
    grp = tmp_path / "lines"
    grp.mkdir()
    frame = (rng.random((96, 128)) * 255).astype(np.uint8)
    Image.fromarray(frame).save(grp / "a.png")
    Image.fromarray(frame[:20, :20]).save(grp / "small.png")
    (grp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    s = sample_real_tiles(tmp_path, 32, per_frame=3)
    expect = tile_image(frame.astype(np.float32) / 255, 32)  # 3 x 4 = 12 tiles: every 4th, three of them
    assert len(expect) == 12 and list(s.tiles) == ["lines"] and len(s.tiles["lines"]) == 3
    for got, (_, _, want) in zip(s.tiles["lines"], expect[::4]):
        np.testing.assert_allclose(got, want, atol=1e-6)
    text = "\n".join(s.log)
    assert "small.png" in text and "smaller than one 32-px tile" in text
    assert "broken.png" in text and "unreadable" in text


# --------------------------------------------------------------------------- data-bar rows (issue 16)

# The first data-bar row of every frame in ../shared/data/real_sem, as its README states
# (None: no bar). Zeiss frames keep 8-13 image rows below their bar.
README_BAR_ROWS = {
    "cdsem_contacts": {"Ctest1.tif": 676, "Ctest2.tif": 699, "Ctest3.tif": 699, "Ctest4.tif": 699},
    "cdsem_lines": {"Test01.tif": 896, "Test02.tif": 896, "Test03.tif": 896},
    "litho_lines": {"legacy_analysis_test.jpg": 2048, "test1.jpg": 2048, "test_analysis_lines.jpg": None,
                    "test_analysis_raw_half_lines.jpg": 2048, **{f"test_stack{i}.jpg": 2048 for i in (1, 2, 3, 4)}},
    "dsa_lines": {f"Sample_Image_{i}.tif": None for i in (1, 2, 3)},
}


def test_databar_rows_of_the_shared_frames_within_2px():
    real = _real()
    checked = 0
    for folder, rows in README_BAR_ROWS.items():
        for name, want in rows.items():
            p = real / folder / name
            if not p.is_file():
                continue
            img = read_image(p)
            row = S.detect_databar(img)
            cropped, bar = S.crop_databar(img)
            if want is None:
                assert row is None and cropped.shape == img.shape, (folder, name, row)
            else:
                assert row is not None and abs(row - want) <= 2, (folder, name, row, want)
                # cropped at the bar's first row: nothing of the bar kept, nothing above it lost
                assert cropped.shape[0] == bar == row
            checked += 1
    assert checked >= 10


def _zeiss_like(h=400, w=320, bar=(345, 390), seed=1):
    """Image, a black rule, a white box with black text, a black rule, then image rows again."""
    rng = np.random.default_rng(seed)
    img = np.clip(0.35 + 0.08 * rng.standard_normal((h, w)), 0, 1).astype(np.float32)
    top, bottom = bar
    img[top] = 0.0
    img[top + 1:bottom] = 1.0
    img[bottom] = 0.0
    for x in range(20, 140, 12):  # "text"
        img[top + 8:top + 16, x:x + 7] = 0.0
    img[top + 25:top + 27, 180:300] = 0.0  # scale bar
    return img


def test_detects_a_bar_with_image_rows_below_it():
    img = _zeiss_like()
    assert S.detect_databar(img) == 345  # 9 image rows below the bar
    assert S.detect_databar((img * 255).astype(np.uint8)) == 345
    assert S.detect_databar((img * 65535).astype(np.uint16)) == 345
    # more than 3% of the height below the "bar": it is no bottom bar
    assert S.detect_databar(_zeiss_like(bar=(300, 340))) is None


def test_no_bar_without_text_or_with_a_soft_transition():
    rng = np.random.default_rng(2)
    img = np.clip(0.4 + 0.08 * rng.standard_normal((300, 256)), 0, 1).astype(np.float32)
    dark = img.copy()
    dark[260:] = 0.0  # a saturated dark region with nothing written in it
    assert S.detect_databar(dark) is None
    soft = _with_bar()
    soft[200:260] = np.where(rng.random((60, 256)) < 0.6, 0.0, soft[200:260])  # the image itself saturates
    assert S.detect_databar(soft) is None


@pytest.mark.parametrize("preset", ["ic-metal", "line-space", "contacts", "comb"])
def test_simulated_frames_cropped_only_with_a_bar(preset):
    """Not tuned to the shipped frames: the simulator's `_databar` is found at its row, and
    nothing is cropped from the same frames without it."""
    from semlab.data.simulate import simulate

    for seed in range(4):
        for size in (256, (320, 480)):
            plain = simulate(preset, size, seed, with_contours=False)
            cropped, row = S.crop_databar(plain.image)
            assert row is None and cropped.shape == plain.image.shape, (preset, seed, size)
            barred = simulate(preset, size, seed, with_contours=False, databar=True)
            want = barred.params["databar_row"]
            got = S.detect_databar(barred.image)
            assert got is not None and abs(got - want) <= 2, (preset, seed, size, got, want)
            assert S.crop_databar(barred.image)[0].shape[0] == got
