"""transforms/skip.py: SkipUnchanged (join by uri) and SkipSameContent (join by image_id)."""

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from beam_helpers import local_test_pipeline
from schemas import ListedFile, SeenFile
from transforms import SkipSameContent, SkipUnchanged
from transforms.skip import listing_matches


def test_listing_matches_only_on_equal_size_and_time():
    known = [SeenFile("a", "id1", 10, 100), SeenFile("a", "id0", 12, 50)]
    assert listing_matches(ListedFile("a", 10, 100), known)
    assert listing_matches(ListedFile("a", 12, 50), known)  # an older row of the same uri
    assert not listing_matches(ListedFile("a", 10, 101), known)  # touched
    assert not listing_matches(ListedFile("a", 11, 100), known)  # other size
    assert not listing_matches(ListedFile("a", None, None), [SeenFile("a", "id", None, None)])
    assert not listing_matches(ListedFile("a", 10, 100), [])


def test_skip_unchanged_joins_by_uri():
    listed = [ListedFile("same", 10, 100), ListedFile("touched", 10, 200), ListedFile("new", 5, 1),
              ListedFile("old_row", 7, 7), ListedFile("dup_rows", 3, 3)]
    known = [SeenFile("same", "a", 10, 100), SeenFile("touched", "b", 10, 150),
             SeenFile("old_row", "c", None, None),  # written before metadata was recorded
             SeenFile("dup_rows", "d", 3, 3), SeenFile("dup_rows", "d", 3, 3),
             SeenFile("deleted", "e", 1, 1)]  # no longer listed: nothing comes out of it
    with local_test_pipeline() as p:
        out = p | "Listed" >> beam.Create(listed) | SkipUnchanged(p | "Known" >> beam.Create(known))
        assert_that(out.files | beam.Map(lambda f: f.uri), equal_to(["touched", "new", "old_row"]),
                    label="files")
        assert_that(out.unchanged, equal_to(["same", "dup_rows"]), label="unchanged")


def test_skip_same_content_joins_by_image_id():
    seen = [SeenFile("renamed", "id1", 1, 1), SeenFile("copy", "id1", 1, 2),
            SeenFile("new", "id2", 1, 3), SeenFile("new_twin", "id2", 1, 4)]
    with local_test_pipeline() as p:
        out = p | "Seen" >> beam.Create(seen) | SkipSameContent(
            p | "Done" >> beam.Create(["id1", "id1", "id9"]))
        assert_that(out.files | beam.Map(lambda f: f.uri), equal_to(["new", "new_twin"]), label="files")
        assert_that(out.same_content | beam.Map(lambda f: f.uri), equal_to(["renamed", "copy"]),
                    label="same")
