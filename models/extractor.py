"""One forward pass that returns every requested layer, preprocessing and pooling included,
at the configured precision, with or without XLA, and the certificate of reduced precision."""

from __future__ import annotations

import collections
import logging
import os
import threading

import numpy as np

from models.device import configure_devices
from models.precision import certify, jit_for, layer_cosines
from models.resnet50 import build_resnet50
from models.tfload import host_allocator, tensorflow
from schemas import ExtractionConfig

_log = logging.getLogger(__name__)


def _pool(tf, feature_map, pooling: str):
    """(n, h, w, c) -> (n, c) by ``pooling`` avg or max; unchanged for none."""
    if pooling == "avg":
        return tf.reduce_mean(feature_map, axis=[1, 2])
    if pooling == "max":
        return tf.reduce_max(feature_map, axis=[1, 2])
    return feature_map


def layers_function(base, config: ExtractionConfig, *, jit: bool):
    """A tf.function: uint8 (n, H, W, 3) -> {layer: (n, ...) in config.output_dtype}, from the
    bare ResNet50 ``base``. With ``jit`` it is XLA-compiled for exactly
    ``config.batch_size`` images (XLA compiles once per input shape, so callers pad)."""
    tf = tensorflow()  # before tf_keras, which imports TensorFlow too
    import tf_keras
    from tf_keras.applications.resnet50 import preprocess_input

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
    batch = config.batch_size if jit else None
    return tf.function(forward, jit_compile=jit,
                       input_signature=[tf.TensorSpec([batch, height, width, 3], tf.uint8, name="images")])


class LayerExtractor:
    """Callable: uint8 RGB batch (n, H, W, 3) -> {layer: float array} with
    (n, C) per layer when pooled or (n, h, w, c) when ``pooling='none'``.

    ``preprocess_input`` (caffe: BGR, mean-subtracted), the forward pass, pooling and the
    cast to the output dtype all run in one TensorFlow graph, on the GPU this process sees
    (models/placement.py pins it) or the CPU. With XLA (``config.jit_compile`` on, or auto
    on a GPU) every call runs at ``config.batch_size``: a smaller batch is padded with zeros
    and the padding's rows dropped, a larger one split, so the model compiles once.

    Under ``config.mixed_precision`` the first batch is also run through a float32 copy of
    the same weights; the per-layer minimum and mean cosine similarity of the two are the
    ``certificate``. A layer under ``config.min_cosine`` raises PrecisionCertificateFailed
    for that batch and for every later one, so this model returns nothing."""

    def __init__(self, config: ExtractionConfig, weights_file: str | None = None):
        tf = tensorflow()
        self.config = config
        self.device, self.device_details = configure_devices()
        self.host_allocator = host_allocator()
        self.jit = jit_for(config.jit_compile, ":GPU:" in self.device.upper())
        self._base = _build_with_policy(config, weights_file)
        self._forward = layers_function(self._base, config, jit=self.jit)
        self._tf = tf
        self.certificate: dict | None = None
        self._refusal: Exception | None = None
        self._certifying = threading.Lock()  # a model process serves each caller on a thread
        self.shapes_run: set = set()
        _log.info("ResNet50 extractor ready on %s: input %s, layers %s, pooling %s, precision %s, "
                  "XLA %s, batch %d", self.device, config.image_size, ",".join(config.layers),
                  config.pooling, self.precision, "on" if self.jit else "off", config.batch_size)

    @property
    def precision(self) -> str:
        return "float32" if self.config.mixed_precision == "none" else f"mixed_{self.config.mixed_precision}"

    @property
    def compilations(self) -> int:
        """How many times the forward function was traced (with XLA: compiled)."""
        return self._forward.experimental_get_tracing_count()

    def __call__(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        if self._refusal is not None:
            raise self._refusal
        if self.config.mixed_precision != "none" and self.certificate is None:
            with self._certifying:  # the first batch certifies; concurrent ones wait for it
                if self._refusal is not None:
                    raise self._refusal
                if self.certificate is None:
                    outputs = self._run(self._forward, pixels, self.jit)
                    self._certify(pixels, outputs)
                    return outputs
        return self._run(self._forward, pixels, self.jit)

    def _run(self, function, pixels: np.ndarray, fixed: bool) -> dict[str, np.ndarray]:
        if not fixed:
            self.shapes_run.add(tuple(pixels.shape))
            out = function(self._tf.convert_to_tensor(pixels, dtype=self._tf.uint8))
            return {name: value.numpy() for name, value in out.items()}
        size, parts = self.config.batch_size, []
        for start in range(0, len(pixels), size):
            chunk = pixels[start:start + size]
            real = len(chunk)
            if real < size:
                chunk = np.concatenate([chunk, np.zeros((size - real,) + chunk.shape[1:], np.uint8)])
            self.shapes_run.add(tuple(chunk.shape))
            out = function(self._tf.convert_to_tensor(chunk, dtype=self._tf.uint8))
            parts.append({name: value.numpy()[:real] for name, value in out.items()})
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([part[name] for part in parts]) for name in self.config.layers}

    def _certify(self, pixels: np.ndarray, outputs: dict) -> None:
        """Run ``pixels`` through a float32 copy of the weights and compare (class docstring)."""
        import tf_keras

        config = self.config
        reference = tf_keras.applications.ResNet50(include_top=False, weights=None,
                                                   input_shape=config.input_shape)
        reference.set_weights(self._base.get_weights())
        expected = self._run(layers_function(reference, config, jit=False), pixels, False)
        cosines = layer_cosines(outputs, expected)
        self.certificate = {"precision": config.mixed_precision, "images": len(pixels),
                            "min_cosine_required": config.min_cosine, "layers": cosines}
        del reference
        worst = min(cosines.items(), key=lambda item: item[1]["min"])
        _log.info("precision certificate: %s vs float32 on %d images, lowest min cosine %s %.6f",
                  config.mixed_precision, len(pixels), worst[0], worst[1]["min"])
        try:
            certify(cosines, precision=config.mixed_precision, min_cosine=config.min_cosine,
                    images=len(pixels))
        except Exception as exc:
            self._refusal = exc
            raise

    def variant(self, batch_size: int, jit_compile: str) -> "LayerExtractor":
        """This network (the same weights, layers and precision, nothing rebuilt) at another
        batch size or XLA setting, with a forward function of its own. It certifies its own
        first batch (XLA may round otherwise)."""
        import dataclasses

        clone = object.__new__(LayerExtractor)
        clone.__dict__.update(self.__dict__)
        clone.config = dataclasses.replace(self.config, batch_size=batch_size, jit_compile=jit_compile)
        clone.jit = jit_for(jit_compile, ":GPU:" in self.device.upper())
        clone._forward = layers_function(self._base, clone.config, jit=clone.jit)
        clone.certificate, clone._refusal = None, None
        clone._certifying, clone.shapes_run = threading.Lock(), set()
        return clone

    def describe(self) -> dict:
        """Where and how this model computes, for the manifest."""
        return {"device": self.device, "device_details": self.device_details,
                "precision": self.precision, "jit_compile": self.jit,
                "batch_size": self.config.batch_size, "host_allocator": self.host_allocator,
                "certificate": self.certificate}


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


#: How many networks one process keeps for run() calls repeated in it (a notebook, a
#: scheduler, a test session), the newest used last; each holds its weights (ResNet50:
#: about 100 MB in float32). The environment variable sets it (the test session keeps 4).
MODELS_KEPT_VARIABLE = "RESNET50_EMBEDDINGS_MODELS_KEPT"
_kept: collections.OrderedDict = collections.OrderedDict()
_building = threading.Lock()


def models_kept() -> int:
    value = os.environ.get(MODELS_KEPT_VARIABLE, "")
    return max(1, int(value)) if value.isdigit() else 1


def _file_identity(path: str | None) -> tuple | None:
    if not path:
        return None
    status = os.stat(path)
    return path, status.st_size, status.st_mtime_ns


def reusable_extractor(config: ExtractionConfig, weights_file: str | None) -> LayerExtractor:
    """A LayerExtractor for ``config``: one this process built before for the same settings
    and the same weights file (path, size and modification time), so runs repeated in one
    process build the network once; else a new one, kept in place of the one used longest
    ago when ``models_kept()`` are kept already. Reduced precision is always built anew: its
    certificate belongs to the run whose first batch made it."""
    if config.mixed_precision != "none":
        return LayerExtractor(config, weights_file)
    key = (config, _file_identity(weights_file))
    with _building:
        if key in _kept:
            _kept.move_to_end(key)
            return _kept[key]
        while len(_kept) >= models_kept():
            _kept.popitem(last=False)  # the old one can go before the new one is built
        model = LayerExtractor(config, weights_file)
        _kept[key] = model
        return model
