"""transforms/resize.py: ResizeImages and its three modes."""

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that

from beam_helpers import check, local_test_pipeline
from schemas import DecodedImage, ExtractionConfig, FileMeta, ImageInfo, ImageSize
from transforms import ResizeImages
from transforms.resize import PAD_COLOUR, REDUCING_GAP, reducing_gap, resize_pixels


def _thirds(height=100, width=300):
    """Left third red, middle green, right third blue."""
    pixels = np.zeros((height, width, 3), np.uint8)
    third = width // 3
    pixels[:, :third, 0] = 255
    pixels[:, third : 2 * third, 1] = 255
    pixels[:, 2 * third :, 2] = 255
    return pixels


def test_center_crop_keeps_the_middle():
    out = resize_pixels(_thirds(), ImageSize(50, 50), "center_crop")
    assert out.shape == (50, 50, 3)
    inner = out[:, 2:-2]  # the filter reads a pixel past the crop box at each edge
    assert (inner[..., 1] > 250).all() and (inner[..., 0] < 5).all() and (inner[..., 2] < 5).all()
    assert (out[..., 1] > 200).all()


def test_stretch_keeps_everything():
    out = resize_pixels(_thirds(), ImageSize(40, 60), "stretch")
    assert out.shape == (40, 60, 3)
    assert out[:, :15, 0].min() > 250 and out[:, 25:35, 1].min() > 250 and out[:, 45:, 2].min() > 250


def test_pad_letterboxes_with_mean_colour():
    out = resize_pixels(_thirds(), ImageSize(60, 60), "pad")
    assert out.shape == (60, 60, 3)
    np.testing.assert_array_equal(out[:15], np.broadcast_to(PAD_COLOUR, (15, 60, 3)))
    np.testing.assert_array_equal(out[45:], np.broadcast_to(PAD_COLOUR, (15, 60, 3)))
    assert out[25:35, :15, 0].min() > 250


def test_same_size_center_crop_is_identity():
    pixels = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_pixels(pixels, ImageSize(32, 48), "center_crop"), pixels)


@pytest.mark.parametrize("mode", ["center_crop", "stretch", "pad"])
@pytest.mark.parametrize("shape", [(3, 4000), (4000, 3), (1, 1)])
def test_extreme_shapes_resize(mode, shape):
    pixels = np.full(shape + (3,), 77, np.uint8)
    out = resize_pixels(pixels, ImageSize(32, 40), mode)
    assert out.shape == (32, 40, 3)


def test_transform_emits_model_shape():
    info = ImageInfo(FileMeta("mem://x", "id"), 300, 100, "PNG")
    with local_test_pipeline() as p:
        resized = (
            p | beam.Create([DecodedImage(info, _thirds())]) | ResizeImages("48x64", "pad")
        )
        assert_that(
            resized.images,
            check(lambda xs: len(xs) == 1 and xs[0].pixels.shape == (48, 64, 3) and xs[0].info == info,
                  "one 48x64 image"),
            label="images",
        )
        assert_that(resized.errors, check(lambda xs: xs == [], "no errors"), label="errors")


def test_unknown_mode_is_refused_at_construction():
    with pytest.raises(ValueError, match="center_crop"):
        ResizeImages(224, "zoom")


def test_center_crop_box_never_leaves_the_image():
    """A draft-decoded 160x107 photo cropped to 64x64: float rounding put the box top at
    about -1e-14, which PIL refuses ('box offset can't be negative')."""
    pixels = np.full((107, 160, 3), 90, np.uint8)
    for size in (ImageSize(64, 64), ImageSize(107, 160), ImageSize(33, 47), ImageSize(224, 224)):
        assert resize_pixels(pixels, size, "center_crop").shape == (size.height, size.width, 3)


@pytest.mark.parametrize("mode", ["center_crop", "stretch", "pad"])
def test_the_reducing_gap_stays_within_a_grey_level_and_leaves_small_reductions_alone(mode):
    """A 3000x2000 photo-like image: with the gap the pixels move (a box reduction ran)
    but by well under one grey level on average; a 400x300 one (a reduction under twice
    the gap, as every drafted JPEG is) comes out identical."""
    size = ImageSize(224, 224)
    rng = np.random.default_rng(5)
    smooth = np.kron(rng.integers(0, 256, (60, 40, 3)), np.ones((50, 50, 1)))
    big = np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)
    plain = resize_pixels(big, size, mode).astype(np.int16)
    reduced = resize_pixels(big, size, mode, REDUCING_GAP).astype(np.int16)
    difference = np.abs(plain - reduced)
    assert difference.max() > 0 and difference.mean() < 1.0
    small = big[:300, :400]
    assert np.array_equal(resize_pixels(small, size, mode), resize_pixels(small, size, mode, REDUCING_GAP))


def test_the_gap_follows_the_fast_reductions_setting():
    assert reducing_gap(ExtractionConfig(weights="random")) == REDUCING_GAP
    assert reducing_gap(ExtractionConfig(weights="random", jpeg_draft=False)) is None
