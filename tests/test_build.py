"""pipeline/job/build.py: the composed graph counts every stage into Beam metrics."""

from apache_beam.metrics.metric import MetricsFilter

from beam_helpers import local_test_pipeline
from images import rgb_pattern, write_image
from pipeline.job.build import build_pipeline
from schemas import ExtractionConfig
from transforms.errors import METRICS_NAMESPACE


def counters_of(result) -> dict:
    """Counter name -> total over every step that counts it (``matched`` has two)."""
    totals = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]:
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + counter.committed
    return totals


def test_stage_counters_account_for_every_input(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(5):
        write_image(folder / f"ok{i}.png", rgb_pattern(40, 40, i), "PNG")
    (folder / "bad.jpg").write_bytes(b"text")
    (folder / "tiny.png").write_bytes(__import__("images").encode(rgb_pattern(4, 4, 9), "PNG"))
    config = ExtractionConfig(layers=("res2", "res5"), image_size=32, weights="random", batch_size=2)
    p = local_test_pipeline()
    build_pipeline(p, input_pattern=str(folder / "*"), output_dir=str(tmp_path / "out"), config=config)
    result = p.run()
    result.wait_until_finish()
    counters = counters_of(result)
    assert counters["matched"] == 7 and counters["read"] == 7
    assert counters["decoded"] == 5
    assert counters["failed_decode"] == 1 and counters["failed_validate"] == 1
    assert counters["batches"] == 3 and counters["images_embedded"] == 5
    assert counters["rows_images"] == counters["rows_res2"] == counters["rows_res5"] == 5


def test_incremental_counters_split_what_was_read_from_what_was_skipped(tmp_path):
    import os
    import time

    from schemas import Comparison
    from schemas import layout

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(5):
        write_image(folder / f"ok{i}.png", rgb_pattern(40, 40, i), "PNG")
    (folder / "bad.jpg").write_bytes(b"text")
    config = ExtractionConfig(layers=("res5",), image_size=32, weights="random", batch_size=2)
    first, second = str(tmp_path / "run1"), str(tmp_path / "run2")
    p = local_test_pipeline()
    build_pipeline(p, input_pattern=str(folder / "*"), output_dir=first, config=config,
                   comparison=Comparison("metadata", (), ()))  # nothing earlier: read once
    p.run().wait_until_finish()
    later = time.time() + 60
    os.utime(folder / "ok0.png", (later, later))             # touched
    os.rename(folder / "ok1.png", folder / "moved1.png")     # renamed
    write_image(folder / "new5.png", rgb_pattern(40, 40, 5), "PNG")
    p = local_test_pipeline()
    build_pipeline(p, input_pattern=str(folder / "*"), output_dir=second, config=config,
                   comparison=Comparison("metadata", (layout.parts_glob(layout.images_dir(first)),),
                                         (layout.parts_glob(layout.skipped_dir(first)),)))
    result = p.run()
    result.wait_until_finish()
    counters = counters_of(result)
    assert counters["listed"] == 7 and counters["matched"] == 7
    assert counters["skipped_unchanged"] == 3              # ok2, ok3, ok4: never opened
    assert counters["read"] == 4                           # ok0, moved1, new5 and bad.jpg again
    assert counters["skipped_same_content"] == 2           # ok0, moved1
    assert counters["images_embedded"] == 1 and counters["failed_decode"] == 1
