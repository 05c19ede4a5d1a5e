"""Arrow schemas of every output, and the Parquet key-value metadata of embedding files."""

from __future__ import annotations

import json

import pyarrow as pa

from schemas.config import ExtractionConfig
from schemas.layers import canonical_layer

IMAGES_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("format", pa.string(), nullable=False),
    ]
)

ERRORS_SCHEMA = pa.schema(
    [
        pa.field("uri", pa.string(), nullable=False),
        pa.field("image_id", pa.string(), nullable=True),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("error_type", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
    ]
)

# Keys of the Parquet key-value metadata on every embeddings file (values are strings).
METADATA_KEYS = (
    "layer", "keras_layer", "shape", "pooling", "image_size", "resize_mode", "weights",
    "mixed_precision",
)


def value_type(config: ExtractionConfig) -> pa.DataType:
    """Arrow type of one stored value: float32 or float16."""
    return pa.float16() if config.output_dtype == "float16" else pa.float32()


def embedding_type(config: ExtractionConfig, layer: str) -> pa.DataType:
    """``fixed_size_list<value>[C]`` when pooled; ``arrow.fixed_shape_tensor`` [h, w, c] if not."""
    shape = config.embedding_shape(layer)
    if config.pooling == "none":
        return pa.fixed_shape_tensor(value_type(config), list(shape))
    return pa.list_(value_type(config), shape[0])


def embedding_metadata(config: ExtractionConfig, layer: str) -> dict[str, str]:
    """The key-value metadata written into every Parquet file of ``layer``."""
    return {
        "layer": layer,
        "keras_layer": canonical_layer(layer),
        "shape": json.dumps(list(config.embedding_shape(layer))),
        "pooling": config.pooling,
        "image_size": str(config.image_size),
        "resize_mode": config.resize_mode,
        "weights": config.weights,
        "mixed_precision": config.mixed_precision,
    }


def embeddings_schema(config: ExtractionConfig, layer: str) -> pa.Schema:
    """Schema of ``embeddings/<layer>/part-*.parquet`` under ``config``."""
    return pa.schema(
        [
            pa.field("image_id", pa.string(), nullable=False),
            pa.field("uri", pa.string(), nullable=False),
            pa.field("embedding", embedding_type(config, layer), nullable=False),
        ],
        metadata=embedding_metadata(config, layer),
    )
