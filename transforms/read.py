"""ReadImages and RereadImages: listing records -> the bytes of each file, hashed."""

from __future__ import annotations

import hashlib

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from schemas import (
    DEFAULT_MAX_FILE_BYTES,
    ERRORS_TAG,
    STAGE_READ,
    EmptyFile,
    FileTooLarge,
    ImageFile,
    ListedFile,
    SeenFile,
)
from transforms import shards
from transforms.errors import METRICS_NAMESPACE, image_error


class ContentChanged(OSError):
    """A file's bytes changed between the two reads of one run (hash, then embed)."""


class ShardsNotIncremental(ValueError):
    """A shard in an incremental run: its samples are not compared with earlier runs yet."""


def check_listed_size(listed: ListedFile, max_file_bytes: int) -> None:
    """Refuse by the listed size, before opening: EmptyFile or FileTooLarge (stage 'validate')."""
    if listed.size_bytes == 0:
        raise EmptyFile("the file is empty (0 bytes)")
    if listed.size_bytes is not None and listed.size_bytes > max_file_bytes:
        raise FileTooLarge(f"{listed.size_bytes} bytes is over --max_file_bytes {max_file_bytes}; not read")


def read_bytes(uri: str, max_file_bytes: int) -> bytes:
    """The whole file, refused when it turns out larger than ``max_file_bytes`` (a file whose
    listing had no size); I/O errors propagate."""
    with FileSystems.open(uri, compression_type="uncompressed") as handle:
        data = handle.read(max_file_bytes + 1)
    if len(data) > max_file_bytes:
        raise FileTooLarge(f"more than --max_file_bytes {max_file_bytes} bytes; not read further")
    if not data:
        raise EmptyFile("the file is empty (0 bytes)")
    return data


class _ReadFileFn(beam.DoFn):
    def __init__(self, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, input_format: str = "auto",
                 image_column: str | None = None, shards: bool = True, keep_columns=()):
        self._max_file_bytes = max_file_bytes
        self._input_format = input_format
        self._image_column = image_column
        self._shards = shards
        self._keep_columns = tuple(keep_columns)

    def setup(self):
        self._matched = Metrics.counter(METRICS_NAMESPACE, "matched")
        self._read = Metrics.counter(METRICS_NAMESPACE, "read")

    def process(self, listed: ListedFile):
        kind = shards.shard_format(listed.uri, self._input_format)
        if kind != "files":
            yield from self._samples(listed, kind)
            return
        self._matched.inc()
        try:
            check_listed_size(listed, self._max_file_bytes)
            data = read_bytes(listed.uri, self._max_file_bytes)
        except Exception as exc:  # Permissions, vanished files, remote I/O errors, guards.
            yield image_error(listed.uri, None, STAGE_READ, exc)
            return
        self._read.inc()
        yield ImageFile(listed.uri, hashlib.sha256(data).hexdigest(), data,
                        listed.size_bytes, listed.modified_us, source=listed.uri)


    def _samples(self, listed: ListedFile, kind: str):
        if not self._shards:
            self._matched.inc()
            yield image_error(listed.uri, None, STAGE_READ, ShardsNotIncremental(
                f"{kind} shards are not compared with earlier runs yet; embed them with --mode single"))
            return
        if kind == "webdataset":
            elements = shards.read_webdataset(listed, self._max_file_bytes)
        elif kind == "parquet":
            elements = shards.read_parquet(listed, self._max_file_bytes, self._image_column,
                                           keep_columns=self._keep_columns)
        else:
            elements = shards.read_tfrecord(listed, self._max_file_bytes, self._image_column)
        for element in elements:
            self._matched.inc()
            if isinstance(element, ImageFile):
                self._read.inc()
            yield element


class ReadImages(beam.PTransform):
    """ListedFile -> ``files``: ImageFile(uri, image_id = hex SHA-256 of the bytes, data,
    size_bytes, modified_us, source, key): one per listed image file, or one per sample of
    a listed shard (``input_format``: auto by extension, or files, webdataset, parquet,
    tfrecord; see transforms/shards.py), with ``uri`` ``<shard>#<key>``. ``image_column``
    names the Parquet column or TFRecord feature; ``keep_columns`` are Parquet columns
    carried as text into ``kept``. With ``shards`` False (incremental runs) a shard is one
    error row instead.

    Files that cannot be read go to ``errors`` (ImageError, stage 'read'); empty files and
    files over ``max_file_bytes`` (by the listed size, so they are never opened) go there
    with stage 'validate' (EmptyFile, FileTooLarge). Every input comes out once, on one of
    the two outputs. Returns a DoOutputsTuple with ``files`` and ``errors``.
    """

    def __init__(self, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, input_format: str = "auto",
                 image_column: str | None = None, shards: bool = True, keep_columns=()):
        super().__init__()
        self._read_fn = _ReadFileFn(max_file_bytes, input_format, image_column, shards, keep_columns)

    def expand(self, listed):
        return listed | "Read" >> beam.ParDo(self._read_fn).with_outputs(ERRORS_TAG, main="files")


def drop_bytes(file: ImageFile) -> SeenFile:
    """ImageFile -> SeenFile: what a join needs of a read file, without its bytes."""
    return SeenFile(file.uri, file.image_id, file.size_bytes, file.modified_us)


class _RereadFn(beam.DoFn):
    def __init__(self, max_file_bytes: int):
        self._max_file_bytes = max_file_bytes

    def process(self, seen: SeenFile):
        try:
            data = read_bytes(seen.uri, self._max_file_bytes)
            image_id = hashlib.sha256(data).hexdigest()
            if image_id != seen.image_id:
                raise ContentChanged(
                    f"the file changed while this run read it (SHA-256 {seen.image_id[:12]}... "
                    f"when hashed, {image_id[:12]}... when read to embed); the next run reads it again")
        except Exception as exc:
            yield image_error(seen.uri, seen.image_id, STAGE_READ, exc)
            return
        yield ImageFile(seen.uri, image_id, data, seen.size_bytes, seen.modified_us, source=seen.uri)


class RereadImages(beam.PTransform):
    """SeenFile -> ``files``: ImageFile with the bytes of a file hashed earlier in this run.

    Incremental runs hash files first and compare the hashes with earlier runs through a
    join of small records, so that image bytes never wait in a shuffle; the files left to
    embed are then read again here. A file whose SHA-256 differs from the first read (it was
    rewritten meanwhile) or that can no longer be read goes to ``errors`` (stage 'read',
    ContentChanged or the I/O error). Returns a DoOutputsTuple with ``files`` and ``errors``."""

    def __init__(self, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES):
        super().__init__()
        self._max_file_bytes = max_file_bytes

    def expand(self, seen):
        return seen | "Reread" >> beam.ParDo(_RereadFn(self._max_file_bytes)).with_outputs(
            ERRORS_TAG, main="files")
