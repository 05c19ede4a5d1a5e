"""What every shard reader shares: the sample and refusal elements, unique keys, and the
format and codec a shard's name implies."""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from apache_beam.io.filesystem import CompressionTypes

from schemas import (
    FORMAT_ARROW,
    FORMAT_AUTO,
    FORMAT_FILES,
    FORMAT_PARQUET,
    FORMAT_TFRECORD,
    FORMAT_WEBDATASET,
    FileMeta,
    ImageFile,
    ListedFile,
)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")
_BY_EXTENSION = {".tar": FORMAT_WEBDATASET, ".parquet": FORMAT_PARQUET, ".tfrecord": FORMAT_TFRECORD,
                 ".tfrecords": FORMAT_TFRECORD, ".tfrec": FORMAT_TFRECORD, ".arrow": FORMAT_ARROW}
#: TensorFlow Datasets' shard names: ``mnist-train.tfrecord-00000-of-00004``.
_TFDS_SHARD = re.compile(r"\.(tfrecords?|tfrec)-\d+-of-\d+$")
#: Suffixes Beam's CompressionTypes does not know that name a compressed tar.
_TAR_ALIASES = {".tgz": CompressionTypes.GZIP, ".tbz2": CompressionTypes.BZIP2,
                ".txz": CompressionTypes.LZMA}
#: Names ending so are image files whatever else they hold: no shard extension, compression
#: suffix or TFDS shard name ends so (shard_format answers them without its lookups).
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


class NoImageInSample(ValueError):
    """A sample (tar key group, Parquet row, TFRecord example) without image bytes."""


class ShardBroken(OSError):
    """A shard that cannot be read to its end (truncated, corrupt)."""


class Refused(NamedTuple):
    """What a reader could not use: one sample (``key`` set, ``uri`` ``<shard>#<key>``), or
    the whole shard from some point on (``key`` None, ``uri`` the shard's). ``error`` says
    why; the caller turns it into an error row (stage 'read')."""

    uri: str
    key: str | None
    error: BaseException


class Unhashed(NamedTuple):
    """A sample passed over without hashing (``hashing`` said no): only its uri and key."""

    uri: str
    key: str


def compression_of(uri: str) -> str:
    """The codec a shard's name implies, as Beam's CompressionTypes picks it by suffix
    (``.gz``, ``.bz2``, ``.xz``, ``.zst``, ``.deflate``...), plus ``.tgz``, ``.tbz2``, ``.txz``."""
    lowered = uri.lower()
    for suffix, codec in _TAR_ALIASES.items():
        if lowered.endswith(suffix):
            return codec
    return CompressionTypes.detect_compression_type(lowered)


def _without_compression(uri: str) -> str:
    """``a.tar.gz`` -> ``a.tar``; ``a.tgz`` -> ``a.tar``; others unchanged (lowercased)."""
    lowered = uri.lower()
    for suffix in _TAR_ALIASES:
        if lowered.endswith(suffix):
            return lowered[: -len(suffix)] + ".tar"
    if compression_of(lowered) != CompressionTypes.UNCOMPRESSED:
        return lowered.rsplit(".", 1)[0]
    return lowered


def shard_format(uri: str, input_format: str = FORMAT_AUTO) -> str:
    """The reader for ``uri``: ``input_format`` itself, or with ``auto`` its extension's,
    a compression suffix aside (``.tar.gz``, ``.tgz`` and ``.tfrecord.gz`` are shards), and
    TensorFlow Datasets' ``*.tfrecord-NNNNN-of-NNNNN`` a TFRecord shard."""
    if input_format != FORMAT_AUTO:
        return input_format
    if uri[-5:].lower().endswith(_IMAGE_SUFFIXES):
        return FORMAT_FILES
    name = _without_compression(uri)
    for extension, kind in _BY_EXTENSION.items():
        if name.endswith(extension):
            return kind
    if _TFDS_SHARD.search(name):
        return FORMAT_TFRECORD
    return FORMAT_FILES


def sample(listed: ListedFile, key: str, data: bytes, kept=None, hashing=None) -> ImageFile | Unhashed:
    """The ImageFile of one sample, or Unhashed when ``hashing(uri)`` is false."""
    uri = f"{listed.uri}#{key}"
    if hashing is not None and not hashing(uri):
        return Unhashed(uri, key)
    meta = FileMeta(uri, hashlib.sha256(data).hexdigest(), listed.size_bytes, listed.modified_us,
                    source=listed.uri, key=key, kept=kept)
    return ImageFile(meta, data)


def as_text(value) -> str | None:
    """A kept value as text: bytes decoded as UTF-8, numbers and lists as ``str``."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def refusal(listed: ListedFile, key: str | None, exc: BaseException) -> Refused:
    """A Refused for one sample of ``listed`` (``key``), or for the shard (``key`` None)."""
    return Refused(listed.uri if key is None else f"{listed.uri}#{key}", key, exc)


def tell(handle) -> int | str:
    """The handle's position, or ``?`` when it cannot say."""
    try:
        return handle.tell()
    except Exception:  # Some remote handles cannot say.
        return "?"


class Keys:
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
