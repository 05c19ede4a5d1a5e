"""--commit_every through the command line: a launcher killed just after a part commits or
inside one, or stopped by Ctrl-C, resumes with the same command; the final read holds every
image once, and nothing (lock, unfinished partition, Beam temp folder) is left. (Failed
jobs, shards split across parts and parts of errors only: test_commit_parts.py.)"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

from pipeline.root import incremental
from pipeline.inspection.results import read_layer
from pipeline.run import EXIT_OK
from pipeline.workers import worker_pids
from schemas import layout
from test_incremental import add_images, argv, runs
from test_kill_rerun import _wait_until_workers_ignore_sigint

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
WAIT_SECONDS = 300  # a bound for a busy machine, never a pause: every wait polls a state


class Launcher:
    """The CLI in a subprocess, its output read line by line as it comes."""

    def __init__(self, command: list[str]):
        self.lines: list[str] = []
        self._seen = threading.Condition()
        # A session of its own, as a terminal's process group: Ctrl-C reaches every process.
        self.process = subprocess.Popen([sys.executable, "-m", "pipeline.run", *command], cwd=REPO_ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, start_new_session=True,
                                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_for_line(self, text: str, after: int = 0) -> int:
        """The index of the first line from ``after`` on that holds ``text``."""
        deadline = time.monotonic() + WAIT_SECONDS
        with self._seen:
            while time.monotonic() < deadline:
                found = [i for i, line in enumerate(self.lines) if i >= after and text in line]
                if found:
                    return found[0]
                if self.process.poll() is not None and not self._seen.wait(0.5):
                    break
                self._seen.wait(0.5)
        raise AssertionError(f"never printed {text!r}:\n{''.join(self.lines)[-3000:]}")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=60)

    def ctrl_c(self) -> int:
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=120)


IMAGES = 300
#: In the launcher's line for each part it saw committed (pipeline/progress.py).
PART_COMMITTED = "images and errors committed"


def _cli_argv(folder, root) -> list[str]:
    """One local worker process (one writer: parts of 10), as a user would run it."""
    return argv(folder, root, "--commit_every", "10", "--batch_size", "2",
                "--direct_num_workers", "1", "--direct_running_mode", "multi_processing")


def _open_part(root) -> str | None:
    """A part being written: its partition has files and no index entry yet."""
    named = {path.name[:-len(".json")] for path in (root / layout.RUNS_INDEX_DIR).glob("*.json")}
    for partition in root.glob("run=*-part-*"):
        if partition.name[len("run="):] not in named and any(partition.rglob("*.parquet")):
            return partition.name
    return None


def _wait_inside_a_part(launcher: Launcher, root) -> str:
    """Until a part of this command is committed and another one is open; its name."""
    committed = launcher.wait_for_line(PART_COMMITTED)
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline and launcher.process.poll() is None:
        name = _open_part(root)
        if name is not None:
            return name
        time.sleep(0.005)
    raise AssertionError(f"never saw an open part after line {committed}:\n" + "".join(launcher.lines)[-3000:])


def _committed(root) -> list[str]:
    """The uris the committed parts hold (each once: asserted)."""
    uris = read_layer(str(root), "res5").uris
    assert len(uris) == len(set(uris))
    return uris


def _no_run_completed(root) -> bool:
    return all(e.get("part_of") for e in runs(root))


def test_a_launcher_killed_or_interrupted_at_any_point_resumes_with_every_image_once(tmp_path):
    """300 images in parts of 10, the same command each time: SIGKILL just after a part
    commits, SIGKILL while a part is open, Ctrl-C to the process group while a part is
    open, then run to the end. Each stop keeps the parts committed before it (none twice)
    and completes no run; the end reads every image once, opens none of the committed
    images again, and leaves no lock, partition or Beam temp folder."""
    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 0, IMAGES)
    command = _cli_argv(folder, root)

    after_commit = Launcher(command)
    try:
        after_commit.wait_for_line(PART_COMMITTED)
        after_commit.kill()
    finally:
        if after_commit.process.poll() is None:
            after_commit.kill()
    first = _committed(root)
    assert 10 <= len(first) < IMAGES and _no_run_completed(root)

    inside = Launcher(command)
    try:
        _wait_inside_a_part(inside, root)
        inside.kill()
    finally:
        if inside.process.poll() is None:
            inside.kill()
    second = _committed(root)
    assert set(first) < set(second) and len(second) < IMAGES and _no_run_completed(root)
    # (The part seen open may still have committed in the instant before the kill: only
    # what the next command does with the root is asserted, never that race.)

    interrupted = Launcher(command)
    try:
        interrupted.wait_for_line(PART_COMMITTED)
        workers = worker_pids(interrupted.process.pid)
        _wait_until_workers_ignore_sigint(workers)  # as a terminal user's would, by then
        assert interrupted.ctrl_c() == 130
    finally:
        if interrupted.process.poll() is None:
            interrupted.kill()
    printed = "".join(interrupted.lines)
    assert "Traceback" not in printed and "the same command resumes after them" in printed
    third = _committed(root)
    assert set(second) < set(third) and _no_run_completed(root)

    resumed = subprocess.run([sys.executable, "-m", "pipeline.run", *command], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=WAIT_SECONDS,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert resumed.returncode == EXIT_OK, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stdout + resumed.stderr
    main = [e for e in runs(root) if not e.get("part_of")]
    assert len(main) == 1 and main[0]["counts"]["read"] == IMAGES - len(third)
    assert main[0]["counts"]["skipped_unchanged"] == len(third)
    rows = read_layer(str(root), "res5")
    assert sorted(rows.uris) == sorted(str(folder / f"img{i:03d}.png") for i in range(IMAGES))
    assert not (root / layout.LOCK_FILE).exists()
    assert not incremental.unfinished_partitions(str(root))
    assert not list(root.rglob("beam-temp-*"))
