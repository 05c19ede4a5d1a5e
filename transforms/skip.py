"""SkipUnchanged and SkipSameContent: incremental runs leave out what earlier runs embedded.

Both compare with earlier runs' rows by a join (CoGroupByKey), never by a side input: no
worker holds more than one key's group, however large the collection grows."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from schemas import ListedFile, SeenFile
from transforms.errors import METRICS_NAMESPACE

UNCHANGED_TAG = "unchanged"
SAME_CONTENT_TAG = "same_content"


def listing_matches(listed: ListedFile, known: list[SeenFile]) -> bool:
    """True when ``listed`` has a size and a time and an earlier row of the same uri had
    exactly both. Unknown metadata never matches."""
    if listed.size_bytes is None or listed.modified_us is None:
        return False
    return any(
        (row.size_bytes, row.modified_us) == (listed.size_bytes, listed.modified_us) for row in known
    )


class _SplitUnchangedFn(beam.DoFn):
    def setup(self):
        self._unchanged = Metrics.counter(METRICS_NAMESPACE, "skipped_unchanged")
        self._matched = Metrics.counter(METRICS_NAMESPACE, "matched")

    def process(self, element):
        _uri, groups = element
        known = list(groups["known"])
        for listed in groups["listed"]:
            if listing_matches(listed, known):
                self._unchanged.inc()
                self._matched.inc()
                yield beam.pvalue.TaggedOutput(UNCHANGED_TAG, listed.uri)
            else:
                yield listed


class SkipUnchanged(beam.PTransform):
    """ListedFile -> ``files``: the ListedFiles to read, and ``unchanged``: the uri (str) of
    every file whose (uri, size_bytes, modified_us) equals a row of ``known``, skipped
    without being opened.

    ``known`` is a PCollection[SeenFile]: earlier completed runs' ``images/`` and
    ``skipped/`` rows under the same embedding key. The two are joined by uri with
    CoGroupByKey. Returns a DoOutputsTuple with ``files`` and ``unchanged``."""

    def __init__(self, known: beam.PCollection):
        super().__init__()
        self._known = known

    def expand(self, listed):
        return (
            {
                "listed": listed | "ByUri" >> beam.Map(lambda f: (f.uri, f)),
                "known": self._known | "KnownByUri" >> beam.Map(lambda row: (row.uri, row)),
            }
            | "JoinByUri" >> beam.CoGroupByKey()
            | "Split" >> beam.ParDo(_SplitUnchangedFn()).with_outputs(UNCHANGED_TAG, main="files")
        )


class _SplitSameContentFn(beam.DoFn):
    def setup(self):
        self._same = Metrics.counter(METRICS_NAMESPACE, "skipped_same_content")

    def process(self, element):
        _image_id, groups = element
        done = any(True for _ in groups["done"])
        for seen in groups["seen"]:
            if done:
                self._same.inc()
                yield beam.pvalue.TaggedOutput(SAME_CONTENT_TAG, seen)
            else:
                yield seen


class SkipSameContent(beam.PTransform):
    """SeenFile -> ``files``: the SeenFiles whose content no earlier run embedded, and
    ``same_content``: the SeenFiles whose ``image_id`` (SHA-256 of the bytes) is among
    ``done_ids`` (a touched, renamed or copied file).

    ``done_ids`` is a PCollection[str] of the image ids in earlier completed runs'
    ``images/`` under the same embedding key; the two are joined by image_id with
    CoGroupByKey. Returns a DoOutputsTuple with ``files`` and ``same_content``."""

    def __init__(self, done_ids: beam.PCollection):
        super().__init__()
        self._done_ids = done_ids

    def expand(self, seen):
        return (
            {
                "seen": seen | "ById" >> beam.Map(lambda f: (f.image_id, f)),
                "done": self._done_ids | "DoneById" >> beam.Map(lambda image_id: (image_id, None)),
            }
            | "JoinById" >> beam.CoGroupByKey()
            | "Split" >> beam.ParDo(_SplitSameContentFn()).with_outputs(SAME_CONTENT_TAG, main="files")
        )
