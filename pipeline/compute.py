"""Where the model will run, as the launcher can know it, and the settings that follow:
``--mixed_precision auto``, the default ``--batch_size`` and ``--model_copies``.

The launcher never creates a CUDA context. Locally it reads the NVIDIA driver's listing
(models/gpus.py) and the CPU's flags; for Dataflow it reads the accelerator type of the
``worker_accelerator`` service option (or of ``--accelerator_hint``, right fitting), since
the workers are not there yet. Resolving ``auto`` here, before the embedding key is
computed, is what keeps one key from ever holding embeddings made at two precisions: the
key names the precision that was resolved, and a machine that would resolve differently
writes under another key."""

from __future__ import annotations

import logging
from typing import NamedTuple

from apache_beam.options.pipeline_options import DebugOptions, GoogleCloudOptions, PipelineOptions

from models.gpus import accelerator_gpus, accelerator_setting, list_gpus, parse_accelerator
from models.placement import GPUS_NONE, parse_gpus, visible_to_this_process
from models.precision import AUTO, Device, auto_precision, cpu_flags, default_batch_size, precision_warning

_log = logging.getLogger(__name__)


class Compute(NamedTuple):
    """The launcher's resolution, recorded in the manifest under ``compute``."""

    device: Device
    precision: str
    precision_reason: str
    batch_size: int
    batch_reason: str
    model_copies: int | None
    copies_reason: str
    listing: dict | None

    def record(self) -> dict:
        return {"device": self.device.describe(), "gpus": [gpu.record() for gpu in self.device.gpus],
                "listing": self.listing,
                "mixed_precision": self.precision, "mixed_precision_reason": self.precision_reason,
                "batch_size": self.batch_size, "batch_size_reason": self.batch_reason,
                "model_copies": self.model_copies, "model_copies_reason": self.copies_reason}


def local_device(gpus_option: str) -> tuple[Device, dict]:
    """This machine, as the driver lists it, narrowed by --gpus (and CUDA_VISIBLE_DEVICES
    for auto); the CPU's flags for a machine (or a choice) without GPUs."""
    listing = list_gpus()
    choice = parse_gpus(gpus_option)
    if choice == GPUS_NONE:
        gpus = ()
    elif isinstance(choice, tuple):
        gpus = tuple(gpu for gpu in listing.gpus if gpu.index in choice)
    else:
        gpus = visible_to_this_process(listing)
    where = f" on this machine ({listing.source})"
    return Device(gpus=gpus, cpu_flags=None if gpus else cpu_flags(), where=where), listing.record()


def dataflow_device(pipeline_options: PipelineOptions, hint: str | None) -> Device:
    """Dataflow workers, from their accelerator type: the worker_accelerator service option
    (or experiment), else the --accelerator_hint of the model step. CPU workers' features
    are not known to the launcher."""
    settings = ((pipeline_options.view_as(GoogleCloudOptions).dataflow_service_options or [])
                + (pipeline_options.view_as(DebugOptions).experiments or []))
    source, accelerator = "worker_accelerator", parse_accelerator(accelerator_setting(settings))
    if accelerator is None:
        source, accelerator = "--accelerator_hint", parse_accelerator(hint)
    if accelerator is None:
        return Device(where=" (Dataflow workers without an accelerator)")
    kind, count = accelerator
    return Device(gpus=accelerator_gpus(kind, count), where=f" (Dataflow {source} type:{kind}, count:{count})")


def resolve_compute(pipeline_options: PipelineOptions, options, *, remote: bool) -> Compute:
    """Resolve --mixed_precision auto, the default --batch_size and --model_copies for the
    device the model will run on; warn about a precision the device only emulates."""
    if remote:
        device, listing = dataflow_device(pipeline_options, options.accelerator_hint), None
    else:
        device, listing = local_device(options.gpus)
    if options.mixed_precision == AUTO:
        precision, precision_reason = auto_precision(device)
    else:
        precision, precision_reason = options.mixed_precision, "given"
        warning = precision_warning(precision, device)
        if warning:
            _log.warning("--mixed_precision %s: %s (%s)", precision, warning, device.describe())
    if options.batch_size is None:
        height, width = _size(options.image_size)
        batch_size, batch_reason = default_batch_size(device, precision, height, width)
    else:
        batch_size, batch_reason = options.batch_size, "given"
    copies, copies_reason = options.model_copies, "given"
    if copies is None:
        if device.is_gpu:
            copies, copies_reason = len(device.gpus), f"one per GPU: {device.describe()}"
        else:
            copies_reason = "none: a model in each SDK process (no GPU)"
    return Compute(device, precision, precision_reason, batch_size, batch_reason, copies,
                   copies_reason, listing)


def _size(image_size: str) -> tuple[int, int]:
    from schemas import parse_image_size

    try:
        size = parse_image_size(image_size)
    except ValueError:
        return 224, 224  # refused with its own message when the config is built
    return size.height, size.width
