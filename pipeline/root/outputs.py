"""The output directory: is it free, clearing an earlier run, and counting what was written."""

from __future__ import annotations

import collections
import logging
import os

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from schemas import ExtractionConfig, accounting, layout

_log = logging.getLogger(__name__)


def is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) in (None, "file")


def existing_entries(output_dir: str) -> list[str]:
    """Names of whatever already exists directly under ``output_dir`` (files or folders),
    except the temporary files of small writes under way (another run taking the lock)."""
    if is_local(output_dir):
        if not os.path.exists(output_dir):
            return []
        if not os.path.isdir(output_dir):
            return [output_dir]
        names = os.listdir(output_dir)
    else:
        match = FileSystems.match([layout.join(output_dir, "*")])[0]
        names = {m.path[len(output_dir.rstrip("/")) + 1:].split("/")[0] for m in match.metadata_list}
    return sorted(name for name in names if not layout.is_temporary(name))


def remove_previous_run(output_dir: str) -> list[str]:
    """Delete the manifest first (so the folder reads as incomplete at once), then the data
    folders of an earlier run. Other files are left alone. Returns what was removed."""
    removed = []
    for entry in layout.OUTPUT_ENTRIES:
        path = layout.join(output_dir, entry)
        is_folder = entry != layout.MANIFEST_FILE
        if is_local(output_dir):
            present = os.path.exists(path)
        else:  # Object stores have no folders: look for anything under the prefix.
            present = bool(FileSystems.match([path + "/**" if is_folder else path])[0].metadata_list)
        if present:
            FileSystems.delete([path + "/" if is_folder and not is_local(output_dir) else path])
            removed.append(entry)
    return removed


def is_complete(output_dir: str) -> bool:
    """True only for the output of a run that finished: manifest.json is written last, after
    the accounting check, and says ``"complete": true``. Anything else (no manifest, as after
    a crash or a kill, or while a run is going) is an incomplete output."""
    from pipeline.root.manifest import read_manifest

    path = layout.manifest_path(output_dir)
    if not FileSystems.exists(path):
        return False
    try:
        return read_manifest(output_dir).get("complete") is True
    except (OSError, ValueError, AttributeError) as exc:  # cut short, not JSON, not an object
        _log.warning("%s cannot be read (%s: %s): %s is not treated as complete", path,
                     type(exc).__name__, exc, output_dir)
        return False


def data_dirs(output_dir: str, layers) -> list[str]:
    """Every folder of Parquet parts a run can write under ``output_dir``."""
    return ([layout.images_dir(output_dir), layout.errors_dir(output_dir),
             layout.skipped_dir(output_dir), layout.shards_dir(output_dir)]
            + [layout.layer_dir(output_dir, layer) for layer in layers])


def part_sizes(output_dir: str, layers) -> dict[str, int]:
    """{path relative to ``output_dir``: bytes} of every part file there: what the manifest
    records, and what an earlier run is checked against. One listing per folder."""
    prefix = output_dir.rstrip("/") + "/"
    return {metadata.path[len(prefix):]: metadata.size_in_bytes
            for directory in data_dirs(output_dir, layers)
            for metadata in FileSystems.match([layout.parts_glob(directory)])[0].metadata_list}


def damage(output_dir: str) -> list[str]:
    """Why the run at ``output_dir`` cannot be trusted, or [] when its manifest is complete
    and its part files are exactly the ones the manifest lists, with their recorded sizes.
    Manifests written before files were recorded are trusted on the manifest alone."""
    from pipeline.root.manifest import read_manifest

    missing = [f"{layout.MANIFEST_FILE} is missing, unreadable or not complete"]
    try:
        manifest = read_manifest(output_dir)  # read once: this runs for every earlier run
    except (OSError, ValueError):
        return missing
    if not isinstance(manifest, dict) or manifest.get("complete") is not True:
        return missing
    recorded = manifest.get("files")
    if not isinstance(recorded, dict):
        return []
    present = part_sizes(output_dir, [layer["name"] for layer in manifest.get("layers", [])])
    problems = [f"{name} is missing" for name in recorded if name not in present]
    problems += [f"{name} is {present[name]} bytes, the manifest recorded {size}"
                 for name, size in recorded.items() if name in present and present[name] != size]
    problems += [f"{name} is not in the manifest" for name in present if name not in recorded]
    return problems


def part_files(directory: str) -> list[str]:
    """The Parquet part files written into ``directory``, sorted."""
    match = FileSystems.match([layout.parts_glob(directory)])[0]
    return sorted(m.path for m in match.metadata_list)


def count_rows(directory: str) -> int:
    """Rows in all part files of ``directory``, from the Parquet footers only."""
    total = 0
    for path in part_files(directory):
        with FileSystems.open(path) as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


def errors_by_stage(output_dir: str) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """({stage: {error_type: count}}, {"stage/error_type": the smallest uri with it}) over
    ``errors/``: the summary prints one line per error type with an example."""
    def rows():
        for path in part_files(layout.errors_dir(output_dir)):
            with FileSystems.open(path) as handle:
                table = pq.read_table(handle, columns=["uri", "stage", "error_type"])
            yield from zip(table["uri"].to_pylist(), table["stage"].to_pylist(), table["error_type"].to_pylist())

    return tally_errors(rows())


def tally_errors(rows) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """(uri, stage, error_type) rows -> ({stage: {error_type: count}}, {"stage/error_type":
    the smallest uri with it}), as the manifest's ``errors_by_stage`` and ``error_examples``."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    examples: dict[str, str] = {}
    for uri, stage, error_type in rows:
        counts[stage][error_type] += 1
        name = f"{stage}/{error_type}"
        examples[name] = min(examples.get(name, uri), uri)
    return {stage: dict(types) for stage, types in sorted(counts.items())}, dict(sorted(examples.items()))


def kept_columns_missing(output_dir: str, kept: list[str]) -> list[str]:
    """The ``--keep_columns`` names that are null in every row of ``images/`` (no embedded
    input had them), from the Parquet footers' null counts; [] when images/ is empty."""
    rows, nulls = 0, collections.Counter()
    for path in part_files(layout.images_dir(output_dir)):
        with FileSystems.open(path) as handle:
            metadata = pq.ParquetFile(handle).metadata
        rows += metadata.num_rows
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for i in range(row_group.num_columns):
                column = row_group.column(i)
                name = column.path_in_schema
                if name in kept:
                    stats = column.statistics
                    nulls[name] += (stats.null_count if stats is not None and stats.has_null_count
                                    else 0)
    return [name for name in kept if rows and nulls[name] == rows]


def written_counts(output_dir: str, config: ExtractionConfig) -> dict:
    """Rows in images/, errors/ and every layer, with errors by stage."""
    by_stage, examples = errors_by_stage(output_dir)
    return {
        "error_examples": examples,
        accounting.EMBEDDED: count_rows(layout.images_dir(output_dir)),
        accounting.ERRORS: count_rows(layout.errors_dir(output_dir)),
        "errors_by_stage": by_stage,
        "rows_per_layer": {
            layer: count_rows(layout.layer_dir(output_dir, layer)) for layer in config.layers
        },
    }
