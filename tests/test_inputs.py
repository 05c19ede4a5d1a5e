"""transforms/inputs.py: ReadInputs, the read side of a run, with and without earlier runs."""

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from beam_helpers import local_test_pipeline
from images import encode, rgb_pattern
from schemas import Comparison, ReadConfig, images_counted
from transforms import ReadInputs


def _names(pcoll, label):
    return pcoll | label >> beam.Map(lambda element: element.uri.rsplit("/", 1)[-1])


def test_a_first_read_accounts_for_every_file(tmp_path):
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(encode(rgb_pattern(20, 20, len(name)), "PNG"))
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "big.png").write_bytes(encode(rgb_pattern(200, 200, 3), "PNG"))
    with local_test_pipeline() as p:
        side = p | ReadInputs(str(tmp_path / "*"), ReadConfig(max_file_bytes=5_000),
                              Comparison("metadata", (), ()))  # a root with no earlier run
        assert_that(_names(side.files, "Files"), equal_to(["a.png", "b.png"]), label="files")
        assert_that(side.errors | beam.Map(lambda e: (e.uri.rsplit("/", 1)[-1], e.error_type)),
                    equal_to([("empty.jpg", "EmptyFile"), ("big.png", "FileTooLarge")]), label="errors")
        assert_that(side.matched | "Matched" >> beam.Map(images_counted) | "SumMatched" >> beam.CombineGlobally(sum),
                    equal_to([4]), label="matched")
        assert_that(side.read | "Read" >> beam.Map(images_counted) | "SumRead" >> beam.CombineGlobally(sum),
                    equal_to([2]), label="read")
        assert_that(side.unchanged, equal_to([]), label="unchanged")
        assert_that(side.same_content, equal_to([]), label="same")
