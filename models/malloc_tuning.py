"""Keep freed memory in a decoding process instead of handing it back to the kernel
after every image.

Every image allocates and frees the same large buffers: the decoded pixels (560 KB for a
500x375 photo), the resized ones (150 KB) and a batch (4.8 MB for 32 at 224x224). glibc's
malloc serves blocks over its mmap threshold with fresh mappings and gives freed space
back once the top of a heap passes its trim threshold, so each image paid its pages again
as page faults: measured in one pinned process of the pipeline (bench/per_core.py's
in-process runs, 2,000 marginal photos), 0.037-0.060 ms of kernel time per image against
0.015-0.022 ms with the settings below, of about 1.45 ms in all (BENCHMARKS.md, issue 29).

glibc's ``mallopt`` (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD; the same as the environment
variables MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_, which only act at process
start) raises both: blocks up to MMAP_THRESHOLD_BYTES come from the heap, and up to
TRIM_THRESHOLD_BYTES of free space stay mapped. The cost is memory kept at its peak
instead of returned between images, bounded by those figures per malloc arena. A user's
own choice wins: with either variable set, or another allocator preloaded (jemalloc,
tcmalloc), nothing changes. Elsewhere than glibc it does nothing."""

from __future__ import annotations

import ctypes
import os
import threading

#: glibc's mallopt parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks below this come from the heap (glibc caps its own moving threshold at 32 MB on
#: 64-bit; a decoded 12-megapixel photo is 36 MB).
MMAP_THRESHOLD_BYTES = 64 << 20
#: Free space a heap keeps before it is returned.
TRIM_THRESHOLD_BYTES = 256 << 20
#: Set by a user: then the process keeps what they chose.
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD")

_applied: bool | None = None
_lock = threading.Lock()


def _mallopt():
    """glibc's mallopt from the symbols already loaded in this process (no ldconfig run), or
    None where there is no such function (macOS, Windows)."""
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds in this process, once; True when they are
    set (by this call or an earlier one), False when a user's setting or another C library
    left them alone."""
    global _applied
    with _lock:
        if _applied is None:
            mallopt = None if any(os.environ.get(name) for name in USER_SETTINGS) else _mallopt()
            _applied = bool(mallopt and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
                            and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
        return _applied
