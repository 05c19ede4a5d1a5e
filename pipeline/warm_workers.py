"""Worker processes that outlive a job: a chunked local command (``--commit_every``) keeps
its worker processes, and what they loaded (Beam, TensorFlow, the model), from one chunk's
job to the next, instead of starting them again for every chunk.

Each warm process is a Beam external worker pool in thread mode (pipeline/workerpool.py).
The runner (pipeline/local.py) gives each job Beam's EXTERNAL environment at the address of
a small pool servicer in the launcher, which hands the job's workers to the warm processes
in turn: a job of N workers gets one harness thread in each of N processes. The processes
are started as every local worker is (SIGINT ignored, killed with the launcher), so
WorkerWatch and Ctrl-C see and end them as they do Beam's own workers."""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
import threading
from concurrent import futures

import grpc
from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc
from apache_beam.transforms.environments import ExternalEnvironment

from pipeline.workerboot import boot_command
from pipeline.workerpool import ADDRESS_LINE, END_SECONDS

_log = logging.getLogger(__name__)
#: How a warm process starts: as every local worker does (pipeline/workerboot.py).
POOL_COMMAND = boot_command("pipeline.workerpool")

_active: "WarmWorkers | None" = None


def active() -> "WarmWorkers | None":
    """The warm workers of the command under way, if it keeps any."""
    return _active


class _HandOut(beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolServicer):
    """Beam's worker pool service in front of the warm processes: StartWorker goes to the
    next process in turn, StopWorker to the one that started that worker."""

    def __init__(self, addresses: list[str]):
        self._stubs = [beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(grpc.insecure_channel(a))
                       for a in addresses]
        self._turn = itertools.cycle(range(len(addresses)))
        self._owner: dict[str, int] = {}
        self._lock = threading.Lock()

    def StartWorker(self, request, context):
        with self._lock:
            index = next(self._turn)
            self._owner[request.worker_id] = index
        return self._stubs[index].StartWorker(request)

    def StopWorker(self, request, context):
        with self._lock:
            index = self._owner.pop(request.worker_id, None)
        if index is None:
            return beam_fn_api_pb2.StopWorkerResponse()
        return self._stubs[index].StopWorker(request)

    def stop_all(self) -> None:
        """StopWorker for every worker started so far. Beam's EXTERNAL handler never sends
        it, and a pool keeps each harness it started (and all a job loaded into it) until
        it does: once per job, or the warm processes grow by every job."""
        with self._lock:
            started = list(self._owner)
        for worker_id in started:
            self.StopWorker(beam_fn_api_pb2.StopWorkerRequest(worker_id=worker_id), None)


class WarmWorkers:
    """Context manager around a chunked command: its warm worker processes and the pool
    service in front of them, started on first use (``environment()``, from the runner,
    once the job's local settings, such as the TensorFlow threads, are in this process's
    environment) and ended on exit (``close()``)."""

    def __init__(self):
        self._processes: list[subprocess.Popen] = []
        self._addresses: list[str] = []
        self._server = None
        self._hand_out: _HandOut | None = None
        self._environment: ExternalEnvironment | None = None
        self._served = 0  # how many processes the pool service hands workers to

    def __enter__(self):
        global _active
        _active = self
        return self

    def __exit__(self, *exc):
        global _active
        _active = None
        self.close()
        return False

    def environment(self, count: int) -> ExternalEnvironment:
        """The environment of a job of ``count`` workers (processes start on the first call,
        side by side; a later job of more workers than there are processes gets more)."""
        started = [self._spawn() for _ in range(count - len(self._processes))]
        for process in started:
            self._await_address(process)
        if self._served != len(self._processes):
            self._serve()
        return self._environment

    def job_done(self) -> None:
        """After each job: the pools let go of its harnesses (_HandOut.stop_all)."""
        if self._hand_out is not None:
            self._hand_out.stop_all()

    def _spawn(self) -> subprocess.Popen:
        process = subprocess.Popen(["/bin/sh", "-c", POOL_COMMAND], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        self._processes.append(process)  # close() ends it, started or not
        return process

    def _await_address(self, process: subprocess.Popen) -> None:
        for line in process.stdout:  # the pool prints its address once it listens
            if line.startswith(ADDRESS_LINE):
                break
            sys.stderr.write(line)  # printed by something it imported
        else:
            raise RuntimeError(f"a warm worker process did not start (exit {process.wait()})")
        process.stdout.close()
        self._addresses.append(line[len(ADDRESS_LINE):].strip())

    def _serve(self) -> None:
        if self._server is not None:
            self._server.stop(None)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="warm-workers"))
        self._hand_out = _HandOut(self._addresses)
        beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(self._hand_out, self._server)
        port = self._server.add_insecure_port("localhost:0")
        self._server.start()
        self._served = len(self._processes)
        self._environment = ExternalEnvironment(f"localhost:{port}")

    def close(self) -> None:
        """End the pool service, then the warm processes: each is told (its standard input
        closed) and exits once its harness threads have torn their DoFns down; one still
        there after END_SECONDS is killed."""
        if self._server is not None:
            self._server.stop(None)
            self._server = None
        for process in self._processes:
            try:
                process.stdin.close()
            except OSError:
                pass
        for process in self._processes:
            try:
                process.wait(timeout=END_SECONDS + 5)
            except subprocess.TimeoutExpired:
                _log.warning("warm worker process %d did not end; killing it", process.pid)
                process.kill()
                process.wait()
        self._processes, self._addresses, self._hand_out, self._served = [], [], None, 0
