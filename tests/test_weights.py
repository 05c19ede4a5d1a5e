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


def test_weight_layout_is_what_keras_saves(weights_file):
    """schemas.weight_layout() (pure Python) == the names and shapes Keras wrote, in order."""
    import h5py

    from schemas.layers import weight_layout

    with h5py.File(weights_file, "r") as h5:
        names = [n.decode() if isinstance(n, bytes) else n for n in h5.attrs["layer_names"]]
        saved = []
        for name in names:
            weights = [w.decode() if isinstance(w, bytes) else w for w in h5[name].attrs["weight_names"]]
            if weights:
                saved.append((name, [tuple(h5[name][w].shape) for w in weights]))
    assert saved == weight_layout()


def test_layout_check_refuses_other_architectures_without_tensorflow(tmp_path):
    import h5py

    from models.weights import check_weights_layout

    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["layer_names"] = ["dense"]
        group = h5.create_group("dense")
        group.attrs["weight_names"] = ["dense/kernel:0"]
        group.create_dataset("dense/kernel:0", data=np.zeros((4, 2), np.float32))
    with pytest.raises(WeightsError, match="the file has 1 layers with weights, ResNet50 has 106"):
        check_weights_layout(str(path), label="other.h5")


def test_layout_check_names_the_first_wrong_layer(weights_file, tmp_path):
    import shutil

    import h5py

    from models.weights import check_weights_layout

    broken = tmp_path / "broken.h5"
    shutil.copy(weights_file, broken)
    with h5py.File(broken, "r+") as h5:
        del h5["conv3_block1_2_conv"]["conv3_block1_2_conv/kernel:0"]
        h5["conv3_block1_2_conv"].create_dataset("conv3_block1_2_conv/kernel:0", data=np.zeros((1, 1, 128, 128), np.float32))
    with pytest.raises(WeightsError, match=r"conv3_block1_2_conv\) has shapes \[\(1, 1, 128, 128\), \(128,\)\], conv3_block1_2_conv needs \[\(3, 3, 128, 128\)"):
        check_weights_layout(str(broken), label="broken.h5")
    check_weights_layout(weights_file, label="good")  # the real file passes


def test_pinned_imagenet_md5_is_keras_own():
    from tf_keras.src.applications.resnet import WEIGHTS_HASHES

    from models.weights import IMAGENET_NOTOP_MD5

    assert WEIGHTS_HASHES["resnet50"][1] == IMAGENET_NOTOP_MD5


def test_intact_cached_imagenet_file_is_used_offline(offline_imagenet, tmp_path, monkeypatch):
    import hashlib

    import models.weights as weights

    cache = tmp_path / "keras_home" / "models"
    cache.mkdir(parents=True)
    fake = cache / weights.IMAGENET_NOTOP_FILE
    fake.write_bytes(b"pretend these are the weights")
    monkeypatch.setattr(weights, "IMAGENET_NOTOP_MD5", hashlib.md5(fake.read_bytes()).hexdigest())
    assert imagenet_weights_path() == str(fake)
