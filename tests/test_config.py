"""schemas/config.py: ExtractionConfig validation and derived shapes."""

import pytest

from schemas import ExtractionConfig


def test_defaults_and_shapes():
    config = ExtractionConfig(weights="random")
    assert config.layers == ("res2", "res3", "res4", "res5")
    assert config.input_shape == (224, 224, 3)
    assert config.embedding_shape("res5") == (2048,)
    assert ExtractionConfig(pooling="none").embedding_shape("res3") == (28, 28, 512)
    assert config.keras_layers["res3"] == "conv3_block4_out"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"layers": ("res5", "conv5_block3_out")}, "same layer"),
        ({"layers": ("res9",)}, "valid choices"),
        ({"layers": ()}, "at least one layer"),
        ({"pooling": "sum"}, "--pooling"),
        ({"resize_mode": "crop"}, "--resize_mode"),
        ({"output_dtype": "int8"}, "--output_dtype"),
        ({"batch_size": 0}, "--batch_size"),
        ({"image_size": 16}, "at least 32"),
    ],
)
def test_invalid_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ExtractionConfig(**kwargs)
