"""Reading results: one layer as a matrix with its image ids and URIs, or as a
``pyarrow.dataset`` view. ``root`` is either one run's output (``--mode single``) or an
incremental root, read across all of its completed runs; incomplete runs are never read."""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.root.incremental import index_entries, trusted
from pipeline.root.manifest import read_manifest
from pipeline.root.outputs import damage, is_complete, part_files
from schemas import layout

LOG = logging.getLogger(__name__)


class LayerMatrix(NamedTuple):
    """Row i of ``matrix`` is the embedding of ``image_ids[i]`` read from ``uris[i]``:
    (n, C) when pooled, (n, h, w, c) for full feature maps."""

    image_ids: list[str]
    uris: list[str]
    matrix: np.ndarray


class IncompleteOutput(RuntimeError):
    """An output folder without a complete manifest: a failed, killed or running run."""


class MixedSettings(ValueError):
    """Runs under one root embedded the same layer with different settings."""


class MissingLayer(KeyError):
    """A layer that no completed output under the root wrote."""

    def __str__(self):
        return str(self.args[0])


def _written_layers(output_dir: str) -> list[str]:
    return [layer["name"] for layer in read_manifest(output_dir)["layers"]]


def _single_output(root: str, layer: str | None) -> dict:
    """The entry of a single run's complete output, checked whole and for ``layer``."""
    problems = damage(root)
    if problems:
        raise IncompleteOutput(f"{root} does not hold what its manifest lists: " + "; ".join(problems[:5]))
    if layer is not None and layer not in _written_layers(root):
        raise MissingLayer(f"layer {layer} was not written to {root} (its layers: "
                           f"{', '.join(_written_layers(root))})")
    return {"run": None, "partition": root.rstrip("/"), "embedding_key": None, "layers": None}


def _with_layer_and_key(root: str, entries: list[dict], layer: str | None, embedding_key: str | None) -> list[dict]:
    """The entries with ``embedding_key`` and ``layer``; one key, or MixedSettings."""
    if embedding_key is not None:
        entries = [e for e in entries if e["embedding_key"] == embedding_key]
        if not entries:
            raise IncompleteOutput(f"no completed run under {root} has embedding key {embedding_key}")
    if layer is not None:
        written = sorted({name for e in entries for name in e["layers"]})
        entries = [e for e in entries if layer in e["layers"]]
        if not entries:
            raise MissingLayer(f"layer {layer} was not written by any completed run under {root} "
                               f"(their layers: {', '.join(written)})")
    keys = sorted({e["embedding_key"] for e in entries})
    if len(keys) > 1:
        raise MixedSettings(
            f"runs under {root} embedded {layer or 'their layers'} with {len(keys)} different "
            f"settings (embedding keys {', '.join(keys)}); choose one with embedding_key= "
            "(--embedding_key in resnet50-inspect)"
        )
    return entries


def completed_runs(root: str, layer: str | None = None, embedding_key: str | None = None,
                   require_manifest: bool = True) -> list[dict]:
    """The completed outputs under ``root`` as index entries (``run``, ``partition``,
    ``embedding_key``, ``layers``), oldest first: the root itself when it is a single run's
    output; else the runs in its index whose manifest is complete, optionally only those
    with ``layer`` and ``embedding_key``. With ``require_manifest`` False, a folder with
    neither (what WriteEmbeddings writes in your own pipeline) is read as it is. Raises
    IncompleteOutput when there is nothing to read, MissingLayer when no output wrote
    ``layer``, and MixedSettings when runs with ``layer`` differ in settings and no key is
    given."""
    if is_complete(root):
        return [_single_output(root, layer)]
    entries = [e for e in index_entries(root) if trusted(root, e, set_aside=False)]
    if not entries and not require_manifest:
        return [{"run": None, "partition": root.rstrip("/"), "embedding_key": None, "layers": None}]
    if not entries:
        raise IncompleteOutput(
            f"{root} has no complete manifest.json and no completed runs in "
            f"{layout.RUNS_INDEX_DIR}/: the run failed, was killed or is running. A folder "
            "written by WriteEmbeddings in your own pipeline has no manifest: read it with "
            "require_manifest=False"
        )
    return _with_layer_and_key(root, entries, layer, embedding_key)


def entry_layer_parts(entry: dict, layer: str):
    """One LayerMatrix per non-empty part file of ``embeddings/<layer>/`` of one output."""
    for path in part_files(layout.layer_dir(entry["partition"], layer)):
        with FileSystems.open(path) as handle:
            table = pq.read_table(handle)
        if table.num_rows == 0:
            continue
        column = table["embedding"].combine_chunks()
        if hasattr(column, "to_numpy_ndarray"):  # arrow.fixed_shape_tensor
            matrix = column.to_numpy_ndarray()
        else:
            matrix = column.flatten().to_numpy().reshape(table.num_rows, -1)
        yield LayerMatrix(table["image_id"].to_pylist(), table["uri"].to_pylist(), matrix)


def iter_layer_parts(root: str, layer: str, embedding_key: str | None = None,
                     require_manifest: bool = True):
    """One LayerMatrix per non-empty part file of ``embeddings/<layer>/`` in every completed
    output under ``root``: for statistics over outputs too large to hold at once."""
    for entry in completed_runs(root, layer, embedding_key, require_manifest):
        yield from entry_layer_parts(entry, layer)


def layer_dataset(root: str, layer: str, embedding_key: str | None = None) -> ds.Dataset:
    """A ``pyarrow.dataset`` over ``embeddings/<layer>/`` of every completed output under
    ``root`` (columns image_id, uri, embedding, and ``run`` for an incremental root). Works
    on local paths and on any URI pyarrow has a filesystem for (gs://, s3://)."""
    entries = completed_runs(root, layer, embedding_key)
    files = [path for e in entries for path in part_files(layout.layer_dir(e["partition"], layer))]
    filesystem, base = None, root.rstrip("/")
    if "://" in root:
        filesystem, base = pyarrow.fs.FileSystem.from_uri(base)
        files = [filesystem.normalize_path(path.split("://", 1)[1]) for path in files]
    if entries[0]["run"] is None:
        return ds.dataset(files, format="parquet", filesystem=filesystem)
    partitioning = ds.partitioning(pa.schema([("run", pa.string())]), flavor="hive")
    return ds.dataset(files, format="parquet", filesystem=filesystem,
                      partitioning=partitioning, partition_base_dir=base)


def read_layer(root: str, layer: str, embedding_key: str | None = None,
               require_manifest: bool = True) -> LayerMatrix:
    """All rows of ``embeddings/<layer>/`` in every completed output under ``root``, one per
    (image_id, uri): when two trusted runs hold the same image at the same uri (a run's
    folder copied under a new run id, say), the older run's row is kept and the others are
    left out with a warning. One image at two uris is two rows, as the job writes it.
    ``require_manifest`` False reads a folder written by WriteEmbeddings in your own
    pipeline, which has no manifest."""
    parts = list(iter_layer_parts(root, layer, embedding_key, require_manifest))
    if not parts:
        return LayerMatrix([], [], np.zeros((0, 0), np.float32))
    ids = [i for part in parts for i in part.image_ids]
    uris = [u for part in parts for u in part.uris]
    matrix = np.concatenate([part.matrix for part in parts])
    first = {}
    for row, pair in enumerate(zip(ids, uris)):
        first.setdefault(pair, row)
    if len(first) == len(ids):
        return LayerMatrix(ids, uris, matrix)
    LOG.warning("%s: %d rows of %s repeat an (image_id, uri) of an earlier run; each is read once",
                root, len(ids) - len(first), layer)
    keep = sorted(first.values())
    return LayerMatrix([ids[r] for r in keep], [uris[r] for r in keep], matrix[keep])
