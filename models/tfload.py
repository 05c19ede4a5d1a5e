"""TensorFlow loaded without its start-up noise.

Importing TensorFlow 2.21 writes, from C++ straight to file descriptor 2 and whatever
TF_CPP_MIN_LOG_LEVEL says: "WARNING: All log messages before absl::InitializeLog() ...",
"cudart_stub.cc ... Could not find cuda drivers" (twice), "cpu_feature_guard.cc ... This
TensorFlow binary is optimized ..." with its continuation line; and its first device
listing on a machine without an NVIDIA driver writes "E0000 ... failed call to cuInit".
None of it is actionable. ``native_stderr_filtered`` sends file descriptor 2 to a temporary
file for the duration and writes back every line that is not one of those, so real errors
still show (a little later). The CUDA lines are dropped only where no NVIDIA device exists:
on a GPU machine they mean something.

It also chooses TensorFlow's host-memory allocator (``HOST_ALLOCATOR``) before TensorFlow
starts, in every process that loads the model through here (local workers, model
processes, Dataflow workers, in-process runs)."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import sys
import tempfile

#: Lines TensorFlow writes on every start, on any machine.
ALWAYS_NOISE = (r"All log messages before absl::InitializeLog\(\) is called",
                r"cpu_feature_guard\.cc", r"^To enable the following instructions",
                r"oneDNN custom operations are on", r"TF_ENABLE_ONEDNN_OPTS=0",
                r"Unable to register cu(DNN|FFT|BLAS) factory", r"computation placer already registered")
#: Lines that only say there is no GPU: noise where the machine has none.
NO_GPU_NOISE = (r"cudart_stub\.cc.*Could not find cuda drivers", r"failed call to cuInit")


def has_nvidia_device() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/nvidiactl")


def noise_pattern(gpu_machine: bool) -> re.Pattern:
    return re.compile("|".join(ALWAYS_NOISE + (() if gpu_machine else NO_GPU_NOISE)))


@contextlib.contextmanager
def native_stderr_filtered(pattern: re.Pattern | None = None):
    """File descriptor 2 captured for the block, then written back without ``pattern``'s
    lines (default: noise_pattern for this machine)."""
    pattern = pattern or noise_pattern(has_nvidia_device())
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured if not pattern.search(line.decode("utf-8", "replace"))]
            if kept:
                os.write(2, b"".join(kept))


#: TensorFlow's own switch for its best-fit-with-coalescing allocator on the CPU
#: (``ProcessState::GetCPUAllocator``, read once when TensorFlow starts). The default
#: allocator hands each activation of a batch back to the system and gets fresh zeroed pages
#: next batch: ResNet50 at 224 took about 450,000 page faults per batch of 32 here, a fifth of
#: its CPU time in the kernel. BFC keeps the memory and reuses it: one process, one TF
#: thread, 5.2 -> 7.1 images/s, peak memory 1.47 -> 1.30 GB; the pipeline (640 photos, 2
#: workers) 0.89x the wall time (BENCHMARKS.md, issue 25 item 6). A value the user set wins.
HOST_ALLOCATOR = ("TF_CPU_ALLOCATOR_USE_BFC", "true")


def choose_host_allocator() -> None:
    """Ask for ``HOST_ALLOCATOR`` unless the environment already says; effective only before
    TensorFlow starts."""
    name, value = HOST_ALLOCATOR
    os.environ.setdefault(name, value)


def host_allocator() -> str:
    """Which host allocator this process's TensorFlow runs: "bfc" or "default", as
    TensorFlow decides it (``ReadBoolFromEnvVar``: "true" or "1" in any case is on, anything
    else off) from the environment it started with. Read from the switch, not from TensorFlow:
    whether the default allocator keeps statistics differs between machines."""
    name = HOST_ALLOCATOR[0]
    value = _STARTED_WITH.get(name, os.environ.get(name))
    return "bfc" if (value or "").strip().lower() in ("true", "1") else "default"


#: The allocator switch as it was when ``tensorflow()`` imported TensorFlow (later changes to
#: the environment do not reach it).
_STARTED_WITH: dict[str, str | None] = {}


def tensorflow():
    """The ``tensorflow`` module, imported (the first time) with its noise filtered and the
    host allocator chosen (``choose_host_allocator``)."""
    if "tensorflow" not in sys.modules:
        choose_host_allocator()
        _STARTED_WITH[HOST_ALLOCATOR[0]] = os.environ.get(HOST_ALLOCATOR[0])
        with native_stderr_filtered():
            import tensorflow  # noqa: F401  # pylint: disable=import-outside-toplevel,unused-import
    return sys.modules["tensorflow"]
