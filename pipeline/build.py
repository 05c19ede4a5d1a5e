"""Composition only: the extraction graph from its transforms."""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam

from models.handler import ResNet50Handler
from pipeline.incremental import Comparison
from pipeline.progress import (
    EMBEDDED,
    ERRORS,
    READ,
    SKIPPED_SAME_CONTENT,
    SKIPPED_UNCHANGED,
    CountProgress,
)
from schemas import ExtractionConfig, InputLimits
from transforms import (
    EmbedImages,
    ListFiles,
    ReadImages,
    ReadKnownFiles,
    ReadShardRecords,
    RereadImages,
    SkipSameContent,
    SkipUnchanged,
    WriteEmbeddings,
)
from transforms.read import drop_bytes


class ReadSide(NamedTuple):
    """What the read side hands on: ``files`` (ImageFile) to decode; ``errors`` (ImageError)
    of reading; ``matched`` (a uri, or an Unchanged, per input image); ``read`` (uri per
    image whose bytes were hashed); ``unchanged`` (Unchanged per file, sample or shard
    skipped by its listing); ``same_content`` (SeenFile per image read whose content was
    embedded before); ``shards`` (ShardRecord per shard read to its end)."""

    files: beam.PCollection
    errors: tuple
    matched: beam.PCollection
    read: beam.PCollection
    unchanged: beam.PCollection
    same_content: beam.PCollection
    shards: beam.PCollection


def _uris(pcoll, label: str):
    return pcoll | label >> beam.Map(lambda element: element.uri)


def read_once(p, listed, limits: InputLimits, reading: dict) -> ReadSide:
    """Every listed file read once, nothing compared (single runs, first incremental run)."""
    read = listed | "ReadImages" >> ReadImages(max_file_bytes=limits.max_file_bytes, **reading)
    uris = _uris(read.files, "ReadUris")
    matched = (uris, _uris(read.errors, "RefusedUris")) | "Matched" >> beam.Flatten()
    nothing = p | "NothingSkipped" >> beam.Create([])
    return ReadSide(read.files, (read.errors,), matched, uris, nothing, nothing, read.shards)


def read_compared(p, listed, limits: InputLimits, comparison: Comparison, reading: dict) -> ReadSide:
    """Incremental runs with earlier runs: skip by listing (``--skip_by metadata``: files,
    whole shards, and the known samples of shards read again), hash what is left, skip by
    content, then read again only the images to embed. Earlier rows meet the input in
    joins; image bytes never wait in a shuffle."""
    images_rows = p | "EarlierImages" >> ReadKnownFiles(comparison.image_parts or ())
    to_read, unchanged = listed, p | "NoneUnchanged" >> beam.Create([])
    if comparison.skip_by == "metadata":
        skipped_rows = p | "EarlierSkipped" >> ReadKnownFiles(comparison.skipped_parts or ())
        records = p | "EarlierShards" >> ReadShardRecords(comparison.shard_parts or ())
        known = (images_rows, skipped_rows) | "EarlierListings" >> beam.Flatten()
        kept = listed | "SkipUnchanged" >> SkipUnchanged(known, records)
        to_read, unchanged = kept.files, kept.unchanged
    hashed = to_read | "HashImages" >> ReadImages(max_file_bytes=limits.max_file_bytes, **reading)
    unchanged = (unchanged, hashed.unchanged) | "Unchanged" >> beam.Flatten()
    seen = hashed.files | "DropBytes" >> beam.Map(drop_bytes)
    done_ids = images_rows | "EarlierIds" >> beam.Map(lambda row: row.image_id)
    new = seen | "SkipSameContent" >> SkipSameContent(done_ids)
    reread = new.files | "ReadNewImages" >> RereadImages(max_file_bytes=limits.max_file_bytes, **reading)
    read_uris = _uris(seen, "ReadUris")
    matched = (
        read_uris, _uris(hashed.errors, "RefusedUris"), unchanged,
    ) | "Matched" >> beam.Flatten()
    return ReadSide(reread["files"], (hashed.errors, reread["errors"]), matched, read_uris, unchanged,
                    new.same_content, hashed.shards)


def build_pipeline(
    p: beam.Pipeline, *, input_pattern: str, output_dir: str, config: ExtractionConfig,
    limits: InputLimits = InputLimits(), handler: ResNet50Handler | None = None,
    extract: beam.PTransform | None = None,
    comparison: Comparison | None = None, finalize: beam.PTransform | None = None,
    progress_dir: str | None = None, input_format: str = "auto", image_column: str | None = None,
    keep_columns: tuple[str, ...] = (),
) -> dict:
    """Add list -> [skip unchanged] -> read -> [skip same content] -> EmbedImages (decode ->
    resize -> batch -> extract) -> write [-> finalize] to ``p``.

    ``comparison`` (incremental runs) adds the skips, when there are earlier runs to compare
    with, and the ``skipped/`` and ``shards/`` outputs. ``input_format`` and
    ``image_column`` choose the reader of each listed file (ReadImages). ``keep_columns``
    copies Parquet columns into ``images/``. ``handler`` (a ResNet50Handler of ``config``)
    says where the model runs; ``extract`` replaces the ExtractLayers step (tests inject
    faults through it); ``finalize`` (a FinalizeRun) adds the last step that checks and
    writes the manifest; ``progress_dir`` (local runs) adds counters for the progress line
    (pipeline/progress.py). Returns WriteEmbeddings' outputs (written file names per
    output), plus ``manifest`` when finalizing."""
    compare = comparison is not None and comparison.has_earlier_runs
    joins_by_uri = compare and comparison.skip_by == "metadata"
    listed = p | "ListFiles" >> ListFiles(input_pattern, spread=not joins_by_uri)
    reading = {"input_format": input_format, "image_column": image_column,
               "keep_columns": tuple(keep_columns)}
    side = (read_compared(p, listed, limits, comparison, reading) if compare
            else read_once(p, listed, limits, reading))
    embedded = side.files | "EmbedImages" >> EmbedImages(
        config, limits, handler=handler, extract=extract)
    errors = (*side.errors, embedded["errors"]) | "CollectErrors" >> beam.Flatten()
    to_write = {"embeddings": embedded["embeddings"], "errors": errors}
    if comparison is not None:
        # Only --skip_by metadata records them: the next run then skips those files unopened.
        # A content run reads every file anyway, and recording them all would grow the
        # root by the whole collection each run.
        to_write["skipped"] = (side.same_content if comparison.skip_by == "metadata"
                               else p | "NothingRecorded" >> beam.Create([]))
        to_write["shards"] = side.shards
    written = to_write | "WriteEmbeddings" >> WriteEmbeddings(output_dir, config,
                                                              kept_columns=tuple(keep_columns))
    if progress_dir is not None:
        for pcoll, kind in [(embedded["embeddings"], EMBEDDED), (errors, ERRORS), (side.read, READ),
                            (side.unchanged, SKIPPED_UNCHANGED),
                            (side.same_content, SKIPPED_SAME_CONTENT)]:
            _ = pcoll | f"Progress[{kind}]" >> beam.ParDo(CountProgress(progress_dir, kind))
    if finalize is None:
        return written
    manifest = {
        "written": tuple(written.values()) | "AllWritten" >> beam.Flatten(),
        "matched": side.matched,
        "read": side.read,
        "skipped_unchanged": side.unchanged,
        "skipped_same_content": side.same_content,
        "embedded": embedded["embeddings"],
    } | "FinalizeRun" >> finalize
    return {**written, "manifest": manifest}
