"""The lock on an output: one run at a time writes to an incremental root or to a single
run's folder. ``ROOT/_lock.json`` is created atomically (O_EXCL locally, a generation-0
precondition on gs://) and released in one place, by whoever saw the run end."""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import time

from apache_beam.io.filesystems import FileSystems

from schemas import layout

_log = logging.getLogger(__name__)


class RootLocked(RuntimeError):
    """Another run holds the lock."""


def _lock_record(run_id: str, local: bool) -> dict:
    return {
        "run": run_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        # True when this process waits for the job on this machine: the lock then dies
        # with the process. A remote job outlives its launcher.
        "local": local,
        "created_unix": time.time(),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _create_exclusively(path: str, payload: bytes) -> bool:
    """Create ``path`` only if it does not exist, atomically; False when it exists. Local
    files use O_EXCL; gs:// uses a generation-0 precondition; other filesystems are checked
    then written (not atomic: documented in docs/incremental.md)."""
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
    """The lock's record; None when there is no lock, {} when it cannot be read (empty,
    half-written or not JSON)."""
    path = layout.lock_path(root)
    if not FileSystems.exists(path):
        return None
    try:
        with FileSystems.open(path) as handle:
            record = json.loads(handle.read())
    except (OSError, ValueError):  # A holder killed between the create and the write.
        return {}
    return record if isinstance(record, dict) else {}


def lock_created_unix(root: str, holder: dict) -> float:
    """When the lock was taken: its own record, else (an empty or unreadable lock) the
    file's last-updated time. A lock that vanished meanwhile counts as just taken."""
    if isinstance(holder.get("created_unix"), (int, float)):
        return float(holder["created_unix"])
    try:
        (metadata,) = FileSystems.match([layout.lock_path(root)])[0].metadata_list
        return metadata.last_updated_in_seconds or time.time()
    except Exception:  # Removed between the look and the match.
        return time.time()


def holder_is_dead(holder: dict) -> bool:
    """True for a lock taken by a local run on this host whose process no longer exists."""
    if not holder.get("local") or holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (OSError, KeyError, TypeError, ValueError):
        return False
    return False


def acquire_lock(root: str, run_id: str, *, stale_after_hours: float, local: bool = True) -> dict:
    """Take the lock on ``root`` (an incremental root or a single run's output folder) for
    ``run_id``, or raise RootLocked naming the holder. A lock is broken, with a warning,
    when it is older than ``stale_after_hours`` (judged by the file's time when the lock is
    empty or unreadable) or when a local run on this host holds it and its process is gone.
    ``local`` records whether this process waits for the job here."""
    path = layout.lock_path(root)
    record = _lock_record(run_id, local)
    payload = json.dumps(record, indent=2).encode()
    if _create_exclusively(path, payload):
        return record
    holder = read_lock(root)
    if holder is None and _create_exclusively(path, payload):  # Released meanwhile.
        return record
    holder = holder or {}
    age_hours = (time.time() - lock_created_unix(root, holder)) / 3600
    dead = holder_is_dead(holder)
    if age_hours > stale_after_hours or dead:
        reason = (f"its process {holder.get('pid')} on this host is gone" if dead else
                  f"{age_hours:.1f} h old, over --lock_stale_hours {stale_after_hours}")
        _log.warning("breaking the lock of run %s on %s: %s", holder.get("run", "? (unreadable lock)"),
                     root, reason)
        FileSystems.delete([path])
        if _create_exclusively(path, payload):
            return record
        holder = read_lock(root) or {}
    raise RootLocked(
        f"{root} is locked by run {holder.get('run', '?')} (host {holder.get('host', '?')}, "
        f"pid {holder.get('pid', '?')}, since {holder.get('created_utc', '?')}); one run at a "
        f"time writes there. If that run is dead, delete {path} or wait "
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
