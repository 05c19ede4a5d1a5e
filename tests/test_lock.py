"""pipeline/root/lock.py: one run at a time on an incremental root or a single run's folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from images import rgb_pattern, write_image
from pipeline.root import lock
from pipeline.root.outputs import is_complete
from pipeline.run import EXIT_OK, EXIT_USAGE, run
from schemas import layout

REPO_ROOT = str(__import__("pathlib").Path(__file__).resolve().parents[1])


def add_images(folder, count: int) -> None:
    folder.mkdir(exist_ok=True)
    for seed in range(count):
        write_image(folder / f"img{seed:03d}.png", rgb_pattern(40, 48, seed), "PNG")


def argv(folder, output, *extra):
    return ["--input", str(folder / "*"), "--output", str(output), "--weights", "random",
            "--image_size", "32", "--layers", "res5", *extra]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("mode", [["--mode", "incremental"], []])
def test_a_held_lock_refuses_a_second_run(tmp_path, capsys, mode):
    folder, output = tmp_path / "in", tmp_path / "out"
    add_images(folder, 2)
    lock.acquire_lock(str(output), "20261122T000000000000Z", stale_after_hours=24)
    assert run(argv(folder, output, *mode)) == EXIT_USAGE
    assert "is locked by run 20261122T000000000000Z" in capsys.readouterr().err
    assert os.listdir(output) == [layout.LOCK_FILE]  # nothing written, the holder's lock kept
    assert json.loads((output / layout.LOCK_FILE).read_text())["run"] == "20261122T000000000000Z"


def test_a_stale_lock_is_broken(tmp_path, caplog):
    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 2)
    lock.acquire_lock(str(root), "20200101T000000000000Z", stale_after_hours=24, local=False)
    record = json.loads((root / layout.LOCK_FILE).read_text())
    record["created_unix"] -= 3 * 3600
    (root / layout.LOCK_FILE).write_text(json.dumps(record))
    assert run(argv(folder, root, "--mode", "incremental", "--lock_stale_hours", "2")) == EXIT_OK
    assert "breaking the lock of run 20200101T000000000000Z" in caplog.text
    assert not (root / layout.LOCK_FILE).exists()


@pytest.mark.parametrize("content", [b"", b'{"run": "2026', b"[1, 2]"])
def test_an_empty_or_unreadable_lock_is_judged_by_its_file_time(tmp_path, caplog, content):
    """A holder killed between the atomic create and the write leaves such a lock."""
    root = tmp_path / "root"
    root.mkdir()
    path = root / layout.LOCK_FILE
    path.write_bytes(content)
    with pytest.raises(lock.RootLocked, match="locked by run \\?"):
        lock.acquire_lock(str(root), "new", stale_after_hours=1)  # fresh: still held
    assert path.read_bytes() == content
    old = time.time() - 2 * 3600
    os.utime(path, (old, old))
    lock.acquire_lock(str(root), "new", stale_after_hours=1)
    assert json.loads(path.read_text())["run"] == "new"
    assert "2.0 h old" in caplog.text


def test_a_dead_local_holder_is_broken_but_a_remote_one_is_not(tmp_path, caplog):
    root = str(tmp_path / "root")
    for local, breaks in ((True, True), (False, False)):
        lock.acquire_lock(root, "dead", stale_after_hours=24, local=local)
        path = tmp_path / "root" / layout.LOCK_FILE
        record = json.loads(path.read_text())
        record["pid"] = dead_pid()
        path.write_text(json.dumps(record))
        if breaks:
            lock.acquire_lock(root, "next", stale_after_hours=24)
            assert "is gone" in caplog.text
            assert lock.release_lock(root, "next")
        else:  # A Dataflow job outlives the launcher that took its lock.
            with pytest.raises(lock.RootLocked):
                lock.acquire_lock(root, "next", stale_after_hours=24)
            assert lock.release_lock(root, "dead")


def test_lock_is_taken_by_exactly_one_of_many_racers(tmp_path):
    root, winners, losers = str(tmp_path / "root"), [], []
    barrier = threading.Barrier(8)

    def racer(i):
        barrier.wait()
        try:
            lock.acquire_lock(root, f"run{i}", stale_after_hours=24)
            winners.append(i)
        except lock.RootLocked:
            losers.append(i)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1 and len(losers) == 7
    assert not lock.release_lock(root, "run-not-holding")
    assert lock.release_lock(root, f"run{winners[0]}")


def test_two_single_runs_started_together_cannot_both_write(tmp_path):
    folder, output = tmp_path / "in", tmp_path / "out"
    add_images(folder, 6)
    command = [sys.executable, "-m", "pipeline.run", *argv(folder, output)]
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    processes = [subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = sorted(process.wait(timeout=600) for process in processes)
    errors = "".join(process.stderr.read() for process in processes)
    assert outcomes == [EXIT_OK, EXIT_USAGE], errors
    assert "is locked by run" in errors
    assert is_complete(str(output)) and not (output / layout.LOCK_FILE).exists()
    manifest = json.loads((output / layout.MANIFEST_FILE).read_text())
    assert manifest["counts"]["embedded"] == 6 and manifest["counts"]["rows_per_layer"]["res5"] == 6


def test_a_lock_that_names_no_run_goes_stale_within_minutes(tmp_path, caplog):
    """An empty lock (a holder killed mid-write, another tool) is not trusted for 24 hours."""
    root = tmp_path / "root"
    root.mkdir()
    path = root / layout.LOCK_FILE
    path.write_bytes(b"")
    old = time.time() - (lock.UNNAMED_STALE_HOURS * 3600 + 60)
    os.utime(path, (old, old))
    lock.acquire_lock(str(root), "new", stale_after_hours=24)
    assert json.loads(path.read_text())["run"] == "new" and "names no run" in caplog.text


def test_a_lock_that_cannot_be_written_leaves_nothing_behind(tmp_path, monkeypatch):
    """A full disk while the lock is written: a clear refusal, no empty _lock.json."""
    import errno

    from pipeline.root import atomic

    real_fsync = os.fsync

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full_disk)
    root = tmp_path / "root"
    with pytest.raises(lock.RootLocked, match="could not take the lock: could not write .*No space left"):
        lock.acquire_lock(str(root), "run1", stale_after_hours=24)
    assert not list(root.iterdir())  # neither the lock nor its temporary file
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    lock.acquire_lock(str(root), "run2", stale_after_hours=24)
    assert json.loads((root / layout.LOCK_FILE).read_text())["run"] == "run2"
