"""transforms/chunk.py: TakeChunk takes the first files by uri after a cursor, whole."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from schemas import ListedFile, ListedShard
from transforms.chunk import TakeChunk, in_chunk, listed_uri


def _run(elements, size, after, expected_files, expected_deferred, expected_summary):
    with beam.Pipeline() as p:
        files, deferred, summary = p | beam.Create(elements) | TakeChunk(size, after)
        assert_that(files | "FileUris" >> beam.Map(listed_uri), equal_to(expected_files), label="files")
        assert_that(deferred, equal_to(expected_deferred), label="deferred")
        assert_that(summary, equal_to([expected_summary]), label="summary")


LISTED = [ListedFile(f"/in/{name}", 10, 1) for name in ("e.jpg", "a.jpg", "d.tar", "b.jpg", "c.jpg")]


def test_the_first_files_by_uri_whatever_the_order_they_come_in():
    _run(LISTED, 2, "", ["/in/a.jpg", "/in/b.jpg"], ["/in/c.jpg", "/in/d.tar", "/in/e.jpg"],
         {"last": "/in/b.jpg", "files_after_last": 3})


def test_after_the_cursor_and_files_before_it_are_deferred_not_taken_again():
    # a.jpg and b.jpg are not after the cursor: still listed, they failed in an earlier
    # chunk and wait for a later run.
    _run(LISTED, 2, "/in/b.jpg", ["/in/c.jpg", "/in/d.tar"], ["/in/a.jpg", "/in/b.jpg", "/in/e.jpg"],
         {"last": "/in/d.tar", "files_after_last": 1})


def test_a_shard_is_one_file_and_the_last_chunk_leaves_nothing_after_it():
    shard = ListedShard(ListedFile("/in/d.tar", 10, 1), frozenset({"/in/d.tar#0001"}))
    elements = [e for e in LISTED if e.uri != "/in/d.tar"] + [shard]
    _run(elements, 10, "/in/b.jpg", ["/in/c.jpg", "/in/d.tar", "/in/e.jpg"], ["/in/a.jpg", "/in/b.jpg"],
         {"last": "/in/e.jpg", "files_after_last": 0})


def test_nothing_after_the_cursor_takes_nothing():
    _run(LISTED, 3, "/in/e.jpg", [], sorted(e.uri for e in LISTED), {"last": None, "files_after_last": 0})


def test_in_chunk_bounds_and_size():
    assert in_chunk("/b", "/a", "/c") and in_chunk("/c", "/a", "/c")
    assert not in_chunk("/a", "/a", "/c") and not in_chunk("/d", "/a", "/c") and not in_chunk("/b", "", None)
    with pytest.raises(ValueError, match="at least one file"):
        TakeChunk(0)
