"""One row mapping per output table: each column's Arrow field and the element attribute it
holds. The writer (transforms/write.py) makes rows with it, the readers of earlier runs
(transforms/known.py) make elements back from it, and the Arrow schemas are derived from it.

    images/   ImageInfo     one row per embedded image (plus the --keep_columns)
    errors/   ImageError    one row per input that could not be embedded
    skipped/  SeenFile      incremental runs: read, and skipped for the same content
    shards/   ShardRecord   incremental runs: each shard read to its end
    (listing) ListedFile    a chunked command's own listing of its input (a temporary folder)
    embeddings/<layer>/     the images/ key columns, then the embedding (schemas/arrow.py)
"""

from __future__ import annotations

import operator
from typing import Any, Callable, NamedTuple

import pyarrow as pa

from schemas import layout
from schemas.elements import ImageError, ImageInfo, ListedFile, SeenFile, ShardRecord

#: Last-updated times are stored as UTC timestamps; elements hold integer microseconds.
MODIFIED_TYPE = pa.timestamp("us", tz="UTC")


class Column(NamedTuple):
    """One column: its Arrow ``field``, ``get`` (element -> value) and the element's
    ``attribute`` it holds (dotted; None for a computed value)."""

    field: pa.Field
    get: Callable[[Any], Any]
    attribute: str | None


def column(name: str, data_type: pa.DataType, attribute: str, *, nullable: bool = True) -> Column:
    return Column(pa.field(name, data_type, nullable=nullable), operator.attrgetter(attribute), attribute)


class Rows:
    """An output table: its ``folder`` under a run's output, and its columns, in order, for
    elements of ``element_type``."""

    def __init__(self, folder: str, element_type: type, columns: tuple[Column, ...]):
        self.folder = folder
        self.element_type = element_type
        self.columns = tuple(columns)

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([c.field for c in self.columns])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.field.name for c in self.columns)

    def extended(self, extra: tuple[Column, ...]) -> "Rows":
        return Rows(self.folder, self.element_type, self.columns + tuple(extra))

    def table(self, elements) -> pa.Table:
        """An Arrow table of ``elements``, one row each, column by column."""
        return pa.Table.from_arrays(
            [pa.array([c.get(e) for e in elements], c.field.type) for c in self.columns],
            schema=self.schema)

    def row(self, element) -> dict:
        """One row as a dict (for row-by-row Parquet sinks)."""
        return {c.field.name: c.get(element) for c in self.columns}

    def elements(self, values: dict[str, list]):
        """Elements back from column ``values`` ({name: list}; a missing column is None),
        for the flat element types (SeenFile, ShardRecord, ImageError)."""
        rows = len(next(iter(values.values()))) if values else 0
        attributes = [(c.attribute, values.get(c.field.name) or [None] * rows) for c in self.columns]
        for i in range(rows):
            yield self.element_type(**{attribute: column_values[i] for attribute, column_values in attributes})


IMAGE_ROWS = Rows(layout.IMAGES_DIR, ImageInfo, (
    column("image_id", pa.string(), "meta.image_id", nullable=False),
    column("uri", pa.string(), "meta.uri", nullable=False),
    column("width", pa.int32(), "width", nullable=False),
    column("height", pa.int32(), "height", nullable=False),
    column("format", pa.string(), "format", nullable=False),
    # The listing the file was read under; a later run skips the file unopened while its
    # listing still says the same. Null in rows written before they were recorded.
    column("size_bytes", pa.int64(), "meta.size_bytes"),
    column("modified", MODIFIED_TYPE, "meta.modified_us"),
    # The listed file the image came from (a shard, or the image file itself) and the
    # image's key inside a shard (null for a loose file). Null in older rows.
    column("source", pa.string(), "meta.source"),
    column("key", pa.string(), "meta.key"),
))


def kept_column(name: str, index: int) -> Column:
    """The ``index``-th ``--keep_columns`` column of ``images/``: text, null when absent."""
    return Column(pa.field(name, pa.string(), nullable=True),
                  lambda info: info.meta.kept[index] if info.meta.kept else None, None)


#: The key columns every embeddings/<layer>/ row starts with, from the image's ImageInfo.
EMBEDDING_KEY_COLUMNS = IMAGE_ROWS.columns[:2]

ERROR_ROWS = Rows(layout.ERRORS_DIR, ImageError, (
    column("uri", pa.string(), "uri", nullable=False),
    column("image_id", pa.string(), "image_id"),
    column("stage", pa.string(), "stage", nullable=False),
    column("error_type", pa.string(), "error_type", nullable=False),
    column("message", pa.string(), "message", nullable=False),
))

#: ``skipped/`` of an incremental run: files read in this run whose content an earlier run
#: had embedded (touched, renamed or copied files), so that the next run skips them
#: unopened. Its columns are images/' too: earlier runs' images/ rows are read back with it.
SKIPPED_ROWS = Rows(layout.SKIPPED_DIR, SeenFile, (
    column("uri", pa.string(), "uri", nullable=False),
    column("image_id", pa.string(), "image_id", nullable=False),
    column("size_bytes", pa.int64(), "size_bytes"),
    column("modified", MODIFIED_TYPE, "modified_us"),
    # The shard of a sample, or the file itself; null in rows written before shards.
    column("source", pa.string(), "source"),
))

#: ``shards/`` of an incremental run: each shard read to its end, under the listing it was
#: read under, with how many samples it held and how many of them its reader refused.
SHARD_ROWS = Rows(layout.SHARDS_DIR, ShardRecord, (
    column("uri", pa.string(), "uri", nullable=False),
    column("size_bytes", pa.int64(), "size_bytes"),
    column("modified", MODIFIED_TYPE, "modified_us"),
    column("samples", pa.int64(), "samples", nullable=False),
    column("refused", pa.int64(), "refused", nullable=False),
))
