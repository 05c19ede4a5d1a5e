"""ListFiles: file patterns -> one record per matched file, before anything is opened."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import FileMetadata
from apache_beam.metrics import Metrics

from schemas import ListedFile
from transforms.errors import METRICS_NAMESPACE


def modified_micros(seconds: float | None) -> int | None:
    """A listing's last-updated time (float seconds, as ``FileSystems.match`` reports it)
    -> integer microseconds since the epoch, the form stored and compared. Beam reports 0
    when a filesystem does not know the time: that is None here (unknown, never equal)."""
    if not seconds:
        return None
    return round(seconds * 1_000_000)


def listed_file(metadata: FileMetadata) -> ListedFile:
    """Beam's FileMetadata -> ListedFile."""
    return ListedFile(
        uri=metadata.path,
        size_bytes=metadata.size_in_bytes,
        modified_us=modified_micros(metadata.last_updated_in_seconds),
    )


def is_under(uri: str, folder: str | None) -> bool:
    """Whether ``uri`` is ``folder`` or inside it (plain prefix test on the path text)."""
    if not folder:
        return False
    folder = folder.rstrip("/")
    return uri == folder or uri.startswith(folder + "/")


class _ToListedFn(beam.DoFn):
    def __init__(self, exclude: str | None):
        self._exclude = exclude

    def setup(self):
        self._listed = Metrics.counter(METRICS_NAMESPACE, "listed")
        self._excluded = Metrics.counter(METRICS_NAMESPACE, "listed_in_output")

    def process(self, metadata: FileMetadata):
        if is_under(metadata.path, self._exclude):
            self._excluded.inc()
            return
        self._listed.inc()
        yield listed_file(metadata)


class ListFiles(beam.PTransform):
    """PBegin -> ListedFile(uri, size_bytes, modified_us): every file the ``patterns`` (one
    pattern, or several) match, as the filesystem lists it, each once; no file is opened.
    Files under ``exclude`` (the run's output root) are never listed. The listing step of
    the read side: skipping by metadata sits after it, readers after that.

    A pattern is anything ``FileSystems.match`` accepts: a local path or glob, or a
    ``gs://`` (or other Beam filesystem) pattern; directories are never matched. With
    ``spread`` (the default) records are reshuffled so that whatever reads them spreads
    across workers; pass False when a join by key follows, which spreads them anyway.
    Several patterns are deduplicated (a file two of them match is listed once), which
    spreads them too. A pattern that matches nothing adds nothing (the launcher refuses
    that case before the job)."""

    def __init__(self, patterns, *, exclude: str | None = None, spread: bool = True):
        super().__init__()
        self._patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
        self._exclude = exclude
        self._spread = spread

    def expand(self, pbegin):
        listed = (
            pbegin
            | "Patterns" >> beam.Create(self._patterns)
            | "Match" >> fileio.MatchAll(empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
            | "Record" >> beam.ParDo(_ToListedFn(self._exclude))
        )
        if len(self._patterns) > 1:
            return listed | "OnceEach" >> beam.Distinct()
        return listed | "Spread" >> beam.Reshuffle() if self._spread else listed
