"""Plan a run before any work: parse -> preflight -> output plan -> RunPlan.

Everything here checks and decides; nothing starts a job. The one side effect is the
output's lock, taken last (and released again when planning fails after it), so that two
runs never plan the same output. Problems raise UsageError (exit code 2)."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import NamedTuple

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    DebugOptions,
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
)

from models.placement import parse_gpus
from models.weights import (
    WEIGHTS_RANDOM,
    WeightsError,
    check_weights_layout,
    resolve_weights_file,
    weights_kind,
    weights_record,
)
from pipeline.root import incremental
from pipeline.root import lock as lock_lib
from pipeline.root import manifest as manifest_lib
from pipeline.root import outputs
from pipeline.compute import Compute, resolve_compute
from pipeline.local import is_local_runner
from pipeline.options import (
    ExtractOptions,
    all_options_parser,
    extraction_config,
    input_limits,
    read_config,
    unknown_arguments,
)
from pipeline.patterns import PatternError, expand_braces, has_glob, home_expanded, literal_if_existing
from pipeline.shellargs import StrayArguments, expand_shell_inputs, stray_words
from schemas import (
    FORMAT_FILES,
    MODE_INCREMENTAL,
    Chunk,
    Comparison,
    ExtractionConfig,
    InputLimits,
    ListedFile,
    ReadConfig,
    layout,
)
from transforms.listing import is_under, listed_file, match_pattern
from transforms.shards import shard_format

_log = logging.getLogger("pipeline.plan")


class UsageError(Exception):
    """A problem with the arguments or the environment, found before any work."""


class Parsed(NamedTuple):
    """The arguments, parsed and validated: Beam's options, this job's view of them, and
    the typed settings made from them (``compute``: the device's resolution of the
    precision, batch size and model copies that ``options`` left to it)."""

    pipeline_options: PipelineOptions
    options: ExtractOptions
    config: ExtractionConfig
    limits: InputLimits
    read: ReadConfig
    compute: Compute


def parse_args(argv: list[str]) -> Parsed:
    """Parse and validate; raises UsageError (argparse's own errors exit with 2 as well)."""
    unknown = unknown_arguments(argv)
    if unknown:
        raise UsageError(f"unknown option {', '.join(unknown)}; see python -m pipeline.run --help")
    try:
        argv = expand_shell_inputs(argv, stray_words(argv, all_options_parser()))
    except StrayArguments as exc:
        raise UsageError(str(exc)) from None
    pipeline_options = PipelineOptions(argv)
    options = pipeline_options.view_as(ExtractOptions)
    if not options.input:
        raise UsageError("--input is required: a file, glob or gs:// pattern of images")
    if not options.output:
        raise UsageError("--output is required: the directory to write Parquet files into")
    options.input = input_patterns(options.input)
    options.output = options.output if "://" in options.output else os.path.abspath(home_expanded(options.output))
    if output_is_a_file(options.output):
        raise UsageError(f"--output {options.output} is an existing file; name a folder (new, "
                         "empty, or an earlier run's)")
    check_model_placement(pipeline_options, options)
    try:
        compute = resolve_compute(pipeline_options, options,
                                  remote=not is_local_runner(pipeline_options.view_as(StandardOptions).runner))
        options.mixed_precision, options.batch_size = compute.precision, compute.batch_size
        options.model_copies = compute.model_copies
        parsed = Parsed(pipeline_options, options, extraction_config(options),
                        input_limits(options), read_config(options), compute)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    fraction = options.max_error_fraction
    if fraction is not None and not 0 <= fraction <= 1:
        raise UsageError(f"--max_error_fraction must be between 0 and 1, got {fraction}")
    return parsed


def check_model_placement(pipeline_options: PipelineOptions, options: ExtractOptions) -> None:
    """--model_copies is at least 1, --gpus is auto, none or indexes; --accelerator_hint
    (right fitting) is not combined with the worker_accelerator service option, which
    Dataflow's right fitting does not allow."""
    copies, hint = options.model_copies, options.accelerator_hint
    if copies is not None and copies < 1:
        raise UsageError(f"--model_copies must be at least 1, got {copies}")
    if options.batch_size is not None and options.batch_size < 1:
        raise UsageError(f"--batch_size must be at least 1, got {options.batch_size}")
    try:
        parse_gpus(options.gpus)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if hint is not None and not hint.strip():
        raise UsageError("--accelerator_hint is empty; give e.g. "
                         "'type:nvidia-l4;count:1;install-nvidia-driver'")
    settings = ((pipeline_options.view_as(GoogleCloudOptions).dataflow_service_options or [])
                + (pipeline_options.view_as(DebugOptions).experiments or []))
    gpu_workers = any(setting.startswith("worker_accelerator") for setting in settings)
    if hint and gpu_workers:
        raise UsageError("--accelerator_hint puts the GPU on the model step alone (right fitting), "
                         "which Dataflow does not combine with worker_accelerator; drop the "
                         "worker_accelerator service option, or --accelerator_hint")


def absolute_pattern(pattern: str) -> str:
    """Local patterns become absolute, so the URIs in the outputs do not depend on the cwd;
    a folder (local, or a remote pattern ending in ``/``) means everything below it."""
    if not outputs.is_local(pattern):
        if pattern.endswith("/"):
            _log.info("--input %s is a folder: reading everything below it (%s**)", pattern, pattern)
            return pattern + "**"
        return pattern
    absolute = os.path.abspath(home_expanded(pattern))
    if os.path.isdir(absolute):
        below = os.path.join(literal_if_existing(absolute), "**")
        _log.info("--input %s is a folder: reading everything below it (%s)", pattern, below)
        return below
    return literal_if_existing(absolute)


def input_patterns(given: list[str] | str) -> list[str]:
    """--input's values (it may be given several times), braces expanded, each made
    absolute, once each (pipeline/patterns.py). Raises UsageError."""
    values = [given] if isinstance(given, str) else list(given)
    try:
        expanded = [pattern for value in values for pattern in expand_braces(value)]
    except PatternError as exc:
        raise UsageError(str(exc)) from None
    return list(dict.fromkeys(absolute_pattern(pattern) for pattern in expanded))


def output_is_a_file(output: str) -> bool:
    """Whether a local --output names an existing file rather than a folder. Remote outputs
    are not looked up here: parsing never touches the network (on gs:// an object and a
    folder of the same name can both exist anyway)."""
    return outputs.is_local(output) and os.path.isfile(output)


def _matched_files(pattern: str, count_all: bool) -> list[ListedFile]:
    try:
        if count_all:  # as ListFiles lists them, unreadable links included
            return list(match_pattern(pattern))
        return [listed_file(metadata) for metadata in FileSystems.match([pattern], limits=[1])[0].metadata_list]
    except Exception as exc:  # BeamIOError wraps "no match" on some filesystems.
        _log.info("matching %s raised %s", pattern, exc)
        return []


def matched_inputs(patterns: list[str] | str, *, count_all: bool, output: str | None = None) -> dict[str, ListedFile]:
    """Check that each pattern matches at least one file outside ``output`` (UsageError if
    not) and return the files matched, by uri: with ``count_all`` every one, as ListFiles
    lists them; without it only each pattern's first match, so that the launcher never lists
    the collection (the job lists it)."""
    files: dict[str, ListedFile] = {}
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        found = [listed for listed in _matched_files(pattern, count_all) if not is_under(listed.uri, output)]
        if not found and not count_all and output is not None:
            found = [listed for listed in _matched_files(pattern, True) if not is_under(listed.uri, output)][:1]
        if not found:
            where = f" outside --output {output}" if output else ""
            hint = ("; to match [ ] * ? in a name, write each as [[] [*] [?] (an existing name is "
                    "taken literally)") if has_glob(pattern) else ""
            raise UsageError(f"--input {pattern!r} matches no file{where}{hint}")
        for listed in found:
            files.setdefault(listed.uri, listed)
    return files


def image_file_count(uris, input_format: str = "auto") -> int | None:
    """How many images the files ``uris`` hold when every one is an image file, else None
    (a shard's samples are only counted by reading it)."""
    uris = list(uris)
    if any(shard_format(uri, input_format) != FORMAT_FILES for uri in uris):
        return None
    return len(uris)


def input_file_count(patterns: list[str] | str, *, count_all: bool, input_format: str = "auto",
                     output: str | None = None) -> int | None:
    """matched_inputs(); with ``count_all`` (local runs, for the progress line and the
    one-batch heuristic) return how many images they hold (image_file_count), else None."""
    files = matched_inputs(patterns, count_all=count_all, output=output)
    return image_file_count(files, input_format) if count_all else None


def check_remote_paths(options: ExtractOptions, config: ExtractionConfig) -> None:
    """Remote workers can read neither local inputs nor a local weights file, nor write a
    local output."""
    for pattern in options.input:
        if outputs.is_local(pattern):
            raise UsageError(f"--input {pattern} is local: remote workers cannot read "
                             "it; copy the images to gs:// (or another shared filesystem)")
    if outputs.is_local(options.output):
        raise UsageError(f"--output {options.output} is local: remote workers cannot write it")
    if weights_kind(config.weights) == "file" and "://" not in config.weights:
        raise UsageError(f"--weights {config.weights} is a local file: remote workers cannot read "
                         "it; copy it to gs:// and pass that path")


def preflight(options: ExtractOptions, config: ExtractionConfig, *, remote: bool,
              check_paths: bool) -> tuple[int | None, str | None]:
    """Everything checked before the output is touched: inputs and weights. ``check_paths``
    False (a --dry_run) skips the filesystem checks, which need credentials for gs://.
    Returns (files matched, counted for local runs only, or None; local weights file or None)."""
    if remote:
        check_remote_paths(options, config)
    if options.mode == MODE_INCREMENTAL and options.overwrite:
        raise UsageError("--overwrite does not apply to --mode incremental: each run writes a "
                         "new partition")
    if options.commit_every is not None and (options.commit_every < 1 or options.mode != MODE_INCREMENTAL):
        raise UsageError(f"--commit_every {options.commit_every}: chunks are committed as runs of an "
                         "incremental root; give at least 1 image per chunk and --mode incremental")
    matched = None
    if check_paths:
        matched = input_file_count(options.input, count_all=not remote,
                                   input_format=options.input_format, output=options.output)
    if not check_paths and weights_kind(config.weights) != WEIGHTS_RANDOM:
        return matched, None
    try:
        weights_file = resolve_weights_file(config.weights)
        if weights_file is not None:
            check_weights_layout(weights_file, label=config.weights)
    except WeightsError as exc:
        raise UsageError(str(exc)) from exc
    return matched, weights_file


def with_weights_identity(config: ExtractionConfig, weights_file: str | None) -> tuple[ExtractionConfig, dict]:
    """The weights' identity, resolved once: the manifest's weights record, and ``config``
    with the file's SHA-256 filled in (every model load checks it; the embedding key names it)."""
    record = weights_record(config.weights, config.seed, weights_file)
    return dataclasses.replace(config, weights_sha256=record.get("sha256")), record


def check_output(options: ExtractOptions) -> None:
    """A single run needs an empty --output (or --overwrite); an incremental run needs an
    empty or incremental root. The run's own lock file does not count."""
    if options.mode == MODE_INCREMENTAL:
        try:
            incremental.check_root(options.output)
        except incremental.NotAnIncrementalRoot as exc:
            raise UsageError(str(exc)) from exc
        removed = incremental.remove_unfinished_partitions(options.output)
        if removed:
            shown = ", ".join(removed[:3]) + (" ..." if len(removed) > 3 else "")
            _log.warning("%s: removed %d folder(s) of runs that did not complete (%s), never read "
                         "(docs/recovery.md)", options.output, len(removed), shown)
        return
    existing = [e for e in outputs.existing_entries(options.output) if e != layout.LOCK_FILE]
    if existing and not options.overwrite:
        shown = ", ".join(existing[:5]) + (" ..." if len(existing) > 5 else "")
        raise UsageError(
            f"--output {options.output} is not empty ({shown}); pass --overwrite to "
            "replace an earlier run's outputs, or choose an empty directory"
        )


class OutputPlan(NamedTuple):
    """Where this run writes, the lock it holds, and for incremental runs its root and what
    it compares with."""

    output_dir: str
    run_id: str
    root: str | None = None
    comparison: Comparison | None = None
    locked: bool = False

    @property
    def lock_root(self) -> str:
        return self.root if self.root is not None else self.output_dir


def plan_output(options: ExtractOptions, config: ExtractionConfig, *, check_paths: bool,
                remote: bool) -> OutputPlan:
    """Take the lock on --output (raising UsageError when another run holds it), then check
    the folder. Single runs write to --output; incremental runs to a new run=<id> partition
    of the root, compared with the root's earlier runs under the same embedding key. A dry
    run touches nothing and plans the full comparison."""
    run_id = incremental.new_run_id()
    root = options.output.rstrip("/") if options.mode == MODE_INCREMENTAL else None
    plan = OutputPlan(options.output if root is None else layout.run_partition(root, run_id), run_id, root)
    if not check_paths:
        return plan._replace(comparison=None if root is None else Comparison(options.skip_by, None, None, None))
    try:
        lock_lib.acquire_lock(plan.lock_root, run_id, stale_after_hours=options.lock_stale_hours,
                              local=not remote)
    except lock_lib.RootLocked as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:  # a local folder that cannot be made or written: one line
        where = exc.filename or plan.lock_root
        raise UsageError(f"--output {options.output}: cannot write there ({exc.strerror or exc}: {where}); "
                         "choose a folder you can write to") from None
    try:
        check_output(options)
        comparison = (None if root is None
                      else incremental.comparison(root, config.embedding_key, options.skip_by))
    except incremental.DamagedIndexEntry as exc:
        lock_lib.release_lock(plan.lock_root, run_id)
        raise UsageError(str(exc)) from exc
    except BaseException:
        lock_lib.release_lock(plan.lock_root, run_id)
        raise
    return plan._replace(comparison=comparison, locked=True)


class RunPlan(NamedTuple):
    """Everything decided before the job, carried from planning to reporting."""

    argv: list[str]
    pipeline_options: PipelineOptions
    options: ExtractOptions
    config: ExtractionConfig  # with the weights' SHA-256 filled in
    limits: InputLimits
    read: ReadConfig
    weights: dict  # the manifest's weights record
    compute: Compute  # the device and what was resolved for it
    output: OutputPlan
    matched: int | None  # files matched, counted for local runs only
    remote: bool
    dry_run: bool
    launched_at: float
    chunk: Chunk | None = None  # --commit_every on a remote runner: the chunk this job embeds


def plan_run(argv: list[str], launched_at: float) -> RunPlan:
    """Parse, check the inputs and weights, resolve the weights' identity, take the output's
    lock: raises UsageError (or argparse's SystemExit) before any work."""
    parsed = parse_args(argv)
    remote = not is_local_runner(parsed.pipeline_options.view_as(StandardOptions).runner)
    dry_run = bool(parsed.pipeline_options.view_as(TestOptions).dry_run)
    matched, weights_file = preflight(parsed.options, parsed.config, remote=remote, check_paths=not dry_run)
    config, weights = with_weights_identity(parsed.config, weights_file)
    output = plan_output(parsed.options, config, check_paths=not dry_run, remote=remote)
    chunk = None
    if parsed.options.commit_every and remote:  # one chunk per job; locally, parts (run.py)
        chunk = Chunk(parsed.options.commit_every)
    return RunPlan(argv, parsed.pipeline_options, parsed.options, config, parsed.limits,
                   parsed.read, weights, parsed.compute, output, matched, remote, dry_run, launched_at,
                   chunk)


def run_record(plan: RunPlan, runner: str) -> dict:
    """What the launcher knows about the run, for the manifest the job writes."""
    options, config, output = plan.options, plan.config, plan.output
    record = {
        "input": options.input, "output": output.output_dir, "mode": options.mode,
        "runner": runner, "config": config.settings_record(),
        "read": plan.read.record(), "limits": dataclasses.asdict(plan.limits),
        "weights": plan.weights, "layers": manifest_lib.layers_record(config),
        "max_error_fraction": options.max_error_fraction,
        # Where the model ran: per SDK process (null), or N model processes per machine.
        "model_copies": options.model_copies, "accelerator_hint": options.accelerator_hint,
        "gpus": options.gpus, "compute": plan.compute.record(),
    }
    if output.root is not None:
        comparison = output.comparison
        record.update(
            root=output.root, run=output.run_id, embedding_key=config.embedding_key,
            skip_by=comparison.skip_by,
            earlier_runs_with_same_key=(None if comparison.image_parts is None
                                        else len(comparison.image_parts)),
        )
    if plan.chunk is not None:
        record["chunk"] = plan.chunk.record()
    return record
