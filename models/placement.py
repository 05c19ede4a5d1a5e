"""Which GPU each model runs on, and pinning a process to it through CUDA_VISIBLE_DEVICES.

``--gpus auto`` (every GPU the driver lists, or those CUDA_VISIBLE_DEVICES already allows),
``none`` (the CPU), or indexes such as ``0,2``. Model copy i runs on GPU i mod G of the
chosen G. A model per process (no model processes: a user's own RunInference, or
``--model_copies`` unset) takes the GPU with the fewest live processes of the same job on
this machine, from claim files, so processes spread over the GPUs instead of all landing
on GPU 0 as TensorFlow's default would place them.

CUDA reads CUDA_VISIBLE_DEVICES when it initialises, so it is set in the model's process
before TensorFlow touches a GPU; a GPU is named by its UUID when the driver gave one (MPS
and CUDA's own FASTEST_FIRST order renumber indexes), else by index with
CUDA_DEVICE_ORDER=PCI_BUS_ID so that index i is nvidia-smi's GPU i."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import sys
import tempfile

import fasteners

from models.gpus import Gpu, GpuListing, list_gpus

_log = logging.getLogger(__name__)

#: Where a machine's model processes keep their lock and address files, and per-process
#: models their GPU claims.
STATE_DIR = os.path.join(tempfile.gettempdir(), "resnet50-embeddings-models")
GPUS_AUTO = "auto"
GPUS_NONE = "none"
VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
DEVICE_ORDER = "CUDA_DEVICE_ORDER"


def parse_gpus(value: str | None) -> str | tuple[int, ...]:
    """``auto``, ``none`` or comma-separated GPU indexes (``0,2``), as the driver numbers
    them; raises ValueError naming --gpus."""
    text = (value or GPUS_AUTO).strip().lower()
    if text in (GPUS_AUTO, GPUS_NONE):
        return text
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise ValueError(f"--gpus {value!r}: give auto, none, or GPU indexes such as 0,2")
    indexes = tuple(int(part) for part in parts)
    if len(set(indexes)) != len(indexes):
        raise ValueError(f"--gpus {value!r} names a GPU twice")
    return indexes


def visible_to_this_process(listing: GpuListing, environ=os.environ) -> tuple[Gpu, ...]:
    """The listed GPUs that CUDA_VISIBLE_DEVICES (when set) leaves visible, in its order:
    entries are indexes or UUIDs (or UUID prefixes), as CUDA takes them."""
    given = environ.get(VISIBLE_DEVICES)
    if given is None:
        return listing.gpus
    chosen = []
    for entry in (part.strip() for part in given.split(",")):
        if not entry:
            break  # CUDA stops at the first invalid entry; an empty value hides every GPU
        match = [gpu for gpu in listing.gpus if (entry.isdigit() and gpu.index == int(entry))
                 or (gpu.uuid and gpu.uuid.startswith(entry) and not entry.isdigit())]
        if not match:
            break
        chosen.append(match[0])
    return tuple(chosen)


@dataclasses.dataclass(frozen=True)
class Target:
    """Where to run: ``gpu`` (None: the CPU) and what CUDA_VISIBLE_DEVICES becomes
    (``visible``; None: left as it is, "" hides every GPU)."""

    gpu: Gpu | None
    visible: str | None
    reason: str

    def record(self) -> dict:
        return {"gpu": None if self.gpu is None else self.gpu.record(),
                VISIBLE_DEVICES: self.visible, "placement": self.reason}


def _chosen(choice, listing: GpuListing) -> tuple[list, str]:
    """The GPUs ``choice`` selects, each a Gpu or (for an index the driver did not list) a
    bare index, and a note."""
    if choice == GPUS_NONE:
        return [], "--gpus none"
    if choice == GPUS_AUTO:
        gpus = visible_to_this_process(listing)
        how = (f"{VISIBLE_DEVICES}={os.environ[VISIBLE_DEVICES]}" if VISIBLE_DEVICES in os.environ
               else f"listed by {listing.source}")
        return list(gpus), f"--gpus auto: {len(gpus)} GPU(s) {how}"
    by_index = {gpu.index: gpu for gpu in listing.gpus}
    missing = [index for index in choice if index not in by_index]
    if missing:
        _log.warning("--gpus %s: the driver lists no GPU %s on %s (%s); CUDA will find no such "
                     "device and TensorFlow runs on the CPU", ",".join(map(str, choice)),
                     ",".join(map(str, missing)), socket.gethostname(), listing.source)
    return [by_index.get(index, index) for index in choice], f"--gpus {','.join(map(str, choice))}"


def _target(entry, reason: str) -> Target:
    if isinstance(entry, Gpu):
        return Target(entry, entry.uuid or str(entry.index), reason)
    return Target(None, str(entry), reason)


def target_for_copy(copy: int, choice, listing: GpuListing) -> Target:
    """Model copy ``copy`` runs on the chosen GPU ``copy mod G``; the CPU when none is
    chosen (and every GPU hidden for ``--gpus none``)."""
    gpus, note = _chosen(choice, listing)
    if not gpus:
        return Target(None, "" if choice == GPUS_NONE else None, f"{note}: CPU")
    entry = gpus[copy % len(gpus)]
    return _target(entry, f"{note}: copy {copy} -> GPU {copy % len(gpus)} of {len(gpus)} (copy mod G)")


def claims_folder(model_tag: str) -> str:
    """Where the per-process models of one job (its handler's model tag) claim GPUs."""
    return os.path.join(STATE_DIR, "claims", model_tag)


class ProcessClaims:
    """Claim files of one job's per-process models on this machine, under ``folder``: each
    records a pid and the GPU (position among the chosen) it took. A new process takes the
    position with the fewest live claims (ties: the lowest), under a file lock."""

    def __init__(self, folder: str):
        self.folder = folder

    def claim(self, positions: int) -> int:
        os.makedirs(self.folder, exist_ok=True)
        with fasteners.InterProcessLock(os.path.join(self.folder, ".lock")):
            load = [0] * positions
            for name in os.listdir(self.folder):
                if not name.startswith("pid-"):
                    continue
                path = os.path.join(self.folder, name)
                try:
                    with open(path, encoding="utf-8") as handle:
                        claim = json.load(handle)
                except (OSError, ValueError):
                    continue
                if claim.get("pid") == os.getpid() or not _alive(claim.get("pid")):
                    _remove(path)
                elif 0 <= claim.get("position", -1) < positions:
                    load[claim["position"]] += 1
            position = load.index(min(load))
            with open(os.path.join(self.folder, f"pid-{os.getpid()}"), "w", encoding="utf-8") as handle:
                json.dump({"pid": os.getpid(), "position": position}, handle)
        return position


def target_for_process(choice, listing: GpuListing, claims: ProcessClaims) -> Target:
    """A model per process: the least-claimed of the chosen GPUs on this machine."""
    gpus, note = _chosen(choice, listing)
    if not gpus:
        return Target(None, "" if choice == GPUS_NONE else None, f"{note}: CPU")
    position = claims.claim(len(gpus)) if len(gpus) > 1 else 0
    return _target(gpus[position], f"{note}: this process -> GPU {position} of {len(gpus)} "
                                   "(fewest processes of this job)")


def cuda_untouched() -> bool:
    """True while CUDA_VISIBLE_DEVICES can still take effect in this process: TensorFlow
    not imported, or imported with neither its context nor its devices initialised."""
    context = sys.modules.get("tensorflow.python.eager.context")
    if context is None:
        return True
    current = getattr(context, "_context", None)
    return current is None or (getattr(current, "_context_handle", None) is None
                               and getattr(current, "_physical_devices", None) is None)


def pin(target: Target) -> bool:
    """Set CUDA_VISIBLE_DEVICES (and PCI bus order) for ``target`` in this process; False,
    with a warning, when CUDA is already initialised here and the setting would not apply."""
    if target.visible is None:
        return True
    if not cuda_untouched():
        _log.warning("%s=%s not applied: TensorFlow already initialised its devices in "
                     "process %d", VISIBLE_DEVICES, target.visible, os.getpid())
        return False
    os.environ[DEVICE_ORDER] = "PCI_BUS_ID"
    os.environ[VISIBLE_DEVICES] = target.visible
    return True


def describe_process(target: Target, *, copy: int | None, pinned: bool) -> dict:
    """What the manifest records about where a model process runs."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "copy": copy, **target.record(),
            "pinned": pinned}


def machine_listing() -> GpuListing:
    """The driver's listing of this machine (never CUDA)."""
    return list_gpus()


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
