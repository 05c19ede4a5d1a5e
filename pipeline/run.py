"""CLI: plan the run (pipeline/plan.py), execute the plan, report its outcome.

Exit codes: 0 the run completed (per-image errors are data), 1 the run itself failed,
2 a usage problem found before any work, 3 the run completed and wrote everything but more
than --max_error_fraction of the inputs failed, or it matched inputs and embedded (or
skipped) none of them, unless --max_error_fraction is 1."""

from __future__ import annotations

import time

_IMPORTED_AT = time.time()  # before the heavy imports below: start-up is counted from here

import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402


INTERRUPTED_BEFORE_RUN = "interrupted (Ctrl-C) before the run started"


def _interrupted_while_loading(signum, frame):
    os.write(2, (INTERRUPTED_BEFORE_RUN + "\n").encode())
    os._exit(130)


# Run as a command: a Ctrl-C during the imports below (2 s) is one line and exit 130, not a
# KeyboardInterrupt traceback from inside Beam's imports. main() hands it back to Python.
if __name__ == "__main__" or os.path.basename(sys.argv[0]) == "resnet50-embed":
    signal.signal(signal.SIGINT, _interrupted_while_loading)

from pipeline.quiet import quiet_tensorflow_without_gpu  # before TensorFlow loads

quiet_tensorflow_without_gpu()

import contextlib
import gc
import logging
import re
import shutil
import tempfile
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, SetupOptions, StandardOptions

from pipeline.root import incremental
from pipeline.chunks import ChunkTotals, chunk_line, next_chunk
from pipeline.dofn_specs import remember_dofn_specs
from pipeline.option_views import remember_option_views
from pipeline.root import lock as lock_lib
from pipeline.root import manifest as manifest_lib
from pipeline.root import outputs
from pipeline.job.build import build_pipeline
from pipeline.interrupt import Interrupts
from pipeline.job.finalize import FinalizeRun
from pipeline.local import LOCAL_RUNNER, set_tensorflow_threads, use_local_workers
from pipeline.options import help_text, model_handler
from pipeline.plan import RunPlan, UsageError, plan_run, run_record
from pipeline.job.commit_parts import CommitParts, PartsSpec, per_writer
from pipeline.progress import ProgressPrinter, committed_line, read_counts
from pipeline.workers import WorkerWatch
from models.heap import freeze_long_lived
from schemas import layout
from schemas.accounting import BY_NAME, EMBEDDED, nothing_done, ERRORS, MATCHED, READ, SKIPPED_SAME_CONTENT, SKIPPED_UNCHANGED
from transforms.lifeline import LAUNCHER_PID_VARIABLE, LIFELINE_PLUGIN

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TOO_MANY_ERRORS = 0, 1, 2, 3
#: The console script setup.py installs for this CLI.
INSTALLED_NAME = "resnet50-embed"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process Ctrl-C ended
_log = logging.getLogger("pipeline.run")

# How a job ended, as the launcher saw it.
COMPLETED, FAILED, BUILT, LAUNCHED, INTERRUPTED = "completed", "failed", "built", "launched", "interrupted"


class Outcome(NamedTuple):
    """How the run ended: ``ending`` (COMPLETED with its ``manifest``; FAILED with a
    ``reason`` already logged; BUILT, a dry run; LAUNCHED, a template launch that did not
    wait: the job itself finishes, writes the manifest and releases the lock)."""

    ending: str
    manifest: dict | None = None
    reason: str = ""


def run(argv: list[str] | None = None, *, extract: beam.PTransform | None = None,
        model_factory=None, launched_at: float | None = None, on_result=None) -> int:
    """Run the CLI with ``argv`` and return the exit code. ``extract`` replaces the
    ExtractLayers step (fault-injection tests); ``model_factory(config)`` replaces only the
    model, wherever the options place it (benchmarks' zero-cost model, injected faults).
    Start-up is counted from ``launched_at`` (unix time; the CLI passes when it began
    importing), else from this call.
    ``on_result(result)`` receives Beam's PipelineResult once the job is submitted (with
    --dry_run, the built Dataflow job is ``result.job``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        called = os.path.basename(sys.argv[0] or "")
        print(help_text(called) if called == INSTALLED_NAME else help_text())
        return EXIT_OK
    remember_option_views()
    try:
        plan = plan_run(argv, launched_at or time.time())
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # argparse: bad choice or type; it printed the usage.
        return int(exc.code or EXIT_USAGE)
    hooks = {"extract": extract, "model_factory": model_factory, "on_result": on_result}
    remember_dofn_specs()
    if plan.chunk is not None and not plan.dry_run:
        return run_chunks(plan, hooks)
    return report(plan, execute_and_release(plan, hooks))


def execute_and_release(plan: RunPlan, hooks: dict) -> Outcome:
    """execute(), then release the output's lock whatever the ending but a launch that did
    not wait."""
    outcome = None
    try:
        outcome = execute(plan, **hooks)
    finally:
        if plan.output.locked and (outcome is None or outcome.ending != LAUNCHED):
            # The job's last step releases the lock after a success; this covers every
            # ending the launcher saw. A job launched without waiting releases it itself
            # (or it goes stale).
            lock_lib.release_lock(plan.output.lock_root, plan.output.run_id)
    return outcome


def run_chunks(plan: RunPlan, hooks: dict) -> int:
    """--commit_every on a remote runner: one job per chunk, each committed before the next
    is planned (a new run of the root, which skips what the chunks before it committed),
    until a chunk leaves nothing; a launch that does not wait runs one. (A local run
    commits its chunks inside one job: CommitParts.) Returns the exit code."""
    totals = ChunkTotals()
    try:
        return _commit_chunks(plan, hooks, totals)
    except KeyboardInterrupt:
        # Ctrl-C outside a job's own handler (pipeline/interrupt.py): while the next chunk
        # was planned, or in the instant before a job's handler was in place or after it
        # was gone. No job is running then; before the first commit, main() says so.
        if not totals.chunks:
            raise
        print(f"interrupted (Ctrl-C) between chunks: {totals.line()}; the same command "
              "resumes after them", file=sys.stderr)
        return EXIT_INTERRUPTED


def _commit_chunks(plan: RunPlan, hooks: dict, totals: ChunkTotals) -> int:
    while True:
        outcome = execute_and_release(plan, hooks)
        if outcome.ending != COMPLETED:
            if totals.chunks and outcome.ending in (FAILED, INTERRUPTED):
                print(f"{totals.line()}; the same command resumes after them", file=sys.stderr)
            return report(plan, outcome)
        totals.add(outcome.manifest["counts"])
        print(chunk_line(totals.chunks, outcome.manifest, totals), flush=True)
        following = next_chunk(plan.chunk, outcome.manifest)
        if following is None:
            break
        outcome = None
        gc.collect()  # the finished job's runner state, so the launcher stays flat over chunks
        try:
            plan = plan_run(plan.argv, time.time())._replace(chunk=following)
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    print(totals.line())
    print(f"root: {plan.output.root} (one run per chunk; read it as one collection)")
    counts, limit = totals.counts, plan.options.max_error_fraction
    return counts_exit_code(counts, limit, limit is not None and counts[ERRORS] > limit * counts[MATCHED])


def prepare(plan: RunPlan) -> str:
    """Local defaults (runner, worker processes, TF threads) and --overwrite's removal of
    the earlier outputs; returns the runner."""
    standard = plan.pipeline_options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = LOCAL_RUNNER
        use_local_workers(plan.pipeline_options, plan.options, plan.argv, plan.matched)
    if not plan.remote:  # local worker processes end with this launcher (transforms/lifeline.py)
        os.environ[LAUNCHER_PID_VARIABLE] = str(os.getpid())
        # ... and import it as a Beam plugin, in their main thread as they start, so that
        # they ignore a terminal's Ctrl-C from their first second (pipeline/interrupt.py).
        setup = plan.pipeline_options.view_as(SetupOptions)
        setup.beam_plugins = list(dict.fromkeys((setup.beam_plugins or []) + [LIFELINE_PLUGIN]))
    if plan.options.tf_threads:
        set_tensorflow_threads(plan.options.tf_threads)
    if plan.options.overwrite:
        removed = outputs.remove_previous_run(plan.output.output_dir)
        if removed:
            _log.info("--overwrite: removed %s from %s", ", ".join(removed), plan.output.output_dir)
    return standard.runner


def build_job(plan: RunPlan, runner: str, *, extract, model_factory, progress_dir) -> beam.Pipeline:
    """The job of ``plan``, ending in FinalizeRun (which records an incremental run in its
    root's index and releases the lock)."""
    output, config = plan.output, plan.config
    on_complete = incremental.CompleteRun(output.lock_root, output.run_id, index_root=output.root,
                                          key=config.embedding_key)
    finalize_record = run_record(plan, runner)
    finalize = FinalizeRun(output.output_dir, config, finalize_record,
                           launched_at=plan.launched_at, submitted_at=time.time(),
                           on_complete=on_complete)
    pipeline = beam.Pipeline(options=plan.pipeline_options)
    parts = None
    if commits_parts(plan):
        parts = CommitParts(parts_spec(plan, finalize_record), config, plan.read.keep_columns, progress_dir)
    build_pipeline(pipeline, input_pattern=plan.options.input, output_dir=output.output_dir,
                   output_root=plan.options.output,
                   config=config, limits=plan.limits, read=plan.read, extract=extract,
                   handler=model_handler(plan.options, config, model_factory),
                   comparison=output.comparison, finalize=finalize, progress_dir=progress_dir,
                   chunk=plan.chunk, parts=parts)
    return pipeline


def commits_parts(plan: RunPlan) -> bool:
    """A local --commit_every run: one job that commits parts (a remote one runs a job per
    chunk, ``plan.chunk``)."""
    return bool(plan.options.commit_every) and plan.chunk is None and not plan.remote


def local_writers(plan: RunPlan) -> int:
    """How many bundles write at once in a local run: its worker processes (or threads)."""
    return plan.pipeline_options.view_as(DirectOptions).direct_num_workers or 1


def images_per_part(plan: RunPlan) -> int:
    """A local --commit_every run's part size: each of its writers commits every
    ``commit_every / writers`` images and errors, so that at most ``commit_every`` are
    uncommitted at any moment."""
    return per_writer(plan.options.commit_every, local_writers(plan))


def parts_spec(plan: RunPlan, record: dict) -> PartsSpec:
    """A local --commit_every run's parts, ``images_per_part(plan)`` each."""
    output = plan.output
    return PartsSpec(output.root, output.run_id, plan.config.embedding_key, images_per_part(plan), record,
                     plan.launched_at)


def execute(plan: RunPlan, *, extract=None, model_factory=None, on_result=None) -> Outcome:
    """Build and run the job of ``plan`` (with the progress line on local runs) and say
    how it ended."""
    runner = prepare(plan)
    output_dir = plan.output.output_dir
    what = ("the images" if plan.matched is None
            else f"{plan.matched} image file{'' if plan.matched == 1 else 's'}")
    if plan.chunk is not None:
        start = f"after {plan.chunk.after}" if plan.chunk.after else "from the first"
        what = f"a chunk of at most {plan.chunk.size} new files ({start}) of {what}"
    _log.info("embedding %s from %s into %s", what, ", ".join(plan.options.input), output_dir)
    progress_dir = None
    try:  # a Ctrl-C before the job's own handler is in place leaves no progress folder either
        progress_dir = None if plan.remote else tempfile.mkdtemp(prefix="resnet50-progress-")
        interrupts = None if plan.remote else Interrupts(output_dir)
        workers = plan.pipeline_options.view_as(DirectOptions).direct_num_workers or 0
        watch = None if plan.remote else WorkerWatch(progress_dir, expected=workers)
        with interrupts or contextlib.nullcontext():
            outcome = _run_job(plan, runner, watch, progress_dir, interrupts, extract=extract,
                               model_factory=model_factory, on_result=on_result)
        if progress_dir and commits_parts(plan) and outcome.ending in (FAILED, INTERRUPTED):
            committed = read_counts(progress_dir)
            print(f"{committed_line(committed)}: the same command resumes after them", file=sys.stderr)
        return outcome
    finally:
        if progress_dir:
            shutil.rmtree(progress_dir, ignore_errors=True)


def _run_job(plan: RunPlan, runner: str, watch, progress_dir, interrupts, *, extract,
             model_factory, on_result) -> Outcome:
    output_dir = plan.output.output_dir
    try:
        pipeline = build_job(plan, runner, extract=extract, model_factory=model_factory,
                             progress_dir=progress_dir)
        total = plan.matched if plan.chunk is None else None  # a chunk's share is known at its end
        parts = images_per_part(plan) if commits_parts(plan) else None
        progress = (ProgressPrinter(progress_dir, total, plan.options.progress_seconds, images_per_part=parts)
                    if progress_dir else contextlib.nullcontext())
        with watch or contextlib.nullcontext(), progress:
            result = pipeline.run()
            if on_result is not None:
                on_result(result)
            if plan.dry_run:
                return Outcome(BUILT, reason=f"built the {runner} job; nothing was submitted")
            state = result.wait_until_finish()
    except KeyboardInterrupt:
        if watch is not None and watch.died:
            _log.error("%s: %s has no manifest and is incomplete", watch.died, output_dir)
            return Outcome(FAILED, reason=watch.died)
        return Outcome(INTERRUPTED, reason="Ctrl-C")
    except Exception as exc:
        if interrupts is not None and interrupts.interrupted:
            return Outcome(INTERRUPTED, reason="Ctrl-C")
        stated = stated_failure(exc)
        if stated:
            _log.error("%s; %s has no manifest and is incomplete", stated, output_dir)
            return Outcome(FAILED, reason=stated)
        _log.exception("the pipeline failed; %s has no manifest and is incomplete", output_dir)
        return Outcome(FAILED, reason="the pipeline failed")
    return finished(plan, result, state)


#: Failures whose own message says everything: reported as one line, without a traceback.
#: Runners wrap a worker's exception in their own, with the traceback as text.
_STATED_FAILURES = re.compile(r"PrecisionCertificateFailed: (precision certificate failed: [^\n]*)")


def stated_failure(exc: BaseException) -> str | None:
    """The message of a failure that explains itself (the precision certificate), found in
    the exception a runner raised, or None."""
    match = _STATED_FAILURES.search(f"{type(exc).__name__}: {exc}")
    return match.group(1) if match else None


def finished(plan: RunPlan, result, state) -> Outcome:
    """The outcome of a job that ran to an end state: its manifest, or why there is none."""
    output_dir = plan.output.output_dir
    if state not in (None, beam.runners.runner.PipelineState.DONE):
        _log.error("the pipeline ended in state %s; %s is incomplete", state, output_dir)
        return Outcome(FAILED, reason=f"state {state}")
    if FileSystems.exists(layout.manifest_path(output_dir)):
        return Outcome(COMPLETED, manifest_lib.read_manifest(output_dir))
    if plan.remote and not getattr(result, "has_job", True):
        return Outcome(LAUNCHED)
    _log.error("the pipeline finished but wrote no manifest; %s is incomplete", output_dir)
    return Outcome(FAILED, reason="no manifest")


def report(plan: RunPlan, outcome: Outcome) -> int:
    """Print what the outcome says and return the exit code."""
    output_dir = plan.output.output_dir
    if outcome.ending == FAILED:
        return EXIT_FAILED
    if outcome.ending == INTERRUPTED:
        return EXIT_INTERRUPTED
    if outcome.ending == BUILT:
        print(f"dry run: {outcome.reason}")
        return EXIT_OK
    if outcome.ending == LAUNCHED:
        print("launched without waiting (template launch): the job's last step writes "
              f"{layout.manifest_path(output_dir)}")
        return EXIT_OK
    manifest = outcome.manifest
    print_summary(manifest, output_dir)
    print(f"manifest: {layout.manifest_path(output_dir)}")
    if manifest.get("parts") is not None:
        print(f"{len(manifest['parts'])} part{'' if len(manifest['parts']) == 1 else 's'} committed as "
              f"runs of {plan.output.root} as they filled (--commit_every); read the root as one collection")
    return counts_exit_code(command_counts(manifest), manifest.get("max_error_fraction"),
                            manifest["max_error_fraction_exceeded"])


def counts_exit_code(counts: dict, max_error_fraction: float | None, exceeded: bool) -> int:
    """EXIT_TOO_MANY_ERRORS (with the reason logged) when every input failed, unless
    --max_error_fraction is 1, or when the errors exceeded it; else EXIT_OK."""
    if nothing_done(counts) and max_error_fraction != 1:
        _log.error("none of the %d inputs was embedded or skipped: every one failed (see the "
                   "errors above and in errors/); exiting with %d. Pass --max_error_fraction 1 "
                   "when a run may fail every input.", counts[MATCHED], EXIT_TOO_MANY_ERRORS)
        return EXIT_TOO_MANY_ERRORS
    if not exceeded:
        return EXIT_OK
    _log.error("%d of %d inputs failed (%.1f%%), over --max_error_fraction %s; exiting with %d",
               counts[ERRORS], counts[MATCHED], 100 * counts[ERRORS] / counts[MATCHED],
               max_error_fraction, EXIT_TOO_MANY_ERRORS)
    return EXIT_TOO_MANY_ERRORS


def command_counts(manifest: dict) -> dict:
    """What the command did: a run that committed parts keeps its own rows in ``counts``
    and the whole command's in ``command_counts``."""
    return manifest.get("command_counts") or manifest["counts"]


def print_summary(manifest: dict, output_dir: str) -> None:
    counts = command_counts(manifest)
    skipped = ""
    if counts.get("skipped"):
        skipped = (f", {counts[SKIPPED_UNCHANGED]} {BY_NAME[SKIPPED_UNCHANGED].label} (not opened), "
                   f"{counts[SKIPPED_SAME_CONTENT]} skipped for the same content")
    print(f"images embedded: {counts[EMBEDDED]} of {counts[MATCHED]} matched; "
          f"{counts[READ]} images read{skipped}")
    print(f"errors: {counts[ERRORS]}" + (" (one row each in errors/)" if counts[ERRORS] else ""))
    examples = counts.get("error_examples", {})
    for stage, types in counts["errors_by_stage"].items():
        for error_type, number in sorted(types.items(), key=lambda item: -item[1]):
            example = examples.get(f"{stage}/{error_type}")
            print(f"  {stage}/{error_type}: {number}" + (f", e.g. {example}" if example else ""))
    for name in manifest.get("kept_columns_missing", []):
        print(f"warning: --keep_columns {name}: no input had it; its column is null throughout")
    print(f"weights: {manifest['weights']['kind']} ({manifest['weights']['spec']})")
    for layer in manifest["layers"]:
        print(
            f"layer {layer['name']:<18} keras {layer['keras_layer']:<18} feature map "
            f"{tuple(layer['feature_shape'])} -> stored {tuple(layer['shape'])} {layer['dtype']}"
        )
    timings = manifest["timings"]
    startup = f" (first batch after {timings['startup_seconds']:.1f} s)" if timings.get("startup_seconds") else ""
    print(f"seconds: {timings['seconds_total']:.1f}{startup}; output: {output_dir}")


def main() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here: KeyboardInterrupt
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    for name in ("pipeline", "transforms", "models"):
        logging.getLogger(name).setLevel(logging.INFO)
    logging.getLogger("apache_beam.runners.portability.local_job_service").addFilter(
        lambda record: "No semi_persistent_directory found" not in record.getMessage()
        # a worker's traceback of a failure the launcher states in one line (stated_failure)
        and _STATED_FAILURES.search(record.getMessage()) is None
    )
    freeze_long_lived("imports")  # the gc.collect() between chunks then walks only their objects
    try:
        code = run(launched_at=_IMPORTED_AT)
    except KeyboardInterrupt:  # Ctrl-C while planning, before any job: nothing to clean up
        print(INTERRUPTED_BEFORE_RUN, file=sys.stderr)
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:
        # The lock is released and the line printed: end now, without joining Beam's threads
        # (one waiting for a worker that was starting held the exit for 60 s).
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
