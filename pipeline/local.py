"""Running on this machine: which runner, how many worker processes, how many TF threads."""

from __future__ import annotations

import os

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

from models.precision import CPU_BATCH
from pipeline.options import ExtractOptions

#: Used when no --runner is given: Beam's FnApiRunner, the engine of the DirectRunner.
#: Naming it avoids the DirectRunner's attempt to download and start the Prism binary,
#: so a local run behaves the same online and offline.
LOCAL_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"
_LOCAL_RUNNER_NAMES = {"DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner",
                       "FnApiRunner", "PrismRunner", LOCAL_RUNNER}


def is_local_runner(runner: str | None) -> bool:
    """True for runners that execute in this process or on this machine."""
    return not runner or runner in _LOCAL_RUNNER_NAMES or runner.endswith(".FnApiRunner")


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
