"""pipeline/quiet.py: TensorFlow's CUDA probe errors hidden on a machine without a GPU."""

import pytest

from pipeline import quiet


@pytest.mark.parametrize("given,gpu,expected", [
    (None, False, "3"), ("2", False, "3"), ("0", False, "0"), ("1", False, "1"), ("3", False, "3"),
    (None, True, None), ("2", True, "2"),
])
def test_the_log_level_is_raised_only_without_a_gpu_and_only_when_quiet_was_asked(
        monkeypatch, given, gpu, expected):
    if given is None:
        monkeypatch.delenv(quiet.LOG_LEVEL_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(quiet.LOG_LEVEL_VARIABLE, given)
    monkeypatch.setattr(quiet, "has_nvidia_device", lambda: gpu)
    quiet.quiet_tensorflow_without_gpu()
    import os

    assert os.environ.get(quiet.LOG_LEVEL_VARIABLE) == expected


def test_a_cli_process_prints_no_cuda_probe_errors_without_a_gpu(tmp_path):
    import subprocess
    import sys

    if quiet.has_nvidia_device():
        pytest.skip("this machine has a GPU: nothing to hide")
    code = ("import pipeline.run, tensorflow as tf; tf.config.list_physical_devices('GPU'); "
            "print('devices listed')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"},
                            cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert "devices listed" in result.stdout, result.stderr[-2000:]
    assert "cuInit" not in result.stderr
