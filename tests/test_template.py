"""pipeline/template.py and deploy/metadata.json: the Flex Template's parameters are the
CLI's options, one to one, and every parameter value the launcher passes parses."""

from __future__ import annotations

import json
import pathlib
import re

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import ExtractOptions
from pipeline.plan import parse_args
from pipeline.template import metadata_json, options_parser, template_metadata

METADATA = pathlib.Path(__file__).resolve().parents[1] / "deploy" / "metadata.json"


def committed() -> dict:
    return json.loads(METADATA.read_text())


def test_committed_metadata_is_what_the_parser_generates():
    assert METADATA.read_text() == metadata_json(), "run: python -m pipeline.template > deploy/metadata.json"


def test_parameters_match_the_options_one_to_one():
    names = [p["name"] for p in committed()["parameters"]]
    assert len(names) == len(set(names))
    dests = [a.dest for a in options_parser()._actions]
    assert names == dests
    # ... and they are exactly the options the job reads from PipelineOptions.
    known = set(PipelineOptions([]).view_as(ExtractOptions).get_all_options(retain_unknown_options=False))
    assert set(names) <= known
    required = {p["name"] for p in committed()["parameters"] if not p["isOptional"]}
    assert required == {"input", "output"}


def test_metadata_is_a_valid_dataflow_template_metadata_message():
    types = pytest.importorskip("google.cloud.dataflow_v1beta3.types")
    message = types.TemplateMetadata.from_json(METADATA.read_text(), ignore_unknown_fields=False)
    assert message.name and len(message.parameters) == len(committed()["parameters"])
    assert all(p.help_text and p.label for p in message.parameters)


def test_defaults_pass_and_bad_values_fail_the_regexes():
    defaults = {a.dest: a.default for a in options_parser()._actions}
    checked = 0
    for parameter in committed()["parameters"]:
        for pattern in parameter.get("regexes", []):
            default = defaults[parameter["name"]]
            if default is not None:
                assert re.fullmatch(pattern, str(default)), (parameter["name"], default)
            assert not re.fullmatch(pattern, "banana"), parameter["name"]
            checked += 1
    assert checked >= 10


def test_a_launch_with_every_parameter_as_name_equals_value_parses(tmp_path):
    """The Flex launcher passes each parameter as --name=value; all of them must parse."""
    (tmp_path / "a.png").write_bytes(b"x")
    values = {
        "input": str(tmp_path / "*.png"), "output": str(tmp_path / "out"), "layers": "res3,res5",
        "image_size": "256x320", "resize_mode": "pad", "pooling": "max", "batch_size": "16",
        "weights": "random", "seed": "4", "output_dtype": "float16", "mixed_precision": "float16",
        "tf_threads": "2", "jpeg_draft": "off", "max_pixels": "5000000", "min_side": "8",
        "max_file_bytes": "1000000", "max_row_group_bytes": "2000000", "max_error_fraction": "0.05", "mode": "incremental",
        "skip_by": "content", "lock_stale_hours": "6", "input_format": "parquet",
        "image_column": "png", "image_paths": "relative", "keep_columns": "url,txt", "overwrite": "false", "progress_seconds": "30",
        "image_formats": "jpeg,png,pcx", "decode_warn_seconds": "12.5", "model_copies": "1",
        "accelerator_hint": "type:nvidia-l4;count:1;install-nvidia-driver", "gpus": "0,1",
        "jit_compile": "on", "min_cosine": "0.98", "commit_every": "500",
    }
    assert set(values) == {p["name"] for p in committed()["parameters"]}
    for parameter in committed()["parameters"]:
        for pattern in parameter.get("regexes", []):
            assert re.fullmatch(pattern, values[parameter["name"]]), parameter["name"]
    parsed = parse_args([f"--{k}={v}" for k, v in values.items()])
    options, config, limits, read = parsed.options, parsed.config, parsed.limits, parsed.read
    assert config.layers == ("res3", "res5") and config.image_size.width == 320
    assert config.pooling == "max" and config.mixed_precision == "float16" and not config.jpeg_draft
    assert limits.max_pixels == 5_000_000 and options.max_error_fraction == 0.05
    assert options.mode == "incremental" and options.overwrite is False
    assert options.lock_stale_hours == 6.0 and options.tf_threads == 2
    assert options.skip_by == "content" and options.input_format == "parquet"
    assert options.image_column == "png" and options.keep_columns == "url,txt"
    assert read.image_column == "png" and read.keep_columns == ("url", "txt")
    assert read.input_format == "parquet" and read.max_file_bytes == 1_000_000
    assert read.max_row_group_bytes == 2_000_000 and read.image_paths == "relative"
    assert options.input == [str(tmp_path / "*.png")]
    assert options.progress_seconds == 30.0
    assert limits.image_formats == ("JPEG", "PNG", "PCX") and limits.decode_warn_seconds == 12.5
    assert options.model_copies == 1 and options.accelerator_hint.startswith("type:nvidia-l4;")
    assert options.gpus == "0,1" and config.jit_compile == "on" and config.min_cosine == 0.98
    assert options.commit_every == 500
    assert template_metadata()["streaming"] is False
