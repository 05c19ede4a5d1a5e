"""SkipUnchanged and SkipSameContent: incremental runs leave out what earlier runs embedded.

Both compare with earlier runs' rows by a join (CoGroupByKey), never by a side input: no
worker holds more than one key's group, however large the collection grows."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from schemas import ListedFile, ListedShard, SeenFile, ShardRecord, Unchanged
from schemas.accounting import MATCHED, SKIPPED_SAME_CONTENT, SKIPPED_UNCHANGED, counter_name
from transforms.errors import METRICS_NAMESPACE
from transforms.read import UNCHANGED_TAG

SAME_CONTENT_TAG = "same_content"


def listing_matches(listed: ListedFile, known: list[SeenFile]) -> bool:
    """True when ``listed`` has a size and a time and an earlier row of the same uri had
    exactly both. Unknown metadata never matches."""
    if listed.size_bytes is None or listed.modified_us is None:
        return False
    return any(
        (row.size_bytes, row.modified_us) == (listed.size_bytes, listed.modified_us) for row in known
    )


def judge_listing(listed: ListedFile, known: list[SeenFile], records: list[ShardRecord]):
    """What to do with one listed file, given the earlier rows whose ``source`` is its uri
    (``known``: its own row as a loose file, or its samples' rows as a shard) and the
    earlier ShardRecords of that uri. Only rows and records under the same listing (size
    and time, both known) count, because then the bytes are the ones they describe:

    - a loose file with such a row: Unchanged(uri), never opened;
    - a shard with such a record, whose every sample has such a row or was refused by the
      reader: Unchanged(uri, its samples), never opened;
    - a shard with some such sample rows: ListedShard(listed, their uris), read, those
      samples skipped as unchanged and the rest hashed;
    - anything else: ``listed``, read and hashed."""
    if listed.size_bytes is None or listed.modified_us is None:
        return listed
    listing = (listed.size_bytes, listed.modified_us)
    same = [row for row in known if (row.size_bytes, row.modified_us) == listing]
    if any(row.uri == listed.uri for row in same):
        return Unchanged(listed.uri)
    samples = frozenset(row.uri for row in same)
    for record in records:
        if (record.size_bytes, record.modified_us) == listing and len(samples) + record.refused >= record.samples:
            return Unchanged(listed.uri, record.samples)
    return ListedShard(listed, samples) if samples else listed


class _SplitUnchangedFn(beam.DoFn):
    def setup(self):
        self._unchanged = Metrics.counter(METRICS_NAMESPACE, counter_name(SKIPPED_UNCHANGED))
        self._matched = Metrics.counter(METRICS_NAMESPACE, counter_name(MATCHED))

    def process(self, element):
        _uri, groups = element
        known, records = list(groups["known"]), list(groups["records"])
        for listed in groups["listed"]:
            judged = judge_listing(listed, known, records)
            if isinstance(judged, Unchanged):
                self._unchanged.inc(judged.images)
                self._matched.inc(judged.images)
                yield beam.pvalue.TaggedOutput(UNCHANGED_TAG, judged)
            else:
                yield judged


class SkipUnchanged(beam.PTransform):
    """ListedFile -> ``files``: what to read (ListedFile, or ListedShard for a shard some of
    whose samples are known), and ``unchanged``: an Unchanged per file or shard skipped
    without being opened (see judge_listing).

    ``known`` is a PCollection[SeenFile]: earlier completed runs' ``images/`` and
    ``skipped/`` rows under the same embedding key, joined on their ``source`` (the file
    itself, or the shard of a sample). ``records`` is a PCollection[ShardRecord]: their
    ``shards/`` rows, joined on the shard's uri. One CoGroupByKey by uri: a group holds at
    most one shard's rows. Returns a DoOutputsTuple with ``files`` and ``unchanged``."""

    def __init__(self, known: beam.PCollection, records: beam.PCollection):
        super().__init__()
        self._known = known
        self._records = records

    def expand(self, listed):
        return (
            {
                "listed": listed | "ByUri" >> beam.Map(lambda f: (f.uri, f)),
                "known": self._known | "KnownBySource" >> beam.Map(lambda row: (row.source or row.uri, row)),
                "records": self._records | "RecordsByUri" >> beam.Map(lambda r: (r.uri, r)),
            }
            | "JoinByUri" >> beam.CoGroupByKey()
            | "Split" >> beam.ParDo(_SplitUnchangedFn()).with_outputs(UNCHANGED_TAG, main="files")
        )


class _SplitSameContentFn(beam.DoFn):
    def setup(self):
        self._same = Metrics.counter(METRICS_NAMESPACE, counter_name(SKIPPED_SAME_CONTENT))

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
