"""EmbedImages: image bytes in hand -> per-layer embeddings and errors, for any pipeline."""

from __future__ import annotations

import apache_beam as beam

from models.handler import ResNet50Handler
from schemas import MODELS_TAG, DEFAULT_MAX_FILE_BYTES, ExtractionConfig, InputLimits
from transforms.extract import ExtractLayers
from transforms.prepare import PrepareBatches


def _model_records(extracted, pipeline):
    """ExtractLayers' ``models`` output; none from a replacement that has no such output."""
    try:
        return extracted[MODELS_TAG]
    except (KeyError, ValueError, AttributeError, TypeError):
        return pipeline | "NoModelRecords" >> beam.Create([])


class EmbedImages(beam.PTransform):
    """The extraction as one composite, for a PCollection you already have.

    Input: ``(key: str, data: bytes)`` tuples (the encoded image: JPEG, PNG, ...), or
    ``ImageFile`` elements. ``key`` becomes the ``uri`` of every output row; ``image_id`` is
    the hex SHA-256 of ``data``, the same as for the same picture read as a file.

    Output: a dict of three PCollections, ready for ``WriteEmbeddings(output_dir, config)``:

    - ``embeddings``: BatchEmbeddings. ``infos[i]`` is image i's ``images/`` row (ImageInfo:
      meta (uri, image_id, ...), width, height, format); ``layers[name]`` is an array of shape
      (n, C) when pooled or (n, h, w, c) for ``pooling='none'`` (``config.embedding_shape``)
      in ``config.output_dtype``, with 1 <= n <= ``config.batch_size``.
    - ``errors``: ImageError (uri, image_id, stage, error_type, message), one per input
      that could not be embedded: malformed elements, empty bytes or bytes over
      ``max_file_bytes`` (``read`` / ``validate``), the header guards of ``limits``, decode, resize, batch and extract
      failures. Every input comes out exactly once, as an embedded row or an error.
    - ``models``: JSON text records of where each model ran and at what precision, one
      per model per bundle (ExtractLayers); FinalizeRun puts them in the manifest.

    Steps: PrepareBatches (the checks, DecodeImages, ResizeImages and BatchByShape fused
    into one step per image) -> ExtractLayers, each with the shape assertions of
    ``schemas``. ``handler`` (a ResNet50Handler of the same ``config``)
    chooses where the model runs (``model_copies``, ``accelerator``); ``extract`` replaces
    ExtractLayers (tests inject faults through it). Example::

        with beam.Pipeline() as p:
            embedded = (p | beam.Create([("cat.jpg", jpeg_bytes)])
                          | EmbedImages(ExtractionConfig(layers=("res5",), weights="random")))
            embedded | WriteEmbeddings("out/", config)
    """

    def __init__(self, config: ExtractionConfig, limits: InputLimits = InputLimits(), *,
                 max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, handler: ResNet50Handler | None = None,
                 extract: beam.PTransform | None = None):
        super().__init__()
        self._max_file_bytes = max_file_bytes
        if handler is not None and handler.config != config:
            raise ValueError("the handler's ExtractionConfig differs from EmbedImages' config")
        self._config = config
        self._handler = handler
        self._limits = limits
        self._extract = extract

    def expand(self, elements):
        prepared = elements | "PrepareBatches" >> PrepareBatches(
            self._config, self._limits, max_file_bytes=self._max_file_bytes)
        extracted = prepared.batches | "ExtractLayers" >> (
            self._extract or ExtractLayers(self._handler or self._config))
        errors = (prepared.errors, extracted.errors) | "Errors" >> beam.Flatten()
        return {"embeddings": extracted.embeddings, "errors": errors,
                "models": _model_records(extracted, elements.pipeline)}
