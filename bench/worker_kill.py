"""A local worker process killed with SIGKILL mid-run, again and again: does every run end,
and how soon, with its lock released and no worker left behind?

    python -m bench.worker_kill [--tries 20] [--images 800] [--work DIR]

Each try starts the CLI in a fresh process (two local worker processes, --mode incremental
on a fresh root, --image_size 64 --layers res2,res5 --batch_size 4 --weights random), waits
for both workers, sleeps 5 to 13 s (varied by try), kills one worker, and waits up to 180 s.
Prints one line per try and a summary: exit codes, seconds from the kill to the end, how
many were ended by WorkerWatch (pipeline/workers.py), locks and workers left."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

from pipeline.workers import worker_pids  # noqa: E402


def make_images(folder: pathlib.Path, count: int, digits: int = 4) -> None:
    """``count`` different 80x64 PNGs, img0000.png on (``digits`` wide); existing ones kept."""
    from images import rgb_pattern, write_image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"img{i:0{digits}d}.png"
        if not path.exists():
            write_image(path, rgb_pattern(64, 80, i), "PNG")


def one_try(folder: pathlib.Path, out: pathlib.Path, wait_seconds: float) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "pipeline.run", "--input", str(folder / "*"), "--output", str(out),
               "--weights", "random", "--image_size", "64", "--layers", "res2,res5",
               "--batch_size", "4", "--mode", "incremental"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    workers, deadline = set(), time.time() + 120
    while len(workers) < 2 and time.time() < deadline:
        workers = worker_pids(process.pid)
        time.sleep(0.2)
    time.sleep(wait_seconds)
    try:
        os.kill(sorted(workers)[0], signal.SIGKILL)
    except (OSError, IndexError):
        process.wait()
        return {"exit": process.returncode, "killed": False}
    killed = time.time()
    try:
        code, seconds = process.wait(timeout=180), time.time() - killed
    except subprocess.TimeoutExpired:
        left = sorted(worker_pids(process.pid))
        process.kill()
        return {"exit": "HANG", "killed": True, "workers_left": left}
    errors = process.stderr.read()
    return {"exit": code, "killed": True, "seconds_after_kill": round(seconds, 1),
            "ended_by_watch": "made no progress" in errors,
            "lock_left": (out / "_lock.json").exists(), "workers_left": sorted(worker_pids(process.pid))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--images", type=int, default=800)
    parser.add_argument("--work", default="/tmp/resnet50-embeddings-bench-kill")
    args = parser.parse_args()
    work = pathlib.Path(args.work)
    make_images(work / "in", args.images)
    results = []
    for attempt in range(args.tries):
        result = one_try(work / "in", work / f"out{attempt}", 5 + attempt % 9)
        results.append(result)
        print(json.dumps(result), flush=True)
    killed = [r for r in results if r["killed"]]
    codes = {str(code): sum(1 for r in killed if r["exit"] == code) for code in {r["exit"] for r in killed}}
    print(f"summary: {len(killed)} of {len(results)} tries killed a worker mid-run; exits {codes}; "
          f"hangs {codes.get('HANG', 0)}; slowest end {max((r.get('seconds_after_kill', 0) for r in killed), default=0)} s "
          f"after the kill; ended by WorkerWatch {sum(bool(r.get('ended_by_watch')) for r in killed)}; "
          f"locks left {sum(bool(r.get('lock_left')) for r in killed)}; "
          f"workers left {sum(len(r.get('workers_left', [])) for r in killed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
