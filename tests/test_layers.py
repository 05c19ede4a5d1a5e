"""schemas/layers.py: the catalog and layer_shape, checked against Keras itself."""

import pytest

from schemas import (
    ALIASES,
    LAYER_NAMES,
    ImageSize,
    UnknownLayerError,
    canonical_layer,
    layer_shape,
    parse_image_size,
    pooled_dim,
)


def test_catalog_has_pool1_and_all_sixteen_blocks():
    assert LAYER_NAMES[0] == "pool1_pool"
    assert len(LAYER_NAMES) == 17
    assert ALIASES == {
        "res2": "conv2_block3_out",
        "res3": "conv3_block4_out",
        "res4": "conv4_block6_out",
        "res5": "conv5_block3_out",
    }


@pytest.mark.parametrize("size", [(32, 32), (224, 224), (256, 256), (299, 299), (384, 512)])
def test_layer_shape_matches_keras(size):
    import tf_keras

    model = tf_keras.applications.ResNet50(include_top=False, weights=None, input_shape=size + (3,))
    keras_layers = {layer.name for layer in model.layers}
    for name in LAYER_NAMES:
        assert name in keras_layers
        assert tuple(layer_shape(name, ImageSize(*size))) == tuple(model.get_layer(name).output.shape[1:])
    for alias, name in ALIASES.items():
        assert layer_shape(alias, ImageSize(*size)) == layer_shape(name, ImageSize(*size))


def test_known_shapes_at_224():
    assert layer_shape("pool1_pool", 224) == (56, 56, 64)
    assert layer_shape("res2", 224) == (56, 56, 256)
    assert layer_shape("res5", "224") == (7, 7, 2048)
    assert layer_shape("res5", "384x512") == (12, 16, 2048)
    assert pooled_dim("res4") == 1024


def test_unknown_layer_lists_the_choices():
    with pytest.raises(UnknownLayerError) as err:
        canonical_layer("conv6_block1_out")
    assert "res5 (= conv5_block3_out)" in str(err.value)
    assert "conv4_block6_out" in str(err.value)


@pytest.mark.parametrize("text,expected", [("224", (224, 224)), ("384x512", (384, 512)), (" 64X32 ", (64, 32))])
def test_parse_image_size(text, expected):
    assert parse_image_size(text) == expected


@pytest.mark.parametrize("text", ["31", "224x16", "abc", "224x", "-5"])
def test_parse_image_size_rejects(text):
    with pytest.raises(ValueError):
        parse_image_size(text)


def test_the_largest_input_is_2048_squared_in_pixels():
    from schemas.layers import MAX_IMAGE_PIXELS, parse_image_size

    assert MAX_IMAGE_PIXELS == 2048 * 2048
    assert parse_image_size("2048") == (2048, 2048) and parse_image_size("1024x4096") == (1024, 4096)
    with pytest.raises(ValueError, match=r"100000x100000 is too large: at most 4,194,304 pixels"):
        parse_image_size(100000)
    with pytest.raises(ValueError, match="too large"):
        parse_image_size("2049x2048")
