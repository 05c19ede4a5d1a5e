"""WriteEmbeddings: embeddings and errors -> the Parquet layout under the output directory."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from schemas import (
    STAGE_WRITE,
    ERRORS_SCHEMA,
    IMAGES_SCHEMA,
    SHARDS_SCHEMA,
    SKIPPED_SCHEMA,
    BatchEmbeddings,
    ExtractionConfig,
    ImageError,
    SeenFile,
    ShardRecord,
    assert_shape,
    embeddings_schema,
    images_schema,
    layout,
)
from transforms.errors import METRICS_NAMESPACE

CODEC = "snappy"
MODIFIED_TYPE = IMAGES_SCHEMA.field("modified").type


def images_table(batch: BatchEmbeddings, schema: pa.Schema = IMAGES_SCHEMA) -> pa.Table:
    """One ``images/`` row per image of the batch, in ``schema``: IMAGES_SCHEMA, then the
    ``--keep_columns`` columns (``images_schema``) filled from each image's ``kept``."""
    infos = batch.infos
    kept = [
        pa.array([i.kept[j] if i.kept else None for i in infos], pa.string())
        for j in range(len(schema) - len(IMAGES_SCHEMA))
    ]
    return pa.Table.from_arrays(
        [
            pa.array([i.image_id for i in infos], pa.string()),
            pa.array([i.uri for i in infos], pa.string()),
            pa.array([i.width for i in infos], pa.int32()),
            pa.array([i.height for i in infos], pa.int32()),
            pa.array([i.format for i in infos], pa.string()),
            pa.array([i.size_bytes for i in infos], pa.int64()),
            pa.array([i.modified_us for i in infos], MODIFIED_TYPE),
            pa.array([i.source for i in infos], pa.string()),
            pa.array([i.key for i in infos], pa.string()),
            *kept,
        ],
        schema=schema,
    )


def embedding_array(values: np.ndarray, data_type: pa.DataType) -> pa.Array:
    """(n, C) -> fixed_size_list<C>; (n, h, w, c) -> arrow.fixed_shape_tensor [h, w, c]."""
    values = np.ascontiguousarray(values)
    if isinstance(data_type, pa.FixedShapeTensorType):
        return pa.FixedShapeTensorArray.from_numpy_ndarray(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def layer_table(batch: BatchEmbeddings, layer: str, config: ExtractionConfig, schema: pa.Schema) -> pa.Table:
    """One ``embeddings/<layer>/`` row per image of the batch, in ``schema``. The array is
    asserted against the layer's stored shape first; a mismatch here is a bug upstream and
    fails the run rather than writing a wrong file."""
    first = batch.infos[0]
    values = assert_shape(
        batch.layers[layer], (len(batch.infos),) + config.embedding_shape(layer),
        stage=STAGE_WRITE, uri=first.uri, image_id=first.image_id, dtype=config.output_dtype,
    )
    column = embedding_array(values, schema.field("embedding").type)
    return pa.Table.from_arrays(
        [
            pa.array([i.image_id for i in batch.infos], pa.string()),
            pa.array([i.uri for i in batch.infos], pa.string()),
            column,
        ],
        schema=schema,
    )


def error_row(error: ImageError) -> dict:
    return error._asdict()


def skipped_row(seen: SeenFile) -> dict:
    """One ``skipped/`` row; ``modified`` stays integer microseconds (the column's unit)."""
    return {"uri": seen.uri, "image_id": seen.image_id, "size_bytes": seen.size_bytes,
            "modified": seen.modified_us, "source": seen.source}


def shard_row(record: ShardRecord) -> dict:
    """One ``shards/`` row; ``modified`` stays integer microseconds."""
    return {"uri": record.uri, "size_bytes": record.size_bytes, "modified": record.modified_us,
            "samples": record.samples, "refused": record.refused}


class _CountRows(beam.DoFn):
    def __init__(self, counter_name: str):
        self._counter_name = counter_name

    def setup(self):
        self._rows = Metrics.counter(METRICS_NAMESPACE, self._counter_name)

    def process(self, table: pa.Table):
        self._rows.inc(table.num_rows)
        yield table


class WriteEmbeddings(beam.PTransform):
    """{'embeddings': BatchEmbeddings, 'errors': ImageError[, 'skipped': SeenFile,
    'shards': ShardRecord]} ->
    Parquet files under ``output_dir``:

    - ``images/part-*.parquet``: IMAGES_SCHEMA, one row per embedded image, with the size
      and last-updated time of the listing it was read under, plus a text column per
      ``kept_columns`` name (``images_schema``);
    - ``embeddings/<layer>/part-*.parquet``: ``embeddings_schema(config, layer)``, one row
      per embedded image, with the layer's key-value metadata;
    - ``errors/part-*.parquet``: ERRORS_SCHEMA, one row per rejected input, written (empty)
      even when there are none;
    - ``skipped/part-*.parquet`` (only with a ``skipped`` input, incremental runs):
      SKIPPED_SCHEMA, one row per file skipped for its content, written even when empty;
    - ``shards/part-*.parquet`` (only with a ``shards`` input, incremental runs):
      SHARDS_SCHEMA, one row per shard read to its end, written even when empty.

    Every batch becomes one Arrow table (no per-row Python objects for the embeddings).
    Returns the dict of each sink's output (the written file names).
    """

    def __init__(self, output_dir: str, config: ExtractionConfig, *, kept_columns: tuple[str, ...] = ()):
        super().__init__()
        self._output_dir = output_dir
        self._config = config
        self._images_schema = images_schema(tuple(kept_columns))

    def _sink(self, directory: str, schema: pa.Schema, *, rows: bool = False):
        """Arrow tables -> Parquet, or with ``rows`` row dicts -> Parquet (which writes one
        empty file when there are no rows)."""
        write = beam.io.WriteToParquet if rows else beam.io.WriteToParquetBatched
        return write(
            layout.part_prefix(directory),
            schema=schema,
            codec=CODEC,
            file_name_suffix=layout.PARQUET_SUFFIX,
        )

    def expand(self, inputs):
        embeddings, errors = inputs["embeddings"], inputs["errors"]
        root = self._output_dir
        written = {
            "images": embeddings
            | "ImagesTable" >> beam.Map(images_table, self._images_schema)
            | "CountImages" >> beam.ParDo(_CountRows("rows_images"))
            | "WriteImages" >> self._sink(layout.images_dir(root), self._images_schema),
            "errors": errors
            | "ErrorRows" >> beam.Map(error_row)
            | "WriteErrors" >> self._sink(layout.errors_dir(root), ERRORS_SCHEMA, rows=True),
        }
        for layer in self._config.layers:
            schema = embeddings_schema(self._config, layer)
            written[layer] = (
                embeddings
                | f"Table[{layer}]" >> beam.Map(layer_table, layer, self._config, schema)
                | f"Count[{layer}]" >> beam.ParDo(_CountRows(f"rows_{layer}"))
                | f"Write[{layer}]" >> self._sink(layout.layer_dir(root, layer), schema)
            )
        if "skipped" in inputs:
            written["skipped"] = (
                inputs["skipped"]
                | "SkippedRows" >> beam.Map(skipped_row)
                | "WriteSkipped" >> self._sink(layout.skipped_dir(root), SKIPPED_SCHEMA, rows=True)
            )
        if "shards" in inputs:
            written["shards"] = (
                inputs["shards"]
                | "ShardRows" >> beam.Map(shard_row)
                | "WriteShards" >> self._sink(layout.shards_dir(root), SHARDS_SCHEMA, rows=True)
            )
        return written
