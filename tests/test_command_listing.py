"""pipeline/command_listing.py and transforms/known.py ReadListedFiles: a chunked command's
listing, written once by the launcher and read back by each chunk's job as the same records."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline import command_listing
from schemas import ListedFile
from transforms.known import ReadListedFiles


def _files() -> list[ListedFile]:
    odd = ["/in/b[1]*.png", "/in/a b.jpg", "/in/ü.png", "/in/c?.tar", "/in/new\nline.png"]
    files = [ListedFile(uri, size, modified) for uri, size, modified in
             zip(odd, (10, 20, None, 40, 50), (1_700_000_000_123_456, None, 3, 4, 5))]
    return files + [ListedFile(f"/in/img{i:02d}.png", i, i) for i in range(3)]


def test_written_sorted_in_parts_and_read_back_as_the_same_records(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(command_listing, "PART_ROWS", 3)
    files = _files()
    listing = command_listing.write_listing(reversed(files), matched=None)
    assert listing.files == 8 and listing.matched is None and len(listing.parts) == 3
    assert os.path.dirname(listing.folder) == str(tmp_path)
    with BeamPipeline() as p:
        assert_that(p | ReadListedFiles(listing.parts), equal_to(files))
    command_listing.remove_listing(listing)
    assert not os.path.exists(listing.folder)


def test_a_failed_write_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ValueError):  # pyarrow.ArrowInvalid
        command_listing.write_listing([ListedFile("/in/a.png", "not a size")], matched=1)
    assert os.listdir(tmp_path) == []


def test_a_listing_whose_command_is_gone_is_removed_by_the_next_one(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # its pid names a process that is gone
    stale = tmp_path / f"{command_listing.FOLDER_PREFIX}{ended.pid}-x1"
    running = tmp_path / f"{command_listing.FOLDER_PREFIX}{os.getpid()}-x2"
    other = tmp_path / "resnet50-listing-notapid"
    for folder in (stale, running, other):
        (folder / "part-00000.parquet").parent.mkdir()
    with caplog.at_level("INFO", logger=command_listing.__name__):
        listing = command_listing.write_listing([ListedFile("/in/a.png", 1, 1)], matched=1)
    assert not stale.exists() and running.exists() and other.exists()
    assert f"removed {stale}, the listing of a command that was killed" in caplog.text
    assert os.path.basename(listing.folder).startswith(f"{command_listing.FOLDER_PREFIX}{os.getpid()}-")
