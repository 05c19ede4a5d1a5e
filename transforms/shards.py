"""Readers of shards: WebDataset tars, Parquet tables and TFRecord files of image samples.

Each reader is a generator over one listed shard that streams it (a tar member by member,
Parquet a record batch at a time, TFRecord a record at a time, all from
``FileSystems.open``), and yields an ImageFile per sample (``uri`` ``<shard>#<key>``) or a
Refused per sample it cannot use. A shard that breaks off yields the samples before the
break, then one Refused for the whole shard (``key`` None) naming the byte offset. Nothing
is ever extracted to disk: member names are only names. ``read_shard`` picks the reader."""

from __future__ import annotations

import hashlib
import posixpath
import struct
import tarfile
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from schemas import (
    FORMAT_AUTO,
    FORMAT_FILES,
    FORMAT_PARQUET,
    FORMAT_TFRECORD,
    FORMAT_WEBDATASET,
    SHARD_FORMATS,
    DEFAULT_MAX_ROW_GROUP_BYTES,
    FileMeta,
    FileTooLarge,
    ImageFile,
    ListedFile,
    ReadConfig,
    RowGroupTooLarge,
)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")
#: --image_column's default candidates for Parquet, in order.
PARQUET_IMAGE_COLUMNS = ("jpg", "png", "webp", "image", "image_bytes", "bytes")
TFRECORD_IMAGE_FEATURE = "image/encoded"
_BY_EXTENSION = {".tar": FORMAT_WEBDATASET, ".parquet": FORMAT_PARQUET, ".tfrecord": FORMAT_TFRECORD,
                 ".tfrecords": FORMAT_TFRECORD, ".tfrec": FORMAT_TFRECORD}


class NoImageInSample(ValueError):
    """A sample (tar key group, Parquet row, TFRecord example) without image bytes."""


class NoImageColumn(ValueError):
    """A Parquet file with no usable image column."""


class ShardBroken(OSError):
    """A shard that cannot be read to its end (truncated, corrupt)."""


class Refused(NamedTuple):
    """What a reader could not use: one sample (``key`` set, ``uri`` ``<shard>#<key>``), or
    the whole shard from some point on (``key`` None, ``uri`` the shard's). ``error`` says
    why; the caller turns it into an error row (stage 'read')."""

    uri: str
    key: str | None
    error: BaseException


def shard_format(uri: str, input_format: str = FORMAT_AUTO) -> str:
    """The reader for ``uri``: ``input_format`` itself, or with ``auto`` its extension's."""
    if input_format != FORMAT_AUTO:
        return input_format
    lowered = uri.lower()
    for extension, name in _BY_EXTENSION.items():
        if lowered.endswith(extension):
            return name
    return FORMAT_FILES


class Unhashed(NamedTuple):
    """A sample passed over without hashing (``hashing`` said no): only its uri and key."""

    uri: str
    key: str


def sample(listed: ListedFile, key: str, data: bytes, kept=None, hashing=None) -> ImageFile | Unhashed:
    """The ImageFile of one sample, or Unhashed when ``hashing(uri)`` is false."""
    uri = f"{listed.uri}#{key}"
    if hashing is not None and not hashing(uri):
        return Unhashed(uri, key)
    meta = FileMeta(uri, hashlib.sha256(data).hexdigest(), listed.size_bytes, listed.modified_us,
                    source=listed.uri, key=key, kept=kept)
    return ImageFile(meta, data)


def _as_text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _error(listed: ListedFile, key: str | None, exc: BaseException) -> Refused:
    return Refused(listed.uri if key is None else f"{listed.uri}#{key}", key, exc)


class _Keys:
    """Distinct keys within one shard: a key seen again becomes ``key~2``, ``key~3``...,
    skipping any such name the shard uses itself, so that no two samples share a uri."""

    def __init__(self):
        self._used: set[str] = set()
        self._next: dict[str, int] = {}

    def __call__(self, key: str) -> str:
        candidate = key
        while candidate in self._used:
            count = self._next.get(key, 2)
            self._next[key] = count + 1
            candidate = f"{key}~{count}"
        self._used.add(candidate)
        return candidate


# --- WebDataset --------------------------------------------------------------------------

def split_member_name(name: str) -> tuple[str, str]:
    """WebDataset: ``dir/000001.seg.png`` -> (``dir/000001``, ``seg.png``): the key is the
    name up to the first dot of its last component."""
    directory, base = posixpath.split(name)
    stem, _, extension = base.partition(".")
    return (posixpath.join(directory, stem) if directory else stem), extension.lower()


class UnsupportedTarMember(ValueError):
    """A tar member with an image extension that is not a file: a symlink, a device, a FIFO
    or a directory. Never followed or read."""


class LinkTargetMissing(ValueError):
    """A hard-linked image member whose target is not a file of the same tar."""


def _member_kind(member: tarfile.TarInfo) -> str:
    for test, kind in ((member.issym, "symbolic link"), (member.isdir, "directory"),
                       (member.isfifo, "FIFO"), (member.ischr, "character device"),
                       (member.isblk, "block device")):
        if test():
            return kind
    return "special member"


class _TarSamples:
    """The samples of one WebDataset tar, streamed: the runs of consecutive members sharing
    a key, each with its first image member. A hard-linked image member is read in a second
    pass, from its target's bytes, once the stream has ended."""

    def __init__(self, listed: ListedFile, max_member_bytes: int, hashing):
        self._listed, self._max, self._hashing = listed, max_member_bytes, hashing
        self._keys = _Keys()
        self._linked: list[tuple[str, str]] = []  # (key, link target), read after the stream
        self._start(None)

    def _start(self, key):
        self._current, self._image, self._refused, self._link = key, None, None, None

    def _has_image(self) -> bool:
        return self._image is not None or self._refused is not None or self._link is not None

    def _finish(self):
        """The sample of the group just ended, or None for a link read later."""
        key = self._keys(self._current)
        if self._refused is not None:
            return _error(self._listed, key, self._refused)
        if self._link is not None:
            self._linked.append((key, self._link))
            return None
        if self._image is None:
            return _error(self._listed, key, NoImageInSample(
                "no member with an image extension (" + ", ".join(IMAGE_EXTENSIONS) + ")"))
        return sample(self._listed, key, self._image, hashing=self._hashing)

    def _take(self, tar, member) -> None:
        """Record the image member of the current group: its bytes, link or refusal."""
        if member.islnk():
            self._link = member.linkname
        elif not member.isfile():
            self._refused = UnsupportedTarMember(
                f"member {member.name} is a {_member_kind(member)}, not a file; not followed")
        elif member.size > self._max:
            self._refused = FileTooLarge(f"member {member.name} is {member.size} bytes, over "
                                         f"--max_file_bytes {self._max}; not read")
        else:
            self._image = tar.extractfile(member).read()

    def _stream(self, tar):
        for member in tar:
            key, extension = split_member_name(member.name)
            is_image = extension.rsplit(".", 1)[-1] in IMAGE_EXTENSIONS
            if not is_image and not member.isfile():
                continue  # folders and links of non-image members are only structure
            if key != self._current or (is_image and self._has_image()):
                if self._current is not None:
                    yield self._finish()
                self._start(key)
            if is_image:
                self._take(tar, member)

    def __iter__(self):
        with FileSystems.open(self._listed.uri, compression_type="uncompressed") as handle:
            try:
                with tarfile.open(fileobj=handle, mode="r|") as tar:
                    yield from (found for found in self._stream(tar) if found is not None)
            except (tarfile.TarError, EOFError, OSError) as exc:
                if self._current is not None and self._has_image():
                    found = self._finish()
                    if found is not None:
                        yield found
                yield _error(self._listed, None, ShardBroken(
                    f"tar shard broken at byte {_tell(handle)}: {type(exc).__name__}: {exc}"))
                self._linked.clear()
                return
        if self._current is not None:
            found = self._finish()
            if found is not None:
                yield found
        yield from self._linked_samples()

    def _linked_samples(self):
        """Second pass, only when there are hard links: their targets' bytes."""
        if not self._linked:
            return
        wanted = {target for _, target in self._linked}
        found: dict[str, bytes | BaseException] = {}
        with FileSystems.open(self._listed.uri, compression_type="uncompressed") as handle:
            with tarfile.open(fileobj=handle, mode="r|") as tar:
                for member in tar:
                    if member.name in wanted and member.isfile():
                        found[member.name] = (FileTooLarge(
                            f"link target {member.name} is {member.size} bytes, over --max_file_bytes "
                            f"{self._max}; not read") if member.size > self._max
                            else tar.extractfile(member).read())
        for key, target in self._linked:
            data = found.get(target, LinkTargetMissing(
                f"hard link to {target}, which is not a file earlier in this tar"))
            yield (_error(self._listed, key, data) if isinstance(data, BaseException)
                   else sample(self._listed, key, data, hashing=self._hashing))


def read_webdataset(listed: ListedFile, max_member_bytes: int, hashing=None):
    """One ImageFile per sample: the first member of each key group with an image extension.
    Samples are the runs of consecutive members sharing a key, as WebDataset writes them.
    Every image member has a row: a hard link gives its target's bytes; a symlink, device,
    FIFO or directory with an image extension is refused (UnsupportedTarMember)."""
    return iter(_TarSamples(listed, max_member_bytes, hashing))


def _tell(handle) -> int | str:
    try:
        return handle.tell()
    except Exception:  # Some remote handles cannot say.
        return "?"


# --- Parquet -----------------------------------------------------------------------------

def image_column(schema: pa.Schema, requested: str | None) -> tuple[str, bool]:
    """(column, is_struct): ``requested``, else the first of PARQUET_IMAGE_COLUMNS that is
    binary, or a struct with a binary ``bytes`` field (Hugging Face's image)."""
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

    for name in ([requested] if requested else PARQUET_IMAGE_COLUMNS):
        is_struct = usable(name)
        if is_struct is not None:
            return name, is_struct
    wanted = requested or " or ".join(PARQUET_IMAGE_COLUMNS)
    raise NoImageColumn(f"no binary image column {wanted} (columns: {', '.join(schema.names)}); "
                        "name it with --image_column")


def _row_sample(listed: ListedFile, key: str, data, kept, column: str, max_image_bytes: int, hashing):
    """One Parquet row's sample, or its Refused (no bytes, too many bytes)."""
    if not data:
        return _error(listed, key, NoImageInSample(f"column {column} is empty in this row"))
    if len(data) > max_image_bytes:
        return _error(listed, key, FileTooLarge(
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
    error = RowGroupTooLarge(f"row group {group} holds {size} bytes of images, over "
                             f"--max_row_group_bytes {limit}; not read")
    for offset, name in enumerate(names):
        yield (str(name) if name is not None else str(first_row + offset)), error


def _batch_rows(batch: pa.RecordBatch, column: str, is_struct: bool, keep_columns):
    """(key or None, image bytes, kept values or None) per row of one record batch."""
    images = batch.column(column)
    if is_struct:
        images = images.field("bytes")
    present = batch.schema.names
    names = batch.column("key").to_pylist() if "key" in present else [None] * batch.num_rows
    kept_values = {name: batch.column(name).to_pylist() for name in keep_columns if name in present}
    for i, data in enumerate(images.to_pylist()):
        kept = (tuple(_as_text(kept_values[n][i]) if n in kept_values else None for n in keep_columns)
                if keep_columns else None)
        yield (str(names[i]) if names[i] is not None else None), data, kept


def read_parquet(listed: ListedFile, max_image_bytes: int, requested_column: str | None = None,
                 batch_rows: int = 256, keep_columns: tuple[str, ...] = (), hashing=None,
                 max_row_group_bytes: int = DEFAULT_MAX_ROW_GROUP_BYTES):
    """One ImageFile per row. The key is the ``key`` column when there is one, else the row
    number. A null image is an error row; so is a file that is not Parquet. The values of
    ``keep_columns`` that the file has are carried as text in ``kept`` (None where absent).
    Row groups are read one at a time; one whose images hold more than
    ``max_row_group_bytes`` (by the metadata) gives an error row per row, unread."""
    keys = _Keys()
    with FileSystems.open(listed.uri, compression_type="uncompressed") as handle:
        try:
            # pre_buffer=False: with pyarrow's default (True) iter_batches keeps every row
            # group it has read cached until the file is closed, so memory grew with the
            # shard (measured: +55 MB per 58 MB row group; flat without).
            parquet = pq.ParquetFile(handle, pre_buffer=False)
            column, is_struct = image_column(parquet.schema_arrow, requested_column)
        except Exception as exc:
            yield _error(listed, None, exc if isinstance(exc, NoImageColumn) else ShardBroken(
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
                        yield _error(listed, keys(name), error)
                    continue
                for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[group],
                                                  columns=columns):
                    for name, data, kept in _batch_rows(batch, column, is_struct, keep_columns):
                        key = keys(name if name is not None else str(row))
                        row += 1
                        yield _row_sample(listed, key, data, kept, column, max_image_bytes, hashing)
        except Exception as exc:
            yield _error(listed, None, ShardBroken(
                f"Parquet shard broken after row {row}: {type(exc).__name__}: {exc}"))


# --- TFRecord ----------------------------------------------------------------------------

def _masked_crc32c(data: bytes) -> int:
    from apache_beam.io.tfrecordio import _TFRecordUtil

    return _TFRecordUtil._masked_crc32c(data)  # pylint: disable=protected-access


def tfrecord_records(handle, max_record_bytes: int):
    """The payload of each record, CRCs checked; ShardBroken at the first bad one."""
    offset = 0
    while True:
        header = handle.read(12)
        if not header:
            return
        if len(header) != 12:
            raise ShardBroken(f"TFRecord cut off at byte {offset} (record header)")
        length, length_crc = struct.unpack("<QI", header)
        if _masked_crc32c(header[:8]) != length_crc:
            raise ShardBroken(f"TFRecord length checksum wrong at byte {offset}")
        if length > max_record_bytes:
            raise ShardBroken(f"TFRecord record at byte {offset} claims {length} bytes, over "
                              f"--max_file_bytes {max_record_bytes}")
        body = handle.read(length + 4)
        if len(body) != length + 4:
            raise ShardBroken(f"TFRecord cut off at byte {offset} (record of {length} bytes)")
        payload, payload_crc = body[:length], struct.unpack("<I", body[length:])[0]
        if _masked_crc32c(payload) != payload_crc:
            raise ShardBroken(f"TFRecord data checksum wrong in the record at byte {offset}")
        yield payload
        offset += 16 + length


def read_tfrecord(listed: ListedFile, max_record_bytes: int, feature: str | None = None, hashing=None):
    """One ImageFile per tf.train.Example record; the key is the record number."""
    from tensorflow.core.example import example_pb2

    feature = feature or TFRECORD_IMAGE_FEATURE
    with FileSystems.open(listed.uri, compression_type="uncompressed") as handle:
        number = 0
        try:
            for payload in tfrecord_records(handle, max_record_bytes):
                key = str(number)
                number += 1
                try:
                    example = example_pb2.Example.FromString(payload)
                    values = example.features.feature[feature].bytes_list.value
                    if not values or not values[0]:
                        raise NoImageInSample(f"no bytes in feature {feature!r}")
                except NoImageInSample as exc:
                    yield _error(listed, key, exc)
                    continue
                except Exception as exc:  # Not a tf.train.Example.
                    yield _error(listed, key, NoImageInSample(
                        f"record is not a tf.train.Example: {type(exc).__name__}: {exc}"))
                    continue
                yield sample(listed, key, values[0], hashing=hashing)
        except ShardBroken as exc:
            yield _error(listed, None, ShardBroken(f"{exc}; {number} records read before it"))


def read_shard(listed: ListedFile, kind: str, read: ReadConfig, hashing=None):
    """The reader of ``kind`` (webdataset, parquet or tfrecord) over ``listed``, with
    ``read``'s byte limit, image column and kept columns. With ``hashing``, a sample whose
    uri it says no to comes out Unhashed: the SHA-256 is taken only of samples the caller
    will use."""
    if kind == FORMAT_WEBDATASET:
        return read_webdataset(listed, read.max_file_bytes, hashing)
    if kind == FORMAT_PARQUET:
        return read_parquet(listed, read.max_file_bytes, read.image_column,
                            keep_columns=read.keep_columns, hashing=hashing,
                            max_row_group_bytes=read.max_row_group_bytes)
    if kind == FORMAT_TFRECORD:
        return read_tfrecord(listed, read.max_file_bytes, read.image_column, hashing)
    raise ValueError(f"not a shard format: {kind!r} (one of {', '.join(SHARD_FORMATS)})")
