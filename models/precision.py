"""Precision, XLA and batch size for the device a model runs on, and the accuracy
certificate of reduced precision.

Rules, from NVIDIA's TensorFlow ResNet50 v1.5 inference tables (DeepLearningExamples,
TF 20.06 container; images/s) and the CUDA compute capabilities:

- float16 needs tensor cores, compute capability >= 7.0 (V100 7.0, T4 7.5): T4 fp32 415,
  AMP 972 at batch 32. bfloat16 needs >= 8.0 (A100 8.0, L4 8.9, H100 9.0); on a T4 it is
  emulated and slower than float32. ``auto``: bfloat16 from 8.0 (its range is float32's, so
  no overflow in deep layers), float16 on 7.x, float32 below; on a CPU, bfloat16 where it
  has AVX512_BF16 or AMX (oneDNN runs it natively: 1.6-1.8x float32 here), else float32.
- Batch size: the smallest batch within 3% of each table's best. T4 (7.5) plateaus from
  64 (fp32 424 at 64, 430 at 128; AMP 991 at 64, 996 at 128). V100 (7.0) peaks at 128
  (AMP 2,771; +XLA 2,964). A100 (8.x) in reduced precision peaks at 64 (AMP 3,570 at 64,
  3,475 at 128; AMP+XLA 3,941 at 64), in TF32 at 256 (1,912; 1,876 at 128). L4 and H100
  (no TensorFlow table) follow the A100. A CPU keeps 32 (larger batches measured no faster
  here). The GPU batch is for 224x224 inputs and shrinks with larger ones (same pixels).
- XLA: on a GPU +5-33% in those tables at batch >= 32 (A100 TF32 1,912 -> 2,549 at 256, T4
  AMP 972 -> 1,090 at 32); on this project's CPU it measured slower, so ``auto`` is on for a
  GPU and off for a CPU.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from models.gpus import Gpu
from schemas import DEFAULT_MIN_COSINE  # noqa: F401  (re-exported: the certificate's default)

FLOAT32 = "none"  # the --mixed_precision value for plain float32
FLOAT16, BFLOAT16, AUTO = "float16", "bfloat16", "auto"
JIT_ON, JIT_OFF = "on", "off"
CPU_BATCH = 32
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
REFERENCE_PIXELS = 224 * 224


class PrecisionCertificateFailed(RuntimeError):
    """A reduced-precision model's first batch differs from float32 beyond --min_cosine:
    the run stops before that model writes an embedding."""


@dataclasses.dataclass(frozen=True)
class Device:
    """What a model will run on, as known before it is loaded: GPUs (from the driver, or a
    Dataflow accelerator type), or a CPU with its feature flags (None: not known, e.g. a
    Dataflow CPU worker seen from the launcher)."""

    gpus: tuple[Gpu, ...] = ()
    cpu_flags: frozenset | None = None
    where: str = ""

    @property
    def is_gpu(self) -> bool:
        return bool(self.gpus)

    def lowest_capability(self) -> tuple[int, int] | None:
        capabilities = [gpu.compute_capability for gpu in self.gpus]
        if not capabilities or None in capabilities:
            return None
        return min(capabilities)

    def describe(self) -> str:
        if self.gpus:
            names = sorted({f"{gpu.name} (compute capability {gpu.capability_text or 'unknown'})"
                            for gpu in self.gpus})
            return f"{len(self.gpus)} GPU(s): {', '.join(names)}{self.where}"
        if self.cpu_flags is None:
            return f"CPU (features unknown){self.where}"
        bf16 = [flag for flag in CPU_BF16_FLAGS if flag in self.cpu_flags]
        return f"CPU ({', '.join(bf16) if bf16 else 'no bfloat16 instructions'}){self.where}"


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset | None:
    """This machine's CPU feature flags (Linux), or None when they cannot be read."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            match = re.search(r"^flags\s*:\s*(.*)$", handle.read(), flags=re.MULTILINE)
    except OSError:
        return None
    return frozenset(match.group(1).split()) if match else None


def auto_precision(device: Device) -> tuple[str, str]:
    """The --mixed_precision value ``auto`` stands for on ``device``, and why."""
    if device.is_gpu:
        capability = device.lowest_capability()
        if capability is None:
            return FLOAT32, f"{device.describe()}: compute capability unknown, float32"
        text = f"{capability[0]}.{capability[1]}"
        if capability >= (8, 0):
            return BFLOAT16, f"{device.describe()}: compute capability {text} >= 8.0, bfloat16"
        if capability >= (7, 0):
            return FLOAT16, f"{device.describe()}: compute capability {text} (7.x), float16 tensor cores"
        return FLOAT32, f"{device.describe()}: compute capability {text} < 7.0, float32"
    if device.cpu_flags is None:
        return FLOAT32, f"{device.describe()}: float32 (pass --mixed_precision bfloat16 for AMX/AVX512_BF16 workers)"
    if any(flag in device.cpu_flags for flag in CPU_BF16_FLAGS):
        return BFLOAT16, f"{device.describe()}: bfloat16"
    return FLOAT32, f"{device.describe()}: float32"


def precision_warning(precision: str, device: Device) -> str | None:
    """A warning when ``precision`` is emulated (slower than float32) on ``device``."""
    capability = device.lowest_capability() if device.is_gpu else None
    if capability is None:
        if (not device.is_gpu and device.cpu_flags is not None and precision == BFLOAT16
                and not any(flag in device.cpu_flags for flag in CPU_BF16_FLAGS)):
            return "bfloat16 on a CPU without AVX512_BF16 or AMX is emulated and slower than float32"
        return None
    if precision == BFLOAT16 and capability < (8, 0):
        return (f"bfloat16 on compute capability {capability[0]}.{capability[1]} (< 8.0) is emulated "
                "and slower than float32; float16 uses this GPU's tensor cores")
    if precision == FLOAT16 and capability < (7, 0):
        return f"float16 on compute capability {capability[0]}.{capability[1]} (< 7.0) has no tensor cores"
    return None


def _gpu_batch(capability: tuple[int, int] | None, precision: str) -> int:
    if capability is not None and capability >= (8, 0):
        return 256 if precision == FLOAT32 else 64
    if capability is not None and capability >= (7, 5):
        return 64
    if capability is not None and capability >= (7, 0):
        return 128
    return 64


def default_batch_size(device: Device, precision: str, height: int, width: int) -> tuple[int, str]:
    """The batch size for ``device`` at ``precision`` and an input of height x width, and
    why (module docstring)."""
    if not device.is_gpu:
        return CPU_BATCH, f"default for a CPU: {CPU_BATCH}"
    capability = device.lowest_capability()
    base = _gpu_batch(capability, precision)
    scale = min(1.0, REFERENCE_PIXELS / float(height * width))
    batch = 1
    while batch * 2 <= max(1, int(base * scale)):
        batch *= 2
    shown = "unknown" if capability is None else f"{capability[0]}.{capability[1]}"
    scaled = f", scaled to {height}x{width}" if batch != base else ""
    return batch, (f"default for compute capability {shown} at "
                   f"{'float32' if precision == FLOAT32 else precision}: {base} at 224x224{scaled}")


def jit_for(choice: str, on_gpu: bool) -> bool:
    """--jit_compile on|off|auto for a model on a GPU (auto: on) or a CPU (auto: off)."""
    if choice == JIT_ON:
        return True
    if choice == JIT_OFF:
        return False
    return on_gpu


def layer_cosines(reduced: dict, reference: dict) -> dict[str, dict]:
    """Per layer, the cosine similarity of each image's reduced-precision output with its
    float32 output: {"min": ..., "mean": ...}. Two zero vectors count as equal (1.0), a zero
    against a non-zero one as 0, and an overflow (inf or NaN, float16's failure) as -1."""
    result = {}
    for layer, expected in reference.items():
        x = np.asarray(reduced[layer], np.float64).reshape(len(expected), -1)
        y = np.asarray(expected, np.float64).reshape(len(expected), -1)
        norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
        both_zero = (np.linalg.norm(x, axis=1) == 0) & (np.linalg.norm(y, axis=1) == 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            cosine = np.where(norms > 0, (x * y).sum(axis=1) / np.where(norms > 0, norms, 1), 0.0)
        cosine = np.where(both_zero, 1.0, np.nan_to_num(cosine, nan=-1.0))
        cosine = np.where(np.isfinite(x).all(axis=1), cosine, -1.0)  # inf or NaN: no agreement
        result[layer] = {"min": round(float(cosine.min()), 6), "mean": round(float(cosine.mean()), 6)}
    return result


def certify(cosines: dict[str, dict], *, precision: str, min_cosine: float, images: int) -> None:
    """Raise PrecisionCertificateFailed naming the worst layer when any layer's minimum
    cosine is under ``min_cosine``."""
    failing = sorted((values["min"], layer) for layer, values in cosines.items() if values["min"] < min_cosine)
    if failing:
        value, layer = failing[0]
        others = "".join(f", {name} {v:.6f}" for v, name in failing[1:])
        raise PrecisionCertificateFailed(
            f"precision certificate failed: layer {layer} has min cosine {value:.6f} between "
            f"{precision} and float32 on the first batch of {images} images, under --min_cosine "
            f"{min_cosine}{others}; no embedding was written by this model. Use --mixed_precision "
            "none (float32), or lower --min_cosine if this is acceptable")
