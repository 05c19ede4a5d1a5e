"""The nearest images to one image in one layer, by cosine similarity."""

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


def nearest(root: str, layer: str, image: str, k: int = 5,
            embedding_key: str | None = None) -> list[Neighbor]:
    """The ``k`` rows most similar to ``image`` (a URI or local path, or an image_id or its
    unique prefix) in ``layer``, most similar first, the query row itself left out. Full
    feature maps are compared flattened."""
    rows = read_layer(root, layer, embedding_key)
    image = as_queried(image)
    matches = [i for i, uri in enumerate(rows.uris) if uri == image] or [
        i for i, image_id in enumerate(rows.image_ids) if image_id.startswith(image)
    ]
    if not matches:
        raise KeyError(f"no image {image!r} in {layer} (give a URI from images/ or an image_id)")
    if len({rows.image_ids[i] for i in matches}) > 1:
        raise KeyError(f"{image!r} matches several image_ids; give more of it")
    query = matches[0]
    vectors = rows.matrix.reshape(len(rows.uris), -1).astype(np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    cosines = (vectors @ vectors[query]) / (norms * norms[query])
    order = [i for i in np.argsort(-cosines, kind="stable") if i != query][:k]
    return [Neighbor(float(cosines[i]), rows.image_ids[i], rows.uris[i]) for i in order]
