"""ReadInputs: the read side of a run, from the input pattern to the files to embed, with
the incremental skips when there are earlier runs to compare with."""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam

from schemas import Chunk, Comparison, ReadConfig
from transforms.chunk import TakeChunk
from transforms.known import ReadKnownFiles, ReadShardRecords
from transforms.listing import ListFiles
from transforms.read import MATCHED_TAG, READ_TAG, ReadImages, RereadImages, drop_bytes
from transforms.skip import SkipSameContent, SkipUnchanged


class ReadSide(NamedTuple):
    """What the read side hands on: ``files`` (ImageFile) to decode; ``errors`` (ImageError)
    of reading; ``matched`` (Tally elements, and an Unchanged per file skipped by its listing:
    every input image); ``read`` (Tally elements: images whose bytes were hashed); ``unchanged`` (Unchanged per file, sample or shard
    skipped by its listing); ``same_content`` (SeenFile per image read whose content was
    embedded before); ``shards`` (ShardRecord per shard read to its end)."""

    files: beam.PCollection
    errors: beam.PCollection
    matched: beam.PCollection
    read: beam.PCollection
    unchanged: beam.PCollection
    same_content: beam.PCollection
    shards: beam.PCollection
    deferred: beam.PCollection | None = None  # uri per file left for a later chunk
    chunk: beam.PCollection | None = None  # one dict: where the chunk ended (TakeChunk)


def _nothing(p, label: str):
    return p | label >> beam.Create([])


def read_once(p, listed, read: ReadConfig) -> ReadSide:
    """Every listed file read once, nothing compared (single runs, first incremental run)."""
    files = listed | "ReadImages" >> ReadImages(read)
    nothing = _nothing(p, "NothingSkipped")
    return ReadSide(files.files, files.errors, files[MATCHED_TAG], files[READ_TAG], nothing, nothing,
                    files.shards)


def skip_by_listing(p, listed, comparison: Comparison, images_rows):
    """``--skip_by metadata``: files, whole shards and the known samples of shards read
    again, skipped when their listing is an earlier run's. Returns (to read, Unchanged)."""
    if not comparison.by_metadata:
        return listed, _nothing(p, "NoneUnchanged")
    skipped_rows = p | "EarlierSkipped" >> ReadKnownFiles(comparison.skipped_parts or ())
    records = p | "EarlierShards" >> ReadShardRecords(comparison.shard_parts or ())
    known = (images_rows, skipped_rows) | "EarlierListings" >> beam.Flatten()
    kept = listed | "SkipUnchanged" >> SkipUnchanged(known, records)
    return kept.files, kept.unchanged


def take_chunk(listed, chunk: Chunk | None):
    """(files, deferred, summary) of TakeChunk, or ``listed`` whole when there is no chunk."""
    if chunk is None:
        return listed, None, None
    return listed | "TakeChunk" >> TakeChunk(chunk.size, chunk.after)


def read_compared(p, listed, read: ReadConfig, comparison: Comparison, chunk: Chunk | None = None) -> ReadSide:
    """Incremental runs with earlier runs: skip by listing, hash what is left, skip by
    content, then read again only the images to embed. Earlier rows meet the input in
    joins; image bytes never wait in a shuffle."""
    images_rows = p | "EarlierImages" >> ReadKnownFiles(comparison.image_parts or ())
    to_read, listing_unchanged = skip_by_listing(p, listed, comparison, images_rows)
    to_read, deferred, summary = take_chunk(to_read, chunk)
    hashed = to_read | "HashImages" >> ReadImages(read)
    unchanged = (listing_unchanged, hashed.unchanged) | "Unchanged" >> beam.Flatten()
    seen = hashed.files | "DropBytes" >> beam.Map(drop_bytes)
    done_ids = images_rows | "EarlierIds" >> beam.Map(lambda row: row.image_id)
    new = seen | "SkipSameContent" >> SkipSameContent(done_ids)
    reread = new.files | "ReadNewImages" >> RereadImages(read)
    matched = (hashed[MATCHED_TAG], listing_unchanged) | "Matched" >> beam.Flatten()
    errors = (hashed.errors, reread["errors"]) | "Errors" >> beam.Flatten()
    return ReadSide(reread["files"], errors, matched, hashed[READ_TAG], unchanged, new.same_content,
                    hashed.shards, deferred, summary)


class ReadInputs(beam.PTransform):
    """PBegin -> ReadSide: the files matching ``patterns`` (one or several; never those
    under ``exclude``, the output root) listed (ListFiles) and read with
    ``read`` (ReadImages). With a ``comparison`` that has earlier runs (incremental runs),
    inputs an earlier run under the same embedding key embedded are skipped: by listing
    (``--skip_by metadata``) before anything is opened, then by content (SHA-256); only the
    images left are read again to embed (RereadImages). Every input image comes out once,
    in ``matched``, and ends in ``files``, ``errors``, ``unchanged`` or ``same_content``.
    With a ``chunk`` (--commit_every), only the chunk's files (TakeChunk) of those not
    skipped by listing are read; the others come out in ``deferred``."""

    def __init__(self, patterns, read: ReadConfig = ReadConfig(),
                 comparison: Comparison | None = None, exclude: str | None = None,
                 chunk: Chunk | None = None):
        super().__init__()
        self._chunk = chunk
        self._patterns, self._exclude = patterns, exclude
        self._read = read
        self._comparison = comparison if comparison is not None and comparison.has_earlier_runs else None

    def expand(self, pbegin) -> ReadSide:
        compare = self._comparison
        joins_by_uri = compare is not None and compare.by_metadata
        listed = pbegin | "ListFiles" >> ListFiles(self._patterns, exclude=self._exclude,
                                                  spread=not joins_by_uri)
        if compare is None:
            taken, deferred, summary = take_chunk(listed, self._chunk)
            return read_once(pbegin, taken, self._read)._replace(deferred=deferred, chunk=summary)
        return read_compared(pbegin, listed, self._read, compare, self._chunk)
