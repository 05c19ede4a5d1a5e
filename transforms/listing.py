"""ListFiles: file patterns -> one record per matched file, before anything is opened."""

from __future__ import annotations

import os
import re
import warnings
from typing import Iterator

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import FileMetadata, FileSystem
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from schemas import ListedFile
from transforms.errors import METRICS_NAMESPACE

# A literal "[" is matched as the one-character class "[[]" (pipeline/patterns.py), which
# Python's re flags as a "possible nested set" when Beam compiles its pattern: not an error.
warnings.filterwarnings("ignore", message="Possible nested set", category=FutureWarning,
                        module=r"apache_beam\.io\.filesystem")


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


def _dangling_links_below(root: str) -> Iterator[str]:
    """Symbolic links below ``root`` whose target cannot be reached, walked as os.walk walks
    (links to folders are not followed); only links are stat'ed."""
    folders = [root]
    while folders:
        try:
            entries = os.scandir(folders.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                if entry.is_symlink():
                    if not os.path.exists(entry.path):
                        yield entry.path
                elif entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)


def unreadable_links(pattern: str) -> Iterator[str]:
    """Local symbolic links that ``pattern`` names whose target is missing or that loop.
    Beam's local listing drops them without a word (its ``os.path.getsize`` fails); listed
    here, each becomes an error row (BrokenLink, LinkLoop) when it is read."""
    if "://" in pattern:
        return
    prefix = re.match(r"^[^[*?]*", pattern).group(0)  # as FileSystem.match splits a pattern
    if prefix == pattern:
        if os.path.islink(pattern) and not os.path.exists(pattern):
            yield pattern
        return
    regex = re.compile(FileSystem.translate_pattern(pattern))
    root = prefix if prefix.endswith("/") else os.path.dirname(prefix)
    yield from (path for path in _dangling_links_below(root or ".") if regex.match(path))


#: Listed files per element through the listing's reshuffle. One element per file cost 3.5
#: pickles and 6 Beam steps per image (a ListedFile is pickled by the shuffle's coder);
#: groups of plain tuples cost that per group. 32 files still spread a 100-file run over
#: workers, and 100 million files make 3 million shuffle records.
SPREAD_GROUP = 32


class _InGroupsFn(beam.DoFn):
    """ListedFile -> tuples of up to SPREAD_GROUP (uri, size_bytes, modified_us) tuples, per
    bundle (plain tuples: the shuffle encodes them without pickling)."""

    def start_bundle(self):
        self._group = []

    def process(self, record: ListedFile):
        self._group.append(tuple(record))
        if len(self._group) >= SPREAD_GROUP:
            yield tuple(self._group)
            self._group = []

    def finish_bundle(self):
        if self._group:
            yield GlobalWindows.windowed_value(tuple(self._group))
            self._group = []


def _ungrouped(group) -> Iterator[ListedFile]:
    return (ListedFile(*fields) for fields in group)


class Spread(beam.PTransform):
    """ListedFile -> the same ListedFile elements, reshuffled (so whatever reads them spreads
    over workers) in groups of SPREAD_GROUP. Global windows only (a listing's)."""

    def expand(self, listed):
        return (listed
                | "InGroups" >> beam.ParDo(_InGroupsFn())
                | "Shuffle" >> beam.Reshuffle()
                | "Records" >> beam.FlatMap(_ungrouped).with_output_types(ListedFile))


def _first(records):
    """One of the records listed for a uri (the same file, matched by several patterns)."""
    return next(iter(records))


class _UnreadableLinksFn(beam.DoFn):
    def __init__(self, exclude: str | None):
        self._exclude = exclude

    def process(self, pattern: str):
        for path in unreadable_links(pattern):
            if not is_under(path, self._exclude):
                yield ListedFile(uri=path)


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
    ``gs://`` (or other Beam filesystem) pattern; directories are never matched. Local
    symbolic links it names that lead nowhere (missing target, loop) are listed too, with
    no size, so that reading them makes an error row. With
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
        patterns = pbegin | "Patterns" >> beam.Create(self._patterns)
        listed = (
            (patterns
             | "Match" >> fileio.MatchAll(empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
             | "Record" >> beam.ParDo(_ToListedFn(self._exclude))),
            patterns | "UnreadableLinks" >> beam.ParDo(_UnreadableLinksFn(self._exclude)),
        ) | "WithLinks" >> beam.Flatten()
        if len(self._patterns) > 1:  # grouped by the uri (a str): no pickled NamedTuple keys
            return (listed
                    | "ByUri" >> beam.Map(lambda record: (record.uri, record))
                    | "OnceEach" >> beam.CombinePerKey(_first)
                    | "Records" >> beam.Values())
        return listed | "Spread" >> Spread() if self._spread else listed
