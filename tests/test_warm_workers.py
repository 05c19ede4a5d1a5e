"""pipeline/warm_workers.py and pipeline/workerpool.py: a chunked local command keeps its
worker processes from one chunk's job to the next, and leaves none behind."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import pytest

from pipeline.inspection.results import read_layer
from pipeline.warm_workers import _HandOut
from pipeline.workers import worker_pids
from test_incremental import add_images, argv, runs

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
WAIT_SECONDS = 600  # a bound for a busy machine; the loop below polls the command's state


def test_the_chunks_of_one_command_share_two_worker_processes_and_none_is_left(tmp_path):
    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 0, 12)
    command = argv(folder, root, "--commit_every", "4", "--batch_size", "2", "--direct_num_workers", "2",
                   "--direct_running_mode", "multi_processing")
    launcher = subprocess.Popen([sys.executable, "-m", "pipeline.run", *command], cwd=REPO_ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    seen: set[int] = set()
    deadline = time.monotonic() + WAIT_SECONDS
    while launcher.poll() is None and time.monotonic() < deadline:
        seen |= worker_pids(launcher.pid)  # a job's cold workers would live for seconds each
        time.sleep(0.05)
    output = launcher.communicate(timeout=60)[0]
    assert launcher.returncode == 0, output[-3000:]
    assert [e["counts"]["embedded"] for e in runs(root)] == [4, 4, 4]
    assert len(seen) == 2  # three jobs, two processes: started once, used by every job
    assert not [pid for pid in seen if os.path.exists(f"/proc/{pid}")]  # none left running
    assert "Traceback" not in output and "Self-destructing" not in output and "did not end" not in output
    assert sorted(read_layer(str(root), "res5").uris) == sorted(str(folder / f"img{i:03d}.png") for i in range(12))


class _Stub:
    def __init__(self, name, log):
        self._name, self._log = name, log

    def StartWorker(self, request):
        self._log.append((self._name, "start", request.worker_id))
        return "started"

    def StopWorker(self, request):
        self._log.append((self._name, "stop", request.worker_id))
        return "stopped"


class _Request:
    def __init__(self, worker_id):
        self.worker_id = worker_id


def test_workers_go_to_the_processes_in_turn_and_stop_where_they_started():
    log = []
    hand_out = _HandOut(["localhost:1", "localhost:2"])
    hand_out._stubs = [_Stub("a", log), _Stub("b", log)]
    for worker in ("w1", "w2", "w3"):
        assert hand_out.StartWorker(_Request(worker), None) == "started"
    hand_out.StopWorker(_Request("w2"), None)
    hand_out.StopWorker(_Request("w2"), None)  # stopped already: nothing to forward
    assert log == [("a", "start", "w1"), ("b", "start", "w2"), ("a", "start", "w3"), ("b", "stop", "w2")]
    # After a job: every worker still held is let go, each by the process that started it.
    hand_out.stop_all()
    assert sorted(log[4:]) == [("a", "stop", "w1"), ("a", "stop", "w3")]
    hand_out.stop_all()
    assert len(log) == 6


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="Linux /proc")
def test_a_warm_process_ends_when_its_launcher_closes_its_input():
    from pipeline.warm_workers import WarmWorkers

    with WarmWorkers() as warm:
        environment = warm.environment(2)
        assert environment.url.startswith("localhost:")
        pids = [process.pid for process in warm._processes]  # noqa: SLF001
        assert len(pids) == 2 and all(os.path.exists(f"/proc/{pid}") for pid in pids)
    assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
