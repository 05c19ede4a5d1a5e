"""transforms/known.py: earlier runs' images/ and skipped/ rows read back as SeenFiles."""

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.util import assert_that, equal_to

from beam_helpers import local_test_pipeline
from schemas import IMAGES_SCHEMA, SKIPPED_SCHEMA, SeenFile
from transforms import ReadKnownFiles
from transforms.known import read_known_rows


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
    ], schema=IMAGES_SCHEMA), new / "part-00000-of-00001.parquet")
    # The images/ schema before this change: no size_bytes, no modified.
    pq.write_table(pa.table({"image_id": ["c"], "uri": ["/x/c.jpg"], "width": [1], "height": [1],
                             "format": ["PNG"]}), old / "part-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist([{"uri": "/x/d.jpg", "image_id": "a", "size_bytes": 3,
                                          "modified": 5}], schema=SKIPPED_SCHEMA),
                   skipped / "part-00000-of-00001.parquet")
    expected = [SeenFile("/x/a.jpg", "a", 10, 1_700_000_000_123_456), SeenFile("/x/b.jpg", "b", None, None),
                SeenFile("/x/c.jpg", "c", None, None), SeenFile("/x/d.jpg", "a", 3, 5)]
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
    assert got == [SeenFile(f"/u{i}", f"id{i}", i, i) for i in range(50)]
