"""An independent reference computation: plain tf_keras ResNet50 with numpy preprocessing."""

from __future__ import annotations

import numpy as np


def direct_features(weights_file: str, pixels: np.ndarray, layers, size) -> dict[str, np.ndarray]:
    """Full feature maps (n, h, w, c) of ``layers`` for uint8 ``pixels`` (n, H, W, 3)."""
    import tf_keras
    from tf_keras.applications.resnet50 import preprocess_input

    from schemas import canonical_layer

    base = tf_keras.applications.ResNet50(include_top=False, weights=None, input_shape=tuple(size) + (3,))
    base.load_weights(weights_file)
    model = tf_keras.Model(base.input, [base.get_layer(canonical_layer(l)).output for l in layers])
    outputs = model.predict_on_batch(preprocess_input(pixels.astype(np.float32)))
    if len(layers) == 1:
        outputs = [outputs]
    return dict(zip(layers, outputs))


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Relative tolerance 1e-4, with an absolute floor far below the layer's scale."""
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-6 * float(np.abs(expected).max()))


def assert_same_embeddings(actual: np.ndarray, expected: np.ndarray) -> None:
    """Two runs' values for the same images: rtol 1e-5, with an absolute floor of 1e-5 of the
    layer's largest value. Batches of other sizes sum in another order: measured here, res5
    of seeded random weights moved by up to 7.5e-7 of its largest value between a batch of 8
    and batches of 5 + 3 (oneDNN on or off), which a pure rtol fails on entries near zero."""
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))
