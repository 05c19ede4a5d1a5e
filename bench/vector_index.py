"""The layer index at scale (issue 28): synthetic unit vectors of 2,048 floats in clusters
(like res5 embeddings of a photo collection: many groups of similar images), indexed as
``resnet50-inspect index`` chooses by count and memory budget.

    python -m bench.vector_index [--counts 100000,1000000] [--memory_gb 4] [--queries 200]

Per count: the index chosen and why; build time (train + add) and the process's peak RSS
growth; nprobe tuned to the recall goal; recall@10 against brute force on other queries;
query latency p50/p99 (one query at a time) of the index and of brute force (a float32
matrix product over vectors held in memory, at most 200,000 of them, scaled linearly to the
count: both sides on this CPU, FAISS against NumPy's BLAS); and adding 10% more vectors to the built index against building it again with
them. Vectors are regenerated from the seed for every pass, never all held unless the index
holds them. Prints one JSON line per count."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np

from pipeline.inspection.index_choice import TRAINING_PER_CLUSTER, choose_index, exact_top, recall_at, tune_nprobe

DIM = 2048
BLOCK = 20_000
CLUSTERS = 5_000
#: Brute force is timed over this many vectors held in memory and scaled to the count.
BRUTE_FORCE_HELD = 200_000


def block(start: int, count: int, seed: int = 0) -> np.ndarray:
    """Vectors [start, start + count) of the synthetic collection, unit length."""
    centres = np.random.default_rng(seed).standard_normal((CLUSTERS, DIM), dtype=np.float32)
    rng = np.random.default_rng([seed, start])
    vectors = centres[rng.integers(0, CLUSTERS, count)] + 0.6 * rng.standard_normal((count, DIM), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def blocks(first: int, last: int):
    for start in range(first, last, BLOCK):
        yield block(start, min(BLOCK, last - start))


def _sample(count: int, size: int) -> np.ndarray:
    """``size`` of the collection's own vectors, at random positions (each block made once)."""
    positions = np.sort(np.random.default_rng(1).choice(count, size, replace=False))
    chosen = []
    for start in sorted({int(p) // BLOCK * BLOCK for p in positions}):
        made = block(start, min(BLOCK, count - start))
        chosen += [made[int(p) - start] for p in positions if start <= p < start + BLOCK]
    return np.random.default_rng(2).permutation(np.stack(chosen))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(count: int, memory_bytes: int):
    import faiss

    choice = choose_index(count, DIM, memory_bytes)
    index = faiss.index_factory(DIM, choice.factory, faiss.METRIC_INNER_PRODUCT)
    started = time.perf_counter()
    if not index.is_trained:
        step = max(1, count // (choice.clusters * TRAINING_PER_CLUSTER))
        index.train(np.concatenate([b[::step] for b in blocks(0, count)]))
    trained = time.perf_counter()
    for vectors in blocks(0, count):
        index.add(vectors)
    return choice, index, trained - started, time.perf_counter() - started


def latencies(search, queries: np.ndarray) -> tuple[float, float]:
    times = []
    for query in queries:
        started = time.perf_counter()
        search(query.reshape(1, -1))
        times.append(time.perf_counter() - started)
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 99) * 1000)


def measure(count: int, memory_bytes: int, queries: int, rebuild_up_to: int) -> dict:
    import faiss

    before = peak_mb()
    choice, index, train_s, build_s = build(count, memory_bytes)
    rss_growth = peak_mb() - before
    sample = _sample(count, 2 * queries)
    tune, check = sample[:queries], sample[queries:]
    nprobe, tuned_recall = (0, 1.0)
    if choice.clusters:
        nprobe, tuned_recall = tune_nprobe(index, tune, exact_top(blocks(0, count), tune, 10))
    recall = recall_at(index.search(check, 10)[1], exact_top(blocks(0, count), check, 10))
    index_p50, index_p99 = latencies(lambda q: index.search(q, 10), check[:50])
    held = np.concatenate(list(blocks(0, min(count, BRUTE_FORCE_HELD))))
    brute_p50, brute_p99 = (t * count / len(held) for t in latencies(lambda q: exact_top([held], q, 10), check[:20]))
    del held
    extra = count // 10
    started = time.perf_counter()
    for vectors in blocks(count, count + extra):
        index.add(vectors)
    add_s = time.perf_counter() - started
    rebuild_s = build(count + extra, memory_bytes)[3] if count <= rebuild_up_to else None
    return {"count": count, "index": choice.factory, "why": choice.reason, "train_s": round(train_s, 1),
            "build_s": round(build_s, 1), "peak_rss_growth_mb": round(rss_growth), "index_bytes": int(faiss.serialize_index(index).size),
            "nprobe": nprobe, "recall_at_10_tuning": round(tuned_recall, 3), "recall_at_10": round(recall, 3),
            "query_ms_p50": round(index_p50, 2), "query_ms_p99": round(index_p99, 2),
            "brute_force_ms_p50": round(brute_p50, 1), "brute_force_ms_p99": round(brute_p99, 1),
            "add_10pct_s": round(add_s, 1), "rebuild_with_10pct_s": rebuild_s and round(rebuild_s, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="100000,1000000")
    parser.add_argument("--memory_gb", type=float, default=4.0)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rebuild_up_to", type=int, default=10**9,
                        help="time the rebuild with 10%% more only up to this count (it is a second build)")
    args = parser.parse_args()
    for count in (int(c) for c in args.counts.split(",")):
        result = measure(count, int(args.memory_gb * 2**30), args.queries, args.rebuild_up_to)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
