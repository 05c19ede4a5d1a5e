"""pipeline/build.py: the composed graph counts every stage into Beam metrics."""

from apache_beam.metrics.metric import MetricsFilter

from beam_helpers import local_test_pipeline
from images import rgb_pattern, write_image
from pipeline.build import build_pipeline
from schemas import ExtractionConfig
from transforms.errors import METRICS_NAMESPACE


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
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]}
    assert counters["matched"] == 7 and counters["read"] == 7
    assert counters["decoded"] == 5
    assert counters["failed_decode"] == 1 and counters["failed_validate"] == 1
    assert counters["batches"] == 3 and counters["images_embedded"] == 5
    assert counters["rows_images"] == counters["rows_res2"] == counters["rows_res5"] == 5
