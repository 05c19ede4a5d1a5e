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


@pytest.mark.parametrize("config,key", [
    # Keys of roots written before the settings record: they must not change, or every
    # existing incremental root would embed everything again.
    (ExtractionConfig(weights="random", seed=3, layers=("res2", "res5"), image_size=32), "66b629b658e65119"),
    (ExtractionConfig(weights="w.h5", layers=("res5", "res3"), pooling="none", mixed_precision="float16",
                      weights_sha256="ab" * 32), "4badc7a7bc6cbdbd"),
    (ExtractionConfig(weights="gs://b/w.h5"), "4e624564e686af0c"),
])
def test_embedding_key_is_stable(config, key):
    assert config.embedding_key == key


def test_settings_record_is_one_list_for_key_manifest_and_metadata():
    base = ExtractionConfig(weights="random", seed=3, layers=("res5", "res2"))
    record = base.settings_record()
    assert record["embedding_key"] == base.embedding_key
    assert {k: record[k] for k in base.value_settings()} == base.value_settings()
    assert record["layers_as_given"] == ["res5", "res2"] and record["batch_size"] == 32
    # The same layers in another order or by Keras name are the same settings; the batch size too.
    same = ExtractionConfig(weights="random", seed=3, layers=("conv2_block3_out", "res5"), batch_size=8)
    assert same.embedding_key == base.embedding_key
    for change in ({"seed": 4}, {"jpeg_draft": False}, {"output_dtype": "float16"},
                   {"resize_mode": "pad"}, {"image_size": 64}, {"mixed_precision": "bfloat16"}):
        other = ExtractionConfig(**{"weights": "random", "seed": 3, "layers": ("res5", "res2"), **change})
        assert other.embedding_key != base.embedding_key, change
