"""ListFiles: file patterns -> one record per matched file, before anything is opened."""

from __future__ import annotations

import os
import re
import warnings
from typing import Iterator

import apache_beam as beam
from apache_beam.io.filesystem import FileMetadata, FileSystem
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from schemas import ListedFile
from transforms.errors import METRICS_NAMESPACE

# A literal "[" is matched as the one-character class "[[]" (pipeline/patterns.py), which
# Python's re flags as a "possible nested set" when Beam's pattern is compiled (by Beam, or
# by match_local): not an error. tests/conftest.py sets the same filter for pytest.
NESTED_SET_WARNING = "Possible nested set"
warnings.filterwarnings("ignore", message=NESTED_SET_WARNING, category=FutureWarning,
                        module=r"apache_beam\.io\.filesystem|transforms\.listing")


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


def literal_prefix(pattern: str) -> str:
    """The part of ``pattern`` before its first glob character, as FileSystem.match splits it."""
    return re.match(r"^[^[*?]*", pattern).group(0)


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
    prefix = literal_prefix(pattern)
    if prefix == pattern:
        if os.path.islink(pattern) and not os.path.exists(pattern):
            yield pattern
        return
    regex = re.compile(FileSystem.translate_pattern(pattern))
    root = prefix if prefix.endswith("/") else os.path.dirname(prefix)
    yield from (path for path in _dangling_links_below(root or ".") if regex.match(path))


def _files_below(root: str) -> Iterator[os.DirEntry]:
    """Every entry below ``root`` that os.walk (links to folders not followed) counts as a
    file, dangling links included, as DirEntry objects (their stat is cached)."""
    folders = [root]
    while folders:
        try:
            entries = os.scandir(folders.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    is_folder = entry.is_dir()
                except OSError:
                    is_folder = False
                if not is_folder:
                    yield entry
                elif not entry.is_symlink():
                    folders.append(entry.path)


def match_local(pattern: str) -> Iterator[ListedFile]:
    """The files a local glob ``pattern`` matches, as ``FileSystems.match`` lists them (same
    paths, sizes and modification times, by Beam's own pattern translation), plus the
    symbolic links it names that lead nowhere (``unreadable_links``), in one walk of the
    folder and one ``stat`` per matched file. Beam stats every file below the folder twice,
    matched or not, and the links took a second walk. A file that vanishes meanwhile is
    left out, as Beam leaves it out. ``pattern`` must hold a glob character."""
    if pattern.endswith("/"):
        pattern += "*"
    prefix = literal_prefix(pattern)
    root = prefix if prefix.endswith("/") else os.path.dirname(prefix)
    matches = re.compile(FileSystem.translate_pattern(pattern)).match
    for entry in _files_below(root or "."):
        path = entry.path
        if not matches(path):
            continue
        try:
            found = entry.stat()
        except OSError:
            if entry.is_symlink() and not os.path.exists(path):
                yield ListedFile(uri=path)
            continue
        yield ListedFile(uri=path, size_bytes=found.st_size, modified_us=modified_micros(found.st_mtime))


def match_pattern(pattern: str) -> Iterator[ListedFile]:
    """ListedFile per file ``pattern`` matches, and per unreadable local link it names: a
    local glob by ``match_local``, anything else (a remote pattern, one local path) by
    ``FileSystems.match``. Raises what the listing raises (BeamIOError)."""
    if "://" not in pattern and literal_prefix(pattern) != pattern:
        yield from match_local(pattern)
        return
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        yield listed_file(metadata)
    for link in unreadable_links(pattern):
        yield ListedFile(uri=link)


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


class _ListPatternFn(beam.DoFn):
    def __init__(self, exclude: str | None):
        self._exclude = exclude

    def setup(self):
        self._listed = Metrics.counter(METRICS_NAMESPACE, "listed")
        self._excluded = Metrics.counter(METRICS_NAMESPACE, "listed_in_output")

    def process(self, pattern: str):
        listed = excluded = 0
        for record in match_pattern(pattern):
            if is_under(record.uri, self._exclude):
                excluded += 1
                continue
            listed += 1
            yield record
        self._listed.inc(listed)
        self._excluded.inc(excluded)


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
        listed = (pbegin
                  | "Patterns" >> beam.Create(self._patterns)
                  | "Match" >> beam.ParDo(_ListPatternFn(self._exclude)).with_output_types(ListedFile))
        if len(self._patterns) > 1:  # grouped by the uri (a str): no pickled NamedTuple keys
            return (listed
                    | "ByUri" >> beam.Map(lambda record: (record.uri, record))
                    | "OnceEach" >> beam.CombinePerKey(_first)
                    | "Records" >> beam.Values())
        return listed | "Spread" >> Spread() if self._spread else listed
