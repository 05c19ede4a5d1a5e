"""Which FAISS index a layer gets, from its number of vectors, their dimension and a memory
budget, the way autofaiss chooses (exact while small, then inverted lists with about
4·sqrt(n) clusters, quantized when the vectors do not fit the budget), and the search
breadth (nprobe) that reaches the recall goal on the vectors themselves.

Vectors are L2-normalised and compared by inner product: the scores are cosines."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

#: Below this many vectors the index is exact (Flat): one query reads n x d floats, about
#: 40 ms at 100,000 x 2,048 on one core, and adding a run needs no training.
FLAT_BELOW = 100_000
#: IVF needs about 39 training points per cluster (FAISS warns below) and at least 256.
TRAINING_PER_CLUSTER = 39
RECALL_GOAL = 0.95
DEFAULT_MEMORY_BYTES = 4 << 30


class IndexChoice(NamedTuple):
    """A FAISS ``index_factory`` string and why it was chosen."""

    factory: str
    clusters: int
    bytes_per_vector: int
    reason: str


def _clusters(count: int) -> int:
    """A power of two near 4·sqrt(n) (autofaiss's first candidate), at most n / 39."""
    wanted = 2 ** round(math.log2(4 * math.sqrt(count)))
    return max(1, min(wanted, count // TRAINING_PER_CLUSTER))


def choose_index(count: int, dim: int, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> IndexChoice:
    """The index for ``count`` vectors of ``dim`` floats within ``memory_bytes``."""
    full = 4 * dim
    if count < FLAT_BELOW and count * full <= memory_bytes:
        return IndexChoice("Flat", 0, full, f"{count:,} vectors: exact search costs little below "
                           f"{FLAT_BELOW:,}, and a run is added without training")
    clusters = _clusters(count)
    if count * full <= memory_bytes:
        return IndexChoice(f"IVF{clusters},Flat", clusters, full,
                           f"{count:,} x {dim} floats fit {memory_bytes / 2**30:.1f} GiB: inverted "
                           f"lists ({clusters} clusters) over the exact vectors")
    if count * dim <= memory_bytes:
        return IndexChoice(f"IVF{clusters},SQ8", clusters, dim,
                           f"{count * full / 2**30:.1f} GiB of floats exceed {memory_bytes / 2**30:.1f} GiB: "
                           "8-bit scalar quantization (4x smaller, cosines within about 1%)")
    codes = next((m for m in (256, 128, 64, 32, 16, 8) if dim % m == 0 and count * m <= memory_bytes), 8)
    return IndexChoice(f"IVF{clusters},PQ{codes}", clusters, codes,
                       f"even 8-bit codes exceed {memory_bytes / 2**30:.1f} GiB: product quantization, "
                       f"{codes} bytes per vector (recall below {RECALL_GOAL}: give more memory)")


def exact_top(parts, queries: np.ndarray, k: int) -> np.ndarray:
    """The positions (in the order ``parts`` yield their rows) of the ``k`` highest inner
    products of each query, by brute force over an iterable of (n, d) matrices: one part in
    memory at a time."""
    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    best_ids = np.zeros((len(queries), 0), np.int64)
    offset = 0
    for part in parts:
        scores = np.concatenate([best_scores, queries @ part.T], axis=1)
        ids = np.concatenate([best_ids, np.broadcast_to(np.arange(offset, offset + len(part)), (len(queries), len(part)))], axis=1)
        keep = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores, best_ids = np.take_along_axis(scores, keep, 1), np.take_along_axis(ids, keep, 1)
        offset += len(part)
    return best_ids


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """The share of the true neighbours found, over all queries."""
    hits = sum(len(set(f[f >= 0]) & set(t)) for f, t in zip(found, truth))
    return hits / truth.size


def tune_nprobe(index, queries: np.ndarray, truth: np.ndarray) -> tuple[int, float]:
    """The smallest nprobe (a power of two) whose recall@k of ``queries`` against ``truth``
    (their exact top k) reaches the goal; sets it on ``index``. Returns (nprobe, recall)."""
    import faiss

    inverted = faiss.extract_index_ivf(index)
    nprobe = 1
    while True:
        inverted.nprobe = nprobe
        recall = recall_at(index.search(queries, truth.shape[1])[1], truth)
        if recall >= RECALL_GOAL or nprobe >= inverted.nlist:
            return nprobe, recall
        nprobe *= 2
