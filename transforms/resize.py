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
#: With ``jpeg_draft`` on (fast reductions), a reduction of more than twice this factor is
#: first a box reduction by an integer factor (Pillow's ``reducing_gap``), then the
#: antialiased bilinear step of at least this factor. On the 8 sample photos at 3000x2000,
#: decoded in full (bench/reducing_gap.py): 20.2 -> 10.1 ms per resize, at most 0.30 grey
#: levels from the plain resize (res5 cosine >= 0.990), where JPEG draft decoding is up to
#: 1.11 away (res5 0.982). A drafted JPEG is already within a factor of 2: its pixels do
#: not change.
REDUCING_GAP = 2.0


def reducing_gap(config: ExtractionConfig) -> float | None:
    """REDUCING_GAP where the config accepts fast reductions (``jpeg_draft``), else None."""
    return REDUCING_GAP if config.jpeg_draft else None


def _center_crop(image: Image.Image, size: ImageSize, gap: float | None) -> Image.Image:
    """Scale so the image covers ``size``, keeping the aspect ratio, and cut the centre.
    The crop box is applied by ``resize`` itself, so no oversized intermediate is made."""
    width, height = image.size
    scale = max(size.width / width, size.height / height)
    box_w, box_h = min(width, size.width / scale), min(height, size.height / scale)
    # Clamped: float rounding can put an edge a hair outside the image, which PIL refuses.
    left, top = max(0.0, (width - box_w) / 2), max(0.0, (height - box_h) / 2)
    return image.resize(
        (size.width, size.height), RESAMPLE,
        box=(left, top, min(width, left + box_w), min(height, top + box_h)), reducing_gap=gap,
    )


def _pad(image: Image.Image, size: ImageSize, gap: float | None) -> Image.Image:
    """Scale so the image fits inside ``size`` and centre it on a PAD_COLOUR canvas."""
    width, height = image.size
    scale = min(size.width / width, size.height / height)
    inner = (max(1, round(width * scale)), max(1, round(height * scale)))
    canvas = Image.new("RGB", (size.width, size.height), PAD_COLOUR)
    canvas.paste(
        image.resize(inner, RESAMPLE, reducing_gap=gap),
        ((size.width - inner[0]) // 2, (size.height - inner[1]) // 2),
    )
    return canvas


def resize_pixels(pixels: np.ndarray, size: ImageSize, mode: str, gap: float | None = None) -> np.ndarray:
    """(h, w, 3) uint8 -> (size.height, size.width, 3) uint8 by ``mode``:
    'center_crop' (cover, crop the centre), 'stretch' (ignore aspect ratio) or 'pad'
    (fit, letterbox with the ImageNet mean colour). Bilinear with antialiasing, after a box
    reduction by an integer factor when ``gap`` is given and the reduction is more than
    twice ``gap`` (Pillow's ``reducing_gap``)."""
    image = Image.fromarray(pixels, "RGB")
    if mode == "center_crop":
        result = _center_crop(image, size, gap)
    elif mode == "stretch":
        result = image.resize((size.width, size.height), RESAMPLE, reducing_gap=gap)
    elif mode == "pad":
        result = _pad(image, size, gap)
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
    return resize_pixels(decoded.pixels, config.image_size, config.resize_mode, reducing_gap(config))


class _ResizeFn(beam.DoFn):
    def __init__(self, size: ImageSize, mode: str, gap: float | None):
        self._size = size
        self._mode = mode
        self._gap = gap
        self._shape = (size.height, size.width, 3)

    def process(self, image: DecodedImage):
        info = image.info
        try:
            pixels = resize_pixels(image.pixels, self._size, self._mode, self._gap)
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
    ``image_size`` (H, W), by ``mode`` in RESIZE_MODES (default 'center_crop'), with a box
    pre-reduction for large reductions when ``gap`` is given (``reducing_gap(config)``).
    Failures go to ``errors`` (ImageError, stage 'resize').
    Returns a DoOutputsTuple with ``images`` and ``errors``.
    """

    def __init__(self, image_size, mode: str = "center_crop", gap: float | None = None):
        super().__init__()
        if mode not in RESIZE_MODES:
            raise ValueError(f"resize mode {mode!r} is not one of {', '.join(RESIZE_MODES)}")
        self._size = parse_image_size(image_size)
        self._mode = mode
        self._gap = gap

    def expand(self, images):
        return images | "Resize" >> beam.ParDo(_ResizeFn(self._size, self._mode, self._gap)).with_outputs(
            ERRORS_TAG, main="images"
        )
