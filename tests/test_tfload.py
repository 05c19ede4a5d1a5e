"""models/tfload.py: TensorFlow's start-up lines filtered out of file descriptor 2, the
rest kept."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from models import tfload

NOISE = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
         b"I0000 00:00:1.2 7746 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n"
         b"E0000 00:00:1.3 7951 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n"
         b"I0000 00:00:1.4 7951 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n"
         b"To enable the following instructions: AVX2 FMA, in other operations, rebuild\n")


def test_noise_is_dropped_and_every_other_line_kept_in_order(capfd):
    with tfload.native_stderr_filtered(tfload.noise_pattern(gpu_machine=False)):
        os.write(2, b"first real line\n" + NOISE + b"E0000 something that matters\n")
    assert capfd.readouterr().err == "first real line\nE0000 something that matters\n"


def test_on_a_gpu_machine_the_cuda_lines_are_kept(capfd):
    with tfload.native_stderr_filtered(tfload.noise_pattern(gpu_machine=True)):
        os.write(2, NOISE)
    err = capfd.readouterr().err
    assert "Could not find cuda drivers" in err and "failed call to cuInit" in err
    assert "absl::InitializeLog" not in err and "cpu_feature_guard" not in err


def test_the_descriptor_is_restored_when_the_block_raises(capfd):
    with pytest.raises(RuntimeError):
        with tfload.native_stderr_filtered():
            raise RuntimeError("boom")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_loading_tensorflow_and_listing_devices_prints_nothing_without_a_gpu():
    if tfload.has_nvidia_device():
        pytest.skip("this machine has a GPU: its CUDA lines are kept on purpose")
    code = ("from models.device import configure_devices; configure_devices(); "
            "import tf_keras; print('loaded')")
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=300)
    assert done.stdout.strip() == "loaded", done.stderr[-2000:]
    noise = [line for line in done.stderr.splitlines() if "models.device" not in line]
    assert noise == [], done.stderr


@pytest.mark.slow
def test_the_model_runs_on_the_bfc_host_allocator_unless_the_user_chose_one():
    """In a process whose environment says nothing, loading TensorFlow through tfload turns
    on its BFC host allocator; a user's own TF_CPU_ALLOCATOR_USE_BFC=false is kept, and what
    TensorFlow started with is what the process reports, whatever the environment says later."""
    name = tfload.HOST_ALLOCATOR[0]
    code = ("import numpy as np; from models.tfload import tensorflow, host_allocator; tf = tensorflow(); "
            "tf.reduce_sum(tf.ones((256, 256))).numpy(); import os; "
            f"os.environ['{name}'] = 'flipped'; print(os.environ.get('{name}'), host_allocator())")
    clean = {key: value for key, value in os.environ.items() if key != name}
    chosen = {}
    for label, env in (("unset", clean), ("false", {**clean, name: "false"})):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        chosen[label] = done.stdout.strip().splitlines()[-1]
    assert chosen == {"unset": "flipped bfc", "false": "flipped default"}
