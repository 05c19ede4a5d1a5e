"""transforms/turbojpeg.py: JPEGs decoded by libjpeg-turbo through simplejpeg must give the
pixels Pillow gives (issue 12: mean absolute difference at most 1 grey level after resizing,
res5 cosine at least 0.999), and whatever it does not handle must go to Pillow."""

import io
import pathlib

import numpy as np
import pytest
from PIL import Image, ImageOps

import transforms.turbojpeg as turbojpeg
from hostile import Embedded, write_corpus
from images import encode, rgb_pattern
from reference import direct_features
from schemas import ImageSize
from transforms.decode import decode_image
from transforms.resize import resize_pixels
from transforms.turbojpeg import decode_turbo, orient

SAMPLES = pathlib.Path(__file__).resolve().parents[1] / "samples" / "images"
SIZE = ImageSize(224, 224)


@pytest.fixture
def turbo_calls(monkeypatch):
    """Every call of simplejpeg.decode_jpeg, as the result it gave (None when it raised)."""
    calls = []
    real = turbojpeg.simplejpeg.decode_jpeg

    def spy(data, **kwargs):
        try:
            result = real(data, **kwargs)
        except ValueError:
            calls.append(None)
            raise
        calls.append(result.shape)
        return result

    monkeypatch.setattr(turbojpeg.simplejpeg, "decode_jpeg", spy)
    return calls


def _both(data: bytes, target: ImageSize | None = SIZE):
    return (decode_image(data, target=target, turbo=True), decode_image(data, target=target, turbo=False))


def _resized(decoded) -> np.ndarray:
    return resize_pixels(decoded.pixels, SIZE, "center_crop").astype(np.int16)


def _photo_jpegs() -> dict[str, bytes]:
    """The sample photos as JPEGs: the JPEG samples as shipped, the PNG ones encoded at q90."""
    photos = {}
    for path in sorted(SAMPLES.iterdir()):
        if path.suffix == ".jpg":
            photos[path.name] = path.read_bytes()
        else:
            with Image.open(path) as image:
                photos[path.name] = encode(np.asarray(image.convert("RGB")), "JPEG", quality=90)
    return photos


def test_sample_photos_match_pillow_after_resizing_and_in_res5(turbo_calls, calibrated_weights_file):
    photos = _photo_jpegs()
    fast, pillow = [], []
    for name, data in photos.items():
        turbo, reference = _both(data)
        assert (turbo.width, turbo.height, turbo.format) == (reference.width, reference.height, reference.format)
        assert turbo.pixels.shape == reference.pixels.shape, name
        fast.append(_resized(turbo))
        pillow.append(_resized(reference))
        mad = np.abs(fast[-1] - pillow[-1]).mean()
        assert mad <= 1.0, f"{name}: mean absolute difference {mad:.3f}"
    assert len(turbo_calls) == len(photos) and None not in turbo_calls  # each took the fast path
    both = np.stack(fast + pillow).astype(np.uint8)  # one model build for both paths
    pooled = direct_features(calibrated_weights_file, both, ["res5"], (224, 224))["res5"].mean(axis=(1, 2))
    features = pooled[: len(fast)], pooled[len(fast):]
    cosine = (features[0] * features[1]).sum(1) / np.linalg.norm(features[0], axis=1) / np.linalg.norm(
        features[1], axis=1)
    assert cosine.min() >= 0.999, dict(zip(photos, cosine.round(5)))


def test_hostile_jpegs_come_out_as_with_pillow(tmp_path):
    expected = write_corpus(tmp_path)
    jpegs = [name for name in expected if (tmp_path / name).read_bytes()[:3] == b"\xff\xd8\xff"]
    assert len(jpegs) >= 8  # truncated, progressive, CMYK, EXIF-rotated, renamed, unicode name...
    decoded = refused = 0
    for name in jpegs:
        data = (tmp_path / name).read_bytes()
        outcomes = []
        for turbo in (True, False):
            try:
                outcomes.append(decode_image(data, target=SIZE, turbo=turbo))
            except Exception as exc:  # the error row's type must be the same either way
                outcomes.append(type(exc))
        turbo_outcome, pillow_outcome = outcomes
        if isinstance(turbo_outcome, type) or isinstance(pillow_outcome, type):
            assert turbo_outcome is pillow_outcome, name
        else:
            assert np.abs(_resized(turbo_outcome) - _resized(pillow_outcome)).mean() <= 1.0, name
        decoded += not isinstance(turbo_outcome, type)
        refused += isinstance(turbo_outcome, type)
    # The corpus's JPEGs that reach decoding as it expects (a size refusal is the reader's).
    assert decoded == sum(isinstance(expected[name], Embedded) for name in jpegs) + 1  # + oversized.jpg
    assert refused >= 1  # truncated.jpg


def test_progressive_and_greyscale_take_the_fast_path(turbo_calls):
    pixels = rgb_pattern(300, 400, seed=3)
    for data in (encode(pixels, "JPEG", quality=90, progressive=True), encode(pixels, "JPEG", "L", quality=90)):
        turbo, reference = _both(data, target=None)
        np.testing.assert_array_equal(turbo.pixels, reference.pixels)
        assert turbo.pixels.shape == (300, 400, 3)
    assert turbo_calls == [(300, 400, 3), (300, 400, 3)]


def test_greyscale_comes_out_as_three_equal_channels():
    data = encode(rgb_pattern(64, 48, seed=4), "JPEG", "L", quality=90)
    pixels = decode_image(data, turbo=True).pixels
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()


def test_cmyk_goes_to_pillow(turbo_calls):
    data = encode(rgb_pattern(64, 48, seed=5), "JPEG", "CMYK", quality=90)
    turbo, reference = _both(data)
    np.testing.assert_array_equal(turbo.pixels, reference.pixels)
    assert turbo_calls == []


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillows_exif_transpose(orientation, turbo_calls):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(rgb_pattern(40, 64, seed=6), "JPEG", quality=95, exif=exif.tobytes())
    with Image.open(io.BytesIO(data)) as image:
        upright = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    decoded = decode_image(data, turbo=True)
    np.testing.assert_array_equal(decoded.pixels, upright)
    assert decoded.pixels.flags.c_contiguous
    assert (decoded.height, decoded.width) == upright.shape[:2]
    assert turbo_calls == [(40, 64, 3)]  # decoded in stored orientation, then turned


def test_orient_leaves_unknown_values_alone():
    pixels = rgb_pattern(3, 5, seed=7)
    for value in (0, 1, 9, 65535):
        np.testing.assert_array_equal(orient(pixels, value), pixels)


@pytest.mark.parametrize("width, height, scale", [(1000, 800, 2), (1800, 1200, 4), (3000, 2000, 8), (500, 375, 1)])
def test_draft_scales_match_pillows(width, height, scale, turbo_calls):
    data = encode(rgb_pattern(height, width, seed=8), "JPEG", quality=90)
    turbo, reference = _both(data)
    expected = (-(-height // scale), -(-width // scale), 3)
    assert turbo.pixels.shape == reference.pixels.shape == expected
    assert (turbo.width, turbo.height) == (width, height)
    np.testing.assert_array_equal(turbo.pixels, reference.pixels)
    assert turbo_calls == [expected]


def test_mpo_first_picture_is_drafted_and_fast(turbo_calls):
    first, second = rgb_pattern(900, 1200, seed=9), rgb_pattern(900, 1200, seed=10)
    buffer = io.BytesIO()
    Image.fromarray(first).save(buffer, "MPO", save_all=True, append_images=[Image.fromarray(second)], quality=90)
    turbo, reference = _both(buffer.getvalue())
    assert turbo.format == reference.format == "MPO"
    assert turbo.pixels.shape == (225, 300, 3)  # 1/4 scale: MPO is drafted like JPEG
    np.testing.assert_array_equal(turbo.pixels, reference.pixels)
    assert turbo_calls == [(225, 300, 3)]


def test_damaged_jpeg_falls_back_to_pillow(turbo_calls):
    data = bytearray(encode(rgb_pattern(120, 160, seed=11), "JPEG", quality=90))
    data[len(data) // 2: len(data) // 2 + 40] = b"\xff\x00" * 20  # corrupt the entropy-coded data
    assert decode_turbo(bytes(data), (160, 120)) is None  # strict: libjpeg-turbo's warning is an error
    turbo, reference = _both(bytes(data), target=None)
    np.testing.assert_array_equal(turbo.pixels, reference.pixels)  # Pillow decoded it, both times


def test_truncated_jpeg_is_pillows_error():
    data = encode(rgb_pattern(120, 160, seed=12), "JPEG", quality=90)
    for turbo in (True, False):
        with pytest.raises(OSError, match="truncated"):
            decode_image(data[: len(data) // 2], turbo=turbo)
