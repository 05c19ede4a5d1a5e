"""read_arrow: the rows of one Arrow IPC stream file of images, a record batch at a time.

Hugging Face ``datasets.Dataset.save_to_disk`` writes ``data-0000x-of-0000y.arrow`` (an
Arrow IPC stream, the ``huggingface`` schema metadata naming its Image features) beside
``dataset_info.json`` and ``state.json``. Its rows are read as a Parquet file's are
(transforms/shards/parquet.py): the same image column choice, keys, kept columns, paths and
limits; a record batch whose images hold more than ``max_row_group_bytes`` gives an error
row per row, its images unread into Python."""

from __future__ import annotations

import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas import DEFAULT_MAX_ROW_GROUP_BYTES, IMAGE_PATHS_NEVER, ListedFile, RowGroupTooLarge
from transforms.shards.common import Keys, ShardBroken, compression_of, refusal
from transforms.shards.parquet import NoImageColumn, _batch_rows, _row_sample, image_column, refused_keys


def _batch_refused(batch: pa.RecordBatch, column: str, first_row: int, limit: int, number: int):
    names = batch.column("key").to_pylist() if "key" in batch.schema.names else [None] * batch.num_rows
    return refused_keys(names, first_row, RowGroupTooLarge(
        f"record batch {number} holds {batch.column(column).nbytes} bytes of images, over "
        f"--max_row_group_bytes {limit}; not read"))


def read_arrow(listed: ListedFile, max_image_bytes: int, requested_column: str | None = None,
               keep_columns: tuple[str, ...] = (), hashing=None,
               max_row_group_bytes: int = DEFAULT_MAX_ROW_GROUP_BYTES,
               image_paths: str = IMAGE_PATHS_NEVER):
    """One ImageFile per row (or its Refused), as read_parquet; a file that is not an Arrow
    stream is one ShardBroken row."""
    keys = Keys()
    if compression_of(listed.uri) != CompressionTypes.UNCOMPRESSED:
        yield refusal(listed, None, ShardBroken("a compressed Arrow file is not read; decompress it"))
        return
    with FileSystems.open(listed.uri, compression_type="uncompressed") as handle:
        try:
            reader = pa.ipc.open_stream(handle)
            column, is_struct = image_column(reader.schema, requested_column)
        except Exception as exc:
            yield refusal(listed, None, exc if isinstance(exc, NoImageColumn) else ShardBroken(
                f"not a readable Arrow stream file: {type(exc).__name__}: {exc}"))
            return
        row, number = 0, 0
        try:
            for number, batch in enumerate(reader):
                if batch.column(column).nbytes > max_row_group_bytes:
                    for name, error in _batch_refused(batch, column, row, max_row_group_bytes, number):
                        row += 1
                        yield refusal(listed, keys(name), error)
                    continue
                for name, found in _batch_rows(batch, column, is_struct, keep_columns):
                    key = keys(name if name is not None else str(row))
                    row += 1
                    yield _row_sample(listed, key, found, column, max_image_bytes, hashing, image_paths)
        except Exception as exc:
            yield refusal(listed, None, ShardBroken(
                f"Arrow stream broken after row {row}: {type(exc).__name__}: {exc}"))
