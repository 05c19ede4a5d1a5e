"""Progress of local runs: a line at least every ``--progress_seconds`` and a final line.

Beam's local runner reports metrics only when the job ends, and its worker processes do not
forward INFO logs. So each worker process keeps its own running counts in a small JSON file
in a run-scoped folder (pipeline/job/counting.py); a thread in the launcher adds the files
up and logs the line."""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time

from schemas.accounting import BY_NAME, EMBEDDED, ERRORS, READ, SKIPPED_SAME_CONTENT, SKIPPED_UNCHANGED, done

_log = logging.getLogger(__name__)


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
    finished = done(counts)
    share = f"/{matched} images done ({100 * finished / matched:.0f}%)" if matched else " images done"
    rate = f"{counts[EMBEDDED] / elapsed:.1f} images/s" if elapsed > 0 else "- images/s"
    recent = f" (last interval: {recent_rate:.1f})" if recent_rate is not None else ""
    skipped = ""
    if counts[SKIPPED_UNCHANGED] or counts[SKIPPED_SAME_CONTENT]:
        skipped = "".join(f", {counts[kind]} {BY_NAME[kind].label}"
                          for kind in (SKIPPED_UNCHANGED, SKIPPED_SAME_CONTENT))
    return (f"progress: {finished}{share}, {rate}{recent}, {counts[ERRORS]} {BY_NAME[ERRORS].label}, "
            f"{counts[READ]} {BY_NAME[READ].label}{skipped}")


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
