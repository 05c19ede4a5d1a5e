"""read_webdataset: the samples of one WebDataset tar (plain or compressed), streamed."""

from __future__ import annotations

import posixpath
import tarfile

from apache_beam.io.filesystem import CompressionTypes

from schemas import FileTooLarge, ListedFile
from transforms.shards.codecs import open_shard
from transforms.shards.common import (
    IMAGE_EXTENSIONS,
    Keys,
    NoImageInSample,
    ShardBroken,
    as_text,
    compression_of,
    refusal,
    sample,
    tell,
)

#: A member kept with --keep_columns (``.cls``, ``.txt``, ``.json``) is read up to this size.
MAX_KEPT_MEMBER_BYTES = 64 * 1024


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
    a key, each with its first image member and the members named by ``keep``. A
    hard-linked image member is read in a second pass, from its target's bytes, once the
    stream has ended."""

    def __init__(self, listed: ListedFile, max_member_bytes: int, hashing, keep: tuple[str, ...]):
        self._listed, self._max, self._hashing, self._keep = listed, max_member_bytes, hashing, keep
        self._keys = Keys()
        self._linked: list[tuple[str, str, tuple | None]] = []  # (key, target, kept), read after
        self._start(None)

    def _start(self, key):
        self._current, self._image, self._refused, self._link = key, None, None, None
        self._kept: dict[str, str] = {}

    def _has_image(self) -> bool:
        return self._image is not None or self._refused is not None or self._link is not None

    def _kept_values(self):
        return tuple(self._kept.get(name) for name in self._keep) if self._keep else None

    def _finish(self):
        """The sample of the group just ended, or None for a link read later."""
        key = self._keys(self._current)
        if self._refused is not None:
            return refusal(self._listed, key, self._refused)
        if self._link is not None:
            self._linked.append((key, self._link, self._kept_values()))
            return None
        if self._image is None:
            return refusal(self._listed, key, NoImageInSample(
                "no member with an image extension (" + ", ".join(IMAGE_EXTENSIONS) + ")"))
        return sample(self._listed, key, self._image, self._kept_values(), self._hashing)

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
            elif extension in self._keep and member.size <= MAX_KEPT_MEMBER_BYTES:
                self._kept[extension] = as_text(tar.extractfile(member).read())

    def __iter__(self):
        compressed = compression_of(self._listed.uri) != CompressionTypes.UNCOMPRESSED
        with open_shard(self._listed.uri) as handle:
            try:
                with tarfile.open(fileobj=handle, mode="r|") as tar:
                    yield from (found for found in self._stream(tar) if found is not None)
                while compressed and handle.read(1 << 16):  # the trailer: its CRC, its end
                    pass
            except (tarfile.TarError, EOFError, OSError) as exc:
                if self._current is not None and self._has_image():
                    found = self._finish()
                    if found is not None:
                        yield found
                why = str(exc) if isinstance(exc, ShardBroken) else f"{type(exc).__name__}: {exc}"
                if compressed and not isinstance(exc, ShardBroken):
                    why += (f" (in the data decompressed from {compression_of(self._listed.uri)}: "
                            "it may be corrupt)")
                yield refusal(self._listed, None, ShardBroken(f"tar shard broken at byte {tell(handle)}: {why}"))
                self._linked.clear()
                return
        if self._current is not None:
            found = self._finish()
            if found is not None:
                yield found
        yield from self._linked_samples()

    def _targets(self, wanted: set[str]) -> dict[str, bytes | BaseException]:
        found: dict[str, bytes | BaseException] = {}
        with open_shard(self._listed.uri) as handle:
            with tarfile.open(fileobj=handle, mode="r|") as tar:
                for member in tar:
                    if member.name in wanted and member.isfile():
                        found[member.name] = (FileTooLarge(
                            f"link target {member.name} is {member.size} bytes, over --max_file_bytes "
                            f"{self._max}; not read") if member.size > self._max
                            else tar.extractfile(member).read())
        return found

    def _linked_samples(self):
        """Second pass, only when there are hard links: their targets' bytes."""
        if not self._linked:
            return
        found = self._targets({target for _, target, _ in self._linked})
        for key, target, kept in self._linked:
            data = found.get(target, LinkTargetMissing(
                f"hard link to {target}, which is not a file earlier in this tar"))
            yield (refusal(self._listed, key, data) if isinstance(data, BaseException)
                   else sample(self._listed, key, data, kept, self._hashing))


def read_webdataset(listed: ListedFile, max_member_bytes: int, hashing=None, keep: tuple[str, ...] = ()):
    """One ImageFile per sample: the first member of each key group with an image extension.
    Samples are the runs of consecutive members sharing a key, as WebDataset writes them;
    ``.tar.gz``/``.tgz`` (and the other codecs of open_shard) are decompressed as they are
    read. Every image member has a row: a hard link gives its target's bytes; a symlink,
    device, FIFO or directory with an image extension is refused (UnsupportedTarMember).
    ``keep`` names member extensions (``cls``, ``txt``, ``json``) whose text goes to
    ``kept``, in that order (None where the sample has no such member)."""
    return iter(_TarSamples(listed, max_member_bytes, hashing, tuple(keep)))
