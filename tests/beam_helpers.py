"""TestPipeline on Beam's in-process runner, and matchers for assert_that."""

from __future__ import annotations

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
