"""WriteParquetTables: Arrow tables -> Parquet files, encoded by schemas.parquet_encoding."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes

from schemas import parquet_encoding


class _ParquetTablesSink(filebasedsink.FileBasedSink):
    """Beam's file sink (temporary files, renamed on finalize) writing one row group per
    table with ``ParquetWriter`` options from the schema."""

    def __init__(self, file_path_prefix: str, schema: pa.Schema, codec: str, file_name_suffix: str):
        super().__init__(file_path_prefix, coder=None, file_name_suffix=file_name_suffix,
                         mime_type="application/x-parquet",
                         compression_type=CompressionTypes.UNCOMPRESSED)  # the codec is per page
        self._schema = schema
        self._codec = codec
        self._handle = None

    def open(self, temp_path):
        self._handle = super().open(temp_path)
        # Lists keep Arrow's child name "item" (Beam's sink default), so that files read
        # back with the schemas of schemas/ exactly.
        return pq.ParquetWriter(self._handle, self._schema, compression=self._codec,
                                use_compliant_nested_type=False, **parquet_encoding(self._schema))

    def write_record(self, writer, table: pa.Table):
        writer.write_table(table)

    def close(self, writer):
        writer.close()
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class WriteParquetTables(beam.PTransform):
    """pa.Table (each in ``schema``) -> Parquet files ``<prefix>-SSSSS-of-NNNNN<suffix>``,
    one row group per table, compressed with ``codec``; the embedding column without
    dictionary or statistics (schemas.parquet_encoding). What Beam's
    WriteToParquetBatched does, with the encoding chosen per column. Returns the written
    file names."""

    def __init__(self, file_path_prefix: str, schema: pa.Schema, *, codec: str, file_name_suffix: str):
        super().__init__()
        self._sink = _ParquetTablesSink(file_path_prefix, schema, codec, file_name_suffix)

    def expand(self, tables):
        return tables | beam.io.Write(self._sink)
