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
