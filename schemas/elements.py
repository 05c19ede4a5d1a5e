"""The element types passed between transforms. Arrays are numpy; shapes are per docstring."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Stages named in errors/ and in ShapeContractError messages.
STAGE_READ = "read"
STAGE_VALIDATE = "validate"
STAGE_DECODE = "decode"
STAGE_RESIZE = "resize"
STAGE_BATCH = "batch"
STAGE_EXTRACT = "extract"
STAGE_WRITE = "write"  # named in ShapeContractError only: a write failure fails the run
STAGES = (STAGE_READ, STAGE_VALIDATE, STAGE_DECODE, STAGE_RESIZE, STAGE_BATCH, STAGE_EXTRACT)


class ImageFile(NamedTuple):
    """A matched input file. ``image_id`` is the hex SHA-256 of ``data``."""

    uri: str
    image_id: str
    data: bytes


class ImageInfo(NamedTuple):
    """What is known about a source image once decoded: one row of ``images/``.
    ``width`` and ``height`` are after EXIF orientation; ``format`` is PIL's (JPEG, PNG...)."""

    uri: str
    image_id: str
    width: int
    height: int
    format: str


class DecodedImage(NamedTuple):
    """A decoded image: ``pixels`` is (height, width, 3) uint8 RGB at source resolution."""

    info: ImageInfo
    pixels: np.ndarray


class ResizedImage(NamedTuple):
    """An image at the model's input size: ``pixels`` is (H, W, 3) uint8 RGB."""

    info: ImageInfo
    pixels: np.ndarray


class ImageBatch(NamedTuple):
    """Images of one shape: ``pixels`` is (n, H, W, 3) uint8, row i belongs to ``infos[i]``."""

    infos: tuple[ImageInfo, ...]
    pixels: np.ndarray


class BatchEmbeddings(NamedTuple):
    """Per-layer outputs for one batch: ``layers[name]`` is (n, C) pooled or (n, h, w, c)
    for full feature maps; row i belongs to ``infos[i]``."""

    infos: tuple[ImageInfo, ...]
    layers: dict[str, np.ndarray]


class ImageError(NamedTuple):
    """An input that could not be embedded: one row of ``errors/``."""

    uri: str
    image_id: str | None
    stage: str
    error_type: str
    message: str


#: Tag of the error output of every transform that can reject an image.
ERRORS_TAG = "errors"
