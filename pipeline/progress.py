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

from pipeline.job.counting import CHUNKS_COMMITTED, IMAGES_COMMITTED
from schemas.accounting import BY_NAME, EMBEDDED, ERRORS, READ, SKIPPED_SAME_CONTENT, SKIPPED_UNCHANGED, done

#: How often the launcher looks for newly committed parts (a line each).
_PARTS_POLL_SECONDS = 0.25

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


def committed_line(counts: collections.Counter) -> str:
    """'3 parts committed (3000 images and errors)'."""
    parts = counts[CHUNKS_COMMITTED]
    return f"{parts} part{'' if parts == 1 else 's'} committed ({counts[IMAGES_COMMITTED]} images and errors)"


def part_line(counts: collections.Counter, matched: int | None, images_per_part: int) -> str:
    """'part 3 of 10 committed: 3000 of 10000 images and errors committed': one line per
    committed part of a --commit_every run. The parts to come are an estimate: the images
    not yet committed or skipped, ``images_per_part`` each (every writer commits that many)."""
    parts, committed = counts[CHUNKS_COMMITTED], counts[IMAGES_COMMITTED]
    if matched is None:
        return f"part {parts} committed: {committed} images and errors committed"
    left = max(0, matched - committed - counts[SKIPPED_UNCHANGED] - counts[SKIPPED_SAME_CONTENT])
    expected = parts + -(-left // images_per_part)
    return f"part {parts} of {expected} committed: {committed} of {matched} images and errors committed"


class ProgressPrinter:
    """Logs a progress line every ``interval`` seconds from a daemon thread while the job
    runs, and a final line on ``stop()``; with ``images_per_part`` (a --commit_every run),
    also a line as each part is committed. Use as a context manager."""

    def __init__(self, folder: str, matched: int | None, interval: float, images_per_part: int | None = None):
        self._folder = folder
        self._matched = matched
        self._interval = interval
        self._images_per_part = images_per_part
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
        previous_embedded, previous_time, parts = 0, self._started, 0
        tick = min(self._interval, _PARTS_POLL_SECONDS) if self._images_per_part else self._interval
        while not self._stopped.wait(tick):
            now = time.monotonic()
            counts = read_counts(self._folder)
            if self._images_per_part and counts[CHUNKS_COMMITTED] > parts:
                parts = counts[CHUNKS_COMMITTED]
                _log.info("%s", part_line(counts, self._matched, self._images_per_part))
            if now - previous_time < self._interval:
                continue
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
