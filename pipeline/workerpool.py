"""One warm worker process of a chunked local command (pipeline/warm_workers.py): Beam's
external worker pool (``worker_pool_main``) in thread mode, so each job's SDK harness runs
as a thread of this process, and what a harness loads (Beam, TensorFlow, the model, kept
by models/extractor.py) stays loaded for the next chunk's job.

Started as ``python -m pipeline.workerboot pipeline.workerpool`` with SIGINT ignored (as
every local worker is: pipeline/local.py), so it dies with its launcher; it prints the
address it listens on as its first line, then serves until its standard input closes (the
launcher is done, or gone): it then lets the jobs' harness threads finish their teardown
(a model process is ended by the DoFn that started it) and exits."""

from __future__ import annotations

import logging
import os
import sys
import threading

#: The first line a pool process prints: this, then its address.
ADDRESS_LINE = "worker pool at "
#: How long a harness thread may take to end once the launcher is done.
END_SECONDS = 60.0


def _end_when_the_launcher_is_done() -> None:
    sys.stdin.read()  # returns when the launcher closes its end, or is gone
    for thread in threading.enumerate():
        if thread.name.startswith("run_worker_"):  # worker_pool_main's harness threads
            thread.join(timeout=END_SECONDS)
    logging.shutdown()
    os._exit(0)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import transforms.lifeline  # noqa: F401  (ends this process with its launcher, on any OS)
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

    address, server = BeamFnExternalWorkerPoolServicer.start(use_process=False, port=0)
    print(ADDRESS_LINE + address, flush=True)
    os.dup2(2, 1)  # the launcher reads one line: anything printed later goes to stderr
    threading.Thread(target=_end_when_the_launcher_is_done, name="pool-end", daemon=True).start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
