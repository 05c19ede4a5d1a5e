"""models/extractor.py: the fused forward pass equals a direct tf_keras computation."""

import numpy as np
import pytest

from images import rgb_pattern
from models.extractor import LayerExtractor
from reference import assert_close, direct_features
from schemas import ExtractionConfig

LAYERS = ("pool1_pool", "res3", "conv4_block2_out", "res5")


@pytest.fixture(scope="module")
def pixels():
    return np.stack([rgb_pattern(64, 48, seed) for seed in range(3)])


@pytest.fixture(scope="module")
def reference(weights_file, pixels):
    return direct_features(weights_file, pixels, LAYERS, (64, 48))


@pytest.mark.parametrize("pooling", ["avg", "max", "none"])
def test_matches_direct_keras(weights_file, pixels, reference, pooling):
    config = ExtractionConfig(layers=LAYERS, image_size="64x48", pooling=pooling, weights=weights_file)
    outputs = LayerExtractor(config)(pixels)
    assert list(outputs) == list(LAYERS)
    for layer in LAYERS:
        expected = reference[layer]
        if pooling == "avg":
            expected = expected.mean(axis=(1, 2))
        elif pooling == "max":
            expected = expected.max(axis=(1, 2))
        assert outputs[layer].shape == (3,) + config.embedding_shape(layer)
        assert outputs[layer].dtype == np.float32
        assert_close(outputs[layer], expected)


def test_float16_output_is_a_cast(weights_file, pixels, reference):
    config = ExtractionConfig(layers=("res3",), image_size="64x48", weights=weights_file, output_dtype="float16")
    out = LayerExtractor(config)(pixels)["res3"]
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.astype(np.float32), reference["res3"].mean(axis=(1, 2)), rtol=2e-3)


def test_random_weights_depend_only_on_the_seed(pixels):
    def run(seed):
        config = ExtractionConfig(layers=("res4",), image_size="64x48", weights="random", seed=seed)
        return LayerExtractor(config)(pixels)["res4"]

    first, again, other = run(7), run(7), run(8)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


@pytest.mark.parametrize("precision,size", [("bfloat16", 224), ("float16", 32)])
def test_mixed_precision_stays_close_on_a_calibrated_network(benchmark_network, precision, size):
    """bfloat16 within cosine 0.99 of float32 on the benchmark's calibrated network at
    224x224 (the bound bench/throughput.py reports); float16 is the GPU path, checked here
    for its logic and the same bound."""
    layers = ("res2", "res3", "res4", "res5")
    images = np.stack([rgb_pattern(size, size, 700 + i) for i in range(6)])
    plain = LayerExtractor(ExtractionConfig(layers=layers, image_size=size, weights=benchmark_network))(images)
    mixed = LayerExtractor(ExtractionConfig(layers=layers, image_size=size, weights=benchmark_network,
                                            mixed_precision=precision))
    outputs = mixed(images)
    for layer in layers:
        assert outputs[layer].dtype == np.float32  # stored as --output_dtype, float32 by default
        a, b = plain[layer].astype(np.float64), outputs[layer].astype(np.float64)
        cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cosine.min() >= 0.99, (layer, cosine.min())
        assert not np.array_equal(a, b)  # it really ran in reduced precision
        # the certificate (first batch against float32) is this very computation
        assert mixed.certificate["layers"][layer]["min"] == pytest.approx(cosine.min(), abs=2e-6)
        assert mixed.certificate["layers"][layer]["mean"] == pytest.approx(cosine.mean(), abs=2e-6)
    assert mixed.certificate["images"] == 6 and mixed.describe()["precision"] == f"mixed_{precision}"


@pytest.fixture(scope="module")
def benchmark_network(tmp_path_factory):
    """Exactly the network bench/throughput.py judges precision on (seed 0)."""
    from bench.network import write_calibrated_weights

    return write_calibrated_weights(str(tmp_path_factory.mktemp("bench_net") / "calibrated.h5"))


def test_keras_policy_is_restored_after_a_mixed_build(weights_file):
    import tf_keras

    LayerExtractor(ExtractionConfig(layers=("res2",), image_size=32, weights=weights_file, mixed_precision="bfloat16"))
    assert tf_keras.mixed_precision.global_policy().name == "float32"


def test_a_reduced_model_that_overflows_is_refused_by_its_certificate(overflowing_weights_file, pixels):
    from models.precision import PrecisionCertificateFailed

    weights = overflowing_weights_file
    config = ExtractionConfig(layers=("res2", "res5"), image_size="64x48", weights=weights, mixed_precision="float16")
    extractor = LayerExtractor(config)
    with pytest.raises(PrecisionCertificateFailed, match=r"layer res5 has min cosine -1\.000000 between float16"):
        extractor(pixels)
    assert extractor.certificate["layers"]["res2"]["min"] > 0.99  # the layers before it were fine
    with pytest.raises(PrecisionCertificateFailed):  # and it stays refused
        extractor(pixels[:1])
    plain = LayerExtractor(ExtractionConfig(layers=("res5",), image_size="64x48", weights=weights))(pixels)["res5"]
    assert np.isfinite(plain).all() and np.abs(plain).max() > 65504


def test_xla_pads_each_batch_and_gives_graph_modes_numbers(weights_file, pixels):
    config = ExtractionConfig(layers=("res2", "res5"), image_size="64x48", weights=weights_file, batch_size=2,
                              jit_compile="on")
    xla = LayerExtractor(config)
    graph = LayerExtractor(ExtractionConfig(layers=("res2", "res5"), image_size="64x48", weights=weights_file))
    assert xla.jit and not graph.jit  # auto on a CPU: off
    for n in (3, 1, 2):
        ours, expected = xla(pixels[:n]), graph(pixels[:n])
        for layer in ("res2", "res5"):
            assert ours[layer].shape == (n,) + config.embedding_shape(layer)
            # XLA fuses and reorders float32 sums: equal to 1e-4 of each layer's largest value
            scale = np.abs(expected[layer]).max()
            np.testing.assert_allclose(ours[layer], expected[layer], rtol=0, atol=1e-4 * scale)
    assert xla.shapes_run == {(2, 64, 48, 3)} and xla.compilations == 1


def test_xla_compiles_once_per_model_process(tmp_path):
    """XLA's own record of its compilations (--xla_dump_to writes one module per compile):
    batches of 5, 4, 3 and 9 with --batch_size 4 compile one module; the same function
    without the padding compiles one per batch size."""
    import os
    import subprocess
    import sys

    dump = tmp_path / "xla"
    code = """
import numpy as np, pathlib, sys, tensorflow as tf
from schemas import ExtractionConfig
from models.extractor import LayerExtractor
count = lambda: len(list(pathlib.Path(sys.argv[1]).glob("*before_optimizations.txt")))
pixels = np.zeros((9, 32, 32, 3), np.uint8)
extractor = LayerExtractor(ExtractionConfig(layers=("res2",), image_size=32, weights="random", batch_size=4,
                                            jit_compile="on"))
for n in (5, 4, 3, 9):
    extractor(pixels[:n])
padded = count()
unpadded = tf.function(extractor._forward.python_function, jit_compile=True)
for n in (5, 4, 3, 9):
    unpadded(tf.constant(pixels[:n]))
print(padded, count() - padded)
"""
    out = subprocess.run([sys.executable, "-c", code, str(dump)], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         env=dict(os.environ, XLA_FLAGS=f"--xla_dump_to={dump}", TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.stdout.split()[-2:] == ["1", "4"], out.stdout + out.stderr[-2000:]


def test_runs_in_one_process_reuse_a_network_built_for_the_same_settings_and_file(tmp_path, weights_file,
                                                                                  monkeypatch):
    """The keeping policy, with a stand-in for the network (building real ones is
    test_matches_direct_keras's business): 8 ResNet50 builds here cost 20 s."""
    import collections
    import os
    import shutil

    from models import extractor
    from models.extractor import MODELS_KEPT_VARIABLE, reusable_extractor

    class Built:
        def __init__(self, config, weights_file=None):
            self.config, self.weights_file = config, weights_file

    monkeypatch.setattr(extractor, "LayerExtractor", Built)
    monkeypatch.setattr(extractor, "_kept", collections.OrderedDict())  # the session's own stay apart
    monkeypatch.setenv(MODELS_KEPT_VARIABLE, "1")  # the default outside the test session
    copy = str(tmp_path / "weights.h5")
    shutil.copyfile(weights_file, copy)
    config = ExtractionConfig(layers=("res2",), image_size=32, weights=copy)
    res3 = ExtractionConfig(layers=("res3",), image_size=32, weights=copy)
    first = reusable_extractor(config, copy)
    assert (first.config, first.weights_file) == (config, copy)
    assert reusable_extractor(config, copy) is first
    other = reusable_extractor(res3, copy)
    assert other is not first
    again = reusable_extractor(config, copy)
    assert again is not first  # only the last one is kept
    monkeypatch.setenv(MODELS_KEPT_VARIABLE, "2")
    kept = reusable_extractor(res3, copy)
    assert reusable_extractor(config, copy) is again and reusable_extractor(res3, copy) is kept
    newest = reusable_extractor(ExtractionConfig(layers=("res4",), image_size=32, weights=copy), copy)
    assert reusable_extractor(res3, copy) is kept and reusable_extractor(config, copy) is not again  # used longest ago
    assert newest is not kept
    os.utime(copy, ns=(1, 1))  # the same path, another file as far as anyone can tell
    assert reusable_extractor(res3, copy) is not kept
    reduced = ExtractionConfig(layers=("res2",), image_size=32, weights=copy, mixed_precision="bfloat16")
    assert reusable_extractor(reduced, copy) is not reusable_extractor(reduced, copy)  # each certifies anew


def test_a_variant_shares_the_network_and_runs_at_its_own_batch_and_xla(weights_file, pixels):
    config = ExtractionConfig(layers=("res2", "res5"), image_size="64x48", weights=weights_file)
    graph = LayerExtractor(config)
    xla = graph.variant(2, "on")
    assert xla._base is graph._base and xla.jit and not graph.jit and xla.config.batch_size == 2
    ours, expected = xla(pixels), graph(pixels)
    for layer in ("res2", "res5"):
        np.testing.assert_allclose(ours[layer], expected[layer], rtol=0, atol=1e-4 * np.abs(expected[layer]).max())
    assert xla.shapes_run == {(2, 64, 48, 3)} and graph.shapes_run == {(3, 64, 48, 3)}
