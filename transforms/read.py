"""ReadImages: a file pattern -> the bytes of every matched file."""

from __future__ import annotations

import hashlib

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from schemas import ERRORS_TAG, STAGE_READ, ImageFile
from transforms.errors import METRICS_NAMESPACE, image_error


class _ReadFileFn(beam.DoFn):
    def __init__(self):
        self._matched = Metrics.counter(METRICS_NAMESPACE, "matched")
        self._read = Metrics.counter(METRICS_NAMESPACE, "read")

    def process(self, metadata: FileMetadata):
        self._matched.inc()
        uri = metadata.path
        try:
            with FileSystems.open(uri, compression_type="uncompressed") as handle:
                data = handle.read()
        except Exception as exc:  # Permissions, vanished files, remote I/O errors.
            yield image_error(uri, None, STAGE_READ, exc)
            return
        self._read.inc()
        yield ImageFile(uri=uri, image_id=hashlib.sha256(data).hexdigest(), data=data)


class ReadImages(beam.PTransform):
    """PBegin -> ``files``: ImageFile(uri, image_id = hex SHA-256 of the bytes, data bytes).

    ``file_pattern`` is anything ``FileSystems.match`` accepts: a local path or glob, or a
    ``gs://`` (or other Beam filesystem) pattern. Matches are reshuffled so that reading
    spreads across workers. Files that cannot be read go to ``errors`` (ImageError, stage
    'read'). Returns a DoOutputsTuple with ``files`` and ``errors``.
    """

    def __init__(self, file_pattern: str):
        super().__init__()
        self._file_pattern = file_pattern

    def expand(self, pbegin):
        return (
            pbegin
            | "Match" >> fileio.MatchFiles(
                self._file_pattern, empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW
            )
            | "Spread" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(_ReadFileFn()).with_outputs(ERRORS_TAG, main="files")
        )
