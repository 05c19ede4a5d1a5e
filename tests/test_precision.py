"""models/precision.py: auto precision and batch size by device, XLA's auto, and the
certificate's arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from models.gpus import Gpu, accelerator_gpus
from models.precision import (
    BFLOAT16,
    FLOAT16,
    FLOAT32,
    Device,
    PrecisionCertificateFailed,
    auto_precision,
    certify,
    cpu_flags,
    default_batch_size,
    jit_for,
    layer_cosines,
    precision_warning,
)


def gpus(*names):
    from models.gpus import capability_from_name

    return Device(gpus=tuple(Gpu(i, name, None, capability_from_name(name)) for i, name in enumerate(names)))


@pytest.mark.parametrize("device, precision", [
    (gpus("Tesla T4"), FLOAT16), (gpus("Tesla V100-SXM2-16GB"), FLOAT16),
    (gpus("NVIDIA A100-SXM4-40GB"), BFLOAT16), (gpus("NVIDIA L4", "NVIDIA L4"), BFLOAT16),
    (gpus("NVIDIA H100 80GB HBM3"), BFLOAT16),
    (gpus("NVIDIA L4", "Tesla T4"), FLOAT16),  # every chosen GPU must run it: the lowest decides
    (gpus("Tesla P100-PCIE-16GB"), FLOAT32), (gpus("Matrox G200"), FLOAT32),
    (Device(cpu_flags=frozenset({"avx2", "avx512_bf16"})), BFLOAT16),
    (Device(cpu_flags=frozenset({"avx2", "amx_bf16", "amx_tile"})), BFLOAT16),
    (Device(cpu_flags=frozenset({"avx2", "avx512f"})), FLOAT32),
    (Device(cpu_flags=None), FLOAT32),
])
def test_auto_precision(device, precision):
    resolved, reason = auto_precision(device)
    assert resolved == precision and reason


def test_dataflow_types_resolve_as_their_gpus():
    assert auto_precision(Device(gpus=accelerator_gpus("nvidia-tesla-t4", 1)))[0] == FLOAT16
    assert auto_precision(Device(gpus=accelerator_gpus("nvidia-l4", 2)))[0] == BFLOAT16


def test_emulated_precisions_are_warned_about():
    assert "emulated" in precision_warning(BFLOAT16, gpus("Tesla T4"))
    assert "no tensor cores" in precision_warning(FLOAT16, gpus("Tesla P4"))
    assert precision_warning(BFLOAT16, gpus("NVIDIA L4")) is None
    assert "emulated" in precision_warning(BFLOAT16, Device(cpu_flags=frozenset({"avx2"})))
    assert precision_warning(BFLOAT16, Device(cpu_flags=frozenset({"avx512_bf16"}))) is None


@pytest.mark.parametrize("device, precision, size, batch", [
    (Device(cpu_flags=frozenset()), FLOAT32, 224, 32),
    (Device(cpu_flags=frozenset()), BFLOAT16, 448, 32),
    (gpus("Tesla T4"), FLOAT16, 224, 64),
    (gpus("Tesla V100-SXM2-16GB"), FLOAT16, 224, 128),
    (gpus("NVIDIA A100-SXM4-40GB"), BFLOAT16, 224, 64),
    (gpus("NVIDIA A100-SXM4-40GB"), FLOAT32, 224, 256),
    (gpus("NVIDIA A100-SXM4-40GB"), FLOAT32, 448, 64),  # four times the pixels, a quarter
    (gpus("NVIDIA L4"), BFLOAT16, 300, 32),  # 64 x 0.56 -> the power of two below
    (gpus("NVIDIA L4"), BFLOAT16, 32, 64),  # never above the table's batch
])
def test_default_batch_size(device, precision, size, batch):
    resolved, reason = default_batch_size(device, precision, size, size)
    assert resolved == batch and reason.startswith("default")


def test_jit_auto_is_on_for_a_gpu_only():
    assert jit_for("auto", True) and not jit_for("auto", False)
    assert jit_for("on", False) and not jit_for("off", True)


def test_this_machines_cpu_flags_are_read(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(str(info)) == frozenset({"fpu", "avx2", "avx512_bf16"})
    assert cpu_flags(str(tmp_path / "absent")) is None


def test_cosines_per_layer_against_an_independent_computation():
    rng = np.random.default_rng(0)
    reference = {"a": rng.normal(size=(5, 8)), "b": rng.normal(size=(5, 2, 2, 3))}
    noisy = {name: value + rng.normal(scale=0.1, size=value.shape) for name, value in reference.items()}
    cosines = layer_cosines(noisy, reference)
    for name in reference:
        x, y = noisy[name].reshape(5, -1), reference[name].reshape(5, -1)
        expected = [float(np.dot(x[i], y[i]) / np.linalg.norm(x[i]) / np.linalg.norm(y[i])) for i in range(5)]
        assert cosines[name]["min"] == pytest.approx(min(expected), abs=1e-6)
        assert cosines[name]["mean"] == pytest.approx(np.mean(expected), abs=1e-6)


def test_zero_rows_and_overflow():
    reference = {"a": np.array([[0.0, 0.0], [1.0, 2.0], [1.0, 1.0]])}
    reduced = {"a": np.array([[0.0, 0.0], [np.inf, 2.0], [0.0, 0.0]], np.float16)}
    cosines = layer_cosines(reduced, reference)
    assert cosines["a"]["min"] == -1.0  # overflow: no agreement, never NaN (NaN < x is False)
    assert layer_cosines({"a": reference["a"]}, reference)["a"]["min"] == 1.0
    # A NaN row (what float16 overflow gives on some CPUs) is an overflow too, not a 0.
    nan_row = {"a": np.array([[0.0, 0.0], [np.nan, 2.0], [1.0, 1.0]], np.float16)}
    assert layer_cosines(nan_row, reference)["a"] == {"min": -1.0, "mean": pytest.approx((1 - 1 + 1) / 3, abs=1e-6)}


def test_a_certificate_under_the_minimum_names_the_worst_layer():
    cosines = {"res2": {"min": 0.999, "mean": 0.9995}, "res4": {"min": 0.95, "mean": 0.97},
               "res5": {"min": 0.90, "mean": 0.93}}
    with pytest.raises(PrecisionCertificateFailed, match=r"layer res5 has min cosine 0\.900000 .* float16 .*"
                                                          r"--min_cosine 0\.99, res4 0\.950000"):
        certify(cosines, precision=FLOAT16, min_cosine=0.99, images=32)
    certify(cosines, precision=FLOAT16, min_cosine=0.9, images=32)
