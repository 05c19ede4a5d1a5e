"""Where each output lives under ``--output DIR``. Paths are joined with '/', which every
Beam filesystem (local, gs://, s3://) accepts."""

from __future__ import annotations

MANIFEST_FILE = "manifest.json"
IMAGES_DIR = "images"
ERRORS_DIR = "errors"
SKIPPED_DIR = "skipped"  # incremental runs only
SHARDS_DIR = "shards"  # incremental runs only
EMBEDDINGS_DIR = "embeddings"
PART_PREFIX = "part"
PARQUET_SUFFIX = ".parquet"

#: Every top-level entry a run writes; ``--overwrite`` removes exactly these.
OUTPUT_ENTRIES = (MANIFEST_FILE, IMAGES_DIR, ERRORS_DIR, SKIPPED_DIR, SHARDS_DIR, EMBEDDINGS_DIR)


def temporary_name(name: str, token: str) -> str:
    """Where a small file is written before it is renamed into place (pipeline/root/atomic.py)."""
    return f".{name}.{token}.tmp"


def is_temporary(name: str) -> bool:
    """A file being written (or left by a write that was killed): never an output."""
    return name.startswith(".") and name.endswith(".tmp")


def join(root: str, *parts: str) -> str:
    """Join path parts under ``root`` with '/'."""
    return "/".join([root.rstrip("/")] + [p.strip("/") for p in parts])


def images_dir(root: str) -> str:
    return join(root, IMAGES_DIR)


def errors_dir(root: str) -> str:
    return join(root, ERRORS_DIR)


def skipped_dir(root: str) -> str:
    return join(root, SKIPPED_DIR)


def shards_dir(root: str) -> str:
    return join(root, SHARDS_DIR)


def layer_dir(root: str, layer: str) -> str:
    return join(root, EMBEDDINGS_DIR, layer)


def manifest_path(root: str) -> str:
    return join(root, MANIFEST_FILE)


def part_prefix(directory: str) -> str:
    """Prefix given to Beam's file sinks: files become ``part-SSSSS-of-NNNNN.parquet``."""
    return join(directory, PART_PREFIX)


def parts_glob(directory: str) -> str:
    return join(directory, f"{PART_PREFIX}-*{PARQUET_SUFFIX}")


# --- incremental roots (--mode incremental): one partition per run ---------------------

RUN_PARTITION_PREFIX = "run="
RUNS_INDEX_DIR = "_runs"
LOCK_FILE = "_lock.json"


def run_partition(root: str, run_id: str) -> str:
    """``ROOT/run=<run id>``: a Hive-style partition, one per run, a complete output inside."""
    return join(root, f"{RUN_PARTITION_PREFIX}{run_id}")


def run_index_entry(root: str, run_id: str) -> str:
    """``ROOT/_runs/<run id>.json``: written after the run's manifest, marks it completed."""
    return join(root, RUNS_INDEX_DIR, f"{run_id}.json")


#: Between a run's id and its part's writer in a part's run id (--commit_every, local runs).
PART_MARK = "-part-"


def part_run_id(run_id: str, writer: str, number: int) -> str:
    """``<run id>-part-<writer>-<number>``: sorts after nothing of another run, and names
    the run it belongs to."""
    return f"{run_id}{PART_MARK}{writer}-{number:05d}"


def is_part_of(part_id: str, run_id: str) -> bool:
    return part_id.startswith(run_id + PART_MARK)


def lock_path(root: str) -> str:
    return join(root, LOCK_FILE)


# --- what resnet50-inspect keeps with a root or a run's output ------------------------

INDEX_DIR = "_index"


def vector_index_dir(root: str, layer: str, embedding_key: str | None) -> str:
    """``ROOT/_index/<layer>/<embedding key>/`` (``.../single/`` for one run's output): a
    FAISS index of the layer's vectors and the rows it holds."""
    return join(root, INDEX_DIR, layer, embedding_key or "single")
