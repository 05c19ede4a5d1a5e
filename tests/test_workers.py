"""pipeline/workers.py: a local run whose worker dies and that then stops moving is ended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline.workers import WORKER_MARK, WorkerWatch, worker_pids

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="Linux /proc")


@pytest.fixture
def launcher_sigint():
    """SIGINT raises KeyboardInterrupt, as in the launcher (pipeline/run.py's main sets it):
    whatever an earlier test in this process left, e.g. under pytest-xdist."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def fake_worker() -> subprocess.Popen:
    """A child whose command line reads like Beam's worker's."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", WORKER_MARK.decode()])


def test_a_workers_own_child_with_its_command_line_is_not_a_worker():
    # A fork that never execs keeps the worker's command line (as a subprocess does until
    # its exec): seen by a poll at that moment, it counted as a second worker.
    forking = subprocess.Popen([sys.executable, "-c", "import os, time\nif os.fork() == 0:\n    time.sleep(120)\n"
                                "time.sleep(120)", WORKER_MARK.decode()])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _children(forking.pid):
            time.sleep(0.05)
        assert _children(forking.pid)
        assert worker_pids(os.getpid()) == {forking.pid}
    finally:
        for child in _children(forking.pid):
            os.kill(child, signal.SIGKILL)
        forking.kill()
        forking.wait()


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


def test_worker_pids_finds_descendant_workers_only():
    worker = fake_worker()
    try:
        time.sleep(0.3)
        assert worker_pids(os.getpid()) == {worker.pid}
        assert worker_pids(worker.pid) == set()  # none descend from the worker itself
    finally:
        worker.kill()
        worker.wait()


def test_a_stalled_run_after_a_lost_worker_is_interrupted_and_says_why(tmp_path, launcher_sigint):
    lost, other = fake_worker(), fake_worker()
    watch = WorkerWatch(str(tmp_path), stall_seconds=1.0)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with watch:
            time.sleep(1.0)
            lost.send_signal(signal.SIGKILL)
            lost.wait()
            time.sleep(30)  # the main thread waiting, as for a lost bundle
    assert time.monotonic() - started < 10
    assert watch.died.startswith(f"worker process {lost.pid} ended")
    assert other.wait(timeout=5) == -signal.SIGKILL  # the other workers are ended too


def test_a_worker_lost_before_the_watch_saw_it_still_ends_a_stalled_run(tmp_path, launcher_sigint):
    """Killed within its first half-second (before the first poll), the worker is never
    seen; the run then has fewer workers than expected and stops moving: it is ended."""
    lost = fake_worker()
    lost.kill()
    lost.wait()
    other = fake_worker()
    watch = WorkerWatch(str(tmp_path), stall_seconds=1.0, expected=2)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with watch:
            time.sleep(30)
    assert time.monotonic() - started < 10
    assert watch.died.startswith("a worker process ended")
    assert other.wait(timeout=5) == -signal.SIGKILL


def test_a_run_that_keeps_moving_is_left_alone(tmp_path):
    lost = fake_worker()
    watch = WorkerWatch(str(tmp_path), stall_seconds=1.5)
    with watch:
        time.sleep(1.0)
        lost.kill()
        lost.wait()
        for step in range(8):  # progress files keep changing: Beam ran the bundle again
            (tmp_path / "1.json").write_text(f'{{"embedded": {step}}}')
            time.sleep(0.5)
    assert watch.died is None


def test_workerboot_and_the_lifeline_read_the_same_launcher_variable():
    from pipeline import workerboot
    from transforms import lifeline

    assert workerboot.LAUNCHER_PID_VARIABLE == lifeline.LAUNCHER_PID_VARIABLE
