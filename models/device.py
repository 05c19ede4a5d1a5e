"""TensorFlow device setup for one worker process: GPU memory growth, and what runs where."""

from __future__ import annotations

import logging

_log = logging.getLogger(__name__)


def configure_devices() -> str:
    """Turn on memory growth for every GPU (so several processes can share one) and return
    the device the model will run on, e.g. '/device:GPU:0' or '/device:CPU:0'."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as exc:  # Already initialised in this process: keep its setting.
            _log.info("memory growth unchanged for %s: %s", gpu.name, exc)
    logical = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    device = logical[0].name
    _log.info("model device: %s (GPUs visible: %d)", device, len(gpus))
    return device
