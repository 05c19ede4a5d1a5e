"""--commit_every through the command line: a launcher killed between chunks or inside one
resumes with the same command, shards are never split across chunks, a chunk whose images
all fail still commits its errors, and the final read holds every image once."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pyarrow.parquet as pq

from images import encode, rgb_pattern
from pipeline.root import incremental
from pipeline.inspection.results import read_layer
from pipeline.root.manifest import read_manifest
from pipeline.run import EXIT_OK, run
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


def _new_worker(launcher: Launcher, earlier: set[int]) -> int:
    """A local worker process of the launcher that is not one of ``earlier``."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline and launcher.process.poll() is None:
        fresh = worker_pids(launcher.process.pid) - earlier
        if fresh:
            return min(fresh)
        time.sleep(0.05)
    raise AssertionError("the second chunk started no worker process")


def _cli_argv(folder, root) -> list[str]:
    """One local worker process per chunk's job (it is what the kills and Ctrl-C need; a
    second one would only add its start-up to every chunk)."""
    return argv(folder, root, "--commit_every", "10", "--batch_size", "2",
                "--direct_num_workers", "1", "--direct_running_mode", "multi_processing")


def _committed(root) -> list[int]:
    return [e["counts"]["embedded"] for e in runs(root)]


def _kill_inside_a_chunk(launcher: Launcher, after_line: int) -> None:
    """Wait until the chunk begun after ``after_line`` has its worker process, then kill."""
    launcher.wait_for_line("embedding a chunk of at most 10 new files", after_line)
    _new_worker(launcher, set())
    launcher.kill()


def test_a_launcher_killed_between_or_inside_chunks_resumes_with_every_image_once(tmp_path):
    """One collection of 30 images in chunks of 10, the same command each time: killed
    between chunks, killed inside the first chunk it starts, Ctrl-C as its second chunk
    starts (before or after that job's own handler is in place), then run to the end. Each
    stop keeps exactly the committed chunks, and the end holds every image once, with no
    lock, partition or Beam temp folder left over."""
    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 0, 30)
    command = _cli_argv(folder, root)

    between = Launcher(command)  # killed between chunks: right after chunk 1 commits
    try:
        between.wait_for_line("chunk 1 of 3 committed")
        between.kill()
    finally:
        if between.process.poll() is None:
            between.kill()
    assert _committed(root) == [10] and "chunk 2 of 3 committed" not in "".join(between.lines)

    inside = Launcher(command)  # killed inside the first chunk it starts: nothing more kept
    try:
        _kill_inside_a_chunk(inside, 0)
    finally:
        if inside.process.poll() is None:
            inside.kill()
    assert _committed(root) == [10] and "committed" not in "".join(inside.lines)

    interrupted = Launcher(command)  # Ctrl-C as its second chunk starts (or runs): one clean line
    try:
        committed_line = interrupted.wait_for_line("chunk 1 of 2 committed")
        interrupted.wait_for_line("embedding a chunk of at most 10 new files (after", committed_line)
        worker = _new_worker(interrupted, set())
        _wait_until_workers_ignore_sigint({worker})  # as a terminal user's would, by then
        assert interrupted.ctrl_c() == 130
    finally:
        if interrupted.process.poll() is None:
            interrupted.kill()
    printed = "".join(interrupted.lines)
    assert "1 chunk committed: 10 images embedded" in printed and "the same command resumes" in printed
    assert "Traceback" not in printed
    assert _committed(root) == [10, 10]

    resumed = subprocess.run([sys.executable, "-m", "pipeline.run", *command], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=WAIT_SECONDS,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert resumed.returncode == EXIT_OK, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stdout + resumed.stderr
    # Each command read only the files no chunk had committed (the others are skipped
    # unopened): the last one the ten left, in one chunk.
    assert [(e["counts"]["read"], e["counts"]["embedded"]) for e in runs(root)] == [(10, 10)] * 3
    rows = read_layer(str(root), "res5")
    assert sorted(rows.uris) == sorted(str(folder / f"img{i:03d}.png") for i in range(30))
    assert not (root / layout.LOCK_FILE).exists()
    assert not incremental.unfinished_partitions(str(root))
    assert not list(root.rglob("beam-temp-*"))


def _webdataset_shard(path: pathlib.Path, first: int, members: int) -> list[str]:
    import webdataset

    with webdataset.TarWriter(str(path)) as sink:
        for i in range(first, first + members):
            sink.write({"__key__": f"{i:06d}", "png": encode(rgb_pattern(40, 48, i), "PNG")})
    return [f"{path}#{i:06d}" for i in range(first, first + members)]


def test_a_chunk_takes_whole_shards_and_every_member_is_read_once(tmp_path):
    folder, root = tmp_path / "in", tmp_path / "root"
    folder.mkdir()
    members = []
    for shard in range(3):  # 3, 4 and 5 members: a chunk of 2 files takes 7 images
        members += _webdataset_shard(folder / f"shard{shard}.tar", shard * 10, 3 + shard)
    command = ["--input", str(folder / "*.tar"), "--output", str(root), "--mode", "incremental",
               "--weights", "random", "--image_size", "32", "--layers", "res2,res5", "--commit_every", "2"]
    assert run(command) == EXIT_OK
    entries = runs(root)
    assert [(e["counts"]["read"], e["counts"]["embedded"]) for e in entries] == [(7, 7), (5, 5)]
    chunks = [read_manifest(e["partition"])["chunk"] for e in entries]
    assert [c["last"].rsplit("/", 1)[1] for c in chunks] == ["shard1.tar", "shard2.tar"]
    rows = read_layer(str(root), "res2")
    assert len(rows.uris) == len(set(rows.uris)) == 12
    assert sorted(rows.uris) == sorted(members)


def test_a_chunk_whose_images_all_fail_commits_its_errors(tmp_path):
    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 0, 4)
    for name in ("img001x.png", "img001y.png"):  # sorted between img001 and img002
        (folder / name).write_bytes(b"not a png")
    assert run(argv(folder, root, "--commit_every", "2")) == EXIT_OK
    entries = runs(root)
    assert [(e["counts"]["embedded"], e["counts"]["errors"]) for e in entries] == [(2, 0), (0, 2), (2, 0)]
    errors = pq.read_table(str(pathlib.Path(entries[1]["partition"]) / layout.ERRORS_DIR))
    assert sorted(uri.rsplit("/", 1)[1] for uri in errors["uri"].to_pylist()) == ["img001x.png", "img001y.png"]
    # Errors are never done: the next command tries the two again, in one chunk, alone.
    assert run(argv(folder, root, "--commit_every", "2")) == EXIT_OK
    assert [(e["counts"]["read"], e["counts"]["errors"]) for e in runs(root)][3:] == [(2, 2)]
    rows = read_layer(str(root), "res5")
    assert sorted(rows.uris) == sorted(str(folder / f"img{i:03d}.png") for i in range(4))
