"""Reading a completed output: one layer as a matrix, with its image ids and URIs."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.outputs import is_complete, part_files
from schemas import layout


class LayerMatrix(NamedTuple):
    """Row i of ``matrix`` is the embedding of ``image_ids[i]`` read from ``uris[i]``:
    (n, C) when pooled, (n, h, w, c) for full feature maps."""

    image_ids: list[str]
    uris: list[str]
    matrix: np.ndarray


class IncompleteOutput(RuntimeError):
    """An output folder without a complete manifest: a failed, killed or running run."""


def iter_layer_parts(root: str, layer: str):
    """One LayerMatrix per non-empty part file of ``embeddings/<layer>/`` under a completed
    output ``root``: for statistics over outputs too large to hold at once."""
    if not is_complete(root):
        raise IncompleteOutput(f"{root} has no complete manifest.json: the run failed, was killed or is running")
    for path in part_files(layout.layer_dir(root, layer)):
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


def read_layer(root: str, layer: str) -> LayerMatrix:
    """All rows of ``embeddings/<layer>/`` under a completed output ``root``."""
    parts = list(iter_layer_parts(root, layer))
    if not parts:
        return LayerMatrix([], [], np.zeros((0, 0), np.float32))
    return LayerMatrix(
        [i for part in parts for i in part.image_ids],
        [u for part in parts for u in part.uris],
        np.concatenate([part.matrix for part in parts]),
    )
