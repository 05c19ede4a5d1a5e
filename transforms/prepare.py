"""PrepareBatches: image bytes -> uniform uint8 batches in one step per image (checked,
decoded, resized, batched), with each stage's errors."""

from __future__ import annotations

import apache_beam as beam

from models.heap import freeze_long_lived
from models.malloc_tuning import keep_freed_memory
from schemas import (
    DEFAULT_MAX_FILE_BYTES,
    ERRORS_TAG,
    STAGE_READ,
    EmptyFile,
    ExtractionConfig,
    FileMeta,
    FileTooLarge,
    ImageBatch,
    ImageFile,
    InputLimits,
)
from transforms.batch import _BatchByShapeFn
from transforms.decode import _DecodeFn
from transforms.errors import image_error
from transforms.read import content_id
from transforms.resize import _ResizeFn, reducing_gap


class NotKeyedBytes(TypeError):
    """An element that is neither (key: str, data: bytes) nor an ImageFile."""


class _AsImageFileFn(beam.DoFn):
    def __init__(self, max_file_bytes: int):
        self._max_file_bytes = max_file_bytes

    def process(self, element):
        if isinstance(element, ImageFile):
            yield element
            return
        key = None
        try:
            key, data = element
            if not isinstance(key, str) or not isinstance(data, (bytes, bytearray, memoryview)):
                raise NotKeyedBytes(
                    f"expected (key: str, data: bytes), got ({type(key).__name__}, {type(data).__name__})")
            if not data:
                raise EmptyFile("the image bytes are empty")
            if len(data) > self._max_file_bytes:
                raise FileTooLarge(f"{len(data)} bytes is over --max_file_bytes {self._max_file_bytes}")
        except Exception as exc:  # A malformed element is an error row, not a failed job.
            label = key if isinstance(key, str) else f"<element of type {type(element).__name__}>"
            if not isinstance(exc, (NotKeyedBytes, EmptyFile, FileTooLarge)):
                exc = NotKeyedBytes(f"expected (key: str, data: bytes): {exc}")
            yield image_error(label, None, STAGE_READ, exc)
            return
        data = bytes(data)
        yield ImageFile(FileMeta(key, content_id(data)), data)


def _then(step: beam.DoFn, outputs):
    """Feed ``outputs`` of the step before into ``step``; error outputs pass straight on."""
    for output in outputs:
        if isinstance(output, beam.pvalue.TaggedOutput):
            yield output
        else:
            yield from step.process(output)


class _PrepareFn(beam.DoFn):
    """The DoFns of AsImageFiles, DecodeImages, ResizeImages and BatchByShape run in turn
    inside one DoFn: an image passes through Beam once, not four times, and its decoded
    and resized arrays are never Beam elements (whose sizes Beam samples by pickling)."""

    def __init__(self, steps: list[beam.DoFn]):
        self._steps = steps

    def setup(self):
        for step in self._steps:
            step.setup()
        freeze_long_lived("imports")  # Beam, Pillow, pyarrow: loaded for this process's life
        keep_freed_memory()  # each image's buffers reuse the last one's pages

    def start_bundle(self):
        for step in self._steps:
            step.start_bundle()

    def process(self, element):
        outputs = self._steps[0].process(element)
        for step in self._steps[1:]:
            outputs = _then(step, outputs)
        yield from outputs

    def finish_bundle(self):
        for step in self._steps:
            yield from step.finish_bundle() or ()

    def teardown(self):
        for step in self._steps:
            step.teardown()


class PrepareBatches(beam.PTransform):
    """``(key: str, data: bytes)`` or ImageFile -> ``batches``: ImageBatch with pixels
    (n, H, W, 3) uint8, H x W = ``config.image_size``, 1 <= n <= ``config.batch_size``;
    ``errors``: ImageError per input refused on the way (stages read, validate, decode,
    resize, batch). The same checks, decode and resize as AsImageFiles -> DecodeImages ->
    ResizeImages -> BatchByShape (EmbedImages' steps), fused into one step per image.
    Returns a DoOutputsTuple with ``batches`` and ``errors``."""

    def __init__(self, config: ExtractionConfig, limits: InputLimits = InputLimits(), *,
                 max_file_bytes: int = DEFAULT_MAX_FILE_BYTES):
        super().__init__()
        self._steps = [
            _AsImageFileFn(max_file_bytes),
            _DecodeFn(limits.max_pixels, limits.min_side, config.image_size if config.jpeg_draft else None,
                      config.resize_mode, tuple(limits.image_formats), limits.decode_warn_seconds),
            _ResizeFn(config.image_size, config.resize_mode, reducing_gap(config)),
            _BatchByShapeFn(config.batch_size, config.input_shape),
        ]

    def expand(self, elements):
        return elements | "Prepare" >> beam.ParDo(_PrepareFn(self._steps)).with_output_types(
            ImageBatch).with_outputs(ERRORS_TAG, main="batches")
