"""Handing a batch of pixels to a model process through shared memory instead of a socket.

Pickled through MultiProcessShared's socket, a (32, 224, 224, 3) uint8 batch costs 5 to 8 ms
of CPU between the two processes (0.16 to 0.26 ms per image, up to a seventh of decoding
one); written into a block of POSIX shared memory that the model process maps, it costs
about 0.8 ms (BENCHMARKS.md, "Worker layouts"). Only the block's name and the batch's shape go
through the socket. The results (small pooled rows) still come back pickled."""

from __future__ import annotations

import collections
import logging
import mmap
import os
import threading

import numpy as np

_log = logging.getLogger(__name__)

try:  # CPython's own shm_open, as multiprocessing.shared_memory uses it (POSIX only).
    import _posixshmem
    from multiprocessing import shared_memory
except ImportError:  # pragma: no cover - Windows
    _posixshmem = shared_memory = None


class SlotUnavailable(RuntimeError):
    """The model process cannot map a caller's block (another IPC namespace, say): that
    caller sends its batches through the socket from then on."""


class BatchSlot:
    """A block of shared memory, owned by one caller, that batches are written into.

    ``create`` reserves the whole block at once (``posix_fallocate``), so a full /dev/shm
    (64 MiB in a default Docker container) is a logged fallback to the socket here, never
    a SIGBUS on a later write. The block is unlinked by ``close``, or by Python's resource
    tracker if this process dies first."""

    def __init__(self, memory):
        self._memory = memory
        self.name = memory.name
        self.size = memory.size

    @classmethod
    def create(cls, nbytes: int) -> BatchSlot | None:
        if shared_memory is None or nbytes < 1:
            return None
        try:
            memory = shared_memory.SharedMemory(create=True, size=nbytes)
        except OSError as exc:
            _log.warning("no shared memory for batches (%s); they go through the socket", exc)
            return None
        try:
            os.posix_fallocate(memory._fd, 0, nbytes)  # pylint: disable=protected-access
        except (OSError, AttributeError) as exc:
            memory.close()
            memory.unlink()
            _log.warning("cannot reserve %d bytes of shared memory for batches (%s); they go "
                         "through the socket", nbytes, exc)
            return None
        return cls(memory)

    def holds(self, pixels: np.ndarray) -> bool:
        return pixels.dtype == np.uint8 and pixels.nbytes <= self.size

    def write(self, pixels: np.ndarray) -> tuple[str, tuple[int, ...]]:
        """Copy ``pixels`` in; returns what the model process needs to read them back."""
        np.ndarray(pixels.shape, np.uint8, buffer=self._memory.buf)[...] = pixels
        return self.name, tuple(pixels.shape)

    def close(self) -> None:
        try:
            self._memory.close()
            self._memory.unlink()
        except (OSError, BufferError) as exc:
            _log.info("shared memory %s not released: %s", self.name, exc)


class SlotReader:
    """The model process's side: maps each caller's block once (without registering it
    with a resource tracker: the caller owns it), keeps the newest ``limit`` mappings, and
    returns a batch as an array over the mapping, without a copy. Thread-safe: the
    model process serves each caller on a thread of its own."""

    def __init__(self, limit: int = 64):
        self._limit = limit
        self._maps: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    def read(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        with self._lock:
            mapped = self._maps.get(name)
            if mapped is None:
                try:
                    mapped = self._maps[name] = _map(name)
                except (OSError, ValueError) as exc:
                    raise SlotUnavailable(f"cannot map shared memory {name}: {exc}") from None
                self._evict()
            else:
                self._maps.move_to_end(name)
        return np.ndarray(shape, np.uint8, buffer=mapped)

    def _evict(self) -> None:
        while len(self._maps) > self._limit:
            name, oldest = self._maps.popitem(last=False)
            try:
                oldest.close()
            except BufferError:  # still being read: keep it a while longer
                self._maps[name] = oldest
                self._maps.move_to_end(name, last=False)
                return


def _map(name: str) -> mmap.mmap:
    descriptor = _posixshmem.shm_open("/" + name.lstrip("/"), os.O_RDWR, mode=0o600)
    try:
        return mmap.mmap(descriptor, os.fstat(descriptor).st_size)
    finally:
        os.close(descriptor)
