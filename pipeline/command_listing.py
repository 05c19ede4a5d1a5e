"""A chunked command's own listing of its input (``--commit_every``, local runs): the
launcher lists the input once, when it plans the first chunk, and writes it here as Parquet
part files (schemas.LISTING_ROWS) in a temporary folder; every chunk's job reads those
(transforms/known.py ReadListedFiles) instead of walking the filesystem again. Files added
to the input while the command runs wait for the next command. The folder is removed when
the command ends; one that a killed command left (its process gone) is removed, with one
line, by the next chunked command that lists."""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import tempfile
from typing import Iterable, NamedTuple

import pyarrow.parquet as pq

from pipeline.patterns import escape_glob
from schemas import LISTING_ROWS, ListedFile
from transforms.lifeline import launcher_alive

#: Rows per part file: jobs spread part files over workers and read a row batch at a time.
PART_ROWS = 100_000
FOLDER_PREFIX = "resnet50-listing-"
_FOLDER_NAME = re.compile(re.escape(FOLDER_PREFIX) + r"(\d+)-")
_log = logging.getLogger(__name__)


class CommandListing(NamedTuple):
    """The listing's ``folder``, its part files as patterns (``parts``, globs escaped), how
    many files it holds, and ``matched``: image files, or None when shards are among them
    (their samples are counted by reading them)."""

    folder: str
    parts: tuple[str, ...]
    files: int
    matched: int | None


def write_listing(files: Iterable[ListedFile], matched: int | None) -> CommandListing:
    """Write ``files`` (sorted by uri) as part files of at most PART_ROWS rows into a new
    temporary folder (named after this process, so that a later command knows it for a
    leftover once this process is gone)."""
    remove_stale_listings()
    folder = tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-")
    parts, count = [], 0
    try:
        ordered = iter(sorted(files, key=lambda listed: listed.uri))
        while rows := list(itertools.islice(ordered, PART_ROWS)):
            path = f"{folder}/part-{len(parts):05d}.parquet"
            pq.write_table(LISTING_ROWS.table(rows), path)
            parts.append(escape_glob(path))
            count += len(rows)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return CommandListing(folder, tuple(parts), count, matched)


def remove_listing(listing: CommandListing | None) -> None:
    if listing is not None:
        shutil.rmtree(listing.folder, ignore_errors=True)


def remove_stale_listings() -> None:
    """Remove the listings whose command's process is gone (killed before its cleanup)."""
    temporary = tempfile.gettempdir()
    try:
        names = os.listdir(temporary)
    except OSError:
        return
    for name in names:
        owner = _FOLDER_NAME.match(name)
        if owner and not launcher_alive(int(owner.group(1))):
            shutil.rmtree(os.path.join(temporary, name), ignore_errors=True)
            _log.info("removed %s, the listing of a command that was killed",
                      os.path.join(temporary, name))
