"""Composition only: the extraction graph from its transforms."""

from __future__ import annotations

import apache_beam as beam

from pipeline.progress import EMBEDDED, ERRORS, SKIPPED, CountProgress
from schemas import ExtractionConfig, InputLimits
from transforms import (
    BatchByShape,
    DecodeImages,
    ExtractLayers,
    ReadImages,
    ResizeImages,
    SkipEmbedded,
    WriteEmbeddings,
)


def build_pipeline(
    p: beam.Pipeline, *, input_pattern: str, output_dir: str, config: ExtractionConfig,
    limits: InputLimits = InputLimits(), extract: beam.PTransform | None = None,
    done_ids: beam.PTransform | None = None, finalize: beam.PTransform | None = None,
    progress_dir: str | None = None,
) -> dict:
    """Add read -> [skip] -> decode -> resize -> batch -> extract -> write [-> finalize] to ``p``.

    ``extract`` replaces the ExtractLayers step (tests inject faults through it).
    ``done_ids`` (a root PTransform giving image ids already embedded) adds SkipEmbedded;
    ``finalize`` (a FinalizeRun) adds the last step that checks and writes the manifest.
    ``progress_dir`` (local runs) adds counters for the progress line (pipeline/progress.py).
    Returns WriteEmbeddings' outputs (written file names per output), plus ``manifest``
    when finalizing."""
    files = p | "ReadImages" >> ReadImages(input_pattern, max_file_bytes=limits.max_file_bytes)
    to_decode, skipped = files.files, None
    if done_ids is not None:
        kept = files.files | "SkipEmbedded" >> SkipEmbedded(p | "DoneIds" >> done_ids)
        to_decode, skipped = kept.files, kept.skipped
    decoded = to_decode | "DecodeImages" >> DecodeImages(
        max_pixels=limits.max_pixels, min_side=limits.min_side,
        target=config.image_size if config.jpeg_draft else None, resize_mode=config.resize_mode,
    )
    resized = decoded.images | "ResizeImages" >> ResizeImages(config.image_size, config.resize_mode)
    batched = resized.images | "BatchByShape" >> BatchByShape(
        config.batch_size, image_shape=config.input_shape
    )
    extracted = batched.batches | "ExtractLayers" >> (extract or ExtractLayers(config))
    errors = (
        files.errors, decoded.errors, resized.errors, batched.errors, extracted.errors,
    ) | "CollectErrors" >> beam.Flatten()
    written = {"embeddings": extracted.embeddings, "errors": errors} | "WriteEmbeddings" >> WriteEmbeddings(
        output_dir, config
    )
    if progress_dir is not None:
        counted = [(extracted.embeddings, EMBEDDED), (errors, ERRORS)]
        if skipped is not None:
            counted.append((skipped, SKIPPED))
        for pcoll, kind in counted:
            _ = pcoll | f"Progress[{kind}]" >> beam.ParDo(CountProgress(progress_dir, kind))
    if finalize is None:
        return written
    if skipped is None:
        skipped = p | "NothingSkipped" >> beam.Create([])
    matched = (
        files.files | "ReadUris" >> beam.Map(lambda file: file.uri),
        files.errors | "RefusedUris" >> beam.Map(lambda error: error.uri),
    ) | "Matched" >> beam.Flatten()
    manifest = {
        "written": tuple(written.values()) | "AllWritten" >> beam.Flatten(),
        "matched": matched,
        "skipped": skipped,
        "embedded": extracted.embeddings,
    } | "FinalizeRun" >> finalize
    return {**written, "manifest": manifest}
