"""A FAISS index of one layer's vectors, kept with the root (``ROOT/_index/<layer>/<key>/``)
and brought up to date run by run: the trusted completed runs it holds are named in its
``index.json``, a later run (or chunk) is added without rebuilding what is there, and an
index that is damaged, or holds a run no longer trusted, is said so and rebuilt.

Files: ``vectors-<generation>.faiss`` (the index), ``rows-<generation>.parquet`` (row i:
image_id, uri) and ``index.json``, written last, atomically, with each file's size and
SHA-256: the index a reader sees is whole or absent. Vectors are L2-normalised; scores are
cosines."""

from __future__ import annotations

import hashlib
import io
import json
import time
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.inspection.index_choice import DEFAULT_MEMORY_BYTES, IndexChoice, choose_index, exact_top, tune_nprobe
from pipeline.inspection.results import completed_runs, entry_layer_parts
from pipeline.root.atomic import write_atomically
from pipeline.root.outputs import part_files
from schemas import layout

META_FILE = "index.json"
#: An inverted index trained on n vectors is rebuilt once it holds more than this many times n.
RETRAIN_GROWTH = 4
TUNING_QUERIES = 200


class IndexProblem(RuntimeError):
    """An index that cannot be trusted: damaged, or not what the root now holds."""


class PooledOnly(ValueError):
    """A layer written with --pooling none: its rows are feature maps, not vectors."""


class StoredIndex(NamedTuple):
    index: object  # faiss.Index
    image_ids: list[str]
    uris: list[str]
    meta: dict


def source_id(entry: dict) -> str:
    """What names an output in ``index.json``: its run id, or ``single`` for a run's output."""
    return entry["run"] or "single"


def normalised(matrix: np.ndarray, layer: str) -> np.ndarray:
    """(n, d) float32 rows of unit length (zero rows stay zero); feature maps are refused."""
    if matrix.ndim != 2:
        raise PooledOnly(f"layer {layer} holds feature maps of shape {matrix.shape[1:]} (--pooling none): "
                         "an index needs one vector per image; embed with --pooling avg or max")
    vectors = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def _parts(entries: list[dict], layer: str, seen: set | None = None):
    """(image_ids, uris, unit vectors) per part file; a (image_id, uri) already in ``seen``
    (a run's rows copied under another run) is read once, as read_layer does."""
    for entry in entries:
        for part in entry_layer_parts(entry, layer):
            keep = list(range(len(part.uris)))
            if seen is not None:
                keep = [i for i, pair in enumerate(zip(part.image_ids, part.uris)) if pair not in seen]
                seen.update((part.image_ids[i], part.uris[i]) for i in keep)
            if keep:
                yield ([part.image_ids[i] for i in keep], [part.uris[i] for i in keep],
                       normalised(part.matrix, layer)[keep])


def _file(folder: str, name: str) -> str:
    return layout.join(folder, name)


def _read_checked(folder: str, meta: dict, name_key: str) -> bytes:
    path = _file(folder, meta[name_key])
    try:
        with FileSystems.open(path) as handle:
            payload = handle.read()
    except Exception as exc:  # noqa: BLE001 - any filesystem's "not there"
        raise IndexProblem(f"{path}: cannot be read ({type(exc).__name__})") from exc
    recorded = meta["files"][meta[name_key]]
    if len(payload) != recorded["bytes"] or hashlib.sha256(payload).hexdigest() != recorded["sha256"]:
        raise IndexProblem(f"{path}: {len(payload):,} bytes, not the {recorded['bytes']:,} with the "
                           "SHA-256 its index.json records (damaged or cut off)")
    return payload


def read_stored(folder: str) -> StoredIndex | None:
    """The index in ``folder``, None when there is none; IndexProblem naming the file when
    any part of it is unreadable or not what ``index.json`` records."""
    import faiss

    meta_path = _file(folder, META_FILE)
    if not FileSystems.exists(meta_path):
        return None
    try:
        with FileSystems.open(meta_path) as handle:
            meta = json.loads(handle.read())
        vectors, rows = _read_checked(folder, meta, "vectors_file"), _read_checked(folder, meta, "rows_file")
    except (ValueError, KeyError, TypeError) as exc:
        raise IndexProblem(f"{meta_path}: unreadable ({type(exc).__name__}: {exc})") from exc
    index = faiss.deserialize_index(np.frombuffer(vectors, np.uint8))
    table = pq.read_table(io.BytesIO(rows))
    if not index.ntotal == table.num_rows == meta["count"]:
        raise IndexProblem(f"{meta_path}: records {meta['count']} vectors; the files hold "
                           f"{index.ntotal} and {table.num_rows} rows")
    return StoredIndex(index, table["image_id"].to_pylist(), table["uri"].to_pylist(), meta)


def write_stored(folder: str, stored: StoredIndex) -> StoredIndex:
    """The index's files under a new generation, then ``index.json`` naming them; returns
    ``stored`` with the meta as written."""
    import faiss

    generation = f"{time.time_ns():x}"
    vectors = faiss.serialize_index(stored.index).tobytes()
    sink = io.BytesIO()
    pq.write_table(pa.table({"image_id": stored.image_ids, "uri": stored.uris}), sink)
    files = {f"vectors-{generation}.faiss": vectors, f"rows-{generation}.parquet": sink.getvalue()}
    for name, payload in files.items():
        write_atomically(_file(folder, name), payload, mime_type="application/octet-stream")
    meta = {**stored.meta, "vectors_file": f"vectors-{generation}.faiss", "rows_file": f"rows-{generation}.parquet",
            "files": {name: {"bytes": len(p), "sha256": hashlib.sha256(p).hexdigest()} for name, p in files.items()}}
    earlier = FileSystems.match([_file(folder, "*-*.*")])[0].metadata_list
    write_atomically(_file(folder, META_FILE), json.dumps(meta, indent=2).encode())
    old = [m.path for m in earlier if m.path.rsplit("/", 1)[-1] not in files]
    if old:
        FileSystems.delete(old)
    return stored._replace(meta=meta)


def _row_count(entries: list[dict], layer: str) -> int:
    """The rows of ``layer`` in ``entries``, from the Parquet footers alone."""
    total = 0
    for entry in entries:
        for path in part_files(layout.layer_dir(entry["partition"], layer)):
            with FileSystems.open(path) as handle:
                total += pq.ParquetFile(handle).metadata.num_rows
    return total


def _family(factory: str) -> str:
    """Flat, or the inverted index's coding (IVF,Flat / IVF,SQ8 / IVF,PQ64) whatever its clusters."""
    return factory if factory == "Flat" else "IVF," + factory.split(",", 1)[1]


def _training_sample(entries: list[dict], layer: str, count: int, wanted: int) -> np.ndarray:
    """About ``wanted`` vectors spread evenly over every part (every k-th row)."""
    step = max(1, count // wanted)
    return np.concatenate([vectors[::step] for _, _, vectors in _parts(entries, layer)])


def build(entries: list[dict], layer: str, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> StoredIndex:
    """A new index of every row of ``entries``: chosen by size, trained on an even sample,
    filled part by part, its nprobe tuned to the recall goal against brute force."""
    import faiss

    count = _row_count(entries, layer)
    if count == 0:
        raise IndexProblem(f"no rows of {layer} to index")
    dim = next(_parts(entries, layer))[2].shape[1]
    choice = choose_index(count, dim, memory_bytes)
    index = faiss.index_factory(dim, choice.factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(_training_sample(entries, layer, count, choice.clusters * 39))
    ids, uris = [], []
    for part_ids, part_uris, vectors in _parts(entries, layer, set()):
        index.add(vectors)
        ids += part_ids
        uris += part_uris
    meta = {"layer": layer, "dim": dim, "count": count, "factory": choice.factory, "reason": choice.reason,
            "trained_on": count, "runs": [source_id(e) for e in entries],
            "embedding_key": entries[0]["embedding_key"], "nprobe": None, "recall_at_10": 1.0}
    stored = StoredIndex(index, ids, uris, meta)
    return _tuned(stored, entries, layer) if choice.clusters else stored


def _tuned(stored: StoredIndex, entries: list[dict], layer: str) -> StoredIndex:
    """nprobe set to reach the recall goal on a sample of the indexed vectors."""
    rng = np.random.default_rng(0)
    picks = set(rng.choice(stored.index.ntotal, size=min(TUNING_QUERIES, stored.index.ntotal), replace=False).tolist())
    queries, offset = [], 0
    for _, _, vectors in _parts(entries, layer, set()):
        queries += [vectors[i - offset] for i in sorted(picks) if offset <= i < offset + len(vectors)]
        offset += len(vectors)
    queries = np.stack(queries)
    truth = exact_top((v for _, _, v in _parts(entries, layer, set())), queries, 10)
    nprobe, recall = tune_nprobe(stored.index, queries, truth)
    return stored._replace(meta={**stored.meta, "nprobe": nprobe, "recall_at_10": round(recall, 4)})


def add_runs(stored: StoredIndex, entries: list[dict], layer: str) -> StoredIndex:
    """``stored`` with the rows of ``entries`` added (no retraining)."""
    seen = set(zip(stored.image_ids, stored.uris))
    ids, uris = list(stored.image_ids), list(stored.uris)
    for part_ids, part_uris, vectors in _parts(entries, layer, seen):
        stored.index.add(vectors)
        ids += part_ids
        uris += part_uris
    meta = {**stored.meta, "count": stored.index.ntotal, "runs": stored.meta["runs"] + [source_id(e) for e in entries]}
    return StoredIndex(stored.index, ids, uris, meta)


def _needs_rebuild(stored: StoredIndex, entries: list[dict], memory_bytes: int) -> str | None:
    """Why the stored index cannot simply take the new runs, or None."""
    held, trusted_now = set(stored.meta["runs"]), {source_id(e) for e in entries}
    if held - trusted_now:
        return f"it holds runs no longer trusted or gone ({', '.join(sorted(held - trusted_now)[:3])})"
    count = stored.meta["count"] + sum(e.get("counts", {}).get("embedded", 0) for e in entries
                                       if source_id(e) not in held)
    wanted: IndexChoice = choose_index(count, stored.meta["dim"], memory_bytes)
    if _family(wanted.factory) != _family(stored.meta["factory"]):
        return f"{count:,} vectors want {wanted.factory}, it is {stored.meta['factory']}"
    if stored.meta["factory"] != "Flat" and count > RETRAIN_GROWTH * stored.meta["trained_on"]:
        return f"it was trained on {stored.meta['trained_on']:,} vectors and would hold {count:,}"
    return None


def ensure_index(root: str, layer: str, embedding_key: str | None = None,
                 memory_bytes: int = DEFAULT_MEMORY_BYTES) -> tuple[StoredIndex, str]:
    """The index of ``layer`` under ``root``, built, extended or rebuilt as needed and
    written back; with one line saying which."""
    entries = completed_runs(root, layer, embedding_key)
    folder = layout.vector_index_dir(root, layer, entries[0]["embedding_key"])
    try:
        stored, problem = read_stored(folder), None
    except IndexProblem as exc:
        stored, problem = None, f"{exc}; rebuilt"
    if stored is not None:
        problem = _needs_rebuild(stored, entries, memory_bytes)
        problem = problem and f"{layout.join(folder, META_FILE)}: {problem}; rebuilt"
    if stored is None or problem:
        stored = build(entries, layer, memory_bytes)
        said = problem or f"built {stored.meta['factory']} over {stored.meta['count']:,} vectors"
    else:
        new = [e for e in entries if source_id(e) not in set(stored.meta["runs"])]
        if not new:
            return stored, f"up to date: {stored.meta['factory']}, {stored.meta['count']:,} vectors"
        before = stored.meta["count"]
        stored = add_runs(stored, new, layer)
        said = f"added {len(new)} run(s), {stored.meta['count'] - before:,} vectors (now {stored.meta['count']:,})"
    return write_stored(folder, stored), f"{folder}: {said}"


def search(stored: StoredIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosines and row positions of the ``k`` nearest rows of each (unit) query."""
    import faiss

    if stored.meta.get("nprobe"):
        faiss.extract_index_ivf(stored.index).nprobe = stored.meta["nprobe"]
    return stored.index.search(np.ascontiguousarray(queries, np.float32), k)
