"""models/serving.py: ExtractLayers with the model in model processes (model_copies): one
model shared by every SDK process, a killed model process replaced with no image lost, and
models that cannot be served failing the run with a clear error, never a hang."""

from __future__ import annotations

import faulthandler
import os
import pathlib
import signal

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that

from beam_helpers import check, local_test_pipeline
from models.handler import ResNet50Handler
from models.serving import ModelProcessLost, SharedModel
from schemas import ExtractionConfig, FileMeta, ImageBatch, ImageInfo
from transforms import ExtractLayers

CONFIG = ExtractionConfig(layers=("res2", "pool1_pool"), image_size=32, weights="random", batch_size=4)
TESTS = str(pathlib.Path(__file__).resolve().parent)


class PidModel:
    """Each image's res2 row is its fill value; its pool1_pool row holds the pid of the
    process that computed it, so rows show both alignment and where the model ran."""

    def __init__(self, config, die_on_call: int | None = None, marker: str | None = None):
        self.config = config
        self.die_on_call = die_on_call
        self.marker = marker
        self.calls = 0

    def __call__(self, pixels):
        self.calls += 1
        if self.die_on_call is not None and self.calls >= self.die_on_call and (
                self.marker is None or not os.path.exists(self.marker)):
            if self.marker is not None:
                pathlib.Path(self.marker).touch()  # the model loaded next time lives on
            os.kill(os.getpid(), signal.SIGKILL)
        n = len(pixels)
        fill = pixels[:, 0, 0, 0].astype(np.float32)
        return {"res2": np.repeat(fill[:, None], 256, axis=1),
                "pool1_pool": np.full((n, 64), os.getpid(), np.float32)}


class PidModelFactory:
    """model_factory: records every load as a file in ``loads``, then builds a PidModel."""

    def __init__(self, loads: str, **model_kwargs):
        self.loads = loads
        self.model_kwargs = model_kwargs

    def __call__(self, config):
        pathlib.Path(self.loads, f"load-{os.getpid()}").touch()
        return PidModel(config, **self.model_kwargs)


def failing_factory(config):
    raise RuntimeError("injected: this model cannot be built")


def _batches(values, size=4):
    out = []
    for start in range(0, len(values), size):
        part = values[start:start + size]
        infos = tuple(ImageInfo(FileMeta(f"mem://{v}", f"id{v}"), 32, 32, "PNG") for v in part)
        out.append(ImageBatch(infos, np.stack([np.full((32, 32, 3), v, np.uint8) for v in part])))
    return out


def _rows(embeddings) -> list[tuple[int, int, int]]:
    """(image value, res2 value, model pid) per embedded image."""
    return [(int(info.image_id[2:]), int(e.layers["res2"][row, 0]), int(e.layers["pool1_pool"][row, 0]))
            for e in embeddings for row, info in enumerate(e.infos)]


def _collect(path: pathlib.Path):
    """A matcher that writes the rows it sees to ``path`` (matchers run on a pickled copy)."""

    def _write(embeddings):
        path.write_text(repr(_rows(embeddings)))

    return _write


def _collected(path: pathlib.Path) -> list[tuple[int, int, int]]:
    return eval(path.read_text())  # noqa: S307 - our own repr of ints


def _alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def guard():
    """A hang fails the whole session loudly (with every thread's stack) instead of never ending."""
    faulthandler.dump_traceback_later(240, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def test_the_model_runs_in_a_model_process_of_its_own_and_ends_with_the_pipeline(tmp_path, guard):
    loads, rows = tmp_path / "loads", tmp_path / "rows"
    loads.mkdir()
    handler = ResNet50Handler(CONFIG, model_copies=1, model_factory=PidModelFactory(str(loads)))
    with local_test_pipeline() as p:
        out = p | beam.Create(_batches(list(range(1, 11)))) | ExtractLayers(handler)
        assert_that(out.embeddings, _collect(rows), label="emb")
        assert_that(out.errors, check(lambda es: es == [], "no errors"), label="err")
    seen = _collected(rows)
    assert sorted((value, res2) for value, res2, _ in seen) == [(v, v) for v in range(1, 11)]
    (server,) = {pid for _, _, pid in seen}
    assert server != os.getpid()
    assert [f.name for f in loads.iterdir()] == [f"load-{server}"]
    assert not _alive(server), "the model process outlives its pipeline"


def test_sdk_processes_share_one_model(tmp_path, monkeypatch, guard):
    """Two worker processes of the local runner, one model process between them."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
    handler = ResNet50Handler(CONFIG, model_copies=1, model_factory=PidModelFactory(str(tmp_path)))
    options = beam.options.pipeline_options.PipelineOptions(
        ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"])
    out_file = tmp_path / "rows"
    with beam.Pipeline(runner="FnApiRunner", options=options) as p:
        batches = p | beam.Create(list(range(1, 41))) | beam.Reshuffle() | beam.Map(
            lambda v: _batches([v], 1)[0])
        out = batches | ExtractLayers(handler)
        _ = (out.embeddings | beam.FlatMap(lambda e: [(_rows([e])[0], os.getpid())])
             | beam.Map(repr) | beam.io.WriteToText(str(out_file), shard_name_template=""))
    rows = [eval(line) for line in out_file.read_text().splitlines()]  # noqa: S307 - our own repr
    assert sorted(value for (value, res2, _), _ in rows) == list(range(1, 41))
    assert all(value == res2 for (value, res2, _), _ in rows)
    servers = {pid for (_, _, pid), _ in rows}
    workers = {worker for _, worker in rows}
    assert len(servers) == 1 and not servers & workers and os.getpid() not in servers
    assert len([f for f in tmp_path.iterdir() if f.name.startswith("load-")]) == 1


def test_a_killed_model_process_is_replaced_and_every_image_embedded(tmp_path, guard):
    loads = tmp_path / "loads"
    loads.mkdir()
    factory = PidModelFactory(str(loads), die_on_call=2, marker=str(tmp_path / "died-once"))
    handler = ResNet50Handler(CONFIG, model_copies=1, model_factory=factory)
    p = local_test_pipeline()
    out = p | beam.Create(_batches(list(range(1, 21)))) | ExtractLayers(handler)
    assert_that(out.embeddings, _collect(tmp_path / "rows"), label="emb")
    assert_that(out.errors, check(lambda es: es == [], "no errors"), label="err")
    result = p.run()
    result.wait_until_finish()
    seen = _collected(tmp_path / "rows")
    assert sorted((value, res2) for value, res2, _ in seen) == [(v, v) for v in range(1, 21)]
    assert len(list(loads.iterdir())) == 2 and len({pid for *_, pid in seen}) == 2
    reloads = result.metrics().query(MetricsFilter().with_name("model_process_reloads"))["counters"]
    assert sum(c.committed for c in reloads) == 1


def test_a_model_process_that_keeps_dying_fails_the_run_clearly(tmp_path, guard):
    handler = ResNet50Handler(CONFIG, model_copies=1, model_factory=PidModelFactory(str(tmp_path), die_on_call=1))
    with pytest.raises(Exception, match="was lost 3 times in a row"):
        with local_test_pipeline() as p:
            _ = p | beam.Create(_batches([1, 2, 3])) | ExtractLayers(handler)
    assert len([f for f in tmp_path.iterdir() if f.name.startswith("load-")]) == 3


@pytest.mark.parametrize("copies", [None, 1])
def test_a_model_that_cannot_be_built_fails_the_run_naming_why(copies, guard):
    handler = ResNet50Handler(CONFIG, model_copies=copies, model_factory=failing_factory)
    with pytest.raises(Exception, match="injected: this model cannot be built"):
        with local_test_pipeline() as p:
            _ = p | beam.Create(_batches([1, 2])) | ExtractLayers(handler)


def test_weights_other_than_planned_are_refused_in_the_model_process(weights_file, guard):
    config = ExtractionConfig(layers=("res2",), image_size=32, weights=weights_file, weights_sha256="0" * 64)
    with pytest.raises(ModelProcessLost, match="but the run was planned with 0000"):
        SharedModel(ResNet50Handler(config, model_copies=1))


def test_copies_take_batches_in_turn(tmp_path, guard):
    model = SharedModel(ResNet50Handler(CONFIG, model_copies=2, model_factory=PidModelFactory(str(tmp_path))))
    try:
        pixels = np.zeros((2, 32, 32, 3), np.uint8)
        pids = [int(model(pixels)["pool1_pool"][0, 0]) for _ in range(4)]
        assert len(set(pids)) == 2 and pids[0] == pids[2] and pids[1] == pids[3]
        assert len(list(tmp_path.iterdir())) == 2
    finally:
        model.close()
    assert not any(_alive(pid) for pid in pids)


@pytest.mark.local_workers
def test_a_cli_run_on_two_workers_survives_its_model_process_being_killed(tmp_path, monkeypatch, guard):
    """The shipped layout through the CLI: two worker processes, --model_copies 1, and the
    model process killed with SIGKILL during the run. Every image is embedded once, and
    the manifest counts them."""
    import json

    import pyarrow.parquet as pq

    from images import write_image
    from pipeline.run import EXIT_OK, run
    from schemas import layout

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
    folder, loads = tmp_path / "in", tmp_path / "loads"
    folder.mkdir()
    loads.mkdir()
    for value in range(1, 41):
        write_image(folder / f"img{value:02d}.png", np.full((32, 32, 3), value, np.uint8), "PNG")
    out = tmp_path / "out"
    factory = PidModelFactory(str(loads), die_on_call=3, marker=str(tmp_path / "died-once"))
    argv = ["--input", str(folder / "*.png"), "--output", str(out), "--weights", "random",
            "--image_size", "32", "--layers", "res2,pool1_pool", "--batch_size", "4", "--model_copies", "1"]
    assert run(argv, model_factory=factory) == EXIT_OK
    images = pq.read_table(layout.images_dir(str(out))).to_pylist()
    assert sorted(row["uri"] for row in images) == sorted(str(p) for p in folder.iterdir())
    embedded = pq.read_table(layout.layer_dir(str(out), "res2")).to_pylist()
    values = {row["uri"]: row["embedding"][0] for row in embedded}
    assert values == {str(folder / f"img{v:02d}.png"): float(v) for v in range(1, 41)}
    assert len(list(loads.iterdir())) == 2  # the first model process, and the one after the kill
    manifest = json.loads((out / layout.MANIFEST_FILE).read_text())
    assert manifest["counts"]["embedded"] == 40 and manifest["counts"]["errors"] == 0
