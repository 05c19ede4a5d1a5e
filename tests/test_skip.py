"""transforms/skip.py: SkipUnchanged (join by uri) and SkipSameContent (join by image_id)."""

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from beam_helpers import local_test_pipeline
from schemas import ListedFile, ListedShard, SeenFile, ShardRecord, Unchanged
from transforms import SkipSameContent, SkipUnchanged
from transforms.skip import judge_listing


def test_a_loose_file_is_unchanged_only_on_equal_size_and_time():
    known = [SeenFile("a", "id1", 10, 100, "a"), SeenFile("a", "id0", 12, 50)]
    assert judge_listing(ListedFile("a", 10, 100), known, []) == Unchanged("a")
    assert judge_listing(ListedFile("a", 12, 50), known, []) == Unchanged("a")  # an older row
    for listed in [ListedFile("a", 10, 101), ListedFile("a", 11, 100), ListedFile("a", None, None)]:
        assert judge_listing(listed, known + [SeenFile("a", "id", None, None)], []) == listed
    assert judge_listing(ListedFile("a", 10, 100), [], []) == ListedFile("a", 10, 100)


def test_a_shard_is_unchanged_when_its_record_and_every_sample_agree():
    shard = ListedFile("s.tar", 900, 7)
    rows = [SeenFile(f"s.tar#{k}", f"id{k}", 900, 7, "s.tar") for k in range(3)]
    record = ShardRecord("s.tar", 900, 7, samples=4, refused=1)  # one sample had no image
    assert judge_listing(shard, rows, [record]) == Unchanged("s.tar", 4)
    # A sample that failed downstream (no row): read the shard, skipping the 2 known samples.
    assert judge_listing(shard, rows[:2], [record]) == ListedShard(shard, frozenset({"s.tar#0", "s.tar#1"}))
    # Rows without a record (the shard broke off): the same.
    assert judge_listing(shard, rows, []) == ListedShard(shard, frozenset(r.uri for r in rows))
    # Rewritten shard: neither the record nor the rows are under its listing.
    touched = ListedFile("s.tar", 900, 8)
    assert judge_listing(touched, rows, [record._replace(modified_us=8)]) == touched
    assert judge_listing(touched, rows, [record]) == touched


def test_skip_unchanged_joins_by_uri_and_source():
    listed = [ListedFile("same", 10, 100), ListedFile("touched", 10, 200), ListedFile("new", 5, 1),
              ListedFile("old_row", 7, 7), ListedFile("dup_rows", 3, 3), ListedFile("s.tar", 50, 5),
              ListedFile("t.tar", 60, 6)]
    known = [SeenFile("same", "a", 10, 100), SeenFile("touched", "b", 10, 150),
             SeenFile("old_row", "c", None, None),  # written before metadata was recorded
             SeenFile("dup_rows", "d", 3, 3), SeenFile("dup_rows", "d", 3, 3),
             SeenFile("deleted", "e", 1, 1),  # no longer listed: nothing comes out of it
             SeenFile("s.tar#1", "f", 50, 5, "s.tar"), SeenFile("s.tar#2", "g", 50, 5, "s.tar"),
             SeenFile("t.tar#1", "h", 60, 6, "t.tar")]
    records = [ShardRecord("s.tar", 50, 5, 2, 0), ShardRecord("t.tar", 60, 6, 2, 0)]
    with local_test_pipeline() as p:
        out = p | "Listed" >> beam.Create(listed) | SkipUnchanged(
            p | "Known" >> beam.Create(known), p | "Records" >> beam.Create(records))
        assert_that(out.files, equal_to([
            ListedFile("touched", 10, 200), ListedFile("new", 5, 1), ListedFile("old_row", 7, 7),
            ListedShard(ListedFile("t.tar", 60, 6), frozenset({"t.tar#1"}))]), label="files")
        assert_that(out.unchanged, equal_to([Unchanged("same"), Unchanged("dup_rows"), Unchanged("s.tar", 2)]),
                    label="unchanged")


def test_skip_same_content_joins_by_image_id():
    seen = [SeenFile("renamed", "id1", 1, 1), SeenFile("copy", "id1", 1, 2),
            SeenFile("new", "id2", 1, 3), SeenFile("new_twin", "id2", 1, 4)]
    with local_test_pipeline() as p:
        out = p | "Seen" >> beam.Create(seen) | SkipSameContent(
            p | "Done" >> beam.Create(["id1", "id1", "id9"]))
        assert_that(out.files | beam.Map(lambda f: f.uri), equal_to(["new", "new_twin"]), label="files")
        assert_that(out.same_content | beam.Map(lambda f: f.uri), equal_to(["renamed", "copy"]),
                    label="same")
