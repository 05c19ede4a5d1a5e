"""ExtractLayers: uniform uint8 batches -> per-layer ResNet50 outputs, through a ResNet50Handler."""

from __future__ import annotations

import collections
import concurrent.futures
import json
import logging
import os
import socket
import sys
import time
from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from models.handler import ResNet50Handler
from models.placement import cuda_untouched
from models.precision import PrecisionCertificateFailed
from models.serving import ModelProcessLost, SharedModel
from schemas import (
    ERRORS_TAG,
    MODELS_TAG,
    STAGE_EXTRACT,
    BatchEmbeddings,
    ExtractionConfig,
    ImageBatch,
    ImageInfo,
    ShapeContractError,
)
from schemas.accounting import EMBEDDED, counter_name
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


def sdk_process_record() -> dict:
    """This SDK process, which sends its batches to model processes: it should never have
    loaded TensorFlow, let alone initialised CUDA (a context costs ~100 MB on each GPU)."""
    return {"kind": "sdk_process", "host": socket.gethostname(), "pid": os.getpid(),
            "tensorflow_imported": "tensorflow" in sys.modules, "cuda_untouched": cuda_untouched()}


class _ExtractFn(beam.DoFn):
    """Inference runs on one background thread per DoFn instance, so the Beam thread goes on
    decoding and resizing the next batch meanwhile (TensorFlow, and a socket to a model
    process, release the GIL while they wait). ``in_flight_batches`` waiting batches are
    allowed; 0 is synchronous. Metrics and outputs are produced on the Beam thread only
    (Beam metrics are per thread)."""

    def __init__(self, handler: ResNet50Handler, in_flight_batches: int):
        self._handler = handler
        self._in_flight = in_flight_batches

    def setup(self):
        self._embedded = Metrics.counter(METRICS_NAMESPACE, counter_name(EMBEDDED))
        self._reloads = Metrics.counter(METRICS_NAMESPACE, "model_process_reloads")
        self._latency = Metrics.distribution(METRICS_NAMESPACE, "inference_batch_latency_ms")
        self._seen_a_batch = False
        self._model = SharedModel(self._handler)
        self._reloads_counted = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._pending: collections.deque = collections.deque()

    def teardown(self):
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=True)
        model = getattr(self, "_model", None)
        if model is not None:
            model.close()

    def _compute(self, batch: ImageBatch) -> list:
        """Run one batch (on the inference thread); when inference raises, retry in halves
        down to single images. Returns _Done and _Failed outcomes. A lost model process is
        SharedModel's to retry; when it gives up, ModelProcessLost fails the bundle."""
        first = batch.infos[0]
        try:
            started = time.perf_counter()
            outputs = self._model(batch.pixels)  # the input was checked in process()
            millis = int((time.perf_counter() - started) * 1000)
            self._handler.check_outputs(outputs, len(batch.infos), uri=first.uri, image_id=first.image_id)
        except (ModelProcessLost, PrecisionCertificateFailed):
            raise  # the run stops: no image is at fault
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
        if self._model.reloaded > self._reloads_counted:
            self._reloads.inc(self._model.reloaded - self._reloads_counted)
            self._reloads_counted = self._model.reloaded
        for outcome in outcomes:
            if isinstance(outcome, _Failed):
                yield image_error(outcome.info.uri, outcome.info.image_id, STAGE_EXTRACT, outcome.error)
                continue
            if not self._seen_a_batch:
                self._seen_a_batch = True
                _log.info("first batch embedded")
            self._latency.update(outcome.millis)
            self._embedded.inc(len(outcome.embeddings.infos))
            yield outcome.embeddings

    def start_bundle(self):
        self._pending.clear()

    def process(self, batch: ImageBatch):
        first = batch.infos[0]
        try:
            self._handler.check_input(batch.pixels, uri=first.uri, image_id=first.image_id)
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
        if self._seen_a_batch:  # where the models that embedded this bundle ran (manifest)
            records = [{"kind": "model", **record} for record in self._model.describe(self._model.used)]
            if self._handler.share_model_across_processes():
                records.append(sdk_process_record())
            for record in records:
                yield _in_global_window(beam.pvalue.TaggedOutput(
                    MODELS_TAG, json.dumps(record, sort_keys=True, default=str)))


class ExtractLayers(beam.PTransform):
    """ImageBatch (n, H, W, 3) uint8 -> ``embeddings``: BatchEmbeddings whose
    ``layers[name]`` is (n, C) when pooled or (n, h, w, c) for ``pooling='none'``, in
    ``config.output_dtype``, every array asserted against ``schemas.layer_shape``.

    ``model`` is a ResNet50Handler (models/handler.py), or an ExtractionConfig for
    ``ResNet50Handler(config)``. Its model is loaded once per worker process, or, with the
    handler's ``model_copies``, N times per machine in model processes that every SDK
    process of the machine shares (models/serving.py). A batch whose inference raises is
    retried in halves; an image failing alone goes to ``errors`` (ImageError, stage
    'extract'), as do batches not of the configured shape. Inference overlaps with
    decoding: up to ``in_flight_batches`` batches wait behind the one being computed (0:
    synchronous, the plain path). The handler's resource hints (``accelerator``) go on this
    step alone, after a Reshuffle (``ToModelWorkers``) that hands the batches over to the
    workers that have the accelerator.
    Returns a DoOutputsTuple with ``embeddings``, ``errors`` and ``models``: JSON text of
    where each model that embedded a batch ran (host, pid, copy, GPU, CUDA_VISIBLE_DEVICES,
    device, precision, XLA, batch size, precision certificate), repeated per bundle.
    Reduced precision whose certificate fails (models/precision.py) stops the run.
    """

    def __init__(self, model: ResNet50Handler | ExtractionConfig, *, in_flight_batches: int = 1):
        super().__init__()
        self.handler = model if isinstance(model, ResNet50Handler) else ResNet50Handler(model)
        self._in_flight_batches = in_flight_batches

    def expand(self, batches):
        extract = beam.ParDo(_ExtractFn(self.handler, self._in_flight_batches))
        hints = self.handler.get_resource_hints()
        if hints:
            batches = batches | "ToModelWorkers" >> beam.Reshuffle()
            extract = extract.with_resource_hints(**hints)
        return batches | "Extract" >> extract.with_output_types(BatchEmbeddings).with_outputs(
            ERRORS_TAG, MODELS_TAG, main="embeddings")
