"""Before TensorFlow loads: no CUDA probe errors on a machine that has no GPU.

On a machine without an NVIDIA driver, every process that loads TensorFlow logs
``E0000 ... cuda_platform.cc:52] failed call to cuInit: ... UNKNOWN ERROR (303)``, an
error level line that TF_CPP_MIN_LOG_LEVEL=2 keeps. When the machine has no
``/dev/nvidia*`` device and TF_CPP_MIN_LOG_LEVEL is unset or 2 (asking for quiet), the
launcher sets it to 3 (errors hidden; Python exceptions are unaffected), and Beam's local
worker processes inherit it. 0 or 1 (asking for more) are kept. A machine with a GPU, and Dataflow's workers, are left as they are. Imported
first by ``pipeline.run``. What TF_CPP_MIN_LOG_LEVEL does not hide (the start-up lines
TensorFlow writes before its logging starts) models/tfload.py filters."""

from __future__ import annotations

import os

from models.tfload import has_nvidia_device

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"


def quiet_tensorflow_without_gpu() -> bool:
    """Set TF_CPP_MIN_LOG_LEVEL=3 when it is unset or 2 and no GPU device exists; True when set."""
    if os.environ.get(LOG_LEVEL_VARIABLE, "2").strip() not in ("", "2"):
        return False
    if has_nvidia_device() or not os.path.isdir("/dev"):
        return False
    os.environ[LOG_LEVEL_VARIABLE] = "3"
    return True
