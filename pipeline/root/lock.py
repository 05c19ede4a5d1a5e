"""The lock on an output: one run at a time writes to an incremental root or to a single
run's folder. ``ROOT/_lock.json`` is created whole and exclusively (pipeline/root/atomic.py) and
released in one place, by whoever saw the run end. A lock that could not be written leaves
nothing behind; one that names no run (written by another tool, or damaged) goes stale
after UNNAMED_STALE_HOURS."""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import time

from apache_beam.io.filesystems import FileSystems

from pipeline.root.atomic import WriteFailed, create_exclusively
from schemas import layout

_log = logging.getLogger(__name__)


#: A lock that names no run (empty, damaged, not JSON) is broken after this many hours.
UNNAMED_STALE_HOURS = 0.25


class RootLocked(RuntimeError):
    """Another run holds the lock, or the lock could not be taken at all."""


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
    try:
        if create_exclusively(path, payload):
            return record
        holder = read_lock(root)
        if holder is None and create_exclusively(path, payload):  # Released meanwhile.
            return record
        holder = holder or {}
        if _break_if_stale(root, holder, stale_after_hours) and create_exclusively(path, payload):
            return record
    except WriteFailed as exc:
        raise RootLocked(f"could not take the lock: {exc}; nothing was left behind, and the "
                         "run did not start (free space, or check permissions, then run again)") from exc
    holder = read_lock(root) or {}
    raise RootLocked(
        f"{root} is locked by run {holder.get('run', '?')} (host {holder.get('host', '?')}, "
        f"pid {holder.get('pid', '?')}, since {holder.get('created_utc', '?')}); one run at a "
        f"time writes there. If that run is dead, delete {path} or wait "
        f"--lock_stale_hours ({stale_after_hours})"
    )


def _break_if_stale(root: str, holder: dict, stale_after_hours: float) -> bool:
    """Delete the lock when its holder is stale or dead (with a warning); True if deleted."""
    named = bool(holder.get("run"))
    limit = stale_after_hours if named else min(stale_after_hours, UNNAMED_STALE_HOURS)
    age_hours = (time.time() - lock_created_unix(root, holder)) / 3600
    dead = holder_is_dead(holder)
    if age_hours <= limit and not dead:
        return False
    reason = (f"its process {holder.get('pid')} on this host is gone" if dead else
              f"{age_hours:.1f} h old, over {limit} h"
              + ("" if named else " (a lock that names no run)"))
    _log.warning("breaking the lock of run %s on %s: %s", holder.get("run", "? (unreadable lock)"),
                 root, reason)
    FileSystems.delete([layout.lock_path(root)])
    return True


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
