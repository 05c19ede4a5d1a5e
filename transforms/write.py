"""WriteEmbeddings: embeddings and errors -> the Parquet layout under the output directory."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from schemas import (
    STAGE_WRITE,
    ERROR_ROWS,
    SHARD_ROWS,
    SKIPPED_ROWS,
    BatchEmbeddings,
    ExtractionConfig,
    Rows,
    assert_shape,
    embeddings_schema,
    image_rows,
    layout,
)
from schemas.rows import EMBEDDING_KEY_COLUMNS
from transforms.errors import METRICS_NAMESPACE
from transforms.parquet_sink import WriteParquetTables

CODEC = "snappy"
#: The outputs written row by row (each written, empty, even when it has no rows): input
#: name -> (row mapping, step label).
ROW_OUTPUTS = {"errors": (ERROR_ROWS, "Errors"), "skipped": (SKIPPED_ROWS, "Skipped"),
               "shards": (SHARD_ROWS, "Shards")}


def images_table(batch: BatchEmbeddings, rows: Rows = image_rows()) -> pa.Table:
    """One ``images/`` row per image of the batch, by ``rows`` (``image_rows(kept)``)."""
    return rows.table(batch.infos)


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
    keys = [pa.array([c.get(info) for info in batch.infos], c.field.type) for c in EMBEDDING_KEY_COLUMNS]
    return pa.Table.from_arrays(keys + [column], schema=schema)


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
    'shards': ShardRecord]} (without 'embeddings' and 'errors' when a run commits them in
    parts, pipeline/job/commit_parts.py) ->
    Parquet files under ``output_dir``:

    - ``images/part-*.parquet``: IMAGES_SCHEMA, one row per embedded image, with the size
      and last-updated time of the listing it was read under, plus a text column per
      ``kept_columns`` name (``image_rows``);
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
        self._image_rows = image_rows(tuple(kept_columns))

    def _sink(self, directory: str, schema: pa.Schema, *, rows: bool = False):
        """Arrow tables -> Parquet, or with ``rows`` row dicts -> Parquet (which writes one
        empty file when there are no rows)."""
        prefix = layout.part_prefix(layout.join(self._output_dir, directory))
        if rows:
            return beam.io.WriteToParquet(prefix, schema=schema, codec=CODEC,
                                          file_name_suffix=layout.PARQUET_SUFFIX)
        return WriteParquetTables(prefix, schema, codec=CODEC, file_name_suffix=layout.PARQUET_SUFFIX)

    def expand(self, inputs):
        if "embeddings" not in inputs:  # committed in parts (pipeline/job/commit_parts.py)
            return self._write_rows(inputs, {})
        embeddings = inputs["embeddings"]
        written = {
            "images": embeddings
            | "ImagesTable" >> beam.Map(images_table, self._image_rows).with_output_types(pa.Table)
            | "CountImages" >> beam.ParDo(_CountRows("rows_images")).with_output_types(pa.Table)
            | "WriteImages" >> self._sink(self._image_rows.folder, self._image_rows.schema),
        }
        for layer in self._config.layers:
            schema = embeddings_schema(self._config, layer)
            written[layer] = (
                embeddings
                | f"Table[{layer}]" >> beam.Map(layer_table, layer, self._config, schema)
                .with_output_types(pa.Table)
                | f"Count[{layer}]" >> beam.ParDo(_CountRows(f"rows_{layer}")).with_output_types(pa.Table)
                | f"Write[{layer}]" >> self._sink(layout.join(layout.EMBEDDINGS_DIR, layer), schema)
            )
        return self._write_rows(inputs, written)

    def _write_rows(self, inputs, written: dict) -> dict:
        for name, (rows, label) in ROW_OUTPUTS.items():
            if name in inputs:
                written[name] = (inputs[name]
                                 | f"{label}Rows" >> beam.Map(rows.row)
                                 | f"Write{label}" >> self._sink(rows.folder, rows.schema, rows=True))
        return written
