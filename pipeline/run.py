"""CLI: validate, run the extraction job, check the accounting, write the manifest.

Exit codes: 0 the run completed (per-image errors are data), 1 the run itself failed,
2 a usage problem found before any work, 3 the run completed and wrote everything but more
than --max_error_fraction of the inputs failed."""

from __future__ import annotations

import time

_IMPORTED_AT = time.time()  # before the heavy imports below: start-up is counted from here

import dataclasses
import datetime
import logging
import os
import sys

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from models.weights import WeightsError, check_weights_layout, resolve_weights_file
from pipeline import manifest as manifest_lib
from pipeline import outputs
from pipeline.build import build_pipeline
from pipeline.local import LOCAL_RUNNER, set_tensorflow_threads, use_local_workers
from pipeline.options import (
    ExtractOptions,
    extraction_config,
    help_text,
    input_limits,
    unknown_arguments,
)
from schemas import ExtractionConfig, InputLimits, layout
from transforms.errors import METRICS_NAMESPACE

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TOO_MANY_ERRORS = 0, 1, 2, 3
_log = logging.getLogger("pipeline.run")


class UsageError(Exception):
    """A problem with the arguments or the environment, found before any work."""


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def parse_args(
    argv: list[str],
) -> tuple[PipelineOptions, ExtractOptions, ExtractionConfig, InputLimits]:
    """Parse and validate; raises UsageError (argparse's own errors exit with 2 as well)."""
    unknown = unknown_arguments(argv)
    if unknown:
        raise UsageError(
            f"unknown option {', '.join(unknown)}; see python -m pipeline.run --help"
        )
    options = PipelineOptions(argv)
    extract_options = options.view_as(ExtractOptions)
    if not extract_options.input:
        raise UsageError("--input is required: a file, glob or gs:// pattern of images")
    if not extract_options.output:
        raise UsageError("--output is required: the directory to write Parquet files into")
    extract_options.input = absolute_pattern(extract_options.input)
    try:
        config = extraction_config(extract_options)
        limits = input_limits(extract_options)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    fraction = extract_options.max_error_fraction
    if fraction is not None and not 0 <= fraction <= 1:
        raise UsageError(f"--max_error_fraction must be between 0 and 1, got {fraction}")
    return options, extract_options, config, limits


def absolute_pattern(pattern: str) -> str:
    """Local patterns become absolute, so the URIs in the outputs do not depend on the cwd."""
    return os.path.abspath(pattern) if outputs.is_local(pattern) else pattern


def count_matches(pattern: str) -> int:
    """How many files ``pattern`` matches now (directories are never matched)."""
    try:
        return len(FileSystems.match([pattern])[0].metadata_list)
    except Exception as exc:  # BeamIOError wraps "no match" on some filesystems.
        _log.info("matching %s raised %s", pattern, exc)
        return 0


def preflight(extract_options: ExtractOptions, config: ExtractionConfig) -> tuple[int, str | None]:
    """Everything checked before any work: inputs, output folder, weights.
    Returns (files matched, local weights file or None for random weights)."""
    matched = count_matches(extract_options.input)
    if matched == 0:
        raise UsageError(f"--input {extract_options.input!r} matches no file")
    existing = outputs.existing_entries(extract_options.output)
    if existing and not extract_options.overwrite:
        shown = ", ".join(existing[:5]) + (" ..." if len(existing) > 5 else "")
        raise UsageError(
            f"--output {extract_options.output} is not empty ({shown}); pass --overwrite to "
            "replace an earlier run's outputs, or choose an empty directory"
        )
    try:
        weights_file = resolve_weights_file(config.weights)
        if weights_file is not None:
            check_weights_layout(weights_file, label=config.weights)
    except WeightsError as exc:
        raise UsageError(str(exc)) from exc
    return matched, weights_file


def _first_batch_unix_seconds(result) -> float | None:
    try:
        found = result.metrics().query(
            MetricsFilter().with_namespace(METRICS_NAMESPACE).with_name("first_batch_unix_ms")
        )["distributions"]
        return min(d.committed.min for d in found if d.committed and d.committed.count) / 1000
    except Exception:  # No batch at all, or a runner without metrics.
        return None


def _counter(result, name: str) -> int | None:
    try:
        found = result.metrics().query(
            MetricsFilter().with_namespace(METRICS_NAMESPACE).with_name(name)
        )["counters"]
    except Exception:  # Some runners do not report metrics.
        return None
    return sum(c.committed or 0 for c in found) if found else 0


def check_accounting(counts: dict) -> list[str]:
    """Every matched input in images/ or errors/; every layer one row per image."""
    problems = []
    if counts["matched"] != counts["embedded"] + counts["errors"]:
        problems.append(
            f"{counts['matched']} inputs matched but images/ has {counts['embedded']} rows "
            f"and errors/ {counts['errors']}"
        )
    for layer, rows in counts["rows_per_layer"].items():
        if rows != counts["embedded"]:
            problems.append(f"layer {layer} has {rows} rows, images/ has {counts['embedded']}")
    return problems


def print_summary(manifest: dict, output_dir: str) -> None:
    counts = manifest["counts"]
    print(f"images embedded: {counts['embedded']} of {counts['matched']} matched")
    by_stage = ", ".join(
        f"{stage}: {sum(types.values())} ({', '.join(f'{t} {n}' for t, n in types.items())})"
        for stage, types in counts["errors_by_stage"].items()
    )
    print(f"errors: {counts['errors']}" + (f" [{by_stage}]" if by_stage else ""))
    print(f"weights: {manifest['weights']['kind']} ({manifest['weights']['spec']})")
    for layer in manifest["layers"]:
        print(
            f"layer {layer['name']:<18} keras {layer['keras_layer']:<18} feature map "
            f"{tuple(layer['feature_shape'])} -> stored {tuple(layer['shape'])} {layer['dtype']}"
        )
    timings = manifest["timings"]
    startup = f" (first batch after {timings['startup_seconds']:.1f} s)" if timings.get("startup_seconds") else ""
    print(f"seconds: {timings['seconds_total']:.1f}{startup}; output: {output_dir}")


def run(argv: list[str] | None = None, *, extract: beam.PTransform | None = None,
        launched_at: float | None = None) -> int:
    """Run the CLI with ``argv`` and return the exit code. ``extract`` replaces the
    ExtractLayers step (fault-injection tests). Start-up is counted from ``launched_at``
    (unix time; the CLI passes when it began importing), else from this call."""
    launched_at = launched_at or time.time()
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(help_text())
        return EXIT_OK
    started_utc = _utc_now()
    try:
        options, extract_options, config, limits = parse_args(argv)
        matched, weights_file = preflight(extract_options, config)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # argparse: bad choice or type; it printed the usage.
        return int(exc.code or EXIT_USAGE)

    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = LOCAL_RUNNER
        use_local_workers(options, extract_options, argv, matched)
    if extract_options.tf_threads:
        set_tensorflow_threads(extract_options.tf_threads)
    output_dir = extract_options.output
    if extract_options.overwrite:
        removed = outputs.remove_previous_run(output_dir)
        if removed:
            _log.info("--overwrite: removed %s from %s", ", ".join(removed), output_dir)

    _log.info("embedding %d files from %s into %s", matched, extract_options.input, output_dir)
    pipeline_started = time.perf_counter()
    try:
        pipeline = beam.Pipeline(options=options)
        build_pipeline(
            pipeline, input_pattern=extract_options.input, output_dir=output_dir,
            config=config, limits=limits, extract=extract,
        )
        result = pipeline.run()
        state = result.wait_until_finish()
    except Exception:
        _log.exception("the pipeline failed; %s has no manifest and is incomplete", output_dir)
        return EXIT_FAILED
    pipeline_seconds = time.perf_counter() - pipeline_started
    if state not in (None, beam.runners.runner.PipelineState.DONE):
        _log.error("the pipeline ended in state %s; %s is incomplete", state, output_dir)
        return EXIT_FAILED

    counts = outputs.written_counts(output_dir, config)
    counted_matches = _counter(result, "matched")
    counts = {"matched": matched if counted_matches is None else counted_matches, **counts}
    problems = check_accounting(counts)
    if problems:
        for problem in problems:
            _log.error("accounting check failed: %s", problem)
        _log.error("no manifest written: %s is not a complete output", output_dir)
        return EXIT_FAILED

    seconds_total = time.time() - launched_at
    first_batch = _first_batch_unix_seconds(result)
    manifest = {
        "complete": True,
        "manifest_version": manifest_lib.MANIFEST_VERSION,
        "input": extract_options.input,
        "output": output_dir,
        "runner": standard.runner,
        "config": manifest_lib.config_record(config),
        "limits": dataclasses.asdict(limits),
        "weights": manifest_lib.weights_record(config, weights_file),
        "layers": manifest_lib.layers_record(config),
        "counts": counts,
        "versions": manifest_lib.library_versions(),
        "timings": {
            "started_utc": started_utc,
            "finished_utc": _utc_now(),
            "seconds_total": round(seconds_total, 3),
            "seconds_pipeline": round(pipeline_seconds, 3),
            "startup_seconds": round(first_batch - launched_at, 3) if first_batch else None,
            "images_per_second": round(counts["embedded"] / pipeline_seconds, 3)
            if pipeline_seconds > 0 else None,
        },
    }
    fraction = counts["errors"] / counts["matched"] if counts["matched"] else 0.0
    limit = extract_options.max_error_fraction
    manifest["error_fraction"] = round(fraction, 6)
    manifest["max_error_fraction"] = limit
    manifest["max_error_fraction_exceeded"] = limit is not None and fraction > limit
    manifest_lib.write_manifest(output_dir, manifest)
    print_summary(manifest, output_dir)
    print(f"manifest: {layout.manifest_path(output_dir)}")
    if manifest["max_error_fraction_exceeded"]:
        _log.error(
            "%d of %d inputs failed (%.1f%%), over --max_error_fraction %s; exiting with %d",
            counts["errors"], counts["matched"], 100 * fraction, limit, EXIT_TOO_MANY_ERRORS,
        )
        return EXIT_TOO_MANY_ERRORS
    return EXIT_OK


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    for name in ("pipeline", "transforms", "models"):
        logging.getLogger(name).setLevel(logging.INFO)
    logging.getLogger("apache_beam.runners.portability.local_job_service").addFilter(
        lambda record: "No semi_persistent_directory found" not in record.getMessage()
    )
    sys.exit(run(launched_at=_IMPORTED_AT))


if __name__ == "__main__":
    main()
