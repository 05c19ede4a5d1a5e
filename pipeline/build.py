"""Composition only: the extraction graph from its transforms."""

from __future__ import annotations

import apache_beam as beam

from schemas import ExtractionConfig, InputLimits
from transforms import (
    BatchByShape,
    DecodeImages,
    ExtractLayers,
    ReadImages,
    ResizeImages,
    WriteEmbeddings,
)


def build_pipeline(
    p: beam.Pipeline, *, input_pattern: str, output_dir: str, config: ExtractionConfig,
    limits: InputLimits = InputLimits(), extract: beam.PTransform | None = None,
) -> dict:
    """Add read -> decode -> resize -> batch -> extract -> write to ``p``.

    ``extract`` replaces the ExtractLayers step (tests inject faults through it).
    Returns WriteEmbeddings' outputs (written file names per output)."""
    files = p | "ReadImages" >> ReadImages(input_pattern, max_file_bytes=limits.max_file_bytes)
    decoded = files.files | "DecodeImages" >> DecodeImages(
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
    return {"embeddings": extracted.embeddings, "errors": errors} | "WriteEmbeddings" >> WriteEmbeddings(
        output_dir, config
    )
