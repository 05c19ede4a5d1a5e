"""transforms/read.py: ReadImages."""

import hashlib

from apache_beam.testing.util import assert_that, equal_to

from beam_helpers import local_test_pipeline
from schemas import ImageFile
from transforms import ReadImages


def test_reads_every_matched_file_with_its_sha256(tmp_path):
    contents = {"a.jpg": b"first", "b c é.png": b"second", "sub/d.gif": b"third"}
    for name, data in contents.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    expected = [
        ImageFile(str(tmp_path / name), hashlib.sha256(data).hexdigest(), data)
        for name, data in contents.items()
    ]
    with local_test_pipeline() as p:
        read = p | ReadImages(str(tmp_path / "**"))
        assert_that(read.files, equal_to(expected), label="files")
        assert_that(read.errors, equal_to([]), label="errors")


def test_single_star_does_not_descend(tmp_path):
    (tmp_path / "top.jpg").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.jpg").write_bytes(b"y")
    with local_test_pipeline() as p:
        read = p | ReadImages(str(tmp_path / "*"))
        assert_that(read.files | "Uris" >> __import__("apache_beam").Map(lambda f: f.uri),
                    equal_to([str(tmp_path / "top.jpg")]))


def test_empty_and_oversized_files_are_refused_unread(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "huge.jpg").write_bytes(b"x" * 2000)
    (tmp_path / "fine.jpg").write_bytes(b"y" * 1000)
    with local_test_pipeline() as p:
        read = p | ReadImages(str(tmp_path / "*"), max_file_bytes=1000)
        assert_that(read.files | "Names" >> __import__("apache_beam").Map(lambda f: f.uri),
                    equal_to([str(tmp_path / "fine.jpg")]), label="files")
        assert_that(
            read.errors | "Rows" >> __import__("apache_beam").Map(lambda e: (e.uri, e.image_id, e.stage, e.error_type)),
            equal_to([(str(tmp_path / "empty.jpg"), None, "validate", "EmptyFile"),
                      (str(tmp_path / "huge.jpg"), None, "validate", "FileTooLarge")]),
            label="errors",
        )


def test_a_file_that_vanished_after_matching_is_a_read_error(tmp_path):
    import apache_beam as beam
    from apache_beam.io.filesystem import FileMetadata

    from transforms.read import _ReadFileFn

    gone = str(tmp_path / "gone.jpg")
    with local_test_pipeline() as p:
        out = p | beam.Create([FileMetadata(gone, 10)]) | beam.ParDo(_ReadFileFn()).with_outputs("errors", main="files")
        assert_that(out.files, equal_to([]), label="files")
        assert_that(out.errors | beam.Map(lambda e: (e.uri, e.stage, e.error_type)),
                    equal_to([(gone, "read", "FileNotFoundError")]), label="errors")
