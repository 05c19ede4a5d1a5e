"""SkipEmbedded: leave out files whose content already has embeddings (incremental runs)."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from schemas import ImageFile
from transforms.errors import METRICS_NAMESPACE

SKIPPED_TAG = "skipped"


class _SkipFn(beam.DoFn):
    def setup(self):
        self._skipped = Metrics.counter(METRICS_NAMESPACE, "skipped")

    def process(self, file: ImageFile, done):
        if file.image_id in done:
            self._skipped.inc()
            yield beam.pvalue.TaggedOutput(SKIPPED_TAG, file.uri)
        else:
            yield file


class SkipEmbedded(beam.PTransform):
    """ImageFile -> ``files``: the ImageFiles whose ``image_id`` (SHA-256 of the bytes) is
    not among ``done_ids``, and ``skipped``: the URI (str) of every file that is.

    ``done_ids`` is a PCollection[str] of image ids embedded by earlier runs; it is used
    as a side-input dict, so each worker holds the ids once (about 150 bytes per id).
    Returns a DoOutputsTuple with ``files`` and ``skipped``."""

    def __init__(self, done_ids: beam.PCollection):
        super().__init__()
        self._done_ids = done_ids

    def expand(self, files):
        done = self._done_ids | "AsKeys" >> beam.Map(lambda image_id: (image_id, True))
        return files | "Skip" >> beam.ParDo(
            _SkipFn(), done=beam.pvalue.AsDict(done)
        ).with_outputs(SKIPPED_TAG, main="files")
