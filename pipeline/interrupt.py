"""Ctrl-C during a local run: one line, the worker processes ended, the lock released, exit 130.

A terminal sends SIGINT to its whole foreground process group: the launcher and every Beam
worker process it started. Each worker then died with a KeyboardInterrupt traceback, and
Beam relayed them (measured: 228 lines of CRITICAL logs for one Ctrl-C). Now:

- a local run's worker processes ignore SIGINT from their first instruction (started with
  it ignored: pipeline/local.py's CtrlCSafeRunner; ``transforms/lifeline.py`` again once
  they import ``transforms``): they end when the launcher ends them;
- the launcher's handler (installed by Interrupts, in the main thread) prints one line,
  silences Beam's complaints about the workers it is about to lose, kills them (and, until
  the job has unwound, any worker Beam was still starting) and raises KeyboardInterrupt in
  the main thread, which releases the lock; ``pipeline.run`` then exits 130 at once,
  without joining Beam's threads;
- a worker whose shell the Ctrl-C reached in the instant before its ``trap '' INT`` ran
  dies of SIGINT, and Beam's thread that started it raises "Worker subprocess exited with
  return code -2", sometimes before the launcher's handler runs: that one is not printed
  (seen once in 6 tries on a busy machine: the one traceback of the Ctrl-C test).

``pipeline.wake.wake_main_thread`` is how pipeline/workers.py ends a run whose worker
died: the same KeyboardInterrupt, without the Ctrl-C line."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from pipeline.wake import waking as _waking
from pipeline.workers import end_workers, worker_pids

REAP_SECONDS = 0.2


def _not_beam(record: logging.LogRecord) -> bool:
    return not record.name.startswith("apache_beam")


#: What Beam's thread that started a local worker raises when the worker died of SIGINT.
WORKER_ENDED_BY_SIGINT = "Worker subprocess exited with return code -2"


def worker_ended_by_sigint(exc: BaseException | None) -> bool:
    return isinstance(exc, RuntimeError) and WORKER_ENDED_BY_SIGINT in str(exc)


class Interrupts:
    """Context manager around a local job, entered in the main thread. ``interrupted`` says
    that Ctrl-C ended the run; ``message`` is the one line printed then. Outside the main
    thread it does nothing (Python runs signal handlers there only)."""

    def __init__(self, output_dir: str):
        self.interrupted = False
        self.message = (f"interrupted (Ctrl-C): the run stopped and its worker processes ended; "
                        f"{output_dir} has no manifest and is incomplete")
        self._usable = threading.current_thread() is threading.main_thread()
        self._previous = None
        self._quieted: list = []
        self._silent = False
        self._done = threading.Event()

    def __enter__(self):
        _waking.clear()
        self._hook = threading.excepthook
        threading.excepthook = self._thread_failed
        if self._usable:
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _thread_failed(self, args) -> None:
        """A thread's uncaught exception, printed as Python would, except Beam's complaint
        that a worker died of SIGINT (a Ctrl-C that reached a worker's shell before its
        ``trap '' INT`` ran: the launcher reports the Ctrl-C itself, even when that thread
        gets there first), and anything once the run is being ended (_quiet_beam)."""
        if self._silent or worker_ended_by_sigint(args.exc_value):
            return
        self._hook(args)

    def _on_sigint(self, signum, frame):
        if _waking.is_set():
            raise KeyboardInterrupt
        if not self.interrupted:
            self.interrupted = True
            self._quiet_beam()
            print(self.message, file=sys.stderr, flush=True)
            end_workers(worker_pids(os.getpid()))
            threading.Thread(target=self._end_late_workers, name="end-late-workers", daemon=True).start()
        raise KeyboardInterrupt

    def _end_late_workers(self) -> None:
        """Until the job has unwound: a worker Beam was starting as Ctrl-C came is ended too
        (ignoring SIGINT, it would live on, and Beam joins its thread before returning)."""
        while not self._done.wait(REAP_SECONDS):
            end_workers(worker_pids(os.getpid()))

    def _quiet_beam(self) -> None:
        """Beam's errors about the workers just ended, and its threads' tracebacks, are noise:
        records of ``apache_beam`` and its children are dropped by every root handler."""
        handlers = logging.getLogger().handlers
        for handler in handlers:
            handler.addFilter(_not_beam)
        self._quieted = handlers
        self._silent = True  # from here _thread_failed prints nothing

    def __exit__(self, *exc):
        self._done.set()
        if self._usable:
            signal.signal(signal.SIGINT, self._previous)
        threading.excepthook = self._hook
        for handler in self._quieted:
            handler.removeFilter(_not_beam)
        self._quieted, self._silent = [], False
        return False
