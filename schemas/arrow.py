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
        # The listing the file was read under; a later run skips the file unopened while
        # its listing still says the same. Null in rows written before they were recorded.
        pa.field("size_bytes", pa.int64(), nullable=True),
        pa.field("modified", pa.timestamp("us", tz="UTC"), nullable=True),
        # The listed file the image came from (a shard, or the image file itself) and the
        # image's key inside a shard (null for a loose file). Null in older rows.
        pa.field("source", pa.string(), nullable=True),
        pa.field("key", pa.string(), nullable=True),
    ]
)

def images_schema(kept_columns: tuple[str, ...] = ()) -> pa.Schema:
    """IMAGES_SCHEMA plus one nullable string column per ``--keep_columns`` name (Parquet
    inputs' columns copied into ``images/``, as text). Raises ValueError for a name that
    ``images/`` already has."""
    clashing = [name for name in kept_columns if name in IMAGES_SCHEMA.names]
    if clashing:
        raise ValueError(f"--keep_columns {', '.join(clashing)}: images/ has such a column already "
                         f"({', '.join(IMAGES_SCHEMA.names)})")
    if len(set(kept_columns)) != len(kept_columns):
        raise ValueError(f"--keep_columns names a column twice: {', '.join(kept_columns)}")
    return pa.schema(list(IMAGES_SCHEMA) + [pa.field(name, pa.string(), nullable=True)
                                            for name in kept_columns])


#: ``skipped/`` of an incremental run: files read in this run whose content an earlier run
#: had embedded (touched, renamed or copied files), so that the next run skips them unopened.
SKIPPED_SCHEMA = pa.schema(
    [
        pa.field("uri", pa.string(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64(), nullable=True),
        pa.field("modified", pa.timestamp("us", tz="UTC"), nullable=True),
        # The shard of a sample, or the file itself; null in rows written before shards.
        pa.field("source", pa.string(), nullable=True),
    ]
)

#: ``shards/`` of an incremental run: each shard read to its end, under the listing it was
#: read under, with how many samples it held and how many of them its reader refused.
SHARDS_SCHEMA = pa.schema(
    [
        pa.field("uri", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64(), nullable=True),
        pa.field("modified", pa.timestamp("us", tz="UTC"), nullable=True),
        pa.field("samples", pa.int64(), nullable=False),
        pa.field("refused", pa.int64(), nullable=False),
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
