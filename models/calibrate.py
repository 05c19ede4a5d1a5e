"""Give a randomly initialised ResNet50 the activation statistics of a trained one.

With random weights and BatchNorm at identity, activations grow through the 50 layers, and
reduced precision diverges far more than it would on trained weights. Setting every
BatchNorm's moving mean and variance from real activations (a calibration pass) makes each
layer's output zero-mean, unit-variance per channel before its scale and shift, as training
does. Used to judge mixed precision honestly (bench/throughput.py, tests)."""

from __future__ import annotations

import numpy as np

from models.tfload import tensorflow


def calibrate_batchnorm(model, images: np.ndarray) -> None:
    """Set every BatchNormalization's moving statistics of ``model`` (the bare ResNet50) from
    ``images`` (n, H, W, 3) uint8, in one training-mode forward pass with momentum 0: each
    layer then holds the batch statistics of its own input, with every earlier layer
    already normalised by its own, the same as calibrating the layers one by one."""
    tensorflow()  # TensorFlow without its start-up noise, before tf_keras imports it
    import tf_keras
    from tf_keras.applications.resnet50 import preprocess_input

    norms = [layer for layer in model.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    try:
        model(preprocess_input(images.astype(np.float32)), training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
