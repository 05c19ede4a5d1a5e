"""Text reports for ``resnet50-inspect``: layer shapes, and a summary of a run or a root."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.inspection.results import completed_runs, iter_layer_parts
from pipeline.root.manifest import read_manifest
from pipeline.root.outputs import is_complete, part_files
from schemas import LAYER_NAMES, alias_of, canonical_layer, layer_shape, layout, parse_image_size
from schemas.accounting import BY_NAME, EMBEDDED, ERRORS, MATCHED, READ, SKIPPED_SAME_CONTENT, SKIPPED_UNCHANGED


def shapes_table(image_size="224", layers: list[str] | None = None) -> str:
    """Every selectable layer (or ``layers``): shape, pooled dims, bytes per image."""
    size = parse_image_size(image_size)
    names = [canonical_layer(name) for name in layers] if layers else list(LAYER_NAMES)
    header = (f"{'layer':<18} {'alias':<6} {'output shape':>14} {'pooled':>7} "
              f"{'pooled f32':>11} {'pooled f16':>11} {'full f32':>11} {'full f16':>11}")
    lines = [f"input {size} (height x width)", header, "-" * len(header)]
    for name in names:
        h, w, c = layer_shape(name, size)
        lines.append(
            f"{name:<18} {alias_of(name) or '':<6} {f'{h}x{w}x{c}':>14} {c:>7} "
            f"{_bytes(c * 4):>11} {_bytes(c * 2):>11} {_bytes(h * w * c * 4):>11} {_bytes(h * w * c * 2):>11}"
        )
    return "\n".join(lines)


def _bytes(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


def _error_examples(root: str, per_kind: int = 3) -> dict[tuple[str, str], list[str]]:
    examples: dict[tuple[str, str], list[str]] = {}
    for path in part_files(layout.errors_dir(root)):
        with FileSystems.open(path) as handle:
            table = pq.read_table(handle, columns=["stage", "error_type", "uri"])
        for stage, error_type, uri in zip(*(table[c].to_pylist() for c in ("stage", "error_type", "uri"))):
            bucket = examples.setdefault((stage, error_type), [])
            if len(bucket) < per_kind:
                bucket.append(uri)
    return examples


def _error_lines(root: str, errors_by_stage: dict) -> list[str]:
    examples = _error_examples(root)
    return [f"  errors at {stage}: {error_type} x{count}  e.g. {', '.join(examples.get((stage, error_type), []))}"
            for stage, types in errors_by_stage.items() for error_type, count in types.items()]


def _layer_lines(root: str, layers: list[dict], embedding_key: str | None) -> list[str]:
    lines = []
    for layer in layers:
        norms = np.concatenate([  # part by part: full feature maps can be far larger than memory
            np.linalg.norm(part.matrix.reshape(len(part.uris), -1).astype(np.float64), axis=1)
            for part in iter_layer_parts(root, layer["name"], embedding_key)
        ] or [np.zeros(0)])
        stats = (f"norm min {norms.min():.4g} mean {norms.mean():.4g} max {norms.max():.4g}"
                 if len(norms) else "no rows")
        lines.append(f"layer {layer['name']:<18} dims {layer['dims']:>8} shape {tuple(layer['shape'])}  {stats}")
    return lines


def _settings_line(manifest: dict) -> str:
    config = manifest["config"]
    return (f"weights: {manifest['weights']['kind']} ({manifest['weights']['spec']}); "
            f"input {config['image_size'][0]}x{config['image_size'][1]}, "
            f"{config['resize_mode']}, pooling {config['pooling']}")


def summary(root: str, embedding_key: str | None = None) -> str:
    """What a completed run did (``root`` one run's output), or every completed run of an
    incremental root (under ``embedding_key`` when its runs used several settings): counts,
    errors with examples, layers with norm statistics."""
    if not is_complete(root):
        return _root_summary(root, embedding_key)
    manifest = read_manifest(root)
    counts, timings = manifest["counts"], manifest["timings"]
    lines = [
        f"output: {root}",
        f"images embedded: {counts[EMBEDDED]} of {counts[MATCHED]} matched; errors: {counts[ERRORS]}"
        + (f"; images read: {counts[READ]}, " + ", ".join(
            f"{BY_NAME[kind].label}: {counts[kind]}" for kind in (SKIPPED_UNCHANGED, SKIPPED_SAME_CONTENT))
           if READ in counts else ""),
        _settings_line(manifest),
        f"run time: {timings['seconds_total']:.1f} s, {timings.get('images_per_second') or 0:.1f} images/s",
    ]
    lines += _error_lines(root, counts["errors_by_stage"])
    return "\n".join(lines + _layer_lines(root, manifest["layers"], None))


def _root_summary(root: str, embedding_key: str | None) -> str:
    """Every completed, trusted run of an incremental root under one embedding key."""
    entries = completed_runs(root, embedding_key=embedding_key)
    newest = read_manifest(entries[-1]["partition"])
    embedded = sum(entry["counts"][EMBEDDED] for entry in entries)
    lines = [f"incremental root: {root}: {len(entries)} completed runs, embedding key "
             f"{entries[-1]['embedding_key']}; {embedded} images embedded in all",
             _settings_line(newest)]
    for entry in entries:
        counts = entry["counts"]
        lines.append(f"run {entry['run']}: embedded {counts[EMBEDDED]} of {counts[MATCHED]} matched; "
                     f"errors {counts[ERRORS]}; skipped {counts.get('skipped', 0)}")
        manifest = read_manifest(entry["partition"])
        lines += _error_lines(entry["partition"], manifest["counts"]["errors_by_stage"])
    return "\n".join(lines + _layer_lines(root, newest["layers"], entries[-1]["embedding_key"]))
