"""Progress of local runs: a line at least every ``--progress_seconds`` and a final line.

Beam's local runner reports metrics only when the job ends, and its worker processes do not
forward INFO logs. So each worker process keeps its own running counts and rewrites one
small JSON file per process in a run-scoped folder (at most once a second, and at the end
of every bundle); a thread in the launcher adds the files up and logs the line."""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time

import apache_beam as beam

from schemas import images_counted

_log = logging.getLogger(__name__)
_WRITE_EVERY_SECONDS = 1.0
_lock = threading.Lock()
_counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
_written_at: dict[str, float] = {}

EMBEDDED, ERRORS = "embedded", "errors"
READ, SKIPPED_UNCHANGED, SKIPPED_SAME_CONTENT = "read", "skipped_unchanged", "skipped_same_content"


def _write_counts(folder: str, force: bool) -> None:
    """Rewrite this process's counts file (atomically); caller holds _lock."""
    now = time.monotonic()
    if not force and now - _written_at.get(folder, 0.0) < _WRITE_EVERY_SECONDS:
        return
    _written_at[folder] = now
    path = os.path.join(folder, f"{os.getpid()}.json")
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(dict(_counts[folder]), handle)
    os.replace(temporary, path)


class CountProgress(beam.DoFn):
    """Counts elements of one kind for the progress line; passes nothing on.

    Input: BatchEmbeddings (counts its images) for ``embedded``; one element per image (an
    ImageError, a uri, a SeenFile, an Unchanged: its ``images``) for the other kinds.
    Output: none."""

    def __init__(self, folder: str, kind: str):
        self._folder = folder
        self._kind = kind

    def process(self, element):
        images = len(element.infos) if self._kind == EMBEDDED else images_counted(element)
        with _lock:
            _counts[self._folder][self._kind] += images
            _write_counts(self._folder, force=False)

    def finish_bundle(self):
        with _lock:
            if self._folder in _counts:
                _write_counts(self._folder, force=True)


def read_counts(folder: str) -> collections.Counter:
    """The sum of every worker process's counts file in ``folder``."""
    total: collections.Counter = collections.Counter()
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".json")]
    except FileNotFoundError:
        return total
    for name in names:
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                total.update(json.load(handle))
        except (OSError, ValueError):  # Being replaced right now: counted next time.
            continue
    return total


def progress_line(counts: collections.Counter, matched: int | None, elapsed: float,
                  recent_rate: float | None) -> str:
    """'progress: 120/800 images done (15%), 11.8 images/s (last interval: 14.0), 3 errors,
    130 read', then, when any were skipped, ', 600 skipped unchanged, 2 skipped same content'."""
    done = counts[EMBEDDED] + counts[ERRORS] + counts[SKIPPED_UNCHANGED] + counts[SKIPPED_SAME_CONTENT]
    share = f"/{matched} images done ({100 * done / matched:.0f}%)" if matched else " images done"
    rate = f"{counts[EMBEDDED] / elapsed:.1f} images/s" if elapsed > 0 else "- images/s"
    recent = f" (last interval: {recent_rate:.1f})" if recent_rate is not None else ""
    skipped = ""
    if counts[SKIPPED_UNCHANGED] or counts[SKIPPED_SAME_CONTENT]:
        skipped = (f", {counts[SKIPPED_UNCHANGED]} skipped unchanged, "
                   f"{counts[SKIPPED_SAME_CONTENT]} skipped same content")
    return (f"progress: {done}{share}, {rate}{recent}, {counts[ERRORS]} errors, "
            f"{counts[READ]} read{skipped}")


class ProgressPrinter:
    """Logs a progress line every ``interval`` seconds from a daemon thread while the job
    runs, and a final line on ``stop()``. Use as a context manager."""

    def __init__(self, folder: str, matched: int | None, interval: float):
        self._folder = folder
        self._matched = matched
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._started = time.monotonic()

    def __enter__(self):
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _loop(self):
        previous_embedded, previous_time = 0, self._started
        while not self._stopped.wait(self._interval):
            now = time.monotonic()
            counts = read_counts(self._folder)
            recent = (counts[EMBEDDED] - previous_embedded) / (now - previous_time)
            previous_embedded, previous_time = counts[EMBEDDED], now
            _log.info("%s", progress_line(counts, self._matched, now - self._started, recent))

    def stop(self) -> collections.Counter:
        """Stop the thread and log the final line; returns the final counts."""
        if self._stopped.is_set():
            return read_counts(self._folder)
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()
        counts = read_counts(self._folder)
        elapsed = time.monotonic() - self._started
        line = progress_line(counts, self._matched, elapsed, None).replace("progress:", "finished:", 1)
        _log.info("%s in %.1f s", line, elapsed)
        return counts
