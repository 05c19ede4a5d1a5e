"""Turning an exception about one image into a row of ``errors/`` on the error output."""

from __future__ import annotations

import logging
import re

import apache_beam as beam
from apache_beam.metrics import Metrics

from schemas import ERRORS_TAG, STAGE_VALIDATE, ImageError, ImageRejected
from schemas.accounting import ERRORS, counter_name

METRICS_NAMESPACE = "resnet50_embeddings"
_ADDRESS = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")
_MAX_MESSAGE = 2000
_log = logging.getLogger(__name__)


def describe(exc: BaseException, uri: str) -> str:
    """A stable, bounded message: object reprs with memory addresses become the URI."""
    message = _ADDRESS.sub(uri, str(exc)) or type(exc).__name__
    return message[:_MAX_MESSAGE]


def image_error(uri: str, image_id: str | None, stage: str, exc: BaseException) -> beam.pvalue.TaggedOutput:
    """The error-output element for ``exc`` raised at ``stage`` on one image; also counted.
    A guard's ImageRejected is reported at stage 'validate' whichever step found it."""
    if isinstance(exc, ImageRejected):
        stage = STAGE_VALIDATE
    Metrics.counter(METRICS_NAMESPACE, counter_name(ERRORS, stage)).inc()
    error = ImageError(
        uri=uri,
        image_id=image_id,
        stage=stage,
        error_type=type(exc).__name__,
        message=describe(exc, uri),
    )
    # One line per image only at DEBUG: the run's summary gives a line per error type with
    # its count and an example, and errors/ holds every row.
    _log.debug("%s failed for %s: %s: %s", stage, uri, error.error_type, error.message)
    return beam.pvalue.TaggedOutput(ERRORS_TAG, error)
