"""transforms/decode.py: DecodeImages and decode_image for every mode that matters."""

import io

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that
from PIL import Image

from beam_helpers import check, local_test_pipeline
from images import encode, rgb_pattern
from schemas import FileMeta, ImageFile, ImageInfo
from transforms import DecodeImages
from schemas import ImageTooSmall, TooManyPixels
from transforms.decode import decode_image, draft_request
from transforms.resize import resize_pixels
from schemas import ImageSize


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_rgb_png_is_exact():
    pixels = rgb_pattern(20, 30, seed=1)
    decoded, fmt, _, _ = decode_image(encode(pixels, "PNG"))
    assert fmt == "PNG" and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, pixels)


def test_grayscale_becomes_three_equal_channels():
    pixels = rgb_pattern(16, 16, seed=2)
    decoded, _, _, _ = decode_image(encode(pixels, "PNG", "L"))
    assert decoded.shape == (16, 16, 3)
    assert (decoded[..., 0] == decoded[..., 1]).all() and (decoded[..., 1] == decoded[..., 2]).all()
    np.testing.assert_array_equal(decoded[..., 0], np.asarray(Image.fromarray(pixels).convert("L")))


def test_rgba_transparent_pixels_become_white():
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :5, 3] = 255  # left half opaque red, right half fully transparent
    decoded, _, _, _ = decode_image(_png(Image.fromarray(rgba, "RGBA")))
    np.testing.assert_array_equal(decoded[:, :5], np.broadcast_to([200, 0, 0], (10, 5, 3)))
    np.testing.assert_array_equal(decoded[:, 5:], np.full((10, 5, 3), 255))


def test_palette_with_transparency():
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    image.paste(0, (0, 0, 4, 8))
    image.info["transparency"] = 0
    data = io.BytesIO()
    image.save(data, format="PNG", transparency=0)
    decoded, _, _, _ = decode_image(data.getvalue())
    np.testing.assert_array_equal(decoded[:, :4], np.full((8, 4, 3), 255))
    np.testing.assert_array_equal(decoded[:, 4:], np.broadcast_to([10, 20, 30], (8, 4, 3)))


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    values = np.array([[0, 257 * 100, 65535, 257 * 30]], np.uint16).repeat(4, axis=0)
    decoded, _, _, _ = decode_image(_png(Image.fromarray(values)))
    np.testing.assert_array_equal(decoded[0, :, 0], [0, 100, 255, 30])


def test_cmyk_jpeg_comes_out_rgb():
    pixels = np.zeros((16, 16, 3), np.uint8)
    pixels[..., 2] = 220  # blue
    decoded, fmt, _, _ = decode_image(encode(pixels, "JPEG", "CMYK", quality=95))
    assert fmt == "JPEG" and decoded.shape == (16, 16, 3)
    assert abs(int(decoded[..., 2].mean()) - 220) < 12 and decoded[..., 0].mean() < 15


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_is_applied(orientation):
    pixels = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high
    pixels[:10, :20] = [255, 0, 0]  # red top-left quadrant
    exif = Image.Exif()
    exif[0x0112] = orientation
    decoded, _, _, _ = decode_image(encode(pixels, "JPEG", quality=95, exif=exif.tobytes()))
    assert decoded.shape == (40, 20, 3)
    red = decoded[..., 0] > 128
    # Orientation 6 is shown rotated 90 degrees clockwise: top-left goes to top-right.
    corner = red[:20, 10:] if orientation == 6 else red[20:, :10]
    assert corner.mean() > 0.9 and red.mean() < 0.35


def test_first_frame_of_animated_gif():
    frames = [Image.new("RGB", (6, 6), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    decoded, fmt, _, _ = decode_image(buffer.getvalue())
    assert fmt == "GIF" and decoded[0, 0, 0] > 200 and decoded[0, 0, 1] < 50


def test_transform_splits_good_and_bad(tmp_path):
    good = encode(rgb_pattern(20, 30, seed=3), "JPEG")
    files = [
        ImageFile(FileMeta("mem://good.jpg", "id-good"), good),  # no listing: size and time unknown
        ImageFile(FileMeta("mem://truncated.jpg", "id-trunc"), good[: len(good) // 2]),
        ImageFile(FileMeta("mem://notes.jpg", "id-text"), b"this is not an image"),
    ]
    with local_test_pipeline() as p:
        decoded = p | beam.Create(files) | DecodeImages()
        assert_that(
            decoded.images,
            check(
                lambda xs: len(xs) == 1
                and xs[0].info == ImageInfo(FileMeta("mem://good.jpg", "id-good"), 30, 20, "JPEG")  # no listing, no shard
                and xs[0].pixels.shape == (20, 30, 3),
                "one decoded 30x20 JPEG",
            ),
            label="images",
        )
        assert_that(
            decoded.errors,
            check(
                lambda xs: sorted((e.uri, e.stage, e.error_type) for e in xs)
                == [("mem://notes.jpg", "decode", "UnidentifiedImageError"),
                    ("mem://truncated.jpg", "decode", "OSError")]
                and all("0x" not in e.message for e in xs),
                "truncated and text files rejected at decode with stable messages",
            ),
            label="errors",
        )


def test_pixel_guard_refuses_from_the_header():
    data = encode(rgb_pattern(40, 50, seed=4), "PNG")
    with pytest.raises(TooManyPixels, match="50x40 = 2000 pixels, over --max_pixels 1999"):
        decode_image(data, max_pixels=1999)
    assert decode_image(data, max_pixels=2000)[0].shape == (40, 50, 3)


def test_min_side_guard():
    data = encode(rgb_pattern(15, 300, seed=5), "PNG")
    with pytest.raises(ImageTooSmall, match="300x15 has a side under --min_side 16"):
        decode_image(data, min_side=16)
    assert decode_image(data, min_side=15)[0].shape == (15, 300, 3)


def test_guards_report_stage_validate():
    files = [
        ImageFile(FileMeta("mem://big.png", "id-big"), encode(rgb_pattern(40, 50, seed=6), "PNG")),
        ImageFile(FileMeta("mem://tiny.png", "id-tiny"), encode(rgb_pattern(4, 4, seed=7), "PNG")),
    ]
    with local_test_pipeline() as p:
        decoded = p | beam.Create(files) | DecodeImages(max_pixels=1000, min_side=8)
        assert_that(decoded.images, check(lambda xs: xs == [], "nothing decoded"), label="images")
        assert_that(
            decoded.errors,
            check(lambda xs: sorted((e.uri, e.stage, e.error_type) for e in xs) == [
                ("mem://big.png", "validate", "TooManyPixels"),
                ("mem://tiny.png", "validate", "ImageTooSmall")], "both refused by guards"),
            label="errors",
        )


def test_draft_request_covers_what_each_resize_mode_needs():
    size = ImageSize(224, 224)
    assert draft_request(3000, 2000, False, size, "center_crop") == (336, 224)
    assert draft_request(3000, 2000, False, size, "pad") == (224, 150)
    assert draft_request(3000, 2000, False, size, "stretch") == (224, 224)
    assert draft_request(2000, 3000, True, ImageSize(100, 200), "stretch") == (100, 200)


def test_draft_decodes_large_jpegs_smaller_but_keeps_the_original_size():
    data = encode(rgb_pattern(1200, 1800, seed=21), "JPEG", quality=92)
    full = decode_image(data)
    draft = decode_image(data, target=ImageSize(224, 224))
    assert full.pixels.shape == (1200, 1800, 3)
    assert draft.pixels.shape[0] >= 224 and draft.pixels.shape[0] <= 600  # 1/2 .. 1/4 scale
    assert (draft.width, draft.height) == (full.width, full.height) == (1800, 1200)


@pytest.mark.parametrize("mode", ["center_crop", "pad", "stretch"])
def test_draft_pixels_stay_within_a_grey_level_or_so(mode):
    """Draft decoding is an approximation by design (the DCT does the first downscale):
    after resizing, pixels differ from the full decode by about one grey level or less on
    average; images less than twice what the resize needs are decoded exactly as before."""
    size = ImageSize(224, 224)
    big = encode(rgb_pattern(2000, 3000, seed=22), "JPEG", quality=90)
    small = encode(rgb_pattern(375, 500, seed=23), "JPEG", quality=90)
    # A 500x375 photo is more than twice what pad needs at 224, so draft applies there too.
    for data, limit in ((big, 1.0), (small, 1.5 if mode == "pad" else 0.0)):
        exact = resize_pixels(decode_image(data).pixels, size, mode).astype(np.int16)
        fast = resize_pixels(decode_image(data, target=size, resize_mode=mode).pixels, size, mode).astype(np.int16)
        assert np.abs(exact - fast).mean() <= limit, (mode, limit)


def test_draft_respects_exif_rotation():
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(rgb_pattern(1000, 1600, seed=24), "JPEG", quality=90, exif=exif.tobytes())
    decoded = decode_image(data, target=ImageSize(224, 224))
    assert (decoded.width, decoded.height) == (1000, 1600)
    assert decoded.pixels.shape[1] >= 224 and decoded.pixels.shape[0] > decoded.pixels.shape[1]


def test_a_picture_past_pillows_bomb_limit_is_refused_in_this_pipelines_words():
    """20000x20000 (400 MP, over twice Pillow's limit: its DecompressionBombError) reads
    like a 150 MP picture: pixels over --max_pixels, naming the flag, not Pillow's limit."""
    import io

    from PIL import Image

    from schemas.limits import TooManyPixels
    from transforms.decode import decode_image

    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, "PNG")  # 48 KB
    with pytest.raises(TooManyPixels) as refused:
        decode_image(buffer.getvalue())
    assert str(refused.value) == "header says 400000000 pixels, over --max_pixels 100000000"
