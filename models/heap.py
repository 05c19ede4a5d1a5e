"""What a process keeps for its whole life (modules, Beam, Pillow, TensorFlow, the model)
taken out of the garbage collector's full passes, once that part is loaded.

CPython's cyclic collector walks every tracked object on a full (generation 2) pass. A
worker that has imported Beam, pyarrow and Pillow tracks ~200,000 objects and one that has
built the model ~460,000: measured here, each full pass then took 0.4 s, and a fresh
6,000-image in-process run made 5 of them, 1.15 s of its 30.4 CPU-seconds (3.8%), paid
per image. ``gc.freeze()`` (Python's gc module: "move them to a permanent generation and
ignore them in all the future collections") after a collection leaves the passes only the
objects made since: 0.03-0.05 s each (BENCHMARKS.md, issue 29).

Once per process and reason, never per job: what is frozen is never collected, so only
what lives as long as the process is frozen (a job's own objects are made later)."""

from __future__ import annotations

import gc
import threading

_frozen: set[str] = set()
_lock = threading.Lock()


def freeze_long_lived(reason: str) -> bool:
    """Freeze every object tracked now, the first time this process calls it with
    ``reason`` (e.g. "imports", "model"); True when it did. No collection first (one costs
    0.3 s at that size): cyclic garbage alive at that moment is kept, once per process."""
    with _lock:
        if reason in _frozen:
            return False
        _frozen.add(reason)
        gc.freeze()
        return True
