"""TestPipeline on Beam's in-process runner, and matchers for assert_that."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import BeamAssertException

from pipeline.local import LOCAL_RUNNER


def local_test_pipeline() -> TestPipeline:
    return TestPipeline(runner=LOCAL_RUNNER)


def check(predicate_on_list, description: str):
    """A matcher for assert_that: ``predicate_on_list(elements)`` must return True."""

    def _match(elements):
        elements = list(elements)
        if not predicate_on_list(elements):
            raise BeamAssertException(f"{description}; got {elements!r:.2000}")

    return _match


class _CrashOn(beam.DoFn):
    def __init__(self, name: str):
        self._name = name

    def process(self, batch):
        if any(info.uri.endswith(self._name) for info in batch.infos):
            raise MemoryError("simulated worker crash")
        yield batch


class CrashingExtract(beam.PTransform):
    """The real extraction (ExtractLayers of ``config``), but the whole job fails on a
    batch holding an image whose uri ends with ``name``: run(..., extract=...)."""

    def __init__(self, name: str, config):
        super().__init__()
        self._name, self._config = name, config

    def expand(self, batches):
        from transforms import ExtractLayers

        return batches | beam.ParDo(_CrashOn(self._name)) | ExtractLayers(self._config)
