"""ListFiles: a file pattern -> one record per matched file, before anything is opened."""

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


class _ToListedFn(beam.DoFn):
    def setup(self):
        self._listed = Metrics.counter(METRICS_NAMESPACE, "listed")

    def process(self, metadata: FileMetadata):
        self._listed.inc()
        yield listed_file(metadata)


class ListFiles(beam.PTransform):
    """PBegin -> ListedFile(uri, size_bytes, modified_us): every file ``file_pattern``
    matches, as the filesystem lists it; no file is opened. The listing step of the read
    side: skipping by metadata sits after it, readers after that.

    ``file_pattern`` is anything ``FileSystems.match`` accepts: a local path or glob, or a
    ``gs://`` (or other Beam filesystem) pattern; directories are never matched. With
    ``spread`` (the default) records are reshuffled so that whatever reads them spreads
    across workers; pass False when a join by key follows, which spreads them anyway. A
    pattern that matches nothing gives an empty collection (the launcher refuses that case
    before the job)."""

    def __init__(self, file_pattern: str, *, spread: bool = True):
        super().__init__()
        self._file_pattern = file_pattern
        self._spread = spread

    def expand(self, pbegin):
        listed = (
            pbegin
            | "Match" >> fileio.MatchFiles(
                self._file_pattern, empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW
            )
            | "Record" >> beam.ParDo(_ToListedFn())
        )
        return listed | "Spread" >> beam.Reshuffle() if self._spread else listed
