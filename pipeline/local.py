"""Running on this machine: which runner, how many worker processes, how many TF threads."""

from __future__ import annotations

import contextlib
import logging
import os

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner, fn_runner
from apache_beam.transforms.environments import SubprocessSDKEnvironment

from models.precision import CPU_BATCH
from pipeline.options import ExtractOptions
from pipeline.workerboot import boot_command

#: Used when no --runner is given: Beam's FnApiRunner, the engine of the DirectRunner,
#: whose worker processes ignore Ctrl-C from birth (CtrlCSafeRunner). Naming it avoids
#: the DirectRunner's attempt to download and start the Prism binary, so a local run
#: behaves the same online and offline.
LOCAL_RUNNER = "pipeline.local.CtrlCSafeRunner"
_LOCAL_RUNNER_NAMES = {"DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner",
                       "FnApiRunner", "PrismRunner", "CtrlCSafeRunner", LOCAL_RUNNER,
                       "apache_beam.runners.portability.fn_api_runner.FnApiRunner"}
#: How each local worker process starts (pipeline/workerboot.py): SIGINT ignored by its
#: shell, so the Python that replaces the shell starts with it ignored and never installs
#: its KeyboardInterrupt handler; then tied to the launcher, then Beam's worker.
WORKER_COMMAND = boot_command("apache_beam.runners.worker.sdk_worker_main")


def is_local_runner(runner: str | None) -> bool:
    """True for runners that execute in this process or on this machine."""
    return (not runner or runner in _LOCAL_RUNNER_NAMES or runner.endswith(".FnApiRunner")
            or runner.endswith(".CtrlCSafeRunner"))


class CtrlCSafeRunner(FnApiRunner):
    """Beam's FnApiRunner; with ``multi_processing`` its worker processes start with SIGINT
    ignored (WORKER_COMMAND), so a terminal's Ctrl-C, which reaches the whole process group,
    never interrupts a worker, even while it is still importing Beam (what
    transforms/lifeline.py cannot cover: it runs once the imports are done). The launcher
    handles the Ctrl-C and ends the workers (pipeline/interrupt.py). Otherwise Beam's own:
    the same environment, with its command, that ``multi_processing`` makes."""

    def run_pipeline(self, pipeline, options):
        direct = options.view_as(DirectOptions)
        if direct.direct_running_mode != "multi_processing" or os.name != "posix":
            return super().run_pipeline(pipeline, options)  # (Windows: cmd.exe has no trap)
        self._default_environment = SubprocessSDKEnvironment.from_command_string(
            command_string=WORKER_COMMAND)
        direct.direct_running_mode = "in_memory"  # keeps the environment set above
        try:
            with _no_in_memory_warning():
                return super().run_pipeline(pipeline, options)
        finally:
            direct.direct_running_mode = "multi_processing"


@contextlib.contextmanager
def _no_in_memory_warning():
    """Beam warns that in_memory ignores --direct_num_workers: not so with our environment."""
    logger = logging.getLogger(fn_runner.__name__)
    quiet = lambda record: "direct_running_mode should be" not in record.getMessage()  # noqa: E731
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def use_local_workers(options: PipelineOptions, extract_options: ExtractOptions, argv: list[str],
                      matched: int | None = None) -> None:
    """Local default, measured on 2 cores (BENCHMARKS.md): min(2, cores) worker processes,
    each with its own model and cores / workers TensorFlow threads (threads of one process
    share its model and all cores), so decoding in one
    process overlaps inference in the other without stalling a parallel op. When all
    ``matched`` inputs fit in one batch, a second model would only add start-up: one
    process. With --model_copies the models run in model processes of their own instead while
    the worker processes decode on every core; each model process gets cores / (2 x copies)
    TensorFlow threads (at least 1): on 2 cores, 32x32 res2, 3,500 marginal web photos, 3
    interleaved rounds, sharing one model kept 0.68x of own models' images/s with 2 threads
    and 0.82x with 1 (BENCHMARKS.md, issue 25). An explicit
    --direct_num_workers, --direct_running_mode or --tf_threads wins; --direct_num_workers N > 1
    given alone runs N processes (Beam's own default mode would run them in one)."""
    direct = options.view_as(DirectOptions)
    cores = os.cpu_count() or 1
    given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
    batch_size = extract_options.batch_size or CPU_BATCH  # resolved by plan.py before a run
    one_batch = matched is not None and matched <= batch_size
    if not given & {"--direct_num_workers", "--direct_running_mode"} and cores > 1 and not one_batch:
        direct.direct_num_workers = min(2, cores)
        direct.direct_running_mode = "multi_processing"
    elif "--direct_running_mode" not in given and (direct.direct_num_workers or 1) > 1:
        # --direct_num_workers N alone: Beam's default mode (in_memory) runs one process.
        direct.direct_running_mode = "multi_processing"
    if extract_options.tf_threads:
        return
    processes = (max(1, direct.direct_num_workers or 1)
                 if direct.direct_running_mode == "multi_processing" else 1)
    if extract_options.model_copies:
        extract_options.tf_threads = max(1, cores // (2 * extract_options.model_copies))
    elif processes > 1:
        extract_options.tf_threads = max(1, cores // processes)


def set_tensorflow_threads(threads: int) -> None:
    """Through the environment, so it holds in worker processes and before TF starts."""
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = str(min(threads, 2))
