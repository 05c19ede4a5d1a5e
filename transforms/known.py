"""ReadKnownFiles and ReadShardRecords: rows written before the job, streamed (earlier
runs' images/ and skipped/ as SeenFiles, shards/ as ShardRecords)."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from schemas import SHARD_ROWS, SKIPPED_ROWS, Rows

#: Rows read per batch: bounds memory whatever the size of a part file.
BATCH_ROWS = 65_536


def _as_micros(column: pa.ChunkedArray | pa.Array) -> list[int | None]:
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return column.to_pylist()


def _elements(path: str, rows: Rows):
    """The elements of ``rows`` (its row mapping) from one part file, a row batch at a time;
    a column the file lacks (written before it was recorded) is None."""
    with FileSystems.open(path) as handle:
        parquet = pq.ParquetFile(handle, pre_buffer=False)  # see shards.read_parquet
        present = [name for name in rows.names if name in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=present):
            yield from rows.elements({
                name: _as_micros(batch.column(name)) if name == "modified" else batch.column(name).to_pylist()
                for name in present
            })


def read_known_rows(path: str):
    """SeenFile for each row of one images/ or skipped/ part file (images/ has every
    skipped/ column), a batch at a time. Files written before size_bytes and modified were
    recorded give None for both; rows without a ``source`` (written before shards were
    read) are loose files: their own uri."""
    for seen in _elements(path, SKIPPED_ROWS):
        yield seen if seen.source else seen._replace(source=seen.uri)


def read_shard_records(path: str):
    """ShardRecord for each row of one shards/ part file."""
    return _elements(path, SHARD_ROWS)


class _ReadParts(beam.PTransform):
    def __init__(self, patterns, read_rows):
        super().__init__()
        self._patterns = list(patterns)
        self._read_rows = read_rows

    def expand(self, pbegin):
        return (
            pbegin
            | "Patterns" >> beam.Create(self._patterns)
            | "Match" >> fileio.MatchAll(empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
            | "Path" >> beam.Map(lambda metadata: metadata.path)
            | "Spread" >> beam.Reshuffle()
            | "Rows" >> beam.FlatMap(self._read_rows)
        )


class ReadKnownFiles(_ReadParts):
    """PBegin -> SeenFile(uri, image_id, size_bytes, modified_us, source): every row of the
    Parquet part files matching ``patterns`` (globs of earlier runs' ``images/`` or
    ``skipped/``). Part files are spread across workers and read a row batch at a time, so
    no worker holds more than one batch. No patterns gives an empty collection."""

    def __init__(self, patterns):
        super().__init__(patterns, read_known_rows)


class ReadShardRecords(_ReadParts):
    """PBegin -> ShardRecord(uri, size_bytes, modified_us, samples, refused): every row of
    the part files matching ``patterns`` (globs of earlier runs' ``shards/``), streamed as
    in ReadKnownFiles. No patterns gives an empty collection."""

    def __init__(self, patterns):
        super().__init__(patterns, read_shard_records)
