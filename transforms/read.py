"""ReadImages and RereadImages: listing records -> the bytes of each file, hashed."""

from __future__ import annotations

import errno
import hashlib
import os

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from schemas import (
    ERRORS_TAG,
    FORMAT_FILES,
    STAGE_READ,
    EmptyFile,
    FileMeta,
    FileTooLarge,
    ImageFile,
    ListedFile,
    ListedShard,
    ReadConfig,
    SeenFile,
    ShardRecord,
    Tally,
    Unchanged,
    accounting,
)
from transforms import shards
from transforms.errors import METRICS_NAMESPACE, image_error

UNCHANGED_TAG = "unchanged"
SHARDS_TAG = "shards"
MATCHED_TAG = accounting.MATCHED
READ_TAG = accounting.READ
#: A Tally goes out at least every this many images of a bundle (and at its end), so that
#: the progress line moves while a large bundle is read.
TALLY_EVERY = 256


def content_id(data: bytes) -> str:
    """The image id: hex SHA-256 of the bytes."""
    return hashlib.sha256(data).hexdigest()


class _Tally:
    """Counts images of one accounting kind for a DoFn: the Beam counter at once, and a
    Tally element per TALLY_EVERY images and at the end of the bundle (``flush``)."""

    def __init__(self, tag: str):
        self._tag = tag
        self._counter = Metrics.counter(METRICS_NAMESPACE, accounting.counter_name(tag))
        self._images = 0

    def clear(self):
        self._images = 0

    def add(self, images: int = 1):
        self._counter.inc(images)
        self._images += images

    def flush_when_full(self):
        if self._images >= TALLY_EVERY:
            yield from self.flush()

    def flush(self, in_window: bool = False):
        if self._images:
            tally, self._images = Tally(self._images), 0
            yield beam.pvalue.TaggedOutput(self._tag, WindowedValue(
                tally, GlobalWindow().max_timestamp(), [GlobalWindow()]) if in_window else tally)


class ContentChanged(OSError):
    """A file's bytes changed between the two reads of one run (hash, then embed)."""


class BrokenLink(OSError):
    """A symbolic link whose target does not exist."""


class LinkLoop(OSError):
    """A symbolic link that leads back to itself through other links."""


def explain_link(uri: str, exc: Exception) -> Exception:
    """``exc`` (raised opening ``uri``) as BrokenLink or LinkLoop when ``uri`` is a local
    symbolic link that leads nowhere; ``exc`` itself otherwise."""
    if not isinstance(exc, OSError) or "://" in uri or not os.path.islink(uri):
        return exc
    try:
        os.stat(uri)
    except OSError as followed:
        if followed.errno == errno.ELOOP:
            return LinkLoop(f"symbolic link loop: {uri} leads back to itself")
        return BrokenLink(f"symbolic link to {os.readlink(uri)!r}, which does not exist")
    return exc  # the link leads somewhere: the error is the target's


def check_listed_size(listed: ListedFile, max_file_bytes: int) -> None:
    """Refuse by the listed size, before opening: EmptyFile or FileTooLarge (stage 'validate')."""
    if listed.size_bytes == 0:
        raise EmptyFile("the file is empty (0 bytes)")
    if listed.size_bytes is not None and listed.size_bytes > max_file_bytes:
        raise FileTooLarge(f"{listed.size_bytes} bytes is over --max_file_bytes {max_file_bytes}; not read")


#: Bytes asked for per read when the size is not known. ``read(n)`` allocates n bytes
#: first: asking for --max_file_bytes (256 MB) at once cost 50 us more per 40 KB photo.
READ_CHUNK_BYTES = 1 << 20


def _read_parts(read, max_file_bytes: int, size_bytes: int | None) -> bytes:
    """``read(n)`` called until the end of the file or ``max_file_bytes`` + 1 bytes."""
    parts, total = [], 0
    want = size_bytes + 1 if size_bytes else READ_CHUNK_BYTES
    while total <= max_file_bytes:
        part = read(min(want, max_file_bytes + 1 - total))
        if not part:
            break
        parts.append(part)
        total += len(part)
        want = READ_CHUNK_BYTES
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _read_local(path: str, max_file_bytes: int, size_bytes: int | None) -> bytes:
    """A local file through its descriptor alone: no FileSystems lookup and no buffered
    reader (25 -> 12 us per 48 KB photo; the bytes are the same)."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        return _read_parts(lambda n: os.read(descriptor, n), max_file_bytes, size_bytes)
    finally:
        os.close(descriptor)


def read_bytes(uri: str, max_file_bytes: int, size_bytes: int | None = None) -> bytes:
    """The whole file, refused when it turns out larger than ``max_file_bytes`` (a file whose
    listing had no size, or that grew since); I/O errors propagate. ``size_bytes``, the
    listed size, sizes the first read; the file is read on until its end either way. Local
    paths are read with ``os.read``, others through Beam's FileSystems."""
    if "://" not in uri:
        data = _read_local(uri, max_file_bytes, size_bytes)
    else:
        with FileSystems.open(uri, compression_type="uncompressed") as handle:
            data = _read_parts(handle.read, max_file_bytes, size_bytes)
    if len(data) > max_file_bytes:
        raise FileTooLarge(f"more than --max_file_bytes {max_file_bytes} bytes; not read further")
    if not data:
        raise EmptyFile("the file is empty (0 bytes)")
    return data


class _ReadFileFn(beam.DoFn):
    def __init__(self, read: ReadConfig):
        self._config = read

    def setup(self):
        self._unchanged = Metrics.counter(METRICS_NAMESPACE,
                                          accounting.counter_name(accounting.SKIPPED_UNCHANGED))
        self._tallies = {tag: _Tally(tag) for tag in (MATCHED_TAG, READ_TAG)}

    def start_bundle(self):
        for tally in self._tallies.values():
            tally.clear()

    def finish_bundle(self):
        for tally in self._tallies.values():
            yield from tally.flush(in_window=True)

    def process(self, element: ListedFile | ListedShard):
        yield from self._read_listed(element)
        for tally in self._tallies.values():
            yield from tally.flush_when_full()

    def _read_listed(self, element: ListedFile | ListedShard):
        listed, known = (element.listed, element.known) if isinstance(element, ListedShard) else (element, ())
        kind = shards.shard_format(listed.uri, self._config.input_format)
        if kind != FORMAT_FILES:
            yield from self._samples(listed, kind, known)
            return
        self._tallies[MATCHED_TAG].add()
        try:
            check_listed_size(listed, self._config.max_file_bytes)
            data = read_bytes(listed.uri, self._config.max_file_bytes, listed.size_bytes)
        except Exception as exc:  # Permissions, vanished files, dangling links, remote I/O errors, guards.
            yield image_error(listed.uri, None, STAGE_READ, explain_link(listed.uri, exc))
            return
        self._tallies[READ_TAG].add()
        yield ImageFile(FileMeta(listed.uri, content_id(data), listed.size_bytes,
                                 listed.modified_us, source=listed.uri), data)

    def _samples(self, listed: ListedFile, kind: str, known):
        samples = refused = 0
        whole_shard_refused = False
        try:
            elements = shards.read_shard(listed, kind, self._config,
                                         hashing=lambda uri: uri not in known)
            for element in elements:
                self._tallies[MATCHED_TAG].add()
                if isinstance(element, shards.Unhashed):  # known: skipped, never hashed
                    samples += 1
                    self._unchanged.inc()
                    yield beam.pvalue.TaggedOutput(UNCHANGED_TAG, Unchanged(element.uri))
                    continue
                if isinstance(element, ImageFile):
                    samples += 1
                    self._tallies[READ_TAG].add()
                    yield element
                    continue
                whole_shard_refused |= element.key is None
                samples += element.key is not None
                refused += element.key is not None
                yield image_error(element.uri, None, STAGE_READ, element.error)
        except Exception as exc:  # The shard could not be opened at all.
            self._tallies[MATCHED_TAG].add()
            yield image_error(listed.uri, None, STAGE_READ, explain_link(listed.uri, exc))
            return
        if not whole_shard_refused:
            yield beam.pvalue.TaggedOutput(SHARDS_TAG, ShardRecord(
                listed.uri, listed.size_bytes, listed.modified_us, samples, refused))


class ReadImages(beam.PTransform):
    """ListedFile or ListedShard -> ``files``: ImageFile(meta: FileMeta(uri, image_id = hex
    SHA-256 of the bytes, size_bytes, modified_us, source, key, kept), data): one per listed
    image file, or one per sample of a listed shard (``read.input_format``: auto by
    extension, or files, webdataset, parquet, tfrecord; see transforms/shards.py), with
    ``uri`` ``<shard>#<key>``. ``read.image_column`` names the Parquet column or TFRecord
    feature; ``read.keep_columns`` are Parquet columns carried as text into ``kept``.

    Files that cannot be read go to ``errors`` (ImageError, stage 'read'); empty files and
    files over ``max_file_bytes`` (by the listed size, so they are never opened) go there
    with stage 'validate' (EmptyFile, FileTooLarge). The samples of a ListedShard that are
    among its ``known`` uris go to ``unchanged`` (Unchanged) instead of ``files``. Every
    input image comes out once, on one of those outputs. ``shards`` gets a ShardRecord per
    shard read to its end (none for a shard that broke off or could not be opened).
    ``matched`` and ``read`` count, in Tally elements, every input image that came in and
    every one whose bytes were read and hashed (one Tally per TALLY_EVERY images and per
    bundle end, not an element per image).
    Returns a DoOutputsTuple with ``files``, ``errors``, ``unchanged``, ``shards``,
    ``matched`` and ``read``.
    """

    def __init__(self, read: ReadConfig = ReadConfig()):
        super().__init__()
        self._read_fn = _ReadFileFn(read)

    def expand(self, listed):
        return listed | "Read" >> beam.ParDo(self._read_fn).with_output_types(ImageFile).with_outputs(
            ERRORS_TAG, UNCHANGED_TAG, SHARDS_TAG, MATCHED_TAG, READ_TAG, main="files")


def drop_bytes(file: ImageFile) -> SeenFile:
    """ImageFile -> SeenFile: what a join needs of a read file, without its bytes."""
    meta = file.meta
    return SeenFile(meta.uri, meta.image_id, meta.size_bytes, meta.modified_us, meta.source)


class _RereadFn(beam.DoFn):
    def __init__(self, max_file_bytes: int):
        self._max_file_bytes = max_file_bytes

    def process(self, seen: SeenFile):
        try:
            data = read_bytes(seen.uri, self._max_file_bytes, seen.size_bytes)
            image_id = content_id(data)
            if image_id != seen.image_id:
                raise _changed(seen, image_id)
        except Exception as exc:
            yield image_error(seen.uri, seen.image_id, STAGE_READ, exc)
            return
        yield ImageFile(FileMeta(seen.uri, image_id, seen.size_bytes, seen.modified_us, source=seen.uri), data)


def _changed(seen: SeenFile, image_id: str) -> ContentChanged:
    return ContentChanged(
        f"the file changed while this run read it (SHA-256 {seen.image_id[:12]}... when hashed, "
        f"{image_id[:12]}... when read to embed); the next run reads it again")


class _RereadSamplesFn(beam.DoFn):
    """(shard uri, [SeenFile]) -> the wanted samples, streaming the shard once and stopping
    as soon as the last wanted one has come by."""

    def __init__(self, read: ReadConfig):
        self._config = read

    def process(self, element):
        source, seens = element
        wanted = {seen.uri: seen for seen in seens}
        first = next(iter(wanted.values()))
        listed = ListedFile(source, first.size_bytes, first.modified_us)
        kind = shards.shard_format(source, self._config.input_format)
        why_missing = None
        try:
            for found in shards.read_shard(listed, kind, self._config, hashing=wanted.__contains__):
                if isinstance(found, shards.Refused) and found.key is None:
                    why_missing = found.error
                seen = wanted.pop(found.uri, None)
                if seen is None:
                    if not wanted:
                        break
                    continue
                if isinstance(found, shards.Refused):
                    yield image_error(seen.uri, seen.image_id, STAGE_READ, found.error)
                elif found.image_id != seen.image_id:
                    yield image_error(seen.uri, seen.image_id, STAGE_READ, _changed(seen, found.image_id))
                else:
                    yield found
                if not wanted:
                    break
        except Exception as exc:  # The shard could not be opened again.
            why_missing = exc
        for seen in wanted.values():
            yield image_error(seen.uri, seen.image_id, STAGE_READ, ContentChanged(
                f"the sample was not found when its shard was read again to embed it"
                + (f" ({type(why_missing).__name__}: {why_missing})" if why_missing else
                   " (the shard changed while this run read it)") + "; the next run reads it again"))


class RereadImages(beam.PTransform):
    """SeenFile -> ``files``: ImageFile with the bytes of an image hashed earlier in this run.

    Incremental runs hash images first and compare the hashes with earlier runs through a
    join of small records, so that image bytes never wait in a shuffle; the images left to
    embed are then read again here. A loose file is read again by its uri. Samples of shards
    are grouped by shard (the group holds small records, at most one per sample of that
    shard), and each shard is streamed once, up to its last wanted sample.

    An image whose SHA-256 differs from the first read (it was rewritten meanwhile), or that
    can no longer be read or found, goes to ``errors`` (stage 'read', ContentChanged or the
    I/O error). ``read`` is the ReadConfig the images were first read with. Returns a dict
    with ``files`` and ``errors``."""

    def __init__(self, read: ReadConfig = ReadConfig()):
        super().__init__()
        self._max_file_bytes = read.max_file_bytes
        self._samples_fn = _RereadSamplesFn(read)

    def expand(self, seen):
        files, samples = seen | "FilesOrSamples" >> beam.Partition(
            lambda s, _: int(s.in_shard), 2)
        loose = files | "Reread" >> beam.ParDo(_RereadFn(self._max_file_bytes)).with_outputs(
            ERRORS_TAG, main="files")
        from_shards = (
            samples
            | "BySource" >> beam.Map(lambda s: (s.source, s))
            | "GroupBySource" >> beam.GroupByKey()
            | "RereadSamples" >> beam.ParDo(self._samples_fn).with_outputs(ERRORS_TAG, main="files")
        )
        return {
            "files": (loose.files, from_shards.files) | "Files" >> beam.Flatten(),
            "errors": (loose[ERRORS_TAG], from_shards[ERRORS_TAG]) | "Errors" >> beam.Flatten(),
        }
