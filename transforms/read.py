"""ReadImages: a file pattern -> the bytes of every matched file."""

from __future__ import annotations

import hashlib

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from schemas import DEFAULT_MAX_FILE_BYTES, ERRORS_TAG, STAGE_READ, EmptyFile, FileTooLarge, ImageFile
from transforms.errors import METRICS_NAMESPACE, image_error


class _ReadFileFn(beam.DoFn):
    def __init__(self, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES):
        self._max_file_bytes = max_file_bytes
        self._matched = Metrics.counter(METRICS_NAMESPACE, "matched")
        self._read = Metrics.counter(METRICS_NAMESPACE, "read")

    def process(self, metadata: FileMetadata):
        self._matched.inc()
        uri = metadata.path
        size = metadata.size_in_bytes
        if size == 0:
            yield image_error(uri, None, STAGE_READ, EmptyFile("the file is empty (0 bytes)"))
            return
        if size > self._max_file_bytes:
            yield image_error(uri, None, STAGE_READ, FileTooLarge(
                f"{size} bytes is over --max_file_bytes {self._max_file_bytes}; not read"))
            return
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
    'read'); empty files and files over ``max_file_bytes`` (by the listed size, so they are
    never read) go there with stage 'validate' (EmptyFile, FileTooLarge).
    Returns a DoOutputsTuple with ``files`` and ``errors``.
    """

    def __init__(self, file_pattern: str, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES):
        super().__init__()
        self._file_pattern = file_pattern
        self._max_file_bytes = max_file_bytes

    def expand(self, pbegin):
        return (
            pbegin
            | "Match" >> fileio.MatchFiles(
                self._file_pattern, empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW
            )
            | "Spread" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(_ReadFileFn(self._max_file_bytes)).with_outputs(ERRORS_TAG, main="files")
        )
