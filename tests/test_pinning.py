"""Where a run's models ran, end to end through run(argv): each model copy pinned to its
GPU (CUDA_VISIBLE_DEVICES, visible in the manifest), SDK processes that never touch CUDA,
and the precision certificate that refuses a reduced-precision model before it writes.
No GPU here: the pinning is checked by what each model process set before TensorFlow
loaded, and TensorFlow runs on the CPU whatever CUDA_VISIBLE_DEVICES says."""

import pathlib

import numpy as np
import pyarrow.parquet as pq
import pytest

from images import rgb_pattern, write_image
from pipeline.run import EXIT_FAILED, EXIT_OK, run
from reference import assert_same_embeddings
from schemas import layout

LAYERS = ("res2", "res5")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("pinning") / "in"
    folder.mkdir()
    for index in range(16):
        write_image(folder / f"{index:02d}.png", rgb_pattern(40 + index, 50, index), "PNG")
    return folder


def _argv(photos, out, weights, *extra):
    return ["--input", str(photos / "*"), "--output", str(out), "--weights", weights, "--image_size", "32",
            "--layers", ",".join(LAYERS), "--batch_size", "4", *extra]


def _embeddings(out, layer):
    table = pq.read_table(layout.layer_dir(str(out), layer)).sort_by("uri")
    return table["uri"].to_pylist(), np.stack(table["embedding"].to_numpy(zero_copy_only=False))


def _manifest(out):
    from pipeline.root import manifest

    return manifest.read_manifest(str(out))


@pytest.mark.local_workers
def test_two_copies_pin_one_gpu_each_sdk_processes_never_touch_cuda_and_numbers_match_one_copy(
        photos, tmp_path, weights_file):
    """--gpus 0,1 --model_copies 2 with the local multi-process workers: copy 0 ran with
    CUDA_VISIBLE_DEVICES=0 and copy 1 with 1, each in its own process; the worker processes
    that decoded and sent batches never imported TensorFlow; the embeddings equal a run with
    one model copy in one process."""
    shared = tmp_path / "two-copies"
    assert run(_argv(photos, shared, weights_file, "--gpus", "0,1", "--model_copies", "2")) == EXIT_OK
    manifest = _manifest(shared)
    copies = manifest["model_processes"]
    assert [(c["copy"], c["CUDA_VISIBLE_DEVICES"], c["pinned"]) for c in copies] == [(0, "0", True), (1, "1", True)]
    assert len({c["pid"] for c in copies}) == 2 and manifest["model_processes_total"] == 2
    assert all(c["host_allocator"] == "bfc" for c in copies), copies  # models/tfload.py
    assert manifest["compute"]["model_copies"] == 2 and manifest["gpus"] == "0,1"
    callers = manifest["sdk_processes_sharing"]
    assert callers and not {c["pid"] for c in callers} & {c["pid"] for c in copies}
    assert all(c["tensorflow_imported"] is False and c["cuda_untouched"] is True for c in callers), callers

    alone = tmp_path / "one-copy"  # one model, in this process (no model process to start)
    assert run(_argv(photos, alone, weights_file, "--direct_num_workers", "1")) == EXIT_OK
    for layer in LAYERS:
        uris, values = _embeddings(shared, layer)
        expected_uris, expected = _embeddings(alone, layer)
        assert uris == expected_uris and len(uris) == 16
        assert_same_embeddings(values, expected)


def test_a_reduced_precision_model_that_overflows_fails_the_run_in_one_line_before_writing(
        photos, tmp_path, overflowing_weights_file, caplog):
    out = tmp_path / "out"
    code = run(_argv(photos, out, overflowing_weights_file, "--mixed_precision", "float16"))
    assert code == EXIT_FAILED
    stated = [r.getMessage() for r in caplog.records if "precision certificate failed" in r.getMessage()]
    assert stated and "layer res5 has min cosine -1.000000 between float16 and float32" in stated[0]
    assert "Traceback" not in stated[0] and "\n" not in stated[0]
    assert not (out / "manifest.json").exists()
    written = list(pathlib.Path(layout.layer_dir(str(out), "res5")).glob("*.parquet")) if out.exists() else []
    assert written == []


def test_a_reduced_precision_run_records_each_models_certificate(photos, tmp_path, calibrated_weights_file):
    out = tmp_path / "out"
    assert run(_argv(photos, out, calibrated_weights_file, "--mixed_precision", "bfloat16")) == EXIT_OK
    (model,) = _manifest(out)["model_processes"]
    certificate = model["certificate"]
    assert model["precision"] == "mixed_bfloat16" and certificate["precision"] == "bfloat16"
    assert set(certificate["layers"]) == set(LAYERS)
    assert all(certificate["layers"][layer]["min"] >= certificate["min_cosine_required"] for layer in LAYERS)
    assert certificate["images"] == 4  # the first batch
