"""The nearest images to one image in one layer, by cosine similarity: through the layer's
FAISS index when one is up to date under the root (``resnet50-inspect index``), by brute
force over every row otherwise."""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from pipeline.inspection.results import read_layer


class Neighbor(NamedTuple):
    cosine: float
    image_id: str
    uri: str


def as_queried(image: str) -> str:
    """A local path as the job wrote it (absolute, as --input's are); a URI or an image_id
    prefix unchanged."""
    if "://" in image or not (os.path.exists(image) or os.sep in image or "#" in image):
        return image
    path, hash_mark, key = image.partition("#")  # a shard sample: <shard>#<key>
    return os.path.abspath(path) + hash_mark + key


def _query_row(image_ids: list[str], uris: list[str], image: str, layer: str) -> int:
    """The row of ``image`` (a URI or path, or an image_id or its unique prefix)."""
    image = as_queried(image)
    matches = [i for i, uri in enumerate(uris) if uri == image] or [
        i for i, image_id in enumerate(image_ids) if image_id.startswith(image)
    ]
    if not matches:
        raise KeyError(f"no image {image!r} in {layer} (give a URI from images/ or an image_id)")
    if len({image_ids[i] for i in matches}) > 1:
        raise KeyError(f"{image!r} matches several image_ids; give more of it")
    return matches[0]


def indexed(root: str, layer: str, embedding_key: str | None = None):
    """The layer's stored index when it holds exactly the root's trusted runs, else None,
    with one line saying which and why."""
    from pipeline.inspection.results import completed_runs
    from pipeline.inspection.vector_index import IndexProblem, read_stored, source_id
    from schemas import layout

    entries = completed_runs(root, layer, embedding_key)
    folder = layout.vector_index_dir(root, layer, entries[0]["embedding_key"])
    try:
        stored = read_stored(folder)
    except IndexProblem as exc:
        return None, f"brute force: {exc} (resnet50-inspect index rebuilds it)"
    if stored is None:
        return None, f"brute force over every row (resnet50-inspect index {root} --layer {layer} builds an index)"
    if set(stored.meta["runs"]) != {source_id(e) for e in entries}:
        return None, f"brute force: the index at {folder} is not up to date (resnet50-inspect index updates it)"
    breadth = f"nprobe {stored.meta['nprobe']}" if stored.meta["nprobe"] else "exact"
    return stored, f"from the index at {folder} ({stored.meta['factory']}, {breadth})"


def nearest_indexed(stored, layer: str, image: str, k: int = 5) -> list[Neighbor]:
    """``nearest`` through a stored index (its scores: cosines of the unit vectors)."""
    import faiss

    from pipeline.inspection.vector_index import search

    row = _query_row(stored.image_ids, stored.uris, image, layer)
    if stored.meta["factory"] != "Flat":
        faiss.extract_index_ivf(stored.index).make_direct_map()
    query = stored.index.reconstruct(row).reshape(1, -1)
    cosines, rows = search(stored, query, k + 1)
    found = [(float(c), int(r)) for c, r in zip(cosines[0], rows[0]) if r >= 0 and r != row][:k]
    return [Neighbor(c, stored.image_ids[r], stored.uris[r]) for c, r in found]


def nearest(root: str, layer: str, image: str, k: int = 5,
            embedding_key: str | None = None) -> list[Neighbor]:
    """The ``k`` rows most similar to ``image`` (a URI or local path, or an image_id or its
    unique prefix) in ``layer``, most similar first, the query row itself left out. Full
    feature maps are compared flattened."""
    rows = read_layer(root, layer, embedding_key)
    query = _query_row(rows.image_ids, rows.uris, image, layer)
    vectors = rows.matrix.reshape(len(rows.uris), -1).astype(np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    cosines = (vectors @ vectors[query]) / (norms * norms[query])
    order = [i for i in np.argsort(-cosines, kind="stable") if i != query][:k]
    return [Neighbor(float(cosines[i]), rows.image_ids[i], rows.uris[i]) for i in order]
