"""ReadKnownFiles: earlier runs' images/ or skipped/ rows, streamed, as SeenFiles."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from schemas import SeenFile

#: Rows read per batch: bounds memory whatever the size of a part file.
BATCH_ROWS = 65_536
_COLUMNS = ("uri", "image_id", "size_bytes", "modified")


def _as_micros(column: pa.ChunkedArray | pa.Array) -> list[int | None]:
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return column.to_pylist()


def read_known_rows(path: str):
    """SeenFile for each row of one images/ or skipped/ part file, a batch at a time. Files
    written before size_bytes and modified were recorded give None for both."""
    with FileSystems.open(path) as handle:
        parquet = pq.ParquetFile(handle)
        present = [name for name in _COLUMNS if name in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=present):
            count = batch.num_rows
            uris = batch.column("uri").to_pylist()
            ids = batch.column("image_id").to_pylist()
            sizes = batch.column("size_bytes").to_pylist() if "size_bytes" in present else [None] * count
            times = _as_micros(batch.column("modified")) if "modified" in present else [None] * count
            yield from (SeenFile(*row) for row in zip(uris, ids, sizes, times))


class ReadKnownFiles(beam.PTransform):
    """PBegin -> SeenFile(uri, image_id, size_bytes, modified_us): every row of the Parquet
    part files matching ``patterns`` (globs of earlier runs' ``images/`` or ``skipped/``).
    Part files are spread across workers and read a row batch at a time, so no worker holds
    more than one batch. No patterns gives an empty collection."""

    def __init__(self, patterns):
        super().__init__()
        self._patterns = list(patterns)

    def expand(self, pbegin):
        return (
            pbegin
            | "Patterns" >> beam.Create(self._patterns)
            | "Match" >> fileio.MatchAll(empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
            | "Path" >> beam.Map(lambda metadata: metadata.path)
            | "Spread" >> beam.Reshuffle()
            | "Rows" >> beam.FlatMap(read_known_rows)
        )
