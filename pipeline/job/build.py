"""Composition only: the extraction graph from its transforms."""

from __future__ import annotations

import apache_beam as beam

from models.handler import ResNet50Handler
from pipeline.job.counting import CountProgress
from schemas import Chunk, Comparison, ExtractionConfig, InputLimits, ReadConfig, accounting
from transforms import EmbedImages, ReadInputs, WriteEmbeddings


def build_pipeline(
    p: beam.Pipeline, *, input_pattern, output_dir: str, config: ExtractionConfig,
    limits: InputLimits = InputLimits(), read: ReadConfig = ReadConfig(),
    handler: ResNet50Handler | None = None, extract: beam.PTransform | None = None,
    comparison: Comparison | None = None, finalize: beam.PTransform | None = None,
    progress_dir: str | None = None, output_root: str | None = None, chunk: Chunk | None = None,
    parts: beam.PTransform | None = None,
) -> dict:
    """Add ReadInputs -> EmbedImages -> WriteEmbeddings [-> finalize] to ``p``.
    ``input_pattern``: one pattern or several; nothing under ``output_root`` (default
    ``output_dir``) is read. ``read``:
    how inputs are read; ``comparison`` (incremental runs): the skips, when there are earlier
    runs, and the ``skipped/`` and ``shards/`` outputs; ``handler``: where the model runs;
    ``extract`` replaces ExtractLayers (fault injection); ``finalize`` (a FinalizeRun): the
    last step, the accounting check and manifest; ``progress_dir`` (local runs): counts for
    the progress line; ``chunk`` (--commit_every): read only that chunk of the files not
    skipped, count the rest as deferred and record where the chunk ended; ``parts`` (a
    CommitParts, local --commit_every): embeddings and errors are committed in parts as
    they come, and FinalizeRun takes the part records. Returns the written file names per output (and ``manifest``)."""
    side = p | "ReadInputs" >> ReadInputs(input_pattern, read, comparison,
                                               exclude=output_root or output_dir, chunk=chunk)
    embedded = side.files | "EmbedImages" >> EmbedImages(
        config, limits, max_file_bytes=read.max_file_bytes, handler=handler, extract=extract)
    errors = (side.errors, embedded["errors"]) | "CollectErrors" >> beam.Flatten()
    to_write, committed = {"embeddings": embedded["embeddings"], "errors": errors}, {}
    if parts is not None:
        to_write = {}
        committed = {"parts": (embedded["embeddings"], errors) | "CommitParts" >> parts}
    if comparison is not None:
        # Only --skip_by metadata records them: the next run then skips those files unopened.
        # A content run reads every file anyway; recording them all would grow the root by
        # the whole collection each run.
        to_write["skipped"] = (side.same_content if comparison.by_metadata
                               else p | "NothingRecorded" >> beam.Create([]))
        to_write["shards"] = side.shards
    written = to_write | "WriteEmbeddings" >> WriteEmbeddings(output_dir, config,
                                                              kept_columns=read.keep_columns)
    counted = {accounting.MATCHED: side.matched, accounting.READ: side.read,
               accounting.EMBEDDED: embedded["embeddings"], accounting.ERRORS: errors,
               accounting.SKIPPED_UNCHANGED: side.unchanged,
               accounting.SKIPPED_SAME_CONTENT: side.same_content}
    if side.deferred is not None:
        counted[accounting.DEFERRED] = side.deferred
    if progress_dir is not None:
        for kind in accounting.PROGRESS:
            _ = counted[kind] | f"Progress[{kind}]" >> beam.ParDo(CountProgress(progress_dir, kind))
    if finalize is None:
        return written
    chunk = {} if side.chunk is None else {"chunk": side.chunk}
    manifest = {"written": tuple(written.values()) | "AllWritten" >> beam.Flatten(),
                "models": embedded["models"], **chunk, **committed, **counted} | "FinalizeRun" >> finalize
    return {**written, **committed, "manifest": manifest}
