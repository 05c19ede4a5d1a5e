"""BatchByShape: single images -> batches that each hold exactly one shape."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from schemas import ERRORS_TAG, STAGE_BATCH, ImageBatch, ResizedImage, ShapeContractError, assert_shape
from transforms.errors import METRICS_NAMESPACE, image_error


def stack_batch(images: list[ResizedImage]) -> ImageBatch:
    """Stack images of one shape into an ImageBatch, asserting that every one has it."""
    shape = images[0].pixels.shape
    for image in images:
        assert_shape(
            image.pixels, shape, stage=STAGE_BATCH, uri=image.info.uri,
            image_id=image.info.image_id, dtype=np.uint8,
        )
    return ImageBatch(infos=tuple(i.info for i in images), pixels=np.stack([i.pixels for i in images]))


class _BatchByShapeFn(beam.DoFn):
    """Buffers per shape within a bundle; nothing waits for a shuffle, so memory stays at
    about one batch per distinct shape."""

    def __init__(self, batch_size: int, image_shape: tuple[int, ...] | None):
        self._batch_size = batch_size
        self._image_shape = image_shape
        self._buffers: dict[tuple[int, ...], list[ResizedImage]] = {}

    def setup(self):
        self._batches = Metrics.counter(METRICS_NAMESPACE, "batches")

    def start_bundle(self):
        self._buffers = {}

    def process(self, image: ResizedImage):
        shape = tuple(image.pixels.shape)
        if self._image_shape is not None and (
            shape != self._image_shape or image.pixels.dtype != np.uint8
        ):
            yield image_error(
                image.info.uri, image.info.image_id, STAGE_BATCH,
                ShapeContractError(
                    stage=STAGE_BATCH, uri=image.info.uri, image_id=image.info.image_id,
                    expected=self._image_shape + ("uint8",),
                    actual=shape + (str(image.pixels.dtype),),
                ),
            )
            return
        buffer = self._buffers.setdefault(shape, [])
        buffer.append(image)
        if len(buffer) >= self._batch_size:
            del self._buffers[shape]
            self._batches.inc()
            yield stack_batch(buffer)

    def finish_bundle(self):
        for buffer in self._buffers.values():
            self._batches.inc()
            yield WindowedValue(stack_batch(buffer), GlobalWindow().max_timestamp(), [GlobalWindow()])
        self._buffers = {}


class BatchByShape(beam.PTransform):
    """ResizedImage (H, W, 3) uint8 -> ``batches``: ImageBatch with pixels (n, H, W, 3),
    1 <= n <= ``batch_size``, every image in a batch of the same shape (asserted before
    the batch is emitted). The last batch of each shape in a bundle may be short.

    With ``image_shape`` given, an image of any other shape or dtype goes to ``errors``
    (ImageError, stage 'batch') instead of forming a batch of its own.
    Returns a DoOutputsTuple with ``batches`` and ``errors``.
    """

    def __init__(self, batch_size: int, *, image_shape: tuple[int, ...] | None = None):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._batch_size = batch_size
        self._image_shape = tuple(image_shape) if image_shape is not None else None

    def expand(self, images):
        return images | "Batch" >> beam.ParDo(
            _BatchByShapeFn(self._batch_size, self._image_shape)
        ).with_outputs(ERRORS_TAG, main="batches")
