"""schemas/accounting.py: the one table of what a run counts."""

from schemas import ImageError, Unchanged, accounting
from schemas.accounting import (
    EMBEDDED,
    ERRORS,
    INDEX_COUNTS,
    MATCHED,
    OUTCOMES,
    SKIPPED_SAME_CONTENT,
    SKIPPED_UNCHANGED,
    counter_name,
    images_counted,
    unaccounted,
)


def test_outcomes_add_up_to_matched():
    counts = {MATCHED: 10, EMBEDDED: 6, ERRORS: 1, SKIPPED_UNCHANGED: 2, SKIPPED_SAME_CONTENT: 1}
    assert accounting.done(counts) == 10 and unaccounted(counts) is None
    counts[EMBEDDED] = 5
    assert unaccounted(counts) == ("10 inputs matched but images/ has 5 rows and errors/ 1, with "
                                   "2 skipped unchanged and 1 skipped for the same content")
    assert set(OUTCOMES) == {EMBEDDED, ERRORS, SKIPPED_UNCHANGED, SKIPPED_SAME_CONTENT}


def test_counter_names_and_index_counts():
    assert counter_name(EMBEDDED) == "images_embedded" and counter_name(ERRORS, "decode") == "failed_decode"
    assert counter_name(MATCHED) == "matched"
    assert set(INDEX_COUNTS) == {kind.name for kind in accounting.KINDS} | {"skipped"}


def test_an_unchanged_shard_counts_its_samples():
    assert images_counted(Unchanged("s.tar", 40)) == 40 and images_counted(Unchanged("a.jpg")) == 1
    assert images_counted(ImageError("a", None, "read", "OSError", "x")) == 1
