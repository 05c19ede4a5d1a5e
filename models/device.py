"""TensorFlow device setup inside a process that holds a model: GPU memory growth, and the
device the model runs on. Only a model's process calls this (it creates a CUDA context on
every GPU the process sees, which models/placement.py has narrowed to one)."""

from __future__ import annotations

import logging

_log = logging.getLogger(__name__)


def configure_devices() -> tuple[str, dict | None]:
    """Turn on memory growth for every visible GPU (so several processes, or several model
    copies, can share one) and return the device the model will run on, e.g.
    '/device:GPU:0' or '/device:CPU:0', with TensorFlow's details of that GPU (name and
    compute capability) or None on a CPU."""
    from models.tfload import native_stderr_filtered, tensorflow

    tf = tensorflow()
    with native_stderr_filtered():  # the first listing initialises CUDA (cuInit)
        gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as exc:  # Already initialised in this process: keep its setting.
            _log.info("memory growth unchanged for %s: %s", gpu.name, exc)
    details = None
    if gpus:
        try:
            found = tf.config.experimental.get_device_details(gpus[0])
            capability = found.get("compute_capability")
            details = {"name": found.get("device_name"),
                       "compute_capability": None if not capability else "%d.%d" % tuple(capability)}
        except (RuntimeError, ValueError, TypeError) as exc:
            _log.info("no details for %s: %s", gpus[0].name, exc)
    logical = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    device = logical[0].name
    _log.info("model device: %s (GPUs visible: %d)", device, len(gpus))
    return device, details
