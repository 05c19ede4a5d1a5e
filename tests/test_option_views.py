"""pipeline/option_views.py: a remembered view_as answers as Beam's own (views are live,
values shared), is made once per options object and class, and pipelines run with it."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.testing.util import assert_that, equal_to

from pipeline import option_views


@pytest.fixture
def remembered(monkeypatch):
    monkeypatch.setattr(PipelineOptions, "view_as", option_views.remembered_view_as)
    made = []
    real = option_views._beams_view_as

    def counting(options, cls):
        made.append(cls)
        return real(options, cls)

    monkeypatch.setattr(option_views, "_beams_view_as", counting)
    return made


def test_one_view_per_object_and_class_and_it_stays_live(remembered):
    options = PipelineOptions(["--runner", "Direct", "--direct_num_workers", "3"])
    standard = options.view_as(StandardOptions)
    assert options.view_as(StandardOptions) is standard and standard.runner == "Direct"
    assert options.view_as(DirectOptions).direct_num_workers == 3
    options.view_as(DirectOptions).direct_num_workers = 5  # through one view: seen by all
    assert options.view_as(DirectOptions).direct_num_workers == 5
    assert options.get_all_options()["direct_num_workers"] == 5
    assert standard.view_as(DirectOptions).direct_num_workers == 5  # a view of a view
    assert remembered == [StandardOptions, DirectOptions, DirectOptions]
    # Another object with the same flags has views of its own.
    other = PipelineOptions(["--runner", "Direct", "--direct_num_workers", "3"])
    assert other.view_as(DirectOptions).direct_num_workers == 3


def test_a_view_is_made_again_when_the_values_were_replaced(remembered):
    options = PipelineOptions(["--direct_num_workers", "2"])
    first = options.view_as(DirectOptions)
    options._all_options = dict(options._all_options, direct_num_workers=7)
    again = options.view_as(DirectOptions)
    assert again is not first and again.direct_num_workers == 7


def test_a_pipeline_runs_with_it_installed(remembered):
    with beam.Pipeline(options=PipelineOptions(["--direct_running_mode", "in_memory"])) as p:
        assert_that(p | beam.Create([1, 2, 3]) | beam.Map(lambda x: x * 2), equal_to([2, 4, 6]))
