"""Build the bare tf_keras ResNet50 (include_top=False) for one input size and weights."""

from __future__ import annotations

import logging

from models.tfload import tensorflow
from models.weights import WEIGHTS_RANDOM, load_weights_file, randomize, resolve_weights_file
from schemas import ImageSize

_log = logging.getLogger(__name__)


def build_resnet50(image_size: ImageSize, weights: str, seed: int = 0, weights_file: str | None = None):
    """The tf_keras ResNet50 without its top for ``image_size`` inputs (float, caffe-preprocessed).

    ``weights`` is 'imagenet', 'random' (deterministic for ``seed``) or an HDF5 path;
    ``weights_file`` overrides where the file is read from when already resolved."""
    tensorflow()  # TensorFlow without its start-up noise, before tf_keras imports it
    import tf_keras

    model = tf_keras.applications.ResNet50(
        include_top=False,
        weights=None,
        input_shape=(image_size.height, image_size.width, 3),
    )
    if weights == WEIGHTS_RANDOM:
        randomize(model, seed)
    else:
        path = weights_file or resolve_weights_file(weights)
        load_weights_file(model, path, label=weights)
        _log.info("ResNet50 weights loaded from %s", path)
    return model
