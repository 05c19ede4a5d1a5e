"""open_shard: a shard's bytes, decompressed as they are read when its name says so.

The codec comes from the name as Beam's CompressionTypes picks it (plus ``.tgz``). gzip,
bzip2 and xz are read with the standard library's streaming readers, which notice a stream
that ends early (Beam's CompressedFile ends quietly there, so a truncated ``.tar.gz`` would
look complete); zstd and deflate use Beam's CompressedFile. Either way only a buffer is
held, never the shard. A stream that is cut off or corrupt raises ShardBroken saying which,
and how far it got."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import zlib

from apache_beam.io.filesystem import CompressedFile, CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.shards.common import ShardBroken, compression_of

_STANDARD_LIBRARY = {
    CompressionTypes.GZIP: ("gzip", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    CompressionTypes.BZIP2: ("bzip2", lambda raw: bz2.BZ2File(raw, mode="rb")),
    CompressionTypes.LZMA: ("xz", lambda raw: lzma.LZMAFile(raw, mode="rb")),
}


class _Decompressing:
    """A read-only stream over a decompressor that reports a broken stream as ShardBroken."""

    def __init__(self, stream, codec: str):
        self._stream, self._codec, self._position = stream, codec, 0

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._stream.read(size)
        except EOFError as exc:
            raise ShardBroken(f"{self._codec} stream cut off after {self._position} "
                              f"decompressed bytes (the file is truncated): {exc}") from None
        except (zlib.error, lzma.LZMAError, OSError, ValueError) as exc:
            raise ShardBroken(f"{self._codec} stream corrupt after {self._position} decompressed "
                              f"bytes ({type(exc).__name__}: {exc})") from None
        self._position += len(data)
        return data

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        self._stream.close()


@contextlib.contextmanager
def open_shard(uri: str):
    """A readable handle on ``uri``'s bytes, decompressed when its name has a codec's suffix."""
    codec = compression_of(uri)
    with FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        if codec == CompressionTypes.UNCOMPRESSED:
            yield raw
            return
        if codec in _STANDARD_LIBRARY:
            name, reader = _STANDARD_LIBRARY[codec]
            stream = _Decompressing(reader(raw), name)
        else:
            stream = _Decompressing(CompressedFile(raw, compression_type=codec), str(codec))
        try:
            yield stream
        finally:
            stream.close()
