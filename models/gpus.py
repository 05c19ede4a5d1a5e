"""The GPUs of a machine as the NVIDIA driver lists them, and of a Dataflow accelerator type,
without creating a CUDA context.

``tf.config.list_physical_devices("GPU")`` initialises CUDA on every visible GPU (about
100 MB or more of device memory each, tensorflow#26460): the launcher and the SDK processes,
which only decode, must never call it. The driver's own listing does not: ``nvidia-smi
--query-gpu=...`` first, then ``/proc/driver/nvidia/gpus/*/information`` (no compute
capability there: it comes from the model name). Everything here is plain text parsing,
tested on listings given as text."""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import subprocess
from typing import NamedTuple

NVIDIA_SMI_QUERY = ("index", "uuid", "name", "compute_cap", "memory.total")
PROC_GPUS = "/proc/driver/nvidia/gpus"
SMI_TIMEOUT_SECONDS = 20

#: Compute capability by model name, for listings that do not give it (old drivers,
#: /proc) and for Dataflow's accelerator types. NVIDIA's CUDA GPUs table.
_CAPABILITY_BY_NAME = (
    ("H200", (9, 0)), ("H100", (9, 0)), ("GH200", (9, 0)), ("B200", (10, 0)),
    ("L40S", (8, 9)), ("L40", (8, 9)), ("L4", (8, 9)), ("RTX 40", (8, 9)), ("RTX 6000 Ada", (8, 9)),
    ("A100", (8, 0)), ("A30", (8, 0)), ("A10G", (8, 6)), ("A10", (8, 6)), ("A40", (8, 6)),
    ("A16", (8, 6)), ("A2", (8, 6)), ("RTX 30", (8, 6)), ("RTX A", (8, 6)),
    ("T4", (7, 5)), ("RTX 20", (7, 5)), ("Quadro RTX", (7, 5)), ("TITAN RTX", (7, 5)),
    ("V100", (7, 0)), ("TITAN V", (7, 0)),
    ("P100", (6, 0)), ("P40", (6, 1)), ("P4", (6, 1)), ("GTX 10", (6, 1)),
    ("K80", (3, 7)),
)

#: Dataflow's accelerator types (``worker_accelerator=type:...``) -> the GPU's name.
DATAFLOW_ACCELERATORS = {
    "nvidia-tesla-k80": "Tesla K80",
    "nvidia-tesla-p4": "Tesla P4",
    "nvidia-tesla-p100": "Tesla P100",
    "nvidia-tesla-v100": "Tesla V100",
    "nvidia-tesla-t4": "Tesla T4",
    "nvidia-tesla-a100": "A100-SXM4-40GB",
    "nvidia-a100-80gb": "A100-SXM4-80GB",
    "nvidia-l4": "L4",
    "nvidia-h100-80gb": "H100 80GB HBM3",
    "nvidia-h100-mega-80gb": "H100 Mega 80GB HBM3",
}


@dataclasses.dataclass(frozen=True)
class Gpu:
    """One GPU: the driver's index (PCI bus order), its UUID (``GPU-...``; what
    CUDA_VISIBLE_DEVICES should name, since MPS and CUDA's own ordering renumber indexes),
    name, compute capability (major, minor) and memory in MiB, when known."""

    index: int
    name: str
    uuid: str | None = None
    compute_capability: tuple[int, int] | None = None
    memory_mib: int | None = None

    @property
    def capability_text(self) -> str | None:
        cc = self.compute_capability
        return None if cc is None else f"{cc[0]}.{cc[1]}"

    def record(self) -> dict:
        return {"index": self.index, "uuid": self.uuid, "name": self.name,
                "compute_capability": self.capability_text, "memory_mib": self.memory_mib}


class GpuListing(NamedTuple):
    """The GPUs found, where they were read from (``nvidia-smi``, ``/proc/driver/nvidia``,
    or ``none``), and what was tried, in words, for a person who expected a GPU."""

    gpus: tuple[Gpu, ...]
    source: str
    tried: tuple[str, ...] = ()

    def record(self) -> dict:
        return {"source": self.source, "gpus": [gpu.record() for gpu in self.gpus],
                "tried": list(self.tried)}


def capability_from_name(name: str) -> tuple[int, int] | None:
    """A compute capability from a GPU's model name (``Tesla T4`` -> (7, 5)), or None."""
    for fragment, capability in _CAPABILITY_BY_NAME:
        if re.search(rf"(^|[\s-]){re.escape(fragment)}", name, flags=re.IGNORECASE):
            return capability
    return None


def _capability(text: str, name: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else capability_from_name(name)


def _int_prefix(text: str) -> int | None:
    match = re.match(r"\s*(\d+)", text or "")
    return int(match.group(1)) if match else None


def parse_nvidia_smi(text: str, query: tuple[str, ...] = NVIDIA_SMI_QUERY) -> tuple[Gpu, ...]:
    """``nvidia-smi --query-gpu=<query> --format=csv,noheader`` (by default index, uuid,
    name, compute_cap, memory.total; memory as ``15360 MiB``, or ``[N/A]``) -> GPUs by
    index. Lines that are not GPU rows (warnings) are left out."""
    gpus = []
    for line in text.splitlines():
        values = [field.strip() for field in line.split(",")]
        if len(values) != len(query) or not values[0].isdigit():
            continue
        fields = dict(zip(query, values))
        index, uuid, name = int(fields["index"]), fields.get("uuid", ""), fields.get("name", "")
        capability = _capability(fields.get("compute_cap", ""), name)
        memory = _int_prefix(fields.get("memory.total", ""))
        gpus.append(Gpu(index, name, uuid if uuid.startswith(("GPU-", "MIG-")) else None,
                        capability, memory))
    return tuple(sorted(gpus, key=lambda gpu: gpu.index))


def parse_proc_information(texts: list[str]) -> tuple[Gpu, ...]:
    """The text of each ``/proc/driver/nvidia/gpus/<bus>/information`` file (``Model:``,
    ``GPU UUID:``, ``Bus Location:``, ``Device Minor:``) -> GPUs, indexed in PCI bus order
    as nvidia-smi indexes them."""
    found = []
    for text in texts:
        fields = {}
        for line in text.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        name = fields.get("model", "")
        if not name:
            continue
        uuid = fields.get("gpu uuid") or None
        found.append((fields.get("bus location", ""), name, uuid))
    found.sort()
    return tuple(Gpu(index, name, uuid, capability_from_name(name))
                 for index, (_, name, uuid) in enumerate(found))


def _run_nvidia_smi(executable: str, fields: tuple[str, ...]) -> str:
    result = subprocess.run([executable, f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
                            capture_output=True, text=True, timeout=SMI_TIMEOUT_SECONDS, check=False)
    if result.returncode != 0:
        raise OSError((result.stderr or result.stdout).strip().splitlines()[-1:] or
                      [f"exit code {result.returncode}"])
    return result.stdout


def list_gpus(*, nvidia_smi: str = "nvidia-smi", proc_root: str = PROC_GPUS) -> GpuListing:
    """This machine's GPUs from the NVIDIA driver, never through CUDA. Empty (source
    ``none``) on a machine without the driver; ``tried`` says what was looked at."""
    tried = []
    for fields in (NVIDIA_SMI_QUERY, tuple(f for f in NVIDIA_SMI_QUERY if f != "compute_cap")):
        try:
            gpus = parse_nvidia_smi(_run_nvidia_smi(nvidia_smi, fields), fields)
        except FileNotFoundError:
            tried.append(f"{nvidia_smi}: not found")
            break
        except (OSError, subprocess.SubprocessError) as exc:
            tried.append(f"{nvidia_smi} --query-gpu={','.join(fields)}: {exc}")
            continue
        if gpus:
            return GpuListing(gpus, "nvidia-smi", tuple(tried))
        tried.append(f"{nvidia_smi}: no GPU listed")
        break
    files = sorted(glob.glob(os.path.join(proc_root, "*", "information")))
    texts = []
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                texts.append(handle.read())
        except OSError as exc:
            tried.append(f"{path}: {exc.strerror}")
    gpus = parse_proc_information(texts)
    if gpus:
        return GpuListing(gpus, "/proc/driver/nvidia", tuple(tried))
    tried.append(f"{proc_root}: {'no GPU information' if files else 'absent (no NVIDIA driver loaded)'}")
    return GpuListing((), "none", tuple(tried))


def parse_accelerator(text: str | None) -> tuple[str, int] | None:
    """``type:nvidia-l4;count:2;install-nvidia-driver`` (a worker_accelerator service
    option's value, or a resource hint) -> ("nvidia-l4", 2); None when there is no type."""
    if not text:
        return None
    fields = {}
    for part in text.split(";"):
        key, _, value = part.partition(":")
        fields[key.strip()] = value.strip()
    kind = fields.get("type")
    if not kind:
        return None
    count = fields.get("count", "1")
    return kind, int(count) if count.isdigit() else 1


def accelerator_setting(settings: list[str]) -> str | None:
    """The value of ``worker_accelerator=...`` among Dataflow service options or
    experiments, or None."""
    for setting in settings:
        key, _, value = setting.partition("=")
        if key.strip() == "worker_accelerator":
            return value
    return None


def accelerator_gpus(kind: str, count: int) -> tuple[Gpu, ...]:
    """The GPUs a Dataflow worker with ``count`` accelerators of ``kind`` has, as far as
    the type tells (name and compute capability; no UUIDs). Unknown types keep their name
    and no capability."""
    name = DATAFLOW_ACCELERATORS.get(kind, kind)
    return tuple(Gpu(index, name, None, capability_from_name(name)) for index in range(count))
