"""CLI: validate, run the extraction job, check the accounting, write the manifest.

Exit codes: 0 the run completed (per-image errors are data), 1 the run itself failed,
2 a usage problem found before any work, 3 the run completed and wrote everything but more
than --max_error_fraction of the inputs failed."""

from __future__ import annotations

import time

_IMPORTED_AT = time.time()  # before the heavy imports below: start-up is counted from here

import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    DebugOptions,
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
)

from models.weights import (
    WEIGHTS_RANDOM,
    WeightsError,
    check_weights_layout,
    resolve_weights_file,
    weights_kind,
)
from pipeline import incremental
from pipeline import lock as lock_lib
from pipeline import manifest as manifest_lib
from pipeline import outputs
from pipeline.build import build_pipeline
from pipeline.finalize import FinalizeRun
from pipeline.local import LOCAL_RUNNER, is_local_runner, set_tensorflow_threads, use_local_workers
from pipeline.progress import ProgressPrinter
from pipeline.options import (
    ExtractOptions,
    extraction_config,
    help_text,
    input_limits,
    kept_columns,
    model_handler,
    unknown_arguments,
)
from schemas import ExtractionConfig, InputLimits, layout
from transforms.shards import shard_format

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TOO_MANY_ERRORS = 0, 1, 2, 3
_log = logging.getLogger("pipeline.run")


class UsageError(Exception):
    """A problem with the arguments or the environment, found before any work."""


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
        kept_columns(extract_options)  # checked here, before anything is locked
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    fraction = extract_options.max_error_fraction
    if fraction is not None and not 0 <= fraction <= 1:
        raise UsageError(f"--max_error_fraction must be between 0 and 1, got {fraction}")
    check_model_placement(options, extract_options)
    return options, extract_options, config, limits


def check_model_placement(options: PipelineOptions, extract_options: ExtractOptions) -> None:
    """--model_copies is at least 1; --accelerator_hint (right fitting) is not combined with
    the worker_accelerator service option, which Dataflow's right fitting does not allow."""
    copies = extract_options.model_copies
    if copies is not None and copies < 1:
        raise UsageError(f"--model_copies must be at least 1, got {copies}")
    if extract_options.accelerator_hint is not None and not extract_options.accelerator_hint.strip():
        raise UsageError("--accelerator_hint is empty; give e.g. "
                         "'type:nvidia-l4;count:1;install-nvidia-driver'")
    settings = ((options.view_as(GoogleCloudOptions).dataflow_service_options or [])
                + (options.view_as(DebugOptions).experiments or []))
    gpu_workers = any(setting.startswith("worker_accelerator") for setting in settings)
    if extract_options.accelerator_hint and gpu_workers:
        raise UsageError("--accelerator_hint puts the GPU on the model step alone (right fitting), "
                         "which Dataflow does not combine with worker_accelerator; drop the "
                         "worker_accelerator service option, or --accelerator_hint")
    if gpu_workers and copies is None:
        _log.warning("GPU workers without --model_copies: each SDK process (one per vCPU) loads "
                     "its own model onto the GPU; --model_copies 1 shares one per GPU")


def absolute_pattern(pattern: str) -> str:
    """Local patterns become absolute, so the URIs in the outputs do not depend on the cwd."""
    return os.path.abspath(pattern) if outputs.is_local(pattern) else pattern


def input_file_count(pattern: str, *, count_all: bool, input_format: str = "auto") -> int | None:
    """Check that ``pattern`` matches at least one file (UsageError if not). With
    ``count_all`` (local runs, for the progress line and the one-batch heuristic) return how
    many images it holds when every file is an image file, or None when shards are among
    them (their samples are only counted by reading them). Without it, stop at the first
    match and return None, so that the launcher never lists the collection: the job lists it."""
    try:
        match = FileSystems.match([pattern], limits=None if count_all else [1])[0]
        paths = [metadata.path for metadata in match.metadata_list]
    except Exception as exc:  # BeamIOError wraps "no match" on some filesystems.
        _log.info("matching %s raised %s", pattern, exc)
        paths = []
    if not paths:
        raise UsageError(f"--input {pattern!r} matches no file")
    if not count_all or any(shard_format(path, input_format) != "files" for path in paths):
        return None
    return len(paths)


def preflight(extract_options: ExtractOptions, config: ExtractionConfig, *, remote: bool,
              check_paths: bool) -> tuple[int | None, str | None]:
    """Everything checked before the output is touched: inputs and weights. ``check_paths``
    False (a --dry_run) skips the filesystem checks, which need credentials for gs://.
    Returns (files matched, counted for local runs only, or None; local weights file or None)."""
    if remote and outputs.is_local(extract_options.input):
        raise UsageError(f"--input {extract_options.input} is local: remote workers cannot read "
                         "it; copy the images to gs:// (or another shared filesystem)")
    if remote and outputs.is_local(extract_options.output):
        raise UsageError(f"--output {extract_options.output} is local: remote workers cannot write it")
    if remote and weights_kind(config.weights) == "file" and "://" not in config.weights:
        raise UsageError(f"--weights {config.weights} is a local file: remote workers cannot read "
                         "it; copy it to gs:// and pass that path")
    if extract_options.mode == "incremental" and extract_options.overwrite:
        raise UsageError("--overwrite does not apply to --mode incremental: each run writes a "
                         "new partition")
    matched = None
    if check_paths:
        matched = input_file_count(extract_options.input, count_all=not remote,
                                   input_format=extract_options.input_format)
    if not check_paths and weights_kind(config.weights) != WEIGHTS_RANDOM:
        return matched, None
    try:
        weights_file = resolve_weights_file(config.weights)
        if weights_file is not None:
            check_weights_layout(weights_file, label=config.weights)
    except WeightsError as exc:
        raise UsageError(str(exc)) from exc
    return matched, weights_file


def check_output(extract_options: ExtractOptions) -> None:
    """A single run needs an empty --output (or --overwrite); an incremental run needs an
    empty or incremental root. The run's own lock file does not count."""
    if extract_options.mode == "incremental":
        try:
            incremental.check_root(extract_options.output)
        except incremental.NotAnIncrementalRoot as exc:
            raise UsageError(str(exc)) from exc
        return
    existing = [e for e in outputs.existing_entries(extract_options.output) if e != layout.LOCK_FILE]
    if existing and not extract_options.overwrite:
        shown = ", ".join(existing[:5]) + (" ..." if len(existing) > 5 else "")
        raise UsageError(
            f"--output {extract_options.output} is not empty ({shown}); pass --overwrite to "
            "replace an earlier run's outputs, or choose an empty directory"
        )


class OutputPlan(NamedTuple):
    """Where this run writes, the lock it holds, and for incremental runs its root and what
    it compares with."""

    output_dir: str
    run_id: str
    root: str | None = None
    comparison: incremental.Comparison | None = None
    locked: bool = False

    @property
    def lock_root(self) -> str:
        return self.root if self.root is not None else self.output_dir


def plan_output(extract_options: ExtractOptions, config: ExtractionConfig, *, check_paths: bool,
                remote: bool) -> OutputPlan:
    """Take the lock on --output (raising UsageError when another run holds it), then check
    the folder. Single runs write to --output; incremental runs to a new run=<id> partition
    of the root, compared with the root's earlier runs under the same embedding key. A dry
    run touches nothing and plans the full comparison."""
    run_id = incremental.new_run_id()
    incremental_mode = extract_options.mode == "incremental"
    root = extract_options.output.rstrip("/") if incremental_mode else None
    output_dir = layout.run_partition(root, run_id) if incremental_mode else extract_options.output
    plan = OutputPlan(output_dir, run_id, root)
    if not check_paths:
        return plan._replace(comparison=incremental.Comparison(extract_options.skip_by, None, None, None)
                             if incremental_mode else None)
    try:
        lock_lib.acquire_lock(plan.lock_root, run_id,
                              stale_after_hours=extract_options.lock_stale_hours, local=not remote)
    except lock_lib.RootLocked as exc:
        raise UsageError(str(exc)) from exc
    try:
        check_output(extract_options)
        comparison = (incremental.comparison(root, config.embedding_key, extract_options.skip_by)
                      if incremental_mode else None)
    except BaseException:
        lock_lib.release_lock(plan.lock_root, run_id)
        raise
    return plan._replace(comparison=comparison, locked=True)


def run_record(extract_options: ExtractOptions, config: ExtractionConfig, limits: InputLimits,
               runner: str, weights: dict, plan: OutputPlan) -> dict:
    """What the launcher knows about the run, for the manifest the job writes."""
    record = {
        "input": extract_options.input,
        "output": plan.output_dir,
        "mode": extract_options.mode,
        "runner": runner,
        "config": config.settings_record(),
        "limits": dataclasses.asdict(limits),
        "weights": weights,
        "layers": manifest_lib.layers_record(config),
        "max_error_fraction": extract_options.max_error_fraction,
        # Where the model ran: per SDK process (null), or N model processes per machine.
        "model_copies": extract_options.model_copies,
        "accelerator_hint": extract_options.accelerator_hint,
    }
    if plan.root is not None:
        comparison = plan.comparison
        record.update(
            root=plan.root, run=plan.run_id, embedding_key=config.embedding_key,
            skip_by=comparison.skip_by,
            earlier_runs_with_same_key=(None if comparison.image_parts is None
                                        else len(comparison.image_parts)),
        )
    return record


def print_summary(manifest: dict, output_dir: str) -> None:
    counts = manifest["counts"]
    skipped = ""
    if counts.get("skipped"):
        skipped = (f", {counts['skipped_unchanged']} skipped unchanged (not opened), "
                   f"{counts['skipped_same_content']} skipped for the same content")
    print(f"images embedded: {counts['embedded']} of {counts['matched']} matched; "
          f"{counts['read']} files read{skipped}")
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
        model_factory=None, launched_at: float | None = None, on_result=None) -> int:
    """Run the CLI with ``argv`` and return the exit code. ``extract`` replaces the
    ExtractLayers step (fault-injection tests); ``model_factory(config)`` replaces only the
    model, wherever the options place it (benchmarks' zero-cost model, injected faults).
    Start-up is counted from ``launched_at`` (unix time; the CLI passes when it began
    importing), else from this call.
    ``on_result(result)`` receives Beam's PipelineResult once the job is submitted (with
    --dry_run, the built Dataflow job is ``result.job``)."""
    launched_at = launched_at or time.time()
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(help_text())
        return EXIT_OK
    try:
        plan = plan_run(argv, launched_at)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # argparse: bad choice or type; it printed the usage.
        return int(exc.code or EXIT_USAGE)

    still_running = False
    try:
        code, still_running = _run_job(plan, extract=extract, model_factory=model_factory,
                                       on_result=on_result)
        return code
    finally:
        if plan.output.locked and not still_running:
            # The job's last step releases the lock after a success; this covers every
            # ending the launcher saw. A job launched without waiting releases it itself
            # (or it goes stale).
            lock_lib.release_lock(plan.output.lock_root, plan.output.run_id)


class RunPlan(NamedTuple):
    """Everything the launcher decided before the job, carried from parsing to reporting."""

    argv: list[str]
    options: PipelineOptions
    extract_options: ExtractOptions
    config: ExtractionConfig  # with the weights' SHA-256 filled in
    limits: InputLimits
    weights: dict  # the manifest's weights record
    output: OutputPlan
    matched: int | None  # files matched, counted for local runs only
    remote: bool
    dry_run: bool
    launched_at: float
    kept_columns: tuple[str, ...] = ()  # --keep_columns, checked


def plan_run(argv: list[str], launched_at: float) -> RunPlan:
    """Parse, check the inputs and weights, take the output's lock: raises UsageError (or
    argparse's SystemExit) before any work."""
    options, extract_options, config, limits = parse_args(argv)
    remote = not is_local_runner(options.view_as(StandardOptions).runner)
    dry_run = bool(options.view_as(TestOptions).dry_run)
    matched, weights_file = preflight(extract_options, config, remote=remote, check_paths=not dry_run)
    weights = manifest_lib.weights_record(config, weights_file)
    config = dataclasses.replace(config, weights_sha256=weights.get("sha256"))
    output = plan_output(extract_options, config, check_paths=not dry_run, remote=remote)
    return RunPlan(argv, options, extract_options, config, limits, weights, output, matched,
                   remote, dry_run, launched_at, kept_columns(extract_options))


def _run_job(plan: RunPlan, *, extract, model_factory, on_result) -> tuple[int, bool]:
    """Build, run and report; returns (exit code, whether the job is still running
    because it was launched without waiting)."""
    options, extract_options, config, matched = plan.options, plan.extract_options, plan.config, plan.matched
    output = plan.output
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = LOCAL_RUNNER
        use_local_workers(options, extract_options, plan.argv, matched)
    if extract_options.tf_threads:
        set_tensorflow_threads(extract_options.tf_threads)
    output_dir = output.output_dir
    if extract_options.overwrite:
        removed = outputs.remove_previous_run(output_dir)
        if removed:
            _log.info("--overwrite: removed %s from %s", ", ".join(removed), output_dir)

    _log.info("embedding %s files from %s into %s", "the" if matched is None else matched,
              extract_options.input, output_dir)
    record = run_record(extract_options, config, plan.limits, standard.runner, plan.weights, output)
    on_complete = incremental.CompleteRun(output.lock_root, output.run_id, index_root=output.root,
                                          key=config.embedding_key)
    progress_dir = None if plan.remote else tempfile.mkdtemp(prefix="resnet50-progress-")
    try:
        pipeline = beam.Pipeline(options=options)
        build_pipeline(
            pipeline, input_pattern=extract_options.input, output_dir=output_dir,
            config=config, limits=plan.limits, extract=extract,
            handler=model_handler(extract_options, config, model_factory),
            comparison=output.comparison, input_format=extract_options.input_format,
            image_column=extract_options.image_column, keep_columns=plan.kept_columns,
            finalize=FinalizeRun(output_dir, config, record, launched_at=plan.launched_at,
                                 submitted_at=time.time(), on_complete=on_complete),
            progress_dir=progress_dir,
        )
        progress = (ProgressPrinter(progress_dir, matched, extract_options.progress_seconds)
                    if progress_dir else contextlib.nullcontext())
        with progress:
            result = pipeline.run()
            if on_result is not None:
                on_result(result)
            if plan.dry_run:
                print(f"dry run: built the {standard.runner} job; nothing was submitted")
                return EXIT_OK, False
            state = result.wait_until_finish()
    except Exception:
        _log.exception("the pipeline failed; %s has no manifest and is incomplete", output_dir)
        return EXIT_FAILED, False
    finally:
        if progress_dir:
            shutil.rmtree(progress_dir, ignore_errors=True)
    if state not in (None, beam.runners.runner.PipelineState.DONE):
        _log.error("the pipeline ended in state %s; %s is incomplete", state, output_dir)
        return EXIT_FAILED, False
    if not FileSystems.exists(layout.manifest_path(output_dir)):
        if plan.remote and not getattr(result, "has_job", True):
            print("launched without waiting (template launch): the job's last step writes "
                  f"{layout.manifest_path(output_dir)}")
            return EXIT_OK, True
        _log.error("the pipeline finished but wrote no manifest; %s is incomplete", output_dir)
        return EXIT_FAILED, False

    manifest = manifest_lib.read_manifest(output_dir)
    print_summary(manifest, output_dir)
    print(f"manifest: {layout.manifest_path(output_dir)}")
    if manifest["max_error_fraction_exceeded"]:
        counts = manifest["counts"]
        _log.error(
            "%d of %d inputs failed (%.1f%%), over --max_error_fraction %s; exiting with %d",
            counts["errors"], counts["matched"], 100 * manifest["error_fraction"],
            manifest["max_error_fraction"], EXIT_TOO_MANY_ERRORS,
        )
        return EXIT_TOO_MANY_ERRORS, False
    return EXIT_OK, False


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
