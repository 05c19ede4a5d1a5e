"""transforms/read.py: ReadImages (listing records -> bytes) and RereadImages."""

import hashlib

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from beam_helpers import local_test_pipeline
from schemas import ImageFile, ListedFile, SeenFile
from transforms import ListFiles, ReadImages, RereadImages


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_reads_every_listed_file_with_its_sha256_and_listing(tmp_path):
    contents = {"a.jpg": b"first", "b c é.png": b"second", "sub/d.gif": b"third"}
    for name, data in contents.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    listed = [ListedFile(str(tmp_path / name), len(data), 1000 + i)
              for i, (name, data) in enumerate(contents.items())]
    expected = [ImageFile(f.uri, sha(data), data, f.size_bytes, f.modified_us, source=f.uri)
                for f, data in zip(listed, contents.values())]
    with local_test_pipeline() as p:
        read = p | beam.Create(listed) | ReadImages()
        assert_that(read.files, equal_to(expected), label="files")
        assert_that(read.errors, equal_to([]), label="errors")


def test_listing_then_reading(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"pixels")
    with local_test_pipeline() as p:
        read = p | ListFiles(str(tmp_path / "*")) | ReadImages()
        assert_that(read.files | beam.Map(lambda f: (f.uri, f.image_id, f.size_bytes)),
                    equal_to([(str(tmp_path / "x.jpg"), sha(b"pixels"), 6)]))


def test_empty_and_oversized_files_are_refused_unread(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "huge.jpg").write_bytes(b"x" * 2000)
    (tmp_path / "fine.jpg").write_bytes(b"y" * 1000)
    # A listing without sizes: the reader stops one byte past the limit.
    unsized = ListedFile(str(tmp_path / "huge.jpg"))
    with local_test_pipeline() as p:
        listed = p | ListFiles(str(tmp_path / "*"))
        read = (listed, p | "Unsized" >> beam.Create([unsized])) | beam.Flatten() | ReadImages(max_file_bytes=1000)
        assert_that(read.files | "Names" >> beam.Map(lambda f: f.uri),
                    equal_to([str(tmp_path / "fine.jpg")]), label="files")
        assert_that(
            read.errors | "Rows" >> beam.Map(lambda e: (e.uri, e.image_id, e.stage, e.error_type)),
            equal_to([(str(tmp_path / "empty.jpg"), None, "validate", "EmptyFile"),
                      (str(tmp_path / "huge.jpg"), None, "validate", "FileTooLarge"),
                      (str(tmp_path / "huge.jpg"), None, "validate", "FileTooLarge")]),
            label="errors",
        )


def test_a_file_that_vanished_after_listing_is_a_read_error(tmp_path):
    gone = str(tmp_path / "gone.jpg")
    with local_test_pipeline() as p:
        out = p | beam.Create([ListedFile(gone, 10, 5)]) | ReadImages()
        assert_that(out.files, equal_to([]), label="files")
        assert_that(out.errors | beam.Map(lambda e: (e.uri, e.stage, e.error_type)),
                    equal_to([(gone, "read", "FileNotFoundError")]), label="errors")


def test_reread_checks_the_content_did_not_change(tmp_path):
    same, changed, gone = tmp_path / "same.jpg", tmp_path / "changed.jpg", tmp_path / "gone.jpg"
    same.write_bytes(b"kept")
    changed.write_bytes(b"rewritten after hashing")
    seen = [SeenFile(str(same), sha(b"kept"), 4, 7), SeenFile(str(changed), sha(b"before"), 6, 8),
            SeenFile(str(gone), sha(b"x"), 1, 9)]
    with local_test_pipeline() as p:
        out = p | beam.Create(seen) | RereadImages()
        assert_that(out.files, equal_to([ImageFile(str(same), sha(b"kept"), b"kept", 4, 7, source=str(same))]), label="files")
        assert_that(out.errors | beam.Map(lambda e: (e.uri, e.image_id is not None, e.stage, e.error_type)),
                    equal_to([(str(changed), True, "read", "ContentChanged"),
                              (str(gone), True, "read", "FileNotFoundError")]), label="errors")
