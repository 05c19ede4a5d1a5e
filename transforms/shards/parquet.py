"""read_parquet: the rows of one Parquet file of images, a row group at a time.

The image column is ``--image_column``, else the column Hugging Face ``datasets`` marks as
an Image in the file's ``huggingface`` schema metadata, else the first of
PARQUET_IMAGE_COLUMNS. An image may be binary or a struct ``{bytes, path}``; a struct whose
bytes are null is read from its ``path`` only with ``--image_paths relative``, and only
below the shard's own folder: a Parquet file never makes the pipeline read other files."""

from __future__ import annotations

import json
import posixpath

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas import (
    DEFAULT_MAX_ROW_GROUP_BYTES,
    IMAGE_PATHS_NEVER,
    IMAGE_PATHS_RELATIVE,
    FileTooLarge,
    ListedFile,
    RowGroupTooLarge,
)
from transforms.shards.common import Keys, compression_of, NoImageInSample, ShardBroken, as_text, refusal, sample

#: --image_column's default candidates for Parquet, in order.
PARQUET_IMAGE_COLUMNS = ("jpg", "png", "webp", "image", "image_bytes", "bytes")
#: The schema metadata key under which ``datasets`` describes its features.
HUGGINGFACE_METADATA = b"huggingface"


class NoImageColumn(ValueError):
    """A Parquet file with no usable image column."""


class ImagePathRefused(ValueError):
    """An image path in a Parquet row that is not read: absolute, or leaving the shard's folder."""


def huggingface_image_columns(schema: pa.Schema) -> list[str]:
    """The columns ``datasets`` recorded as ``Image`` features, in schema order; [] when the
    file has no (readable) ``huggingface`` metadata."""
    try:
        features = json.loads((schema.metadata or {})[HUGGINGFACE_METADATA])["info"]["features"]
    except (KeyError, TypeError, ValueError):
        return []
    if not isinstance(features, dict):
        return []
    return [name for name in schema.names
            if isinstance(features.get(name), dict) and features[name].get("_type") == "Image"]


URL_COLUMNS = ("url", "URL", "image_url", "img_url", "link")


def _is_text(schema: pa.Schema, name: str) -> bool:
    if name not in schema.names:
        return False
    kind = schema.field(name).type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def image_column(schema: pa.Schema, requested: str | None) -> tuple[str, bool]:
    """(column, is_struct): ``requested``, else the Hugging Face Image column, else the first
    of PARQUET_IMAGE_COLUMNS that is binary, or a struct with a binary ``bytes`` field."""
    def usable(name):
        if name not in schema.names:
            return None
        kind = schema.field(name).type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            return False
        if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
            inner = kind.field("bytes").type
            if pa.types.is_binary(inner) or pa.types.is_large_binary(inner):
                return True
        return None

    candidates = [requested] if requested else huggingface_image_columns(schema) + list(PARQUET_IMAGE_COLUMNS)
    for name in candidates:
        is_struct = usable(name)
        if is_struct is not None:
            return name, is_struct
    wanted = requested or " or ".join(PARQUET_IMAGE_COLUMNS)
    texts = [name for name in ([requested] if requested else URL_COLUMNS) if _is_text(schema, name)]
    if texts and {"key", "status"} <= set(schema.names):
        raise NoImageColumn(
            "img2dataset's metadata table (url, key, status per sample): its images are in the "
            ".tar of the same name beside it; pass the .tar files as --input (e.g. '*.tar')")
    if texts:
        raise NoImageColumn(
            f"column {texts[0]} holds text (URLs or paths), not image bytes: this reads images, it "
            "does not download them; fetch them first (img2dataset writes Parquet or WebDataset "
            "shards this reads) and pass those as --input")
    raise NoImageColumn(f"no binary image column {wanted} (columns: {', '.join(schema.names)}); "
                        "name it with --image_column")


def _read_path(listed: ListedFile, path: str, max_image_bytes: int):
    """The bytes at ``path``, relative to the shard's folder, or why they are not read."""
    if "://" in path or path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        return ImagePathRefused(f"image path {path!r} is absolute; only paths below the shard's "
                                "folder are read")
    normal = posixpath.normpath(path.replace("\\", "/"))
    if normal == ".." or normal.startswith("../"):
        return ImagePathRefused(f"image path {path!r} leaves the shard's folder; not read")
    target = listed.uri.rsplit("/", 1)[0] + "/" + normal
    try:
        with FileSystems.open(target, compression_type="uncompressed") as handle:
            data = handle.read(max_image_bytes + 1)
    except Exception as exc:  # Missing or unreadable: the row's error, not the shard's.
        return type(exc)(f"image path {path!r} ({target}): {exc}") if isinstance(exc, OSError) else exc
    if len(data) > max_image_bytes:
        return FileTooLarge(f"image path {path!r} is over --max_file_bytes {max_image_bytes}; not read")
    return data


def _row_sample(listed: ListedFile, key: str, row, column: str, max_image_bytes: int, hashing,
                image_paths: str):
    """One Parquet row's sample, or its Refused (no bytes, too many bytes, a refused path)."""
    data, path, kept = row
    if not data and path:
        if image_paths != IMAGE_PATHS_RELATIVE:
            return refusal(listed, key, NoImageInSample(
                f"column {column} has no bytes in this row, only the path {path!r}; pass "
                "--image_paths relative to read it from the shard's folder"))
        data = _read_path(listed, path, max_image_bytes)
        if isinstance(data, BaseException):
            return refusal(listed, key, data)
    if not data:
        return refusal(listed, key, NoImageInSample(f"column {column} is empty in this row"))
    if len(data) > max_image_bytes:
        return refusal(listed, key, FileTooLarge(
            f"{len(data)} bytes is over --max_file_bytes {max_image_bytes}"))
    return sample(listed, key, data, kept, hashing)


def image_bytes(row_group: pq.RowGroupMetaData, column: str) -> int:
    """Bytes of the image column in one row group, uncompressed, from the metadata alone."""
    leaves = (column, f"{column}.bytes")
    return sum(row_group.column(i).total_uncompressed_size for i in range(row_group.num_columns)
               if row_group.column(i).path_in_schema in leaves)


def _refused_rows(parquet: pq.ParquetFile, group: int, has_key: bool, first_row: int, size: int,
                  limit: int):
    """(key, RowGroupTooLarge) per row of a row group over ``limit``, its images unread."""
    rows = parquet.metadata.row_group(group).num_rows
    names = (parquet.read_row_group(group, columns=["key"]).column("key").to_pylist() if has_key
             else [None] * rows)
    return refused_keys(names, first_row, RowGroupTooLarge(
        f"row group {group} holds {size} bytes of images, over --max_row_group_bytes {limit}; not read"))


def refused_keys(names: list, first_row: int, error: Exception):
    """(key, ``error``) for each row of a group refused whole: its ``key`` value, else its
    row number counted from ``first_row``."""
    for offset, name in enumerate(names):
        yield (str(name) if name is not None else str(first_row + offset)), error


def _batch_rows(batch: pa.RecordBatch, column: str, is_struct: bool, keep_columns):
    """(key or None, (image bytes, path or None, kept values or None)) per row of one batch."""
    images = batch.column(column)
    paths = [None] * batch.num_rows
    if is_struct:
        if images.type.get_field_index("path") >= 0:
            paths = images.field("path").to_pylist()
        images = images.field("bytes")
    present = batch.schema.names
    names = batch.column("key").to_pylist() if "key" in present else [None] * batch.num_rows
    kept_values = {name: batch.column(name).to_pylist() for name in keep_columns if name in present}
    for i, data in enumerate(images.to_pylist()):
        kept = (tuple(as_text(kept_values[n][i]) if n in kept_values else None for n in keep_columns)
                if keep_columns else None)
        yield (str(names[i]) if names[i] is not None else None), (data, paths[i], kept)


def read_parquet(listed: ListedFile, max_image_bytes: int, requested_column: str | None = None,
                 batch_rows: int = 256, keep_columns: tuple[str, ...] = (), hashing=None,
                 max_row_group_bytes: int = DEFAULT_MAX_ROW_GROUP_BYTES,
                 image_paths: str = IMAGE_PATHS_NEVER):
    """One ImageFile per row. The key is the ``key`` column when there is one, else the row
    number. A null image is an error row; so is a file that is not Parquet. The values of
    ``keep_columns`` that the file has are carried as text in ``kept`` (None where absent).
    Row groups are read one at a time; one whose images hold more than
    ``max_row_group_bytes`` (by the metadata) gives an error row per row, unread."""
    keys = Keys()
    if compression_of(listed.uri) != CompressionTypes.UNCOMPRESSED:
        yield refusal(listed, None, ShardBroken(
            "a compressed Parquet file cannot be read in place (Parquet compresses its own "
            "pages); decompress it, or write it with compression inside"))
        return
    with FileSystems.open(listed.uri, compression_type="uncompressed") as handle:
        try:
            # pre_buffer=False: with pyarrow's default (True) iter_batches keeps every row
            # group it has read cached until the file is closed, so memory grew with the
            # shard (measured: +55 MB per 58 MB row group; flat without).
            parquet = pq.ParquetFile(handle, pre_buffer=False)
            column, is_struct = image_column(parquet.schema_arrow, requested_column)
        except Exception as exc:
            yield refusal(listed, None, exc if isinstance(exc, NoImageColumn) else ShardBroken(
                f"not a readable Parquet file: {type(exc).__name__}: {exc}"))
            return
        names_present = parquet.schema_arrow.names
        has_key = "key" in names_present
        kept_present = [name for name in keep_columns if name in names_present]
        columns = list(dict.fromkeys([column] + (["key"] if has_key else []) + kept_present))
        row = 0
        try:
            for group in range(parquet.metadata.num_row_groups):
                size = image_bytes(parquet.metadata.row_group(group), column)
                if size > max_row_group_bytes:
                    for name, error in _refused_rows(parquet, group, has_key, row, size,
                                                     max_row_group_bytes):
                        row += 1
                        yield refusal(listed, keys(name), error)
                    continue
                for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[group],
                                                  columns=columns):
                    for name, found in _batch_rows(batch, column, is_struct, keep_columns):
                        key = keys(name if name is not None else str(row))
                        row += 1
                        yield _row_sample(listed, key, found, column, max_image_bytes, hashing,
                                          image_paths)
        except Exception as exc:
            yield refusal(listed, None, ShardBroken(
                f"Parquet shard broken after row {row}: {type(exc).__name__}: {exc}"))
