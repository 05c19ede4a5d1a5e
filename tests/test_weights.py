"""models/weights.py: the ImageNet path's failure handling, weights files, random weights."""

import numpy as np
import pytest

from models.resnet50 import build_resnet50
from models.weights import WeightsError, imagenet_weights_path, local_weights_file, resolve_weights_file
from schemas import ImageSize


def test_imagenet_unreachable_fails_fast_naming_the_alternatives(offline_imagenet):
    with pytest.raises(WeightsError) as err:
        imagenet_weights_path()
    message = str(err.value)
    assert "--weights PATH.h5" in message and "--weights random" in message
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message


def test_imagenet_cache_with_a_corrupt_file_is_not_trusted(offline_imagenet, tmp_path, monkeypatch):
    cache = tmp_path / "keras_home" / "models"
    cache.mkdir(parents=True)
    (cache / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"not the weights")
    with pytest.raises(WeightsError):
        imagenet_weights_path()


def test_missing_and_non_hdf5_files_are_refused(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        local_weights_file(str(tmp_path / "nope.h5"))
    fake = tmp_path / "model.h5"
    fake.write_bytes(b"import os; os.system('echo pwned')")
    with pytest.raises(WeightsError, match="not an HDF5 file"):
        local_weights_file(str(fake))


def test_hdf5_of_another_architecture_is_refused(tmp_path):
    import tf_keras

    other = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2)])
    path = str(tmp_path / "dense.h5")
    other.save_weights(path)
    with pytest.raises(WeightsError, match="do not fit ResNet50"):
        build_resnet50(ImageSize(32, 32), path)


def test_weights_file_loads_into_any_input_size(weights_file):
    small = build_resnet50(ImageSize(32, 32), weights_file)
    large = build_resnet50(ImageSize(96, 64), weights_file)
    for a, b in zip(small.get_weights(), large.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_random_resolves_to_no_file():
    assert resolve_weights_file("random") is None
