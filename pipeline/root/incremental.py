"""Incremental runs on an output root: one partition per run, an index of completed runs,
and what earlier runs with the same settings did (the rows a new run is compared with).

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
import json
import logging
import posixpath
import time

from apache_beam.io.filesystems import FileSystems

from pipeline.root import outputs
from pipeline.root.atomic import write_atomically
from pipeline.root.lock import release_lock
from schemas import Comparison, layout
from schemas.accounting import INDEX_COUNTS

_log = logging.getLogger(__name__)


class NotAnIncrementalRoot(RuntimeError):
    """--output holds something other than an incremental root (e.g. a single run)."""


def new_run_id(now: float | None = None) -> str:
    """UTC time to the microsecond, sortable and safe in every filesystem: 20261122T140502123456Z."""
    moment = datetime.datetime.fromtimestamp(now or time.time(), datetime.timezone.utc)
    return moment.strftime("%Y%m%dT%H%M%S%fZ")


# --- the index of completed runs -------------------------------------------------------

class DamagedIndexEntry(RuntimeError):
    """An index entry that cannot be read (empty, cut short, not the entry format)."""


def read_index_entry(root: str, path: str) -> dict:
    """One index entry, its ``partition`` resolved under ``root`` as it is now (entries hold
    it relative to the root; older ones absolute), so that a moved or copied root reads the
    same. Raises DamagedIndexEntry naming the file and what to do."""
    try:
        with FileSystems.open(path) as handle:
            entry = json.loads(handle.read())
        run = entry["run"]
        if not isinstance(run, str) or not isinstance(entry["embedding_key"], str):
            raise ValueError("run and embedding_key must be text")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DamagedIndexEntry(
            f"{path} is damaged ({type(exc).__name__}: {exc}): its run's completion cannot be "
            f"known. Move the file (and its {layout.RUN_PARTITION_PREFIX}<id>/ folder) out of "
            f"{root}, then run again: that run's images are embedded again") from exc
    return {**entry, "partition": layout.run_partition(root, run)}


def index_entries(root: str) -> list[dict]:
    """The index entries of completed runs under ``root``, oldest first; raises
    DamagedIndexEntry for one that cannot be read."""
    return [read_index_entry(root, path) for path in index_entry_paths(root)]


def index_entry_paths(root: str) -> list[str]:
    """The paths of ``root``'s index entries (``_runs/<run id>.json``), sorted."""
    match = FileSystems.match([layout.join(root, layout.RUNS_INDEX_DIR, "*.json")])[0]
    return sorted(meta.path for meta in match.metadata_list)


def check_root(root: str) -> None:
    """Raise NotAnIncrementalRoot when ``root`` holds anything but runs, the index and a lock."""
    allowed = (layout.RUNS_INDEX_DIR, layout.LOCK_FILE, layout.INDEX_DIR)
    foreign = [
        entry for entry in outputs.existing_entries(root)
        if entry not in allowed and not entry.startswith(layout.RUN_PARTITION_PREFIX)
    ]
    if foreign:
        raise NotAnIncrementalRoot(
            f"--output {root} holds {', '.join(foreign[:5])}: not an incremental root (only "
            f"{layout.RUN_PARTITION_PREFIX}<id>/, {layout.RUNS_INDEX_DIR}/, {layout.INDEX_DIR}/ and "
            f"{layout.LOCK_FILE}); "
            "choose an empty or incremental root"
        )


def unfinished_partitions(root: str) -> list[str]:
    """The ``run=<id>/`` folders under ``root`` that no index entry names, not even one set
    aside as untrusted: runs killed or failed before completing (with Beam's
    ``beam-temp-*`` folders inside). Never read; one listing of the root's top level and of
    ``_runs/``, both growing with runs, not images."""
    prefix = layout.RUN_PARTITION_PREFIX
    partitions = [e for e in outputs.existing_entries(root) if e.startswith(prefix)]
    if not partitions:
        return []
    entries = FileSystems.match([layout.join(root, layout.RUNS_INDEX_DIR, "*")])[0].metadata_list
    named = {posixpath.basename(meta.path).split(".json", 1)[0] for meta in entries}
    return sorted(p for p in partitions if p.rstrip("/")[len(prefix):] not in named)


def remove_unfinished_partitions(root: str) -> list[str]:
    """Delete the folders unfinished_partitions names and return their names. Only while
    holding the root's lock: then no run that could still complete is writing one."""
    unfinished = unfinished_partitions(root)
    for name in unfinished:
        path = layout.join(root, name.rstrip("/"))
        FileSystems.delete([path if outputs.is_local(root) else path + "/"])
    return unfinished


def add_index_entry(root: str, run_id: str, key: str, manifest: dict) -> None:
    """Write ``_runs/<run id>.json`` for the run whose ``manifest`` is written: from here on
    the run is completed, and later runs skip what it holds."""
    counts = manifest["counts"]
    entry = {
        "run": run_id,
        "embedding_key": key,
        # Relative to the root, so that the root can be moved or copied.
        "partition": layout.run_partition("", run_id).lstrip("/"),
        "layers": [layer["name"] for layer in manifest["layers"]],
        "counts": {k: counts[k] for k in INDEX_COUNTS if k in counts},
        "finished_utc": manifest["timings"]["finished_utc"],
    }
    if manifest.get("part_of"):
        entry["part_of"] = manifest["part_of"]
    write_atomically(layout.run_index_entry(root, run_id), json.dumps(entry, indent=2).encode())


def remove_run(root: str, run_id: str) -> None:
    """Take a completed run out of ``root``: its index entry first (readers stop seeing it),
    then its partition."""
    FileSystems.delete([layout.run_index_entry(root, run_id)])
    path = layout.run_partition(root, run_id)
    FileSystems.delete([path if outputs.is_local(root) else path + "/"])


class CompleteRun:
    """Called by the job's last step after the run's manifest is written: for an
    incremental run, adds the run to the root's index; then releases the lock the launcher
    took on ``lock_root`` (the root, or a single run's output folder)."""

    def __init__(self, lock_root: str, run_id: str, *, index_root: str | None = None,
                 key: str | None = None):
        self.lock_root, self.run_id, self.index_root, self.key = lock_root, run_id, index_root, key

    def __call__(self, manifest: dict) -> None:
        if self.index_root is not None:
            add_index_entry(self.index_root, self.run_id, self.key, manifest)
        release_lock(self.lock_root, self.run_id)


# --- what earlier runs did -------------------------------------------------------------

UNTRUSTED_SUFFIX = ".untrusted"


def trusted(root: str, entry: dict, *, set_aside: bool) -> bool:
    """True when the run of index ``entry`` is all on disk (outputs.damage). Else log what
    is wrong and, with ``set_aside`` (the launcher, holding the lock), rename its index
    entry to ``<id>.json.untrusted``, so that no reader sees the run again."""
    problems = outputs.damage(entry["partition"])
    if not problems:
        return True
    entry_path = layout.run_index_entry(root, entry["run"])
    shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
    if set_aside:
        FileSystems.rename([entry_path], [entry_path + UNTRUSTED_SUFFIX])
    _log.warning("run %s under %s is not trusted: %s. %s", entry["run"], root, shown,
                 f"Its images are embedded again; its index entry is now {entry_path}{UNTRUSTED_SUFFIX}"
                 if set_aside else "Readers leave it out.")
    return False


def comparison(root: str, key: str, skip_by: str) -> Comparison:
    """The earlier completed runs under ``root`` with embedding ``key`` that are all on
    disk; the others are set aside (``trusted``), and their images embedded again."""
    partitions = [e["partition"] for e in index_entries(root)
                  if e["embedding_key"] == key and trusted(root, e, set_aside=True)]
    return Comparison(
        skip_by,
        tuple(layout.parts_glob(layout.images_dir(p)) for p in partitions),
        tuple(layout.parts_glob(layout.skipped_dir(p)) for p in partitions),
        tuple(layout.parts_glob(layout.shards_dir(p)) for p in partitions),
    )
