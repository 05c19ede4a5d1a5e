"""models/handler.py: ResNet50Handler inside Beam's own RunInference (alone, keyed, with
model_copies) pairs each output with its input and gives the CLI's numbers; load_model
refuses weights other than the planned ones."""

from __future__ import annotations

import glob
import pathlib

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.testing.util import assert_that

from beam_helpers import check, local_test_pipeline
from models.handler import ResNet50Handler
from models.weights import WeightsError, file_sha256
from pipeline.run import EXIT_OK, run
from reference import assert_same_embeddings
from schemas import ExtractionConfig, ShapeContractError, layout
from transforms.resize import model_input

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ExtractionConfig(layers=("res2", "pool1_pool"), image_size=32, weights="random", batch_size=3)


class FillModel:
    """Row i of every layer is image i's fill value: a positional mix-up shows."""

    def __init__(self, config):
        self.config = config

    def __call__(self, pixels):
        fill = pixels[:, 0, 0, 0].astype(np.float32)
        return {layer: np.repeat(fill[:, None], self.config.embedding_shape(layer)[0], axis=1)
                for layer in self.config.layers}


def images(values):
    return [np.full((32, 32, 3), v, np.uint8) for v in values]


def _paired(results) -> bool:
    return sorted(int(r.example[0, 0, 0]) for r in results) == list(range(1, 11)) and all(
        (r.inference[layer] == r.example[0, 0, 0]).all() and r.inference[layer].shape == CONFIG.embedding_shape(layer)
        for r in results for layer in CONFIG.layers)


@pytest.mark.parametrize("copies", [None, 1])
def test_run_inference_pairs_each_output_with_its_input(copies):
    handler = ResNet50Handler(CONFIG, model_copies=copies, model_factory=FillModel)
    with local_test_pipeline() as p:
        results = p | beam.Create(images(range(1, 11))) | RunInference(handler)
        assert_that(results, check(_paired, "each example with its own outputs"))


def test_keyed_run_inference_keeps_keys_with_their_outputs():
    handler = KeyedModelHandler(ResNet50Handler(CONFIG, model_factory=FillModel))
    with local_test_pipeline() as p:
        results = (p | beam.Create([(f"key{v}", image) for v, image in zip(range(1, 11), images(range(1, 11)))])
                   | RunInference(handler))
        assert_that(results, check(lambda kvs: sorted(k for k, _ in kvs) == sorted(f"key{v}" for v in range(1, 11))
                                   and all(float(k[3:]) == r.inference["res2"][0] == r.inference["pool1_pool"][-1]
                                           for k, r in kvs), "keys with their own outputs"))


def test_batching_follows_the_config():
    handler = ResNet50Handler(CONFIG)
    assert handler.batch_elements_kwargs() == {"max_batch_size": 3}
    assert not handler.share_model_across_processes() and handler.model_copies() == 1
    shared = ResNet50Handler(CONFIG, model_copies=2, accelerator="type:nvidia-l4;count:1")
    assert shared.share_model_across_processes() and shared.model_copies() == 2
    assert shared.get_resource_hints() == {"accelerator": "type:nvidia-l4;count:1"}
    with pytest.raises(ValueError, match="model_copies must be at least 1"):
        ResNet50Handler(CONFIG, model_copies=0)


def test_examples_of_another_shape_are_refused():
    handler = ResNet50Handler(CONFIG, model_factory=FillModel)
    with pytest.raises(ShapeContractError, match=r"expected shape \(32, 32, 3\), got \(64, 32, 3\)"):
        handler.run_inference([np.zeros((64, 32, 3), np.uint8)], FillModel(CONFIG))


def test_load_model_checks_the_weights_sha256(weights_file):
    config = ExtractionConfig(layers=("res2",), image_size=32, weights=weights_file)
    with pytest.raises(WeightsError, match="but the run was planned with 0000"):
        ResNet50Handler(ExtractionConfig(**{**config.__dict__, "weights_sha256": "0" * 64})).load_model()
    pinned = ExtractionConfig(**{**config.__dict__, "weights_sha256": file_sha256(weights_file)})
    model = ResNet50Handler(pinned).load_model()
    assert model(np.zeros((1, 32, 32, 3), np.uint8))["res2"].shape == (1, 256)


def test_keyed_run_inference_gives_the_clis_numbers(weights_file, tmp_path):
    """The README's RunInference example, against the CLI's Parquet for the same files."""
    paths = sorted(glob.glob(str(REPO_ROOT / "samples/images/*")))
    out = tmp_path / "cli"
    assert run(["--input", str(REPO_ROOT / "samples/images/*"), "--output", str(out),
                "--weights", weights_file, "--image_size", "64", "--layers", "res3,res5",
                "--batch_size", "4"]) == EXIT_OK
    cli = {layer: {row["uri"]: np.asarray(row["embedding"], np.float32)
                   for row in pq.read_table(layout.layer_dir(str(out), layer)).to_pylist()}
           for layer in ("res3", "res5")}
    config = ExtractionConfig(layers=("res3", "res5"), image_size=64, weights=weights_file, batch_size=3,
                              weights_sha256=file_sha256(weights_file))
    pictures = [(path, model_input(pathlib.Path(path).read_bytes(), config)) for path in paths]
    got = tmp_path / "got.npz"

    def save(keyed_results):
        np.savez(got, **{f"{layer}|{key}": result.inference[layer]
                         for key, result in keyed_results for layer in config.layers})

    with local_test_pipeline() as p:
        results = p | beam.Create(pictures) | RunInference(KeyedModelHandler(ResNet50Handler(config)))
        assert_that(results, save)
    values = np.load(got)
    assert sorted({name.split("|", 1)[1] for name in values.files}) == paths == sorted(cli["res5"])
    for layer in ("res3", "res5"):
        assert_same_embeddings(np.stack([values[f"{layer}|{path}"] for path in paths]),
                               np.stack([cli[layer][path] for path in paths]))
