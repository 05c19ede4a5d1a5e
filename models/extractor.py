"""One forward pass that returns every requested layer, preprocessing and pooling included."""

from __future__ import annotations

import logging

import numpy as np

from models.device import configure_devices
from models.resnet50 import build_resnet50
from schemas import ExtractionConfig

_log = logging.getLogger(__name__)


def _pool(tf, feature_map, pooling: str):
    """(n, h, w, c) -> (n, c) by ``pooling`` avg or max; unchanged for none."""
    if pooling == "avg":
        return tf.reduce_mean(feature_map, axis=[1, 2])
    if pooling == "max":
        return tf.reduce_max(feature_map, axis=[1, 2])
    return feature_map


class LayerExtractor:
    """Callable: uint8 RGB batch (n, H, W, 3) -> {layer: float array} with
    (n, C) per layer when pooled or (n, h, w, c) when ``pooling='none'``.

    ``preprocess_input`` (caffe: BGR, mean-subtracted), the forward pass, pooling and the
    cast to the output dtype all run in one TensorFlow graph, on GPU when there is one."""

    def __init__(self, config: ExtractionConfig, weights_file: str | None = None):
        import tensorflow as tf
        import tf_keras
        from tf_keras.applications.resnet50 import preprocess_input

        self.config = config
        self.device = configure_devices()
        base = _build_with_policy(config, weights_file)
        outputs = {name: base.get_layer(keras).output for name, keras in config.keras_layers.items()}
        features = tf_keras.Model(base.input, outputs, name="resnet50_layers")
        out_dtype = tf.as_dtype(config.output_dtype)
        pooling = config.pooling

        def forward(images):
            maps = features(preprocess_input(tf.cast(images, tf.float32)), training=False)
            # Under mixed precision the maps are float16/bfloat16: pool in float32.
            return {
                name: tf.cast(_pool(tf, tf.cast(maps[name], tf.float32), pooling), out_dtype)
                for name in config.layers
            }

        height, width = config.image_size
        self._forward = tf.function(
            forward,
            input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8, name="images")],
        )
        self._tf = tf
        _log.info(
            "ResNet50 extractor ready on %s: input %s, layers %s, pooling %s, precision %s",
            self.device,
            config.image_size,
            ",".join(config.layers),
            pooling,
            "float32" if config.mixed_precision == "none" else f"mixed_{config.mixed_precision}",
        )

    def __call__(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._forward(self._tf.convert_to_tensor(pixels, dtype=self._tf.uint8))
        return {name: value.numpy() for name, value in outputs.items()}


def _build_with_policy(config: ExtractionConfig, weights_file: str | None):
    """The bare ResNet50, built under ``mixed_<precision>`` when asked (variables stay
    float32, so any weights file loads), with the global Keras policy restored after."""
    import tf_keras

    if config.mixed_precision == "none":
        return build_resnet50(config.image_size, config.weights, config.seed, weights_file)
    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy(f"mixed_{config.mixed_precision}")
    try:
        return build_resnet50(config.image_size, config.weights, config.seed, weights_file)
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)
