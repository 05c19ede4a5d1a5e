"""Local runs: notice a worker process that dies, and end the run instead of waiting forever.

Beam's local runner starts its worker processes (``sdk_worker_main``) from a thread that
only logs when one exits. Usually the bundle that worker held then fails ("Channel closed
prematurely") and so does the run; sometimes the runner waits for the lost bundle without
end. WorkerWatch polls this launcher's descendant worker processes
(Linux ``/proc``). Once one has ended, a run whose progress counts stop moving for
``stall_seconds`` is ended: the remaining workers are killed and the launcher's main thread
interrupted, and the run is reported failed (exit 1), its lock released. A worker that died
before the watch first saw it (within half a second of starting) counts too: with
``expected`` workers, fewer ever seen for ``stall_seconds`` after the first means one was lost."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from pipeline.wake import wake_main_thread

_log = logging.getLogger(__name__)
WORKER_MARK = b"apache_beam.runners.worker.sdk_worker_main"
POLL_SECONDS = 0.5
#: After a worker died: how long a run may show no progress before it is ended.
STALL_SECONDS = 30.0


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == b"Z" else int(fields[1])


def _command(pid: int) -> list[bytes]:
    """A process's argv, [] when it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().split(b"\0")
    except OSError:
        return []


def _is_shell(argv: list[bytes]) -> bool:
    return bool(argv) and os.path.basename(argv[0]).endswith(b"sh")


def worker_pids(ancestor: int) -> set[int]:
    """The live worker processes (Python, running ``sdk_worker_main`` or a warm worker
    pool) descending from ``ancestor``."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        argv = _command(pid)
        # Beam starts each worker through a shell (``sh -c "python -m ...sdk_worker_main"``):
        # the worker is the Python process, not its shell.
        if WORKER_MARK not in argv or _is_shell(argv):
            continue
        parent, hops = _parent(pid), 0
        while parent not in (None, 0, 1, ancestor) and hops < 8:
            parent, hops = _parent(parent), hops + 1
        if parent == ancestor:
            found.add(pid)
    # A worker's own child (a subprocess between fork and exec, a multiprocessing child)
    # shows the worker's command line too, for a moment or for good: it is not a worker.
    return {pid for pid in found if _parent(pid) not in found}


def end_workers(pids) -> None:
    """SIGKILL each worker and, first, the shell Beam started it through (a shell whose
    child is killed prints "Killed")."""
    for pid in pids:
        parent = _parent(pid)
        shell = [parent] if parent is not None and _is_shell(_command(parent)) else []
        for target in shell + [pid]:
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass


class WorkerWatch:
    """Context manager around a local job whose progress counts are in ``progress_dir``
    (pipeline/job/counting.py). ``died`` says, after an interrupted run, that a lost worker
    ended it (the launcher then exits 1, not as for Ctrl-C)."""

    def __init__(self, progress_dir: str | None, stall_seconds: float = STALL_SECONDS, expected: int = 0):
        self.died: str | None = None
        self._progress_dir = progress_dir
        self._stall = stall_seconds
        self._expected = expected
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-watch", daemon=True)

    def __enter__(self):
        if os.path.isdir("/proc"):
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * POLL_SECONDS)
        return False

    def _counts(self):
        from pipeline.progress import read_counts

        return dict(read_counts(self._progress_dir)) if self._progress_dir else {}

    def _unseen_lost(self, seen: set[int], first_seen: float | None) -> bool:
        """Fewer workers than expected ever appeared, long after the first one did."""
        return (first_seen is not None and len(seen) < self._expected
                and time.monotonic() - first_seen > self._stall)

    def _watch(self):
        me, seen, gone = os.getpid(), set(), set()
        counts, moved_at, first_seen = None, time.monotonic(), None
        while not self._stop.wait(POLL_SECONDS):
            alive = worker_pids(me)
            gone |= seen - alive
            seen |= alive
            first_seen = first_seen if first_seen is not None or not seen else time.monotonic()
            if not gone and not self._unseen_lost(seen, first_seen):
                continue
            now_counts = self._counts()
            if now_counts != counts:
                counts, moved_at = now_counts, time.monotonic()
            elif time.monotonic() - moved_at > self._stall:
                self._end(sorted(gone), worker_pids(me))
                return

    def _end(self, gone: list[int], remaining: set[int]):
        who = f"worker process {', '.join(map(str, gone))}" if gone else "a worker process"
        self.died = (f"{who} ended (killed, or out of memory) "
                     f"and the run made no progress for {self._stall:.0f} s after it")
        _log.error("%s; ending the run and %d other worker process(es)", self.died, len(remaining))
        end_workers(remaining)
        wake_main_thread()  # KeyboardInterrupt in the main thread, wherever it waits
