"""ResizeImages: any decoded image -> the model's input size, by one of three modes."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
from PIL import Image

from schemas import (
    ERRORS_TAG,
    RESIZE_MODES,
    STAGE_RESIZE,
    DecodedImage,
    ExtractionConfig,
    ImageSize,
    InputLimits,
    ResizedImage,
    assert_shape,
    parse_image_size,
)
from transforms.decode import decode_image
from transforms.errors import image_error

#: ImageNet mean colour: letterbox bars become zeros after caffe preprocessing.
PAD_COLOUR = (124, 116, 104)
RESAMPLE = Image.Resampling.BILINEAR


def _center_crop(image: Image.Image, size: ImageSize) -> Image.Image:
    """Scale so the image covers ``size``, keeping the aspect ratio, and cut the centre.
    The crop box is applied by ``resize`` itself, so no oversized intermediate is made."""
    width, height = image.size
    scale = max(size.width / width, size.height / height)
    box_w, box_h = min(width, size.width / scale), min(height, size.height / scale)
    # Clamped: float rounding can put an edge a hair outside the image, which PIL refuses.
    left, top = max(0.0, (width - box_w) / 2), max(0.0, (height - box_h) / 2)
    return image.resize(
        (size.width, size.height), RESAMPLE,
        box=(left, top, min(width, left + box_w), min(height, top + box_h)),
    )


def _pad(image: Image.Image, size: ImageSize) -> Image.Image:
    """Scale so the image fits inside ``size`` and centre it on a PAD_COLOUR canvas."""
    width, height = image.size
    scale = min(size.width / width, size.height / height)
    inner = (max(1, round(width * scale)), max(1, round(height * scale)))
    canvas = Image.new("RGB", (size.width, size.height), PAD_COLOUR)
    canvas.paste(
        image.resize(inner, RESAMPLE),
        ((size.width - inner[0]) // 2, (size.height - inner[1]) // 2),
    )
    return canvas


def resize_pixels(pixels: np.ndarray, size: ImageSize, mode: str) -> np.ndarray:
    """(h, w, 3) uint8 -> (size.height, size.width, 3) uint8 by ``mode``:
    'center_crop' (cover, crop the centre), 'stretch' (ignore aspect ratio) or 'pad'
    (fit, letterbox with the ImageNet mean colour). Bilinear with antialiasing."""
    image = Image.fromarray(pixels, "RGB")
    if mode == "center_crop":
        result = _center_crop(image, size)
    elif mode == "stretch":
        result = image.resize((size.width, size.height), RESAMPLE)
    elif mode == "pad":
        result = _pad(image, size)
    else:
        raise ValueError(f"resize mode {mode!r} is not one of {', '.join(RESIZE_MODES)}")
    return np.asarray(result)


def model_input(data: bytes, config: ExtractionConfig, limits: InputLimits = InputLimits()) -> np.ndarray:
    """Encoded image bytes -> the (H, W, 3) uint8 example a ResNet50Handler takes: the same
    format and header guards, draft decoding and resize as DecodeImages -> ResizeImages, so
    RunInference on it gives the pipeline's numbers. Raises what decoding raises."""
    decoded = decode_image(
        data, max_pixels=limits.max_pixels, min_side=limits.min_side,
        target=config.image_size if config.jpeg_draft else None, resize_mode=config.resize_mode,
        image_formats=limits.image_formats,
    )
    return resize_pixels(decoded.pixels, config.image_size, config.resize_mode)


class _ResizeFn(beam.DoFn):
    def __init__(self, size: ImageSize, mode: str):
        self._size = size
        self._mode = mode
        self._shape = (size.height, size.width, 3)

    def process(self, image: DecodedImage):
        info = image.info
        try:
            pixels = resize_pixels(image.pixels, self._size, self._mode)
            assert_shape(
                pixels, self._shape, stage=STAGE_RESIZE, uri=info.uri,
                image_id=info.image_id, dtype=np.uint8,
            )
        except Exception as exc:
            yield image_error(info.uri, info.image_id, STAGE_RESIZE, exc)
            return
        yield ResizedImage(info=info, pixels=pixels)


class ResizeImages(beam.PTransform):
    """DecodedImage (h, w, 3) uint8 -> ``images``: ResizedImage (H, W, 3) uint8 for
    ``image_size`` (H, W), by ``mode`` in RESIZE_MODES (default 'center_crop').
    Failures go to ``errors`` (ImageError, stage 'resize').
    Returns a DoOutputsTuple with ``images`` and ``errors``.
    """

    def __init__(self, image_size, mode: str = "center_crop"):
        super().__init__()
        if mode not in RESIZE_MODES:
            raise ValueError(f"resize mode {mode!r} is not one of {', '.join(RESIZE_MODES)}")
        self._size = parse_image_size(image_size)
        self._mode = mode

    def expand(self, images):
        return images | "Resize" >> beam.ParDo(_ResizeFn(self._size, self._mode)).with_outputs(
            ERRORS_TAG, main="images"
        )
