"""A run that commits as it goes (``--commit_every``): what follows a committed chunk, and
the totals of the chunks one command committed.

Each chunk is a completed run of the incremental root (its own partition, manifest and
index entry), so a later chunk, or the same command run again after a crash, skips what
the committed ones hold without opening it. Chunks after the first start from the last
uri the one before took (schemas.Chunk), so files that failed are not taken again."""

from __future__ import annotations

from schemas import Chunk
from schemas.accounting import EMBEDDED, ERRORS, MATCHED, SKIPPED_SAME_CONTENT, SKIPPED_UNCHANGED


def next_chunk(chunk: Chunk, manifest: dict) -> Chunk | None:
    """The chunk after the one ``manifest`` records, or None when no file sorts after the
    last one it took (files before its start that are left failed in an earlier chunk:
    the next run retries them)."""
    record = manifest.get("chunk", {})
    if record.get("last") is None or not record.get("files_after_last"):
        return None
    return chunk._replace(after=record["last"])


class ChunkTotals:
    """What the chunks of one command did together. Every chunk matches the files earlier
    chunks committed again (skipped unchanged, unopened), so those count once: the first
    chunk's skips are the command's, each later chunk adds what it took."""

    def __init__(self):
        self.chunks = 0
        self.counts = {MATCHED: 0, EMBEDDED: 0, ERRORS: 0, SKIPPED_UNCHANGED: 0, SKIPPED_SAME_CONTENT: 0}

    def add(self, counts: dict) -> None:
        self.chunks += 1
        first = self.chunks == 1
        for name in (EMBEDDED, ERRORS, SKIPPED_SAME_CONTENT):
            self.counts[name] += counts[name]
        taken = counts[MATCHED] - counts[SKIPPED_UNCHANGED]
        self.counts[MATCHED] += taken + (counts[SKIPPED_UNCHANGED] if first else 0)
        if first:
            self.counts[SKIPPED_UNCHANGED] = counts[SKIPPED_UNCHANGED]

    def line(self) -> str:
        counts = self.counts
        return (f"{self.chunks} chunk{'' if self.chunks == 1 else 's'} committed: "
                f"{counts[EMBEDDED]} images embedded of {counts[MATCHED]} matched, "
                f"{counts[ERRORS]} errors, {counts[SKIPPED_UNCHANGED]} committed before "
                f"(not opened), {counts[SKIPPED_SAME_CONTENT]} skipped for the same content")


def chunks_expected(number: int, manifest: dict) -> int:
    """How many chunks the command will have committed in all, after chunk ``number``: the
    files after its last one, ``commit_every`` per chunk."""
    record = manifest.get("chunk", {})
    left, size = record.get("files_after_last") or 0, record.get("commit_every") or 1
    return number + -(-left // size)


def chunk_line(number: int, manifest: dict, totals: ChunkTotals) -> str:
    """One line per committed chunk: chunk k of K, what it did, and the command so far."""
    counts, left = manifest["counts"], manifest["chunk"].get("files_after_last", 0)
    return (f"chunk {number} of {chunks_expected(number, manifest)} committed ({manifest.get('run')}): "
            f"{counts[EMBEDDED]} embedded, {counts[ERRORS]} errors; so far {totals.counts[EMBEDDED]} "
            f"embedded, {left} file{'' if left == 1 else 's'} to go")
