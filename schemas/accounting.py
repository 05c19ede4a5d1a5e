"""The one table of what a run counts: every input image ends as exactly one outcome.

    matched = embedded + errors + skipped_unchanged + skipped_same_content

Beam counters, the local progress line, FinalizeRun's check and manifest ``counts``, the
incremental index and the summaries all read their names from here."""

from __future__ import annotations

from typing import NamedTuple

from schemas.elements import Tally, Unchanged

MATCHED, READ, EMBEDDED, ERRORS = "matched", "read", "embedded", "errors"
SKIPPED_UNCHANGED, SKIPPED_SAME_CONTENT, SKIPPED = "skipped_unchanged", "skipped_same_content", "skipped"
#: Files (an image file or a whole shard) a chunk left for a later chunk (--commit_every):
#: not opened, not in MATCHED.
DEFERRED = "deferred"


class Kind(NamedTuple):
    """One count. ``name`` is its key in the manifest's ``counts``, the index and the
    progress files; ``label`` its words in printed lines; ``counter`` the Beam counter that
    counts it as the job runs (``failed_<stage>`` per stage for errors); ``outcome`` says
    it is one of the ends an input meets; ``from_elements`` that FinalizeRun counts it
    from the job's elements (the others come from the written Parquet files' footers)."""

    name: str
    label: str
    counter: str
    outcome: bool
    from_elements: bool


KINDS = (
    Kind(MATCHED, "matched", "matched", outcome=False, from_elements=True),
    Kind(READ, "read", "read", outcome=False, from_elements=True),
    Kind(EMBEDDED, "embedded", "images_embedded", outcome=True, from_elements=False),
    Kind(ERRORS, "errors", "failed_<stage>", outcome=True, from_elements=False),
    Kind(SKIPPED_UNCHANGED, "skipped unchanged", "skipped_unchanged", outcome=True, from_elements=True),
    Kind(SKIPPED_SAME_CONTENT, "skipped same content", "skipped_same_content", outcome=True,
         from_elements=True),
    Kind(DEFERRED, "files left for the next chunk", "deferred_files", outcome=False, from_elements=True),
)
BY_NAME = {kind.name: kind for kind in KINDS}
#: The ends an input meets; they add up to MATCHED.
OUTCOMES = tuple(kind.name for kind in KINDS if kind.outcome)
#: Counted by FinalizeRun from the job's elements.
FROM_ELEMENTS = tuple(kind.name for kind in KINDS if kind.from_elements)
#: What the local progress line shows: everything but MATCHED, which the launcher knows,
#: and DEFERRED, known only at the end.
PROGRESS = tuple(kind.name for kind in KINDS if kind.name not in (MATCHED, DEFERRED))
#: Copied from the manifest into each incremental index entry: every kind, and their
#: SKIPPED total.
INDEX_COUNTS = tuple(kind.name for kind in KINDS) + (SKIPPED,)


def counter_name(kind: str, stage: str | None = None) -> str:
    """The Beam counter of ``kind`` (of ``stage``, for errors)."""
    return f"failed_{stage}" if kind == ERRORS else BY_NAME[kind].counter


def images_counted(element) -> int:
    """How many input images an accounting element stands for: an Unchanged its
    ``images`` (a whole shard skipped unopened), a Tally its ``images``, anything else (a
    uri, a SeenFile, an ImageError) one."""
    return element.images if isinstance(element, (Unchanged, Tally)) else 1


def done(counts) -> int:
    """Inputs that met their outcome so far."""
    return sum(counts.get(name, 0) for name in OUTCOMES)


def unaccounted(counts: dict) -> str | None:
    """Why ``counts`` do not add up (MATCHED against the sum of OUTCOMES), or None."""
    if counts[MATCHED] == done(counts):
        return None
    return (f"{counts[MATCHED]} inputs matched but images/ has {counts[EMBEDDED]} rows and "
            f"errors/ {counts[ERRORS]}, with {counts.get(SKIPPED_UNCHANGED, 0)} skipped unchanged "
            f"and {counts.get(SKIPPED_SAME_CONTENT, 0)} skipped for the same content")


def nothing_done(counts: dict) -> bool:
    """Inputs were matched and every one failed: none embedded, none skipped."""
    return counts[MATCHED] > 0 and done(counts) == counts.get(ERRORS, 0)
