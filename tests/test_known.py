"""transforms/known.py: earlier runs' images/ and skipped/ rows read back as SeenFiles, shards/
rows as ShardRecords."""

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.util import assert_that, equal_to

from beam_helpers import local_test_pipeline
from schemas import IMAGES_SCHEMA, SHARDS_SCHEMA, SKIPPED_SCHEMA, SeenFile, ShardRecord
from transforms import ReadKnownFiles
from transforms.known import ReadShardRecords, read_known_rows


def test_rows_with_and_without_listing_metadata(tmp_path):
    new = tmp_path / "run=2" / "images"
    old = tmp_path / "run=1" / "images"
    skipped = tmp_path / "run=2" / "skipped"
    for folder in (new, old, skipped):
        folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([
        {"image_id": "a", "uri": "/x/a.jpg", "width": 1, "height": 1, "format": "JPEG",
         "size_bytes": 10, "modified": 1_700_000_000_123_456},
        {"image_id": "b", "uri": "/x/b.jpg", "width": 1, "height": 1, "format": "JPEG",
         "size_bytes": None, "modified": None},
        {"image_id": "e", "uri": "/x/s.tar#k", "width": 1, "height": 1, "format": "JPEG",
         "size_bytes": 90, "modified": 9, "source": "/x/s.tar", "key": "k"},
    ], schema=IMAGES_SCHEMA), new / "part-00000-of-00001.parquet")
    # The images/ schema before listings were recorded: no size_bytes, modified or source.
    pq.write_table(pa.table({"image_id": ["c"], "uri": ["/x/c.jpg"], "width": [1], "height": [1],
                             "format": ["PNG"]}), old / "part-00000-of-00001.parquet")
    # skipped/ before shards: no source column.
    pq.write_table(pa.table({"uri": ["/x/d.jpg"], "image_id": ["a"], "size_bytes": [3], "modified": [5]}),
                   skipped / "part-00000-of-00001.parquet")
    # Without a source, a row is a loose file: its own uri.
    expected = [SeenFile("/x/a.jpg", "a", 10, 1_700_000_000_123_456, "/x/a.jpg"),
                SeenFile("/x/b.jpg", "b", None, None, "/x/b.jpg"), SeenFile("/x/s.tar#k", "e", 90, 9, "/x/s.tar"),
                SeenFile("/x/c.jpg", "c", None, None, "/x/c.jpg"), SeenFile("/x/d.jpg", "a", 3, 5, "/x/d.jpg")]
    patterns = [str(tmp_path / "run=*" / "images" / "part-*.parquet"),
                str(tmp_path / "run=*" / "skipped" / "part-*.parquet")]
    with local_test_pipeline() as p:
        assert_that(p | ReadKnownFiles(patterns), equal_to(expected))
        assert_that(p | "None" >> ReadKnownFiles([]), equal_to([]), label="empty")


def test_a_large_part_file_is_read_in_batches(tmp_path, monkeypatch):
    import transforms.known

    monkeypatch.setattr(transforms.known, "BATCH_ROWS", 7)
    path = tmp_path / "part-00000-of-00001.parquet"
    rows = [{"uri": f"/u{i}", "image_id": f"id{i}", "size_bytes": i, "modified": i} for i in range(50)]
    pq.write_table(pa.Table.from_pylist(rows, schema=SKIPPED_SCHEMA), path, row_group_size=10)
    got = list(read_known_rows(str(path)))
    assert got == [SeenFile(f"/u{i}", f"id{i}", i, i, f"/u{i}") for i in range(50)]


def test_shard_records(tmp_path):
    folder = tmp_path / "run=1" / "shards"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([
        {"uri": "/x/s.tar", "size_bytes": 90, "modified": 9, "samples": 4, "refused": 1},
        {"uri": "/x/t.parquet", "size_bytes": None, "modified": None, "samples": 0, "refused": 0},
    ], schema=SHARDS_SCHEMA), folder / "part-00000-of-00001.parquet")
    with local_test_pipeline() as p:
        assert_that(p | ReadShardRecords([str(tmp_path / "run=*" / "shards" / "part-*.parquet")]),
                    equal_to([ShardRecord("/x/s.tar", 90, 9, 4, 1), ShardRecord("/x/t.parquet", None, None, 0, 0)]))
