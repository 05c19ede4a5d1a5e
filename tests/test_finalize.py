"""pipeline/job/finalize.py: the manifest's model records stay one per process, bounded; the
counts per kind add up whatever the bundles."""

import json

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from pipeline.job import finalize
from pipeline.job.finalize import ModelRecordsFn, _counted, model_records
from schemas import Unchanged


def _record(pid, copy=None, kind="model", certificate=None, host="vm-1"):
    return json.dumps({"kind": kind, "host": host, "pid": pid, "copy": copy, "certificate": certificate})


def test_one_record_per_process_however_many_bundles_and_the_certified_one_wins():
    texts = [_record(20, 1), _record(10, 0), _record(20, 1, certificate={"passed": True}), _record(20, 1),
             _record(7, kind="sdk_process"), _record(7, kind="sdk_process"), _record(10, 0, host="vm-0")]
    result = model_records(texts)
    assert [(r["host"], r["pid"], r["copy"]) for r in result["model_processes"]] == [
        ("vm-0", 10, 0), ("vm-1", 10, 0), ("vm-1", 20, 1)]
    assert result["model_processes"][2]["certificate"] == {"passed": True}
    assert all("kind" not in r for r in result["model_processes"] + result["sdk_processes_sharing"])
    assert [r["pid"] for r in result["sdk_processes_sharing"]] == [7]
    assert result["model_processes_total"] == 3


def test_past_the_cap_only_the_count_grows(monkeypatch):
    monkeypatch.setattr(finalize, "MAX_MODEL_RECORDS", 2)
    result = model_records([_record(pid, 0) for pid in range(5)] + [_record(0, 0)])
    assert len(result["model_processes"]) == 2 and result["model_processes_total"] == 5


def test_the_combine_in_a_pipeline_equals_the_list_version():
    texts = [_record(pid % 3, pid % 2) for pid in range(12)] + [_record(1, kind="sdk_process")]
    expected = model_records(texts)
    with beam.Pipeline() as pipeline:
        combined = pipeline | beam.Create(texts, reshuffle=True) | beam.CombineGlobally(ModelRecordsFn())
        assert_that(combined, equal_to([expected]))


def test_counts_per_bundle_add_up_to_the_images_each_element_stands_for():
    """Plain elements count 1, an Unchanged shard its samples; the pairs come one per bundle
    (here over two worker threads), so the job adds them up per kind."""
    shard = Unchanged(uri="shard-00001.tar", images=7)
    elements = [f"uri-{i}" for i in range(250)] + [shard, shard]
    options = PipelineOptions(["--direct_num_workers", "2", "--direct_running_mode", "multi_threading"])
    with beam.Pipeline(options=options) as pipeline:
        pairs = _counted(pipeline | beam.Create(elements, reshuffle=True), "matched")
        assert_that(pairs | beam.CombinePerKey(sum), equal_to([("matched", 250 + 14)]), label="sums")
        assert_that(pairs | beam.combiners.Count.Globally() | beam.Map(lambda n: n < len(elements)),
                    equal_to([True]), label="fewer pairs than elements")
