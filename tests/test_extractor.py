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
