"""schemas/rows.py: one row mapping per output, both ways (elements -> rows -> elements)."""

import pyarrow as pa

from schemas import (
    ERROR_ROWS,
    IMAGE_ROWS,
    IMAGES_SCHEMA,
    SHARD_ROWS,
    SKIPPED_ROWS,
    FileMeta,
    ImageError,
    ImageInfo,
    SeenFile,
    ShardRecord,
    image_rows,
    layout,
)


def test_images_rows_come_from_each_images_filemeta():
    meta = FileMeta("gs://b/s.tar#7", "ab" * 32, 1234, 1_700_000_000_000_001, "gs://b/s.tar", "7",
                    ("http://x/7.jpg", None))
    rows = image_rows(("url", "txt"))
    table = rows.table([ImageInfo(meta, 640, 480, "JPEG")])
    assert table.schema == pa.schema(list(IMAGES_SCHEMA) + [pa.field("url", pa.string()),
                                                            pa.field("txt", pa.string())])
    (row,) = table.to_pylist()
    assert (row["image_id"], row["uri"], row["width"], row["height"], row["format"]) == (
        "ab" * 32, "gs://b/s.tar#7", 640, 480, "JPEG")
    assert (row["size_bytes"], row["source"], row["key"], row["url"], row["txt"]) == (
        1234, "gs://b/s.tar", "7", "http://x/7.jpg", None)
    assert row["modified"].timestamp() == 1_700_000_000.000001
    # An image without kept values (a loose file) has nulls there.
    assert rows.table([ImageInfo(FileMeta("/a.png", "cd" * 32), 2, 3, "PNG")]).to_pylist()[0]["url"] is None


def test_flat_outputs_round_trip_through_their_mapping():
    elements = {
        ERROR_ROWS: ImageError("/a.jpg", None, "decode", "OSError", "broken"),
        SKIPPED_ROWS: SeenFile("/b.jpg", "ef" * 32, 10, 1_700_000_000_000_000, "/b.jpg"),
        SHARD_ROWS: ShardRecord("/s.tar", 99, None, 5, 1),
    }
    for rows, element in elements.items():
        table = rows.table([element])
        assert table.schema == rows.schema
        values = {name: table.column(name).to_pylist() for name in rows.names}
        if "modified" in values:  # stored as a UTC timestamp, read back as microseconds
            values["modified"] = table.column("modified").cast(pa.int64()).to_pylist()
        assert list(rows.elements(values)) == [element]
        assert rows.row(element)[rows.names[0]] == element[0]


def test_readers_of_images_find_every_skipped_column():
    """Earlier runs' images/ rows are read back as SeenFiles with the skipped/ mapping."""
    assert set(SKIPPED_ROWS.names) <= set(IMAGE_ROWS.names)
    assert [rows.folder for rows in (IMAGE_ROWS, ERROR_ROWS, SKIPPED_ROWS, SHARD_ROWS)] == [
        layout.IMAGES_DIR, layout.ERRORS_DIR, layout.SKIPPED_DIR, layout.SHARDS_DIR]


def test_a_missing_column_reads_as_none():
    (seen,) = SKIPPED_ROWS.elements({"uri": ["/old.jpg"], "image_id": ["aa"]})
    assert seen == SeenFile("/old.jpg", "aa", None, None, None)
