"""pipeline/run.py end to end: run(argv) on generated images, every output read back."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from images import rgb_pattern, write_image
from pipeline.run import EXIT_OK, EXIT_USAGE, run
from reference import assert_close, direct_features
from schemas import (
    ERRORS_SCHEMA,
    IMAGES_SCHEMA,
    ExtractionConfig,
    embeddings_schema,
    layout,
)

LAYERS = ("pool1_pool", "res3", "conv4_block2_out", "res5")
REPO_ROOT = str(__import__("pathlib").Path(__file__).resolve().parents[1])


def _read(directory):
    return pq.read_table(directory)


@pytest.fixture
def mixed_inputs(tmp_path):
    """Mixed sizes, modes and formats, plus a truncated JPEG and a text file."""
    folder = tmp_path / "in"
    folder.mkdir()
    made = {}

    def add(name, pixels, fmt, mode=None, **kw):
        made[name] = (write_image(folder / name, pixels, fmt, mode, **kw), pixels.shape[:2])

    add("photo.jpg", rgb_pattern(48, 64, 1), "JPEG", quality=90)
    add("wide.png", rgb_pattern(120, 200, 2), "PNG")
    add("grey.png", rgb_pattern(90, 90, 3), "PNG", "L")
    add("alpha.png", rgb_pattern(70, 50, 4), "PNG", "RGBA")
    add("palette.gif", rgb_pattern(40, 40, 5), "GIF", "P")
    add("print.jpg", rgb_pattern(60, 80, 6), "JPEG", "CMYK")
    add("été 2024 photo.png", rgb_pattern(33, 130, 7), "PNG")
    good = (folder / "photo.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(good[: len(good) // 3])
    (folder / "notes.jpg").write_bytes(b"shopping list, not a picture")
    return folder, made


def test_mixed_inputs_every_file_accounted_for(mixed_inputs, tmp_path, weights_file):
    folder, made = mixed_inputs
    out = tmp_path / "out"
    argv = ["--input", str(folder / "*"), "--output", str(out), "--weights", weights_file,
            "--image_size", "64", "--layers", ",".join(LAYERS), "--batch_size", "3"]
    assert run(argv) == EXIT_OK
    weights_sha256 = hashlib.sha256(open(weights_file, "rb").read()).hexdigest()
    config = ExtractionConfig(layers=LAYERS, image_size=64, batch_size=3, weights=weights_file,
                              weights_sha256=weights_sha256)

    images = _read(layout.images_dir(str(out)))
    errors = _read(layout.errors_dir(str(out)))
    assert images.schema.equals(IMAGES_SCHEMA) and errors.schema.equals(ERRORS_SCHEMA)
    all_files = {str(p) for p in folder.iterdir()}
    embedded_uris, error_uris = images["uri"].to_pylist(), errors["uri"].to_pylist()
    assert sorted(embedded_uris + error_uris) == sorted(all_files)  # each exactly once
    assert sorted(error_uris) == [str(folder / "cut.jpg"), str(folder / "notes.jpg")]
    assert set(errors["stage"].to_pylist()) == {"decode"}

    for row in images.to_pylist():
        name = row["uri"].rsplit("/", 1)[1]
        data, (height, width) = made[name]
        assert row["image_id"] == hashlib.sha256(data).hexdigest()
        assert (row["width"], row["height"]) == (width, height)
        assert row["size_bytes"] == len(data)
        assert abs(row["modified"].timestamp() - (folder / name).stat().st_mtime) < 1e-5
    assert {r["uri"].rsplit("/", 1)[1]: r["format"] for r in images.to_pylist()}["palette.gif"] == "GIF"

    ids = sorted(images["image_id"].to_pylist())
    for layer in LAYERS:
        table = _read(layout.layer_dir(str(out), layer))
        expected_schema = embeddings_schema(config, layer)
        assert table.schema.equals(expected_schema, check_metadata=True)
        assert sorted(table["image_id"].to_pylist()) == ids
        values = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
        assert values.shape == (7,) + config.embedding_shape(layer) and np.isfinite(values).all()

    manifest = json.loads((out / layout.MANIFEST_FILE).read_text())
    assert manifest["complete"] is True
    assert manifest["counts"]["matched"] == 9 and manifest["counts"]["embedded"] == 7
    assert manifest["counts"]["errors"] == 2
    assert manifest["counts"]["errors_by_stage"] == {"decode": {"OSError": 1, "UnidentifiedImageError": 1}}
    assert manifest["counts"]["rows_per_layer"] == {layer: 7 for layer in LAYERS}
    assert [(l["name"], l["feature_shape"], l["shape"]) for l in manifest["layers"]] == [
        (layer, list(config.feature_shape(layer)), list(config.embedding_shape(layer))) for layer in LAYERS
    ]
    assert manifest["weights"]["kind"] == "file"
    assert manifest["weights"]["sha256"] == hashlib.sha256(open(weights_file, "rb").read()).hexdigest()
    assert manifest["versions"]["tensorflow"] and manifest["versions"]["apache-beam"]
    assert 0 < manifest["timings"]["startup_seconds"] < manifest["timings"]["seconds_total"]
    assert manifest["config"]["jpeg_draft"] is True and manifest["config"]["mixed_precision"] == "none"


@pytest.fixture
def exact_size_inputs(tmp_path):
    """PNGs already at the input size, so the pixels the model sees are known exactly."""
    folder = tmp_path / "exact"
    folder.mkdir()
    pixels = {}
    for seed in range(5):
        image = rgb_pattern(64, 64, 100 + seed)
        data = write_image(folder / f"img{seed}.png", image, "PNG")
        pixels[hashlib.sha256(data).hexdigest()] = image
    return folder, pixels


@pytest.mark.parametrize("pooling", ["avg", "none"])
def test_parquet_values_equal_direct_keras(exact_size_inputs, tmp_path, weights_file, pooling):
    folder, pixels = exact_size_inputs
    layers = ("pool1_pool", "res3", "res5")
    out = tmp_path / f"out_{pooling}"
    argv = ["--input", str(folder / "*.png"), "--output", str(out), "--weights", weights_file,
            "--image_size", "64", "--layers", ",".join(layers), "--pooling", pooling, "--batch_size", "2"]
    assert run(argv) == EXIT_OK

    ids = sorted(pixels)
    reference = direct_features(weights_file, np.stack([pixels[i] for i in ids]), layers, (64, 64))
    for layer in layers:
        table = _read(layout.layer_dir(str(out), layer))
        order = [ids.index(i) for i in table["image_id"].to_pylist()]
        expected = reference[layer][order]
        if pooling == "avg":
            values = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
            expected = expected.mean(axis=(1, 2))
        else:
            values = table["embedding"].combine_chunks().to_numpy_ndarray()
        assert values.shape == expected.shape
        assert_close(values, expected)


def test_random_weights_are_reproducible_through_the_cli(exact_size_inputs, tmp_path):
    folder, _ = exact_size_inputs

    def embed(seed, name):
        out = tmp_path / name
        argv = ["--input", str(folder / "*"), "--output", str(out), "--weights", "random",
                "--seed", str(seed), "--image_size", "32", "--layers", "res4"]
        assert run(argv) == EXIT_OK
        table = _read(layout.layer_dir(str(out), "res4")).sort_by("image_id")
        return np.stack(table["embedding"].to_numpy(zero_copy_only=False)), json.loads(
            (out / layout.MANIFEST_FILE).read_text())

    first, manifest = embed(3, "a")
    again, _ = embed(3, "b")
    other, _ = embed(4, "c")
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert manifest["weights"] == {"spec": "random", "kind": "random", "seed": 3}


def test_output_needs_overwrite_and_overwrite_replaces(exact_size_inputs, tmp_path, capsys):
    folder, _ = exact_size_inputs
    out = tmp_path / "out"
    base = ["--input", str(folder / "img0.png"), "--output", str(out), "--weights", "random",
            "--image_size", "32", "--layers", "res2"]
    assert run(base) == EXIT_OK
    (out / "keep.txt").write_text("not ours")
    assert run(base) == EXIT_USAGE
    assert "--overwrite" in capsys.readouterr().err
    second = ["--input", str(folder / "img[12].png")] + base[2:] + ["--overwrite"]
    assert run(second) == EXIT_OK
    assert _read(layout.images_dir(str(out))).num_rows == 2
    assert (out / "keep.txt").read_text() == "not ours"


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--layers", "res2,conv9_block1_out"], "valid choices are aliases: res2 (= conv2_block3_out)"),
        (["--image_size", "31"], "at least 32"),
        (["--image_size", "12x300"], "at least 32"),
        (["--image_size", "100000"], "too large: at most 4,194,304 pixels"),
        (["--batch_size", "0"], "--batch_size"),
        (["--weights", "/no/such/weights.h5"], "does not exist"),
        (["--layer", "res5"], "unknown option --layer (did you mean --layers?)"),
    ],
)
def test_bad_arguments_exit_2_before_any_work(exact_size_inputs, tmp_path, capsys, extra, message):
    folder, _ = exact_size_inputs
    out = tmp_path / "never"
    code = run(["--input", str(folder / "*"), "--output", str(out)] + extra)
    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_beam_options_pass_through(exact_size_inputs, tmp_path):
    folder, _ = exact_size_inputs
    argv = ["--input", str(folder / "img0.png"), "--output", str(tmp_path / "o"), "--weights", "random",
            "--image_size", "32", "--layers", "res2", "--direct_num_workers=1", "--job_name", "embed-test"]
    assert run(argv) == EXIT_OK


def test_empty_match_exits_2(tmp_path, capsys):
    assert run(["--input", str(tmp_path / "*.jpg"), "--output", str(tmp_path / "o"), "--weights", "random"]) == EXIT_USAGE
    assert "matches no file" in capsys.readouterr().err


def test_imagenet_unavailable_fails_fast(exact_size_inputs, tmp_path, capsys, offline_imagenet):
    folder, _ = exact_size_inputs
    assert run(["--input", str(folder / "*"), "--output", str(tmp_path / "o")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--weights PATH.h5" in err and "--weights random" in err


def test_bad_choice_from_a_real_process(tmp_path):
    """argparse's own check, through the real entry point: exit 2 listing the choices."""
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.run", "--input", "x", "--output", str(tmp_path), "--pooling", "sum"],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )
    assert result.returncode == 2
    assert "invalid choice: 'sum'" in result.stderr and "'avg', 'max', 'none'" in result.stderr


def test_help_lists_every_option(capsys):
    assert run(["--help"]) == EXIT_OK
    text = capsys.readouterr().out
    for flag in ("--input", "--output", "--layers", "--image_size", "--resize_mode", "--pooling",
                 "--batch_size", "--weights", "--seed", "--output_dtype", "--overwrite"):
        assert flag in text


class _Crash(__import__("apache_beam").DoFn):
    def process(self, batch):
        raise MemoryError("simulated worker crash")


class CrashingExtract(__import__("apache_beam").PTransform):
    """Fails the whole run: its exception is not about one image."""

    def expand(self, batches):
        import apache_beam as beam

        from schemas import ERRORS_TAG

        return batches | beam.ParDo(_Crash()).with_outputs(ERRORS_TAG, main="embeddings")


def test_failed_run_exits_1_and_writes_no_manifest(exact_size_inputs, tmp_path):
    folder, _ = exact_size_inputs
    out = tmp_path / "o"
    argv = ["--input", str(folder / "*"), "--output", str(out), "--weights", "random",
            "--image_size", "32", "--layers", "res2"]
    assert run(argv, extract=CrashingExtract()) == 1
    assert not (out / layout.MANIFEST_FILE).exists()


def poisoned_extractor(config):
    """The real extractor, failing on any batch holding the image whose first pixel is 13."""
    from models.extractor import LayerExtractor

    real = LayerExtractor(config)

    def extract(pixels):
        if (pixels[:, 0, 0, 0] == 13).any():
            raise RuntimeError("injected inference fault")
        return real(pixels)

    return extract


def test_injected_inference_fault_costs_one_image(exact_size_inputs, tmp_path):
    from models.handler import ResNet50Handler
    from transforms import ExtractLayers

    folder, _ = exact_size_inputs
    poisoned = rgb_pattern(64, 64, 999)
    poisoned[0, 0] = 13
    write_image(folder / "poisoned.png", poisoned, "PNG")
    out = tmp_path / "o"
    argv = ["--input", str(folder / "*"), "--output", str(out), "--weights", "random",
            "--image_size", "64", "--layers", "res2,res4", "--batch_size", "4"]
    config = ExtractionConfig(layers=("res2", "res4"), image_size=64, batch_size=4, weights="random")
    assert run(argv, extract=ExtractLayers(ResNet50Handler(config, model_factory=poisoned_extractor))) == EXIT_OK
    errors = _read(layout.errors_dir(str(out))).to_pylist()
    assert [(e["uri"], e["stage"], e["error_type"]) for e in errors] == [
        (str(folder / "poisoned.png"), "extract", "RuntimeError")]
    assert _read(layout.images_dir(str(out))).num_rows == 5
    assert _read(layout.layer_dir(str(out), "res4")).num_rows == 5
    manifest = json.loads((out / layout.MANIFEST_FILE).read_text())
    assert manifest["counts"]["errors_by_stage"] == {"extract": {"RuntimeError": 1}}


@pytest.mark.parametrize("limit,code", [("0.1", 3), ("0.2", EXIT_OK)])
def test_max_error_fraction(exact_size_inputs, tmp_path, limit, code):
    folder, _ = exact_size_inputs
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # 1 of 6 fails: 0.1667
    out = tmp_path / "o"
    argv = ["--input", str(folder / "*"), "--output", str(out), "--weights", "random",
            "--image_size", "32", "--layers", "res2", "--max_error_fraction", limit]
    assert run(argv) == code
    manifest = json.loads((out / layout.MANIFEST_FILE).read_text())  # written either way
    assert manifest["error_fraction"] == pytest.approx(1 / 6, abs=1e-6)
    assert manifest["max_error_fraction_exceeded"] is (code == 3)
    assert _read(layout.images_dir(str(out))).num_rows == 5


@pytest.mark.parametrize("extra,message", [
    (["--max_error_fraction", "1.5"], "between 0 and 1"),
    (["--min_side", "0"], "--min_side must be at least 1"),
    (["--max_pixels", "-1"], "--max_pixels must be at least 1"),
])
def test_bad_guard_values_exit_2(exact_size_inputs, tmp_path, capsys, extra, message):
    folder, _ = exact_size_inputs
    assert run(["--input", str(folder / "*"), "--output", str(tmp_path / "o"), "--weights", "random"] + extra) == EXIT_USAGE
    assert message in capsys.readouterr().err


class _DropFirstImage(__import__("apache_beam").DoFn):
    """A buggy step: loses one image without an error row."""

    def process(self, batch):
        from schemas import BatchEmbeddings

        kept = tuple(info for info in batch.infos if not info.uri.endswith("img0.png"))
        if kept:
            yield BatchEmbeddings(kept, {"res2": __import__("numpy").zeros((len(kept), 256), "float32")})


class SilentlyLosingExtract(__import__("apache_beam").PTransform):
    def expand(self, batches):
        import apache_beam as beam

        from schemas import ERRORS_TAG

        return batches | beam.ParDo(_DropFirstImage()).with_outputs(ERRORS_TAG, main="embeddings")


def test_a_lost_image_breaks_the_accounting_and_exits_1(exact_size_inputs, tmp_path, caplog):
    folder, _ = exact_size_inputs
    out = tmp_path / "o"
    argv = ["--input", str(folder / "img[0-2].png"), "--output", str(out), "--weights", "random",
            "--image_size", "32", "--layers", "res2", "--batch_size", "8"]
    assert run(argv, extract=SilentlyLosingExtract()) == 1
    assert not (out / layout.MANIFEST_FILE).exists()
    assert "3 inputs matched but images/ has 2 rows and errors/ 0" in caplog.text


@pytest.mark.local_workers
@pytest.mark.parametrize("cores,argv,matched,expected", [
    (2, [], 1000, (2, "multi_processing", 1)),
    (8, [], 1000, (2, "multi_processing", 4)),
    (1, [], 1000, (1, "in_memory", None)),
    (2, ["--direct_num_workers", "1"], 1000, (1, "in_memory", None)),
    # More than one worker given alone: processes, as the local default (Beam would run
    # them in_memory, one process: no parallel decoding).
    (2, ["--direct_num_workers", "3"], 1000, (3, "multi_processing", 1)),
    (2, ["--tf_threads", "2"], 1000, (2, "multi_processing", 2)),
    (2, [], 32, (1, "in_memory", None)),  # one batch: a second model only adds start-up
    (2, [], 33, (2, "multi_processing", 1)),
    # Threads of one process share its model: all cores for TensorFlow.
    (2, ["--direct_num_workers", "2", "--direct_running_mode", "multi_threading"], 1000,
     (2, "multi_threading", None)),
    # --model_copies: the workers decode on every core, each model process has half the
    # cores over its copies (at least 1) so that its threads do not crowd out decoding.
    (2, ["--model_copies", "1"], 1000, (2, "multi_processing", 1)),
    (8, ["--model_copies", "2"], 1000, (2, "multi_processing", 2)),
])
def test_local_default_is_two_worker_processes(monkeypatch, cores, argv, matched, expected):
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

    from pipeline.options import ExtractOptions
    from pipeline.local import use_local_workers

    monkeypatch.setattr("os.cpu_count", lambda: cores)
    options = PipelineOptions(argv)
    extract_options = options.view_as(ExtractOptions)
    use_local_workers(options, extract_options, argv, matched)
    direct = options.view_as(DirectOptions)
    assert (direct.direct_num_workers, direct.direct_running_mode, extract_options.tf_threads) == expected


@pytest.mark.local_workers
def test_worker_processes_give_the_single_process_numbers(exact_size_inputs, tmp_path):
    """The local default (worker processes, one TF thread each) == one process, per image."""
    folder, _ = exact_size_inputs
    base = ["--input", str(folder / "*"), "--weights", "random", "--image_size", "48",
            "--layers", "res3,res5", "--batch_size", "2"]
    assert run(base + ["--output", str(tmp_path / "multi")]) == EXIT_OK
    assert run(base + ["--output", str(tmp_path / "single"), "--direct_num_workers", "1"]) == EXIT_OK
    multi = json.loads((tmp_path / "multi" / layout.MANIFEST_FILE).read_text())
    assert multi["counts"]["embedded"] == 5
    for layer in ("res3", "res5"):
        tables = [_read(layout.layer_dir(str(tmp_path / name), layer)).sort_by("image_id") for name in ("multi", "single")]
        values = [np.stack(t["embedding"].to_numpy(zero_copy_only=False)) for t in tables]
        assert tables[0]["image_id"].to_pylist() == tables[1]["image_id"].to_pylist()
        assert_close(values[0], values[1])
