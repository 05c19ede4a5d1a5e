"""Incremental runs on an output root: one partition per run, an index of completed runs,
a lock, and the image ids already embedded with the same settings.

Layout under ``--output ROOT`` with ``--mode incremental``::

    ROOT/_lock.json                     while a run holds the root
    ROOT/_runs/<run id>.json            one index entry per completed run (written last)
    ROOT/run=<run id>/manifest.json     each run's own complete output
    ROOT/run=<run id>/images/ ...

A run counts as completed only when its index entry exists, which the job writes after
its manifest; a failed or killed run leaves a partition without either, and readers skip it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import socket
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import ReadAllFromParquet

from pipeline import outputs
from schemas import ExtractionConfig, canonical_layer, layout

_log = logging.getLogger(__name__)


class RootLocked(RuntimeError):
    """Another run holds the root's lock."""


class NotAnIncrementalRoot(RuntimeError):
    """--output holds something other than an incremental root (e.g. a single run)."""


def new_run_id(now: float | None = None) -> str:
    """UTC time to the microsecond, sortable and safe in every filesystem: 20261122T140502123456Z."""
    moment = datetime.datetime.fromtimestamp(now or time.time(), datetime.timezone.utc)
    return moment.strftime("%Y%m%dT%H%M%S%fZ")


def embedding_key(config: ExtractionConfig, weights_record: dict) -> str:
    """Identity of the settings that decide an embedding's values: runs with the same key
    produce the same numbers for the same bytes, so an image embedded under one is done for
    the others. The batch size does not change values and is left out; the weights count
    by content (SHA-256 of the file) or by seed."""
    if weights_record.get("sha256"):
        weights = weights_record["sha256"]
    elif weights_record.get("kind") == "random":
        weights = f"random:{weights_record.get('seed')}"
    else:  # A dry run, where remote weights files are not read.
        weights = weights_record["spec"]
    settings = {
        "layers": sorted(canonical_layer(name) for name in config.layers),
        "image_size": [config.image_size.height, config.image_size.width],
        "resize_mode": config.resize_mode,
        "pooling": config.pooling,
        "weights": weights,
        "output_dtype": config.output_dtype,
        "mixed_precision": config.mixed_precision,
        "jpeg_draft": config.jpeg_draft,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


# --- the index of completed runs -------------------------------------------------------

def index_entries(root: str) -> list[dict]:
    """The index entries of completed runs under ``root``, oldest first."""
    match = FileSystems.match([layout.join(root, layout.RUNS_INDEX_DIR, "*.json")])[0]
    entries = []
    for meta in sorted(match.metadata_list, key=lambda m: m.path):
        with FileSystems.open(meta.path) as handle:
            entries.append(json.loads(handle.read()))
    return entries


def check_root(root: str) -> None:
    """Raise NotAnIncrementalRoot when ``root`` holds anything but runs, the index and a lock."""
    allowed = (layout.RUNS_INDEX_DIR, layout.LOCK_FILE)
    foreign = [
        entry for entry in outputs.existing_entries(root)
        if entry not in allowed and not entry.startswith(layout.RUN_PARTITION_PREFIX)
    ]
    if foreign:
        raise NotAnIncrementalRoot(
            f"--output {root} holds {', '.join(foreign[:5])}: not an incremental root (only "
            f"{layout.RUN_PARTITION_PREFIX}<id>/, {layout.RUNS_INDEX_DIR}/ and {layout.LOCK_FILE}); "
            "choose an empty or incremental root"
        )


class RecordCompletedRun:
    """Called by the job's last step after the run's manifest is written: adds the run to
    the root's index, then releases the root's lock."""

    def __init__(self, root: str, run_id: str, key: str):
        self.root, self.run_id, self.key = root, run_id, key

    def __call__(self, manifest: dict) -> None:
        entry = {
            "run": self.run_id,
            "embedding_key": self.key,
            "partition": layout.run_partition(self.root, self.run_id),
            "layers": [layer["name"] for layer in manifest["layers"]],
            "counts": {k: manifest["counts"][k] for k in ("matched", "embedded", "errors", "skipped")},
            "finished_utc": manifest["timings"]["finished_utc"],
        }
        path = layout.run_index_entry(self.root, self.run_id)
        with FileSystems.create(path, mime_type="application/json") as handle:
            handle.write(json.dumps(entry, indent=2).encode())
        release_lock(self.root, self.run_id)


# --- what is done already ----------------------------------------------------------------

def done_image_patterns(root: str, key: str) -> list[str]:
    """Globs of images/ part files of the completed runs embedded with ``key``."""
    return [
        layout.parts_glob(layout.images_dir(entry["partition"]))
        for entry in index_entries(root)
        if entry["embedding_key"] == key
    ]


class DoneImageIds(beam.PTransform):
    """PBegin -> PCollection[str]: the image ids in the images/ files matching ``patterns``
    (one glob per earlier completed run with the same embedding key; none gives nothing)."""

    def __init__(self, patterns: list[str]):
        super().__init__()
        self._patterns = list(patterns)

    def expand(self, pbegin):
        return (
            pbegin
            | "Runs" >> beam.Create(self._patterns)
            | "ReadIds" >> ReadAllFromParquet(columns=["image_id"])
            | "Id" >> beam.Map(lambda row: row["image_id"])
        )


# --- the lock ----------------------------------------------------------------------------

def _lock_record(run_id: str) -> dict:
    return {
        "run": run_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "created_unix": time.time(),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _create_exclusively(path: str, payload: bytes) -> bool:
    """Create ``path`` only if it does not exist, atomically; False when it exists. Local
    files use O_EXCL; gs:// uses a generation-0 precondition; other filesystems are checked
    then written (not atomic: documented in the README)."""
    scheme = FileSystems.get_scheme(path)
    if scheme in (None, "file"):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        return True
    if scheme == "gs":
        from google.api_core.exceptions import PreconditionFailed
        from google.cloud import storage

        bucket, _, name = path[len("gs://"):].partition("/")
        blob = storage.Client().bucket(bucket).blob(name)
        try:
            blob.upload_from_string(payload, content_type="application/json", if_generation_match=0)
        except PreconditionFailed:
            return False
        return True
    if FileSystems.exists(path):
        return False
    with FileSystems.create(path) as handle:
        handle.write(payload)
    return True


def read_lock(root: str) -> dict | None:
    path = layout.lock_path(root)
    if not FileSystems.exists(path):
        return None
    try:
        with FileSystems.open(path) as handle:
            return json.loads(handle.read())
    except (OSError, ValueError):  # Being written or removed right now.
        return {}


def acquire_lock(root: str, run_id: str, *, stale_after_hours: float) -> dict:
    """Take the root's lock for ``run_id`` or raise RootLocked naming the holder. A lock
    older than ``stale_after_hours`` (a job that failed without releasing it) is broken,
    with a warning."""
    path = layout.lock_path(root)
    record = _lock_record(run_id)
    payload = json.dumps(record, indent=2).encode()
    if _create_exclusively(path, payload):
        return record
    holder = read_lock(root) or {}
    age_hours = (time.time() - holder.get("created_unix", time.time())) / 3600
    if holder and age_hours > stale_after_hours:
        _log.warning(
            "breaking the lock of run %s on %s: %.1f h old, over --lock_stale_hours %s",
            holder.get("run"), root, age_hours, stale_after_hours,
        )
        FileSystems.delete([path])
        if _create_exclusively(path, payload):
            return record
        holder = read_lock(root) or {}
    raise RootLocked(
        f"{root} is locked by run {holder.get('run', '?')} (host {holder.get('host', '?')}, "
        f"pid {holder.get('pid', '?')}, since {holder.get('created_utc', '?')}); one run at a "
        f"time writes to an incremental root. If that run is dead, delete {path} or wait "
        f"--lock_stale_hours ({stale_after_hours})"
    )


def release_lock(root: str, run_id: str) -> bool:
    """Remove the lock if ``run_id`` holds it; True when removed."""
    holder = read_lock(root)
    if not holder or holder.get("run") != run_id:
        return False
    try:
        FileSystems.delete([layout.lock_path(root)])
    except Exception:  # Already removed by the job's last step.
        return False
    return True
