"""``resnet50-inspect report``: one self-contained HTML page about what a run (or every run
of an incremental root) made: runs and their counts, errors by stage and type with
pictures, each layer's shape, dtype, bytes and statistics, neighbours of a few images per
layer, and the largest duplicate groups. No server, no network: pictures are inline.

Bounded whatever the collection: statistics from at most STATS_ROWS rows per layer, at
most ERROR_EXAMPLES pictures per kind of error, QUERIES neighbour rows per layer, and
near duplicates only where the index holds at most NEAR_DUPLICATES_UP_TO vectors (else
the page says to run ``resnet50-inspect duplicates``)."""

from __future__ import annotations

import html
from itertools import islice

import numpy as np
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.inspection import duplicates as twins
from pipeline.inspection.report_style import PAGE_CHECK_SCRIPT, PAGE_STYLE
from pipeline.inspection.results import completed_runs, entry_layer_parts
from pipeline.inspection.thumbnails import thumbnail_html
from pipeline.inspection.vector_index import PooledOnly, ensure_index, search
from pipeline.root.manifest import read_manifest
from pipeline.root.outputs import part_files
from schemas import layout

COUNTED = ("matched", "embedded", "errors", "skipped")
STATS_ROWS = 2000
ERROR_EXAMPLES = 3
QUERIES = 3
NEIGHBOURS = 5
NEAR_DUPLICATES_UP_TO = 20_000
DUPLICATE_GROUPS = 5
THRESHOLD = 0.97

escape = html.escape


def _runs_section(runs: list[tuple[str, dict]]) -> str:
    """One row per run with its counts, and a total row the page's script checks."""
    head = "".join(f"<th>{name}</th>" for name in ("run",) + COUNTED)
    rows = "".join(
        f'<tr class="run"><td>{escape(run)}</td>'
        + "".join(f'<td data-count="{name}">{manifest["counts"].get(name, 0)}</td>' for name in COUNTED) + "</tr>"
        for run, manifest in runs)
    totals = "".join(f'<td id="total-{name}">{sum(m["counts"].get(name, 0) for _, m in runs)}</td>' for name in COUNTED)
    return (f"<h2>Runs</h2><table><tr>{head}</tr>{rows}<tr class=total><td>all runs</td>{totals}</tr></table>"
            '<p id="check">counts not checked (the page\'s script did not run)</p>')


def _error_rows(partition: str):
    for path in part_files(layout.errors_dir(partition)):
        with FileSystems.open(path) as handle:
            yield from pq.read_table(handle, columns=["stage", "error_type", "uri", "message"]).to_pylist()


def _errors_section(runs: list[tuple[str, dict]], partitions: list[str]) -> str:
    """Errors by stage and type, counted from the manifests, with a few examples each."""
    totals: dict[tuple[str, str], int] = {}
    for _, manifest in runs:
        for stage, types in manifest["counts"].get("errors_by_stage", {}).items():
            for error_type, count in types.items():
                totals[(stage, error_type)] = totals.get((stage, error_type), 0) + count
    if not totals:
        return "<h2>Errors</h2><p>none</p>"
    examples: dict[tuple[str, str], list[dict]] = {}
    for partition in partitions:
        for row in _error_rows(partition):
            bucket = examples.setdefault((row["stage"], row["error_type"]), [])
            if len(bucket) < ERROR_EXAMPLES:
                bucket.append(row)
    parts = ["<h2>Errors</h2>"]
    for (stage, error_type), count in sorted(totals.items(), key=lambda item: -item[1]):
        parts.append(f"<h3>{escape(stage)}: {escape(error_type)} &times; {count}</h3><div class=gallery>")
        for row in examples.get((stage, error_type), []):
            parts.append(thumbnail_html(row["uri"]) + f'<p class="message">{escape(row["message"] or "")}</p>')
        parts.append("</div>")
    return "".join(parts)


def _layer_stats(entries: list[dict], layer: dict) -> str:
    """A table row: shape, dtype, bytes per image, norms and zeros over the first rows."""
    rows = list(islice((m for e in entries for m in entry_layer_parts(e, layer["name"])), 50))
    matrix = np.concatenate([r.matrix.reshape(len(r.uris), -1) for r in rows])[:STATS_ROWS] if rows else np.zeros((0, 1))
    norms = np.linalg.norm(matrix.astype(np.float64), axis=1) if len(matrix) else np.zeros(1)
    size = int(np.prod(layer["shape"])) * np.dtype(layer["dtype"]).itemsize
    cells = [layer["name"], "x".join(map(str, layer["shape"])), layer["dtype"], f"{size:,}",
             f"{norms.mean():.3g} ({norms.min():.3g}-{norms.max():.3g})",
             f"{float((matrix == 0).mean()) if matrix.size else 0:.1%}", f"{len(matrix):,}"]
    return "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>"


def _layers_section(entries: list[dict], layers: list[dict]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("layer", "shape", "dtype", "bytes per image",
                                               "norm: mean (min-max)", "zeros", "rows sampled"))
    return f"<h2>Layers</h2><table><tr>{head}</tr>" + "".join(_layer_stats(entries, l) for l in layers) + "</table>"


def _gallery(root: str, layer: str, key: str | None) -> tuple[str, object]:
    """Neighbours of the first QUERIES rows of the layer's index (built or brought up to date)."""
    try:
        stored, said = ensure_index(root, layer, key)
    except PooledOnly as exc:
        return f"<h3>{escape(layer)}</h3><p>{escape(str(exc))}</p>", None
    queries = np.stack([stored.index.reconstruct(i) for i in range(min(QUERIES, stored.index.ntotal))])
    cosines, rows = search(stored, queries, NEIGHBOURS + 1)
    parts = [f"<h3>{escape(layer)}</h3><p class=note>{escape(said)}</p>"]
    for query, (scores, found) in enumerate(zip(cosines, rows)):
        parts.append('<div class="gallery">' + thumbnail_html(stored.uris[query], "query"))
        parts += [thumbnail_html(stored.uris[r], f"{c:.3f}") for c, r in zip(scores, found) if r >= 0 and r != query][:NEIGHBOURS]
        parts.append("</div>")
    return "".join(parts), stored


def _duplicates_section(stored) -> str:
    if stored is None:
        return "<h2>Duplicates</h2><p>no pooled layer to compare</p>"
    groups = twins.exact_groups(stored)
    near_note = f"near duplicates: cosine &ge; {THRESHOLD} in {escape(stored.meta['layer'])}"
    if stored.index.ntotal <= NEAR_DUPLICATES_UP_TO:
        groups = groups + twins.near_groups(stored, THRESHOLD)
    else:
        near_note = (f"near duplicates not searched here ({stored.index.ntotal:,} vectors): run "
                     "resnet50-inspect duplicates")
    parts = [f"<h2>Duplicates</h2><p class=note>exact: the same bytes at several uris; {near_note}</p>"]
    for group in sorted(groups, key=lambda g: -len(g.rows))[:DUPLICATE_GROUPS]:
        parts.append(f"<h3>{group.kind}: {len(group.rows)} images</h3><div class=gallery>")
        parts += [thumbnail_html(stored.uris[r], f"{s:.3f}") for r, s in list(zip(group.rows, group.similarity))[:6]]
        parts.append("</div>")
    return "".join(parts)


def report_html(root: str, embedding_key: str | None = None) -> str:
    """The whole page as one string."""
    entries = completed_runs(root, embedding_key=embedding_key)
    runs = [(entry["run"] or "single", read_manifest(entry["partition"])) for entry in entries]
    layers = runs[-1][1]["layers"]
    galleries, stored = [], None
    for layer in layers:
        section, indexed = _gallery(root, layer["name"], entries[0]["embedding_key"])
        galleries.append(section)
        stored = stored or indexed
    body = "".join([f"<h1>{escape(root)}</h1>", _runs_section(runs),
                    _errors_section(runs, [e["partition"] for e in entries]), _layers_section(entries, layers),
                    "<h2>Neighbours</h2>", *galleries, _duplicates_section(stored)])
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(root)}</title>"
            f"<style>{PAGE_STYLE}</style></head><body>{body}<script>{PAGE_CHECK_SCRIPT}</script></body></html>")
