"""Duplicates in one layer's index: exact ones (the same bytes, one image_id, at several
uris) and near ones (embeddings at least ``threshold`` cosine apart: a re-encoded, resized
or lightly edited copy), as groups written to Parquet (group, kind, image_id, uri,
similarity) and summed up in a few lines."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.inspection.vector_index import StoredIndex, search

DUPLICATES_SCHEMA = pa.schema([("group", pa.int64()), ("kind", pa.string()), ("image_id", pa.string()),
                               ("uri", pa.string()), ("similarity", pa.float32())])
SEARCH_BATCH = 4096


class Group(NamedTuple):
    kind: str  # "exact" (one image_id at several uris) or "near" (cosine >= threshold)
    rows: list[int]
    similarity: list[float]  # per row: its highest cosine to another row of the group


def exact_groups(stored: StoredIndex) -> list[Group]:
    """Rows that share an image_id (the SHA-256 of the bytes), largest group first."""
    by_id: dict[str, list[int]] = {}
    for row, image_id in enumerate(stored.image_ids):
        by_id.setdefault(image_id, []).append(row)
    groups = [Group("exact", rows, [1.0] * len(rows)) for rows in by_id.values() if len(rows) > 1]
    return sorted(groups, key=lambda g: -len(g.rows))


def _find(parent: list[int], row: int) -> int:
    while parent[row] != row:
        parent[row] = parent[parent[row]]
        row = parent[row]
    return row


def near_groups(stored: StoredIndex, threshold: float, k: int = 10) -> list[Group]:
    """Rows joined when one is among the other's ``k`` nearest at cosine >= ``threshold``
    and their image_ids differ (same bytes are exact duplicates); largest group first."""
    import faiss

    count = stored.index.ntotal
    if stored.meta["factory"] != "Flat":
        faiss.extract_index_ivf(stored.index).make_direct_map()
    parent, best = list(range(count)), np.zeros(count, np.float32)
    for start in range(0, count, SEARCH_BATCH):
        queries = stored.index.reconstruct_n(start, min(SEARCH_BATCH, count - start))
        cosines, rows = search(stored, queries, min(k + 1, count))
        for offset, (row_cosines, row_ids) in enumerate(zip(cosines, rows)):
            row = start + offset
            for cosine, other in zip(row_cosines, row_ids):
                if other < 0 or other == row or cosine < threshold:
                    continue
                if stored.image_ids[other] == stored.image_ids[row]:
                    continue
                best[row] = max(best[row], cosine)
                best[other] = max(best[other], cosine)
                parent[_find(parent, row)] = _find(parent, int(other))
    members: dict[int, list[int]] = {}
    for row in range(count):
        if best[row] >= threshold:
            members.setdefault(_find(parent, row), []).append(row)
    groups = [Group("near", rows, [float(best[r]) for r in rows]) for rows in members.values() if len(rows) > 1]
    return sorted(groups, key=lambda g: -len(g.rows))


def duplicates_table(stored: StoredIndex, groups: list[Group]) -> pa.Table:
    """One row per member of each group, groups numbered from 0."""
    columns = {name: [] for name in DUPLICATES_SCHEMA.names}
    for number, group in enumerate(groups):
        for row, similarity in zip(group.rows, group.similarity):
            columns["group"].append(number)
            columns["kind"].append(group.kind)
            columns["image_id"].append(stored.image_ids[row])
            columns["uri"].append(stored.uris[row])
            columns["similarity"].append(similarity)
    return pa.table(columns, schema=DUPLICATES_SCHEMA)


def write_table(table: pa.Table, path: str) -> None:
    with FileSystems.create(path) as handle:
        pq.write_table(table, handle)


def summary_lines(stored: StoredIndex, groups: list[Group], threshold: float, shown: int = 5) -> list[str]:
    """Counts by kind, then the largest groups with their uris."""
    lines = []
    for kind, what in (("exact", "the same bytes at several uris"), ("near", f"cosine >= {threshold}")):
        chosen = [g for g in groups if g.kind == kind]
        lines.append(f"{kind}: {len(chosen)} groups, {sum(len(g.rows) for g in chosen)} images ({what})")
        for group in chosen[:shown]:
            names = ", ".join(stored.uris[r] for r in group.rows[:4])
            more = f" and {len(group.rows) - 4} more" if len(group.rows) > 4 else ""
            lines.append(f"  {len(group.rows)} images, min similarity {min(group.similarity):.4f}: {names}{more}")
    return lines
