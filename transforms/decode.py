"""DecodeImages: encoded bytes -> H x W x 3 uint8 RGB, whatever the source mode."""

from __future__ import annotations

import io
import math
import re
import warnings
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from PIL import Image, ImageOps, UnidentifiedImageError

from schemas import (
    DEFAULT_DECODE_WARN_SECONDS,
    DEFAULT_IMAGE_FORMATS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    ERRORS_TAG,
    STAGE_DECODE,
    DecodedImage,
    ImageFile,
    ImageInfo,
    ImageSize,
    ImageTooSmall,
    TooManyPixels,
    UnsupportedFormat,
    assert_shape,
)
from transforms.errors import METRICS_NAMESPACE, image_error
from transforms.formats import allowed_for_open, check_format, check_opened, explain_unreadable_jpeg
from transforms.slow import SlowDecodes
from transforms.turbojpeg import JPEG_FORMATS, decode_turbo, orient, takes_fast_path

#: Background that transparent pixels are composited onto.
ALPHA_BACKGROUND = (255, 255, 255)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _wide_grey_to_uint8(image: Image.Image) -> np.ndarray:
    """16- and 32-bit integer or float greyscale -> uint8, scaled from the 16-bit range."""
    values = np.asarray(image)
    if image.mode == "F":
        return np.clip(values, 0, 255).astype(np.uint8)
    return np.clip(values.astype(np.int64) // 257, 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL image -> (h, w, 3) uint8 RGB. Alpha is composited onto white; 16-bit
    greyscale is scaled to 8 bits; CMYK, palette and 1-bit images are converted."""
    if image.mode.startswith("I") or image.mode == "F":
        grey = _wide_grey_to_uint8(image)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def open_checked(data: bytes, *, max_pixels: int, min_side: int,
                 image_formats: tuple[str, ...] = DEFAULT_IMAGE_FORMATS) -> Image.Image:
    """Check the format by the first bytes, open ``data`` with the allowed plugins only, and
    check its header size; no pixel is decoded or allocated here. Raises UnsupportedFormat,
    TooManyPixels or ImageTooSmall (stage 'validate'), or PIL's own errors."""
    check_format(data, image_formats)
    try:
        image = Image.open(io.BytesIO(data), formats=allowed_for_open(image_formats))
    except Image.DecompressionBombError as exc:  # Beyond twice Pillow's own limit.
        raise TooManyPixels(_bomb_message(exc, max_pixels, "header says")) from exc
    except UnidentifiedImageError as exc:
        raise (explain_unreadable_jpeg(data) or exc) from exc
    try:
        check_opened(image.format, image_formats)
    except UnsupportedFormat:
        image.close()
        raise
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise TooManyPixels(
            f"header says {width}x{height} = {width * height} pixels, over --max_pixels {max_pixels}"
        )
    if min(width, height) < min_side:
        image.close()
        raise ImageTooSmall(f"{width}x{height} has a side under --min_side {min_side}")
    return image


EXIF_ORIENTATION = 0x0112
_SIDEWAYS = (5, 6, 7, 8)  # orientations that swap width and height


class Decoded(NamedTuple):
    """``pixels`` (h, w, 3) uint8 RGB, upright; ``width``/``height`` of the original image,
    upright, whatever reduced size ``pixels`` were decoded at."""

    pixels: np.ndarray
    format: str
    width: int
    height: int


def draft_request(width: int, height: int, sideways: bool, target: ImageSize, resize_mode: str) -> tuple[int, int]:
    """The smallest stored-orientation size that still covers what ``resize_mode`` needs
    for ``target``: JPEG decoding may then scale by 1/2, 1/4 or 1/8 in the DCT."""
    want_w, want_h = (target.height, target.width) if sideways else (target.width, target.height)
    if resize_mode == "stretch":
        return want_w, want_h
    pick = max if resize_mode == "center_crop" else min
    scale = pick(want_w / width, want_h / height)
    # Rounded first: 3000 * (224 / 3000) is 224.00000000000003, which must not become 225.
    return math.ceil(round(width * scale, 6)), math.ceil(round(height * scale, 6))


def _bomb_message(exc: Exception, max_pixels: int, lead: str) -> str:
    """Pillow's decompression-bomb error in this pipeline's words: the pixels against
    --max_pixels, as for any other image over it (Pillow's own text names its limit)."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = f"{int(found.group(1))} pixels" if found else "more pixels than Pillow allows"
    return f"{lead} {pixels}, over --max_pixels {max_pixels}"


def _load(image: Image.Image, max_pixels: int) -> None:
    """Load the pixels. Some files only say their true size now (an icon's embedded PNG, a
    GIF frame beyond the screen): Pillow's bomb error here, or a loaded size over
    ``max_pixels``, is TooManyPixels like the header check."""
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(_bomb_message(exc, max_pixels, "found when its pixels were loaded:")) from exc
    width, height = image.size
    if width * height > max_pixels:
        raise TooManyPixels(f"found when its pixels were loaded: {width}x{height} = {width * height} "
                            f"pixels, over --max_pixels {max_pixels}")


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = 1,
    target: ImageSize | None = None, resize_mode: str = "center_crop",
    image_formats: tuple[str, ...] = DEFAULT_IMAGE_FORMATS, turbo: bool = True,
) -> Decoded:
    """Decode the first frame of ``data`` with EXIF orientation applied, after checking its
    format against ``image_formats`` and its header against ``max_pixels`` and
    ``min_side``. With ``target``, a JPEG (or MPO) at least twice the size ``resize_mode``
    needs is decoded at a reduced scale in the DCT (draft mode).

    JPEGs in RGB or greyscale are decoded by libjpeg-turbo through simplejpeg
    (transforms/turbojpeg.py) unless ``turbo`` is False; everything else, and any JPEG
    libjpeg-turbo reports a problem with, by Pillow. Both give the same pixels.

    Raises whatever PIL raises for data it cannot decode, truncated files included (pixels
    are loaded here)."""
    with open_checked(data, max_pixels=max_pixels, min_side=min_side, image_formats=image_formats) as image:
        image_format = image.format or "unknown"
        width, height = image.size
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
        sideways = orientation in _SIDEWAYS
        if target is not None and image_format in JPEG_FORMATS:
            image.draft(image.mode, draft_request(width, height, sideways, target, resize_mode))
        pixels = decode_turbo(data, image.size) if turbo and takes_fast_path(image) else None
        if pixels is not None:
            pixels = orient(pixels, orientation)
        else:
            _load(image, max_pixels)
            ImageOps.exif_transpose(image, in_place=True)
            pixels = to_rgb(image)
        if sideways:
            width, height = height, width
        return Decoded(pixels, image_format, width, height)


class _DecodeFn(beam.DoFn):
    def __init__(self, max_pixels: int, min_side: int, target: ImageSize | None, resize_mode: str,
                 image_formats: tuple[str, ...], decode_warn_seconds: float):
        self._max_pixels = max_pixels
        self._min_side = min_side
        self._target = target
        self._resize_mode = resize_mode
        self._image_formats = tuple(image_formats)
        self._decode_warn_seconds = decode_warn_seconds
        self._decoded = Metrics.counter(METRICS_NAMESPACE, "decoded")

    def setup(self):
        # Our header check replaces Pillow's bomb warning; its hard limit (twice
        # MAX_IMAGE_PIXELS) is only ever raised, to an explicit larger --max_pixels.
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        if Image.MAX_IMAGE_PIXELS is not None and self._max_pixels > Image.MAX_IMAGE_PIXELS:
            Image.MAX_IMAGE_PIXELS = self._max_pixels
        self._slow = SlowDecodes.for_threshold(self._decode_warn_seconds)

    def process(self, file: ImageFile):
        decoding = self._slow.begin(file.uri)
        try:
            decoded = decode_image(
                file.data, max_pixels=self._max_pixels, min_side=self._min_side,
                target=self._target, resize_mode=self._resize_mode, image_formats=self._image_formats,
            )
            assert_shape(
                decoded.pixels, (None, None, 3), stage=STAGE_DECODE, uri=file.uri,
                image_id=file.image_id, dtype=np.uint8,
            )
        except Exception as exc:
            yield image_error(file.uri, file.image_id, STAGE_DECODE, exc)
            return
        finally:
            self._slow.end(decoding)
        self._decoded.inc()
        info = ImageInfo(file.meta, decoded.width, decoded.height, decoded.format)
        yield DecodedImage(info=info, pixels=decoded.pixels)


class DecodeImages(beam.PTransform):
    """ImageFile -> ``images``: DecodedImage with pixels (h, w, 3) uint8 RGB at source size.

    Greyscale, palette, RGBA (composited onto white), CMYK and 16-bit sources all come out
    as 8-bit RGB; EXIF orientation is applied, so (w, h) in ImageInfo is the upright size.
    Before Pillow sees a file, its first bytes are checked against ``image_formats``
    (Pillow names, or ``("all",)``; EPS never): another format goes to ``errors`` with stage
    'validate' (UnsupportedFormat), and Pillow opens the rest with the allowed plugins only.
    Before any pixel is decoded, the header size is checked: over ``max_pixels`` or with a
    side under ``min_side`` goes to ``errors`` with stage 'validate' (TooManyPixels,
    ImageTooSmall); so does a size over ``max_pixels`` found only when pixels load. Anything
    PIL cannot decode goes to ``errors`` with stage 'decode'. A decode running longer than
    ``decode_warn_seconds`` is logged once with its URI.

    With ``target`` (the model input size) and ``resize_mode``, JPEGs at least twice as
    large as the resize needs are decoded at 1/2, 1/4 or 1/8 scale in the DCT (draft mode):
    ``pixels`` are then smaller than the source but still cover the target, and
    ImageInfo keeps the original size. Without ``target`` every image is decoded in full.
    Returns a DoOutputsTuple with ``images`` and ``errors``.
    """

    def __init__(self, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = DEFAULT_MIN_SIDE,
                 target: ImageSize | None = None, resize_mode: str = "center_crop",
                 image_formats: tuple[str, ...] = DEFAULT_IMAGE_FORMATS,
                 decode_warn_seconds: float = DEFAULT_DECODE_WARN_SECONDS):
        super().__init__()
        self._decode_fn = _DecodeFn(max_pixels, min_side, target, resize_mode, image_formats,
                                    decode_warn_seconds)

    def expand(self, files):
        return files | "Decode" >> beam.ParDo(self._decode_fn).with_outputs(ERRORS_TAG, main="images")
