"""Readers of shards: WebDataset tars, Parquet tables and TFRecord files of image samples.

Each reader is a generator over one listed shard that streams it (a tar member by member,
Parquet a record batch at a time, TFRecord a record at a time, all from
``FileSystems.open``; ``.tar.gz``/``.tgz`` and ``.tfrecord.gz`` decompressed as they are
read), and yields an ImageFile per sample (``uri`` ``<shard>#<key>``) or a Refused per
sample it cannot use. A shard that breaks off yields the samples before the break, then one
Refused for the whole shard (``key`` None) naming the byte offset. Nothing is ever
extracted to disk: member names are only names. ``read_shard`` picks the reader;
``shard_format`` says which reader a name implies."""

from __future__ import annotations

from schemas import FORMAT_ARROW, FORMAT_PARQUET, FORMAT_TFRECORD, FORMAT_WEBDATASET, SHARD_FORMATS, ListedFile, ReadConfig
from transforms.shards.arrow import read_arrow
from transforms.shards.codecs import open_shard
from transforms.shards.common import (
    IMAGE_EXTENSIONS,
    NoImageInSample,
    Refused,
    ShardBroken,
    Unhashed,
    compression_of,
    sample,
    shard_format,
)
from transforms.shards.parquet import (
    PARQUET_IMAGE_COLUMNS,
    ImagePathRefused,
    NoImageColumn,
    image_bytes,
    image_column,
    read_parquet,
)
from transforms.shards.tar import LinkTargetMissing, UnsupportedTarMember, read_webdataset, split_member_name
from transforms.shards.tfrecord import TFRECORD_IMAGE_FEATURE, read_tfrecord, tfrecord_records


def read_shard(listed: ListedFile, kind: str, read: ReadConfig, hashing=None):
    """The reader of ``kind`` (webdataset, parquet, tfrecord or arrow) over ``listed``, with
    ``read``'s byte limit, image column, kept columns and image paths. With ``hashing``, a
    sample whose uri it says no to comes out Unhashed: the SHA-256 is taken only of samples
    the caller will use."""
    if kind == FORMAT_WEBDATASET:
        return read_webdataset(listed, read.max_file_bytes, hashing, read.keep_columns)
    if kind == FORMAT_PARQUET:
        return read_parquet(listed, read.max_file_bytes, read.image_column,
                            keep_columns=read.keep_columns, hashing=hashing,
                            max_row_group_bytes=read.max_row_group_bytes,
                            image_paths=read.image_paths)
    if kind == FORMAT_ARROW:
        return read_arrow(listed, read.max_file_bytes, read.image_column,
                          keep_columns=read.keep_columns, hashing=hashing,
                          max_row_group_bytes=read.max_row_group_bytes, image_paths=read.image_paths)
    if kind == FORMAT_TFRECORD:
        return read_tfrecord(listed, read.max_file_bytes, read.image_column, hashing,
                             read.keep_columns)
    raise ValueError(f"not a shard format: {kind!r} (one of {', '.join(SHARD_FORMATS)})")


__all__ = [
    "IMAGE_EXTENSIONS", "PARQUET_IMAGE_COLUMNS", "TFRECORD_IMAGE_FEATURE", "ImagePathRefused",
    "LinkTargetMissing", "NoImageColumn", "NoImageInSample", "Refused", "ShardBroken", "Unhashed",
    "UnsupportedTarMember", "compression_of", "image_bytes", "image_column", "open_shard",
    "read_arrow", "read_parquet", "read_shard", "read_tfrecord", "read_webdataset", "sample", "shard_format",
    "split_member_name", "tfrecord_records",
]
