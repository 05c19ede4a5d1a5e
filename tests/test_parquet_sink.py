"""transforms/parquet_sink.py: tables written through Beam read back exactly, the embedding
column plain (no dictionary, no statistics) and the key columns as before."""

import glob

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from beam_helpers import local_test_pipeline
from schemas import EMBEDDING_COLUMN, ExtractionConfig, embeddings_schema, parquet_encoding
from transforms.parquet_sink import WriteParquetTables


def _table(schema, start, rows, rng):
    values = rng.normal(size=(rows, 2048)).astype(np.float32)
    return pa.Table.from_arrays([
        pa.array([f"/img/{start + i}.jpg" for i in range(rows)]),
        pa.array([f"{start + i:064x}" for i in range(rows)]),
        pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), 2048),
    ], schema=schema)


def test_tables_read_back_exactly_with_the_embedding_column_plain(tmp_path):
    schema = embeddings_schema(ExtractionConfig(weights="random", layers=("res5",)), "res5")
    rng = np.random.default_rng(3)
    tables = [_table(schema, 32 * i, 32 - i, rng) for i in range(4)]
    with local_test_pipeline() as p:
        _ = (p | beam.Create(tables, reshuffle=False)
             | WriteParquetTables(str(tmp_path / "part"), schema, codec="snappy", file_name_suffix=".parquet"))
    files = glob.glob(str(tmp_path / "part-*.parquet"))
    assert files
    read = pa.concat_tables([pq.read_table(f) for f in files]).sort_by("uri")
    expected = pa.concat_tables(tables).sort_by("uri")
    assert read.schema.equals(schema, check_metadata=True)
    assert read.equals(expected.replace_schema_metadata(schema.metadata))
    embedding_index = schema.names.index(EMBEDDING_COLUMN)
    for path in files:
        metadata = pq.ParquetFile(path).metadata
        assert metadata.num_row_groups >= 1
        for group in range(metadata.num_row_groups):
            plain = metadata.row_group(group).column(embedding_index)
            assert plain.statistics is None and not plain.has_dictionary_page
            for index in range(embedding_index):
                key = metadata.row_group(group).column(index)
                assert key.statistics is not None and key.has_dictionary_page


def test_the_encoding_names_every_column_but_the_embedding():
    schema = embeddings_schema(ExtractionConfig(weights="random", layers=("res2",)), "res2")
    options = parquet_encoding(schema)
    assert options["use_dictionary"] == options["write_statistics"] == [
        name for name in schema.names if name != EMBEDDING_COLUMN]
    assert EMBEDDING_COLUMN in schema.names
