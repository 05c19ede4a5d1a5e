"""DecodeImages: encoded bytes -> H x W x 3 uint8 RGB, whatever the source mode."""

from __future__ import annotations

import io

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from PIL import Image, ImageOps

from schemas import ERRORS_TAG, STAGE_DECODE, DecodedImage, ImageFile, ImageInfo, assert_shape
from transforms.errors import METRICS_NAMESPACE, image_error

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
    return np.asarray(image.convert("RGB"))


def decode_image(data: bytes) -> tuple[np.ndarray, str]:
    """Decode the first frame of ``data`` with EXIF orientation applied.

    Returns (pixels (h, w, 3) uint8 RGB, PIL format name). Raises whatever PIL raises for
    data it cannot decode, truncated files included (pixels are loaded here)."""
    with Image.open(io.BytesIO(data)) as image:
        image_format = image.format or "unknown"
        image.load()
        upright = ImageOps.exif_transpose(image)
        return to_rgb(upright), image_format


class _DecodeFn(beam.DoFn):
    def __init__(self):
        self._decoded = Metrics.counter(METRICS_NAMESPACE, "decoded")

    def process(self, file: ImageFile):
        try:
            pixels, image_format = decode_image(file.data)
            assert_shape(
                pixels, (None, None, 3), stage=STAGE_DECODE, uri=file.uri,
                image_id=file.image_id, dtype=np.uint8,
            )
        except Exception as exc:
            yield image_error(file.uri, file.image_id, STAGE_DECODE, exc)
            return
        self._decoded.inc()
        height, width = pixels.shape[:2]
        info = ImageInfo(file.uri, file.image_id, int(width), int(height), image_format)
        yield DecodedImage(info=info, pixels=pixels)


class DecodeImages(beam.PTransform):
    """ImageFile -> ``images``: DecodedImage with pixels (h, w, 3) uint8 RGB at source size.

    Greyscale, palette, RGBA (composited onto white), CMYK and 16-bit sources all come out
    as 8-bit RGB; EXIF orientation is applied, so (w, h) in ImageInfo is the upright size.
    Anything PIL cannot decode goes to ``errors`` (ImageError, stage 'decode').
    Returns a DoOutputsTuple with ``images`` and ``errors``.
    """

    def expand(self, files):
        return files | "Decode" >> beam.ParDo(_DecodeFn()).with_outputs(ERRORS_TAG, main="images")
