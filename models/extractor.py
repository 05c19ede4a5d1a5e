"""One forward pass that returns every requested layer, preprocessing and pooling included."""

from __future__ import annotations

import logging

import numpy as np

from models.resnet50 import build_resnet50
from schemas import ExtractionConfig

_log = logging.getLogger(__name__)


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
        base = build_resnet50(config.image_size, config.weights, config.seed, weights_file)
        outputs = {name: base.get_layer(keras).output for name, keras in config.keras_layers.items()}
        features = tf_keras.Model(base.input, outputs, name="resnet50_layers")
        out_dtype = tf.as_dtype(config.output_dtype)
        pooling = config.pooling

        def pool(feature_map):
            if pooling == "avg":
                return tf.reduce_mean(feature_map, axis=[1, 2])
            if pooling == "max":
                return tf.reduce_max(feature_map, axis=[1, 2])
            return feature_map

        def forward(images):
            maps = features(preprocess_input(tf.cast(images, tf.float32)), training=False)
            return {name: tf.cast(pool(maps[name]), out_dtype) for name in config.layers}

        height, width = config.image_size
        self._forward = tf.function(
            forward,
            input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8, name="images")],
        )
        self._tf = tf
        _log.info(
            "ResNet50 extractor ready: input %s, layers %s, pooling %s, devices %s",
            config.image_size,
            ",".join(config.layers),
            pooling,
            [d.name for d in tf.config.list_logical_devices() if d.device_type in ("GPU", "CPU")],
        )

    def __call__(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._forward(self._tf.convert_to_tensor(pixels, dtype=self._tf.uint8))
        return {name: value.numpy() for name, value in outputs.items()}
