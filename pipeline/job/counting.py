"""Counts for the local progress line, made inside the job: each worker process keeps its
running counts per kind (schemas.accounting) and rewrites one small JSON file per process
in a run-scoped folder, at most once a second and at the end of every bundle.
pipeline/progress.py adds the files up in the launcher."""

from __future__ import annotations

import collections
import json
import os
import threading
import time

import apache_beam as beam

from schemas.accounting import EMBEDDED, images_counted

_WRITE_EVERY_SECONDS = 1.0
_lock = threading.Lock()
_counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
_written_at: dict[str, float] = {}


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
    """Counts elements of one accounting kind for the progress line; passes nothing on.

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


#: The progress counts of committed parts (``--commit_every``): parts, and their outcomes.
CHUNKS_COMMITTED, IMAGES_COMMITTED = "chunks_committed", "images_committed"


def count_committed(folder: str, outcomes: int) -> None:
    """Count one committed part of ``outcomes`` images and errors, and rewrite this
    process's counts file at once (the launcher prints a line per commit)."""
    with _lock:
        _counts[folder][CHUNKS_COMMITTED] += 1
        _counts[folder][IMAGES_COMMITTED] += outcomes
        _write_counts(folder, force=True)
