"""ExtractLayers: uniform uint8 batches -> per-layer ResNet50 outputs, one model per process."""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import time
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils import shared
from apache_beam.utils.windowed_value import WindowedValue

from schemas import (
    ERRORS_TAG,
    STAGE_EXTRACT,
    BatchEmbeddings,
    ExtractionConfig,
    ImageBatch,
    ImageInfo,
    ShapeContractError,
    assert_shape,
)
from transforms.errors import METRICS_NAMESPACE, image_error

_log = logging.getLogger(__name__)


class _Done(NamedTuple):
    embeddings: BatchEmbeddings
    millis: int


class _Failed(NamedTuple):
    info: ImageInfo
    error: Exception


def _in_global_window(output):
    """finish_bundle outputs need a window; batch pipelines use the global one."""
    window = GlobalWindow()
    if isinstance(output, beam.pvalue.TaggedOutput):
        return beam.pvalue.TaggedOutput(output.tag, WindowedValue(output.value, window.max_timestamp(), [window]))
    return WindowedValue(output, window.max_timestamp(), [window])


class _ExtractFn(beam.DoFn):
    """Inference runs on one background thread per DoFn instance, so the Beam thread goes on
    decoding and resizing the next batch meanwhile (TensorFlow releases the GIL while it
    computes). ``in_flight_batches`` waiting batches are allowed; 0 is synchronous. Metrics
    and outputs are produced on the Beam thread only (Beam metrics are per thread)."""

    def __init__(self, config: ExtractionConfig, model_handle: shared.Shared, extractor_factory,
                 in_flight_batches: int):
        self._config = config
        self._model_handle = model_handle
        self._extractor_factory = extractor_factory
        self._in_flight = in_flight_batches

    def setup(self):
        self._embedded = Metrics.counter(METRICS_NAMESPACE, "images_embedded")
        self._latency = Metrics.distribution(METRICS_NAMESPACE, "inference_batch_latency_ms")
        self._first_batch = Metrics.distribution(METRICS_NAMESPACE, "first_batch_unix_ms")
        self._seen_a_batch = False
        config, factory = self._config, self._extractor_factory
        # One model per process and configuration, shared by every DoFn instance in it.
        self._extractor = self._model_handle.acquire(lambda: factory(config), tag=repr(config))
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._pending: collections.deque = collections.deque()

    def teardown(self):
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=True)

    def _check_input(self, batch: ImageBatch) -> None:
        expected = (len(batch.infos),) + self._config.input_shape
        first = batch.infos[0]
        assert_shape(
            batch.pixels, expected, stage=STAGE_EXTRACT, uri=first.uri,
            image_id=first.image_id, dtype=np.uint8,
        )

    def _check_outputs(self, batch: ImageBatch, outputs: dict[str, np.ndarray]) -> None:
        first = batch.infos[0]
        if set(outputs) != set(self._config.layers):
            raise ValueError(f"model returned layers {sorted(outputs)}, expected {self._config.layers}")
        for layer in self._config.layers:
            expected = (len(batch.infos),) + self._config.embedding_shape(layer)
            assert_shape(
                outputs[layer], expected, stage=STAGE_EXTRACT, uri=first.uri,
                image_id=first.image_id, dtype=np.dtype(self._config.output_dtype),
            )

    def _compute(self, batch: ImageBatch) -> list:
        """Run one batch (on the inference thread); when inference raises, retry in halves
        down to single images. Returns _Done and _Failed outcomes."""
        try:
            started = time.perf_counter()
            outputs = self._extractor(batch.pixels)
            millis = int((time.perf_counter() - started) * 1000)
            self._check_outputs(batch, outputs)
        except ShapeContractError as exc:  # Deterministic: retrying smaller batches cannot help.
            return [_Failed(info, exc) for info in batch.infos]
        except Exception as exc:
            if len(batch.infos) == 1:
                return [_Failed(batch.infos[0], exc)]
            _log.warning("inference failed on a batch of %d (%s); retrying in halves",
                         len(batch.infos), exc)
            middle = len(batch.infos) // 2
            return [outcome for part in (slice(0, middle), slice(middle, None))
                    for outcome in self._compute(ImageBatch(batch.infos[part], batch.pixels[part]))]
        return [_Done(BatchEmbeddings(infos=batch.infos, layers=outputs), millis)]

    def _emit(self, outcomes: list):
        for outcome in outcomes:
            if isinstance(outcome, _Failed):
                yield image_error(outcome.info.uri, outcome.info.image_id, STAGE_EXTRACT, outcome.error)
                continue
            if not self._seen_a_batch:  # start-up, as the launcher sees it: see pipeline.run
                self._seen_a_batch = True
                self._first_batch.update(int(time.time() * 1000))
                _log.info("first batch embedded")
            self._latency.update(outcome.millis)
            self._embedded.inc(len(outcome.embeddings.infos))
            yield outcome.embeddings

    def start_bundle(self):
        self._pending.clear()

    def process(self, batch: ImageBatch):
        try:
            self._check_input(batch)
        except ShapeContractError as exc:
            for info in batch.infos:
                yield image_error(info.uri, info.image_id, STAGE_EXTRACT, exc)
            return
        self._pending.append(self._executor.submit(self._compute, batch))
        while self._pending and (len(self._pending) > self._in_flight or self._pending[0].done()):
            yield from self._emit(self._pending.popleft().result())

    def finish_bundle(self):
        while self._pending:
            for output in self._emit(self._pending.popleft().result()):
                yield _in_global_window(output)


def _default_extractor(config: ExtractionConfig):
    from models.extractor import LayerExtractor

    return LayerExtractor(config)


class ExtractLayers(beam.PTransform):
    """ImageBatch (n, H, W, 3) uint8 -> ``embeddings``: BatchEmbeddings whose
    ``layers[name]`` is (n, C) when pooled or (n, h, w, c) for ``pooling='none'``, in
    ``config.output_dtype``, every array asserted against ``schemas.layer_shape``.

    The model is built once per worker process for ``config.image_size`` (``shared.Shared``).
    A batch whose inference raises is retried in halves; an image failing alone goes to
    ``errors`` (ImageError, stage 'extract'), as do batches not of the configured shape.
    ``extractor_factory(config)`` may replace the ResNet50 extractor (tests inject faults).
    Inference overlaps with decoding: up to ``in_flight_batches`` batches wait behind the
    one being computed (0: synchronous, the plain path).
    Returns a DoOutputsTuple with ``embeddings`` and ``errors``.
    """

    def __init__(self, config: ExtractionConfig, *, extractor_factory=_default_extractor,
                 in_flight_batches: int = 1):
        super().__init__()
        self._config = config
        self._extractor_factory = extractor_factory
        self._in_flight_batches = in_flight_batches

    def expand(self, batches):
        return batches | "Extract" >> beam.ParDo(
            _ExtractFn(self._config, shared.Shared(), self._extractor_factory, self._in_flight_batches)
        ).with_outputs(ERRORS_TAG, main="embeddings")
