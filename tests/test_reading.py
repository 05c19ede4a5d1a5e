"""schemas/reading.py: ReadConfig validated once; the modes the options offer."""

import pytest

from schemas import INPUT_FORMATS, MODES, SHARD_FORMATS, SKIP_BY, Comparison, ReadConfig


def test_defaults_and_record():
    read = ReadConfig(keep_columns=["url", "txt"])
    assert read.input_format == "auto" and read.image_column is None
    assert read.keep_columns == ("url", "txt") and read.max_file_bytes == 256 * 1024 * 1024
    assert read.record() == {"input_format": "auto", "image_column": None,
                             "keep_columns": ["url", "txt"], "max_file_bytes": 256 * 1024 * 1024,
                             "max_row_group_bytes": 256 * 1024 * 1024, "image_paths": "never"}


@pytest.mark.parametrize("kwargs,message", [
    ({"input_format": "zip"}, "--input_format 'zip' is not one of auto"),
    ({"image_column": " "}, "--image_column is empty"),
    ({"max_file_bytes": 0}, "--max_file_bytes must be at least 1"),
    ({"max_row_group_bytes": 0}, "--max_row_group_bytes must be at least 1"),
    ({"image_paths": "absolute"}, "--image_paths 'absolute' is not one of never, relative"),
    ({"keep_columns": ("uri",)}, "images/ has such a column already"),
    ({"keep_columns": ("url", "url")}, "names a column twice"),
])
def test_bad_settings_name_the_flag(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReadConfig(**kwargs)


def test_choices_are_the_options_choices():
    from pipeline.options import options_parser

    choices = {action.dest: tuple(action.choices) for action in options_parser()._actions if action.choices}
    assert choices["input_format"] == INPUT_FORMATS and set(SHARD_FORMATS) < set(INPUT_FORMATS)
    assert choices["mode"] == MODES and choices["skip_by"] == SKIP_BY


def test_comparison_says_whether_there_is_anything_to_compare():
    assert Comparison("metadata", None, None).has_earlier_runs  # a dry run plans the full graph
    assert not Comparison("metadata", (), ()).has_earlier_runs
    assert Comparison("metadata", ("a/*",), ()).by_metadata and not Comparison("content", (), ()).by_metadata
