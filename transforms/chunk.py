"""TakeChunk: the part of a run's listing that one chunk embeds (``--commit_every``).

A chunk takes the first ``size`` files by uri among those that sort after a cursor (the
last uri the previous chunk of the same command took); a shard is one file, so a chunk
takes whole shards. The cursor makes a command progress even when files fail: a failed
file is not held by any completed run, and without it the next chunk would take it again."""

from __future__ import annotations

import apache_beam as beam

from schemas import ListedShard

DEFERRED_TAG, LATER_TAG = "deferred", "later"


def listed_uri(element) -> str:
    """The uri of a listed file to read (a ListedFile, or a ListedShard's listing)."""
    return element.listed.uri if isinstance(element, ListedShard) else element.uri


def in_chunk(uri: str, after: str, last: str | None) -> bool:
    """Whether ``uri`` is in the chunk that runs from just after ``after`` to ``last``."""
    return last is not None and after < uri <= last


class _SplitChunkFn(beam.DoFn):
    def __init__(self, after: str):
        self._after = after

    def process(self, element, last):
        uri = listed_uri(element)
        if in_chunk(uri, self._after, last):
            yield element
            return
        yield beam.pvalue.TaggedOutput(DEFERRED_TAG, uri)
        if last is not None and uri > last:
            yield beam.pvalue.TaggedOutput(LATER_TAG, uri)


def _last(taken: list[str]) -> str | None:
    return taken[-1] if taken else None


def _summary(last: str | None, later: int) -> dict:
    return {"last": last, "files_after_last": later}


class TakeChunk(beam.PTransform):
    """ListedFile | ListedShard -> (``files``, ``deferred``, ``summary``): ``files`` the
    first ``size`` of them by uri after the cursor ``after`` (elements unchanged);
    ``deferred`` the uri of every other one (left for a later chunk, or for a later run:
    those before the cursor, which failed in an earlier chunk); ``summary`` one dict,
    ``last``: the last uri taken or None when none was (the next chunk's ``after``), and
    ``files_after_last``: how many files sort after it (a next chunk's work). One worker holds ``size`` uris (Top.Smallest); nothing grows with the
    collection, and the listing meets the boundary as a singleton side input."""

    def __init__(self, size: int, after: str = ""):
        super().__init__()
        if size < 1:
            raise ValueError(f"a chunk takes at least one file, not {size}")
        self._size = size
        self._after = after

    def expand(self, files):
        after = self._after
        last = (
            files
            | "Uris" >> beam.Map(listed_uri)
            | "AfterCursor" >> beam.Filter(lambda uri: uri > after)
            | "FirstUris" >> beam.combiners.Top.Smallest(self._size)
            | "LastTaken" >> beam.Map(_last)
        )
        split = files | "Split" >> beam.ParDo(
            _SplitChunkFn(after), last=beam.pvalue.AsSingleton(last)).with_outputs(
                DEFERRED_TAG, LATER_TAG, main="files")
        later = split[LATER_TAG] | "CountLater" >> beam.combiners.Count.Globally()
        summary = last | "Summary" >> beam.Map(_summary, later=beam.pvalue.AsSingleton(later))
        return split.files, split[DEFERRED_TAG], summary
