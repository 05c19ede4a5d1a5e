"""Arrow schemas of every output, and the Parquet key-value metadata of embedding files."""

from __future__ import annotations

import json

import pyarrow as pa

from schemas.config import ExtractionConfig
from schemas.layers import canonical_layer
from schemas.rows import (
    EMBEDDING_KEY_COLUMNS,
    ERROR_ROWS,
    IMAGE_ROWS,
    SHARD_ROWS,
    SKIPPED_ROWS,
    Rows,
    kept_column,
)

IMAGES_SCHEMA = IMAGE_ROWS.schema
ERRORS_SCHEMA = ERROR_ROWS.schema
SKIPPED_SCHEMA = SKIPPED_ROWS.schema
SHARDS_SCHEMA = SHARD_ROWS.schema


def image_rows(kept_columns: tuple[str, ...] = ()) -> Rows:
    """IMAGE_ROWS plus one nullable text column per ``--keep_columns`` name (Parquet
    inputs' columns copied into ``images/``). Raises ValueError for a name that ``images/``
    already has, or a name given twice."""
    clashing = [name for name in kept_columns if name in IMAGE_ROWS.names]
    if clashing:
        raise ValueError(f"--keep_columns {', '.join(clashing)}: images/ has such a column already "
                         f"({', '.join(IMAGE_ROWS.names)})")
    if len(set(kept_columns)) != len(kept_columns):
        raise ValueError(f"--keep_columns names a column twice: {', '.join(kept_columns)}")
    return IMAGE_ROWS.extended(tuple(kept_column(name, i) for i, name in enumerate(kept_columns)))


def images_schema(kept_columns: tuple[str, ...] = ()) -> pa.Schema:
    """The ``images/`` schema with ``kept_columns`` (see image_rows)."""
    return image_rows(tuple(kept_columns)).schema


# Keys of the Parquet key-value metadata on every embeddings file (values are strings):
# the layer's own, then ExtractionConfig.settings_record().
LAYER_METADATA_KEYS = ("layer", "keras_layer", "shape")
METADATA_KEYS = LAYER_METADATA_KEYS + tuple(ExtractionConfig(weights="random").settings_record())


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
    """The key-value metadata written into every Parquet file of ``layer``: the layer, its
    stored shape, and the run's settings record (embedding key and weights identity
    included), so a copied layer folder still says where it came from. Strings stay as they
    are; other values are JSON."""
    settings = {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in config.settings_record().items()
    }
    return {
        "layer": layer,
        "keras_layer": canonical_layer(layer),
        "shape": json.dumps(list(config.embedding_shape(layer))),
        **settings,
    }


#: The column of an embeddings file that holds the vectors (or feature maps).
EMBEDDING_COLUMN = "embedding"


def embeddings_schema(config: ExtractionConfig, layer: str) -> pa.Schema:
    """Schema of ``embeddings/<layer>/part-*.parquet`` under ``config``."""
    return pa.schema(
        [column.field for column in EMBEDDING_KEY_COLUMNS]
        + [pa.field(EMBEDDING_COLUMN, embedding_type(config, layer), nullable=False)],
        metadata=embedding_metadata(config, layer),
    )


def parquet_encoding(schema: pa.Schema) -> dict:
    """``pyarrow.parquet.ParquetWriter`` options for a file of ``schema``: no dictionary
    and no min/max statistics for the embedding column. Its values are nearly all distinct
    floats, so a dictionary is built for every page only to be thrown away, and min/max of
    vector components prune no query; measured on 32-row tables of random float32 vectors
    (res2..res5), the write took 0.59 ms per image with both and 0.09 ms without
    (BENCHMARKS.md, "Feed per core"). Every other column keeps both."""
    others = [name for name in schema.names if name != EMBEDDING_COLUMN]
    return {"use_dictionary": others, "write_statistics": others}
