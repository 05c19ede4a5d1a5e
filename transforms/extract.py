"""ExtractLayers: uniform uint8 batches -> per-layer ResNet50 outputs, one model per process."""

from __future__ import annotations

import logging
import time

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

from schemas import (
    ERRORS_TAG,
    STAGE_EXTRACT,
    BatchEmbeddings,
    ExtractionConfig,
    ImageBatch,
    ShapeContractError,
    assert_shape,
)
from transforms.errors import METRICS_NAMESPACE, image_error

_log = logging.getLogger(__name__)


class _ExtractFn(beam.DoFn):
    def __init__(self, config: ExtractionConfig, model_handle: shared.Shared, extractor_factory):
        self._config = config
        self._model_handle = model_handle
        self._extractor_factory = extractor_factory

    def setup(self):
        self._embedded = Metrics.counter(METRICS_NAMESPACE, "images_embedded")
        self._latency = Metrics.distribution(METRICS_NAMESPACE, "inference_batch_latency_ms")
        config, factory = self._config, self._extractor_factory
        # One model per process and configuration, shared by every DoFn instance in it.
        self._extractor = self._model_handle.acquire(lambda: factory(config), tag=repr(config))

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

    def _embed(self, batch: ImageBatch):
        """Run one batch; when inference raises, retry in halves down to single images."""
        try:
            started = time.perf_counter()
            outputs = self._extractor(batch.pixels)
            self._latency.update(int((time.perf_counter() - started) * 1000))
            self._check_outputs(batch, outputs)
        except ShapeContractError as exc:  # Deterministic: retrying smaller batches cannot help.
            for info in batch.infos:
                yield image_error(info.uri, info.image_id, STAGE_EXTRACT, exc)
            return
        except Exception as exc:
            if len(batch.infos) == 1:
                info = batch.infos[0]
                yield image_error(info.uri, info.image_id, STAGE_EXTRACT, exc)
                return
            _log.warning("inference failed on a batch of %d (%s); retrying in halves",
                         len(batch.infos), exc)
            middle = len(batch.infos) // 2
            for part in (slice(0, middle), slice(middle, None)):
                yield from self._embed(ImageBatch(batch.infos[part], batch.pixels[part]))
            return
        self._embedded.inc(len(batch.infos))
        yield BatchEmbeddings(infos=batch.infos, layers=outputs)

    def process(self, batch: ImageBatch):
        try:
            self._check_input(batch)
        except ShapeContractError as exc:
            for info in batch.infos:
                yield image_error(info.uri, info.image_id, STAGE_EXTRACT, exc)
            return
        yield from self._embed(batch)


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
    Returns a DoOutputsTuple with ``embeddings`` and ``errors``.
    """

    def __init__(self, config: ExtractionConfig, *, extractor_factory=_default_extractor):
        super().__init__()
        self._config = config
        self._extractor_factory = extractor_factory

    def expand(self, batches):
        return batches | "Extract" >> beam.ParDo(
            _ExtractFn(self._config, shared.Shared(), self._extractor_factory)
        ).with_outputs(ERRORS_TAG, main="embeddings")
