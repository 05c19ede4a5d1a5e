"""What incremental runs cost as a folder grows: a first run, a no-op run, and a run after
1% of the files changed, next to the time it takes only to list the folder.

    python -m bench.incremental [--work DIR] [--sizes 2000,20000] [--repeats 3]

Cheap settings, so that reading, listing and joining show rather than the model:
``--image_size 32 --layers res2 --weights random --batch_size 64``, two worker processes
with one TensorFlow thread each (the local default on 2 cores), pinned for every run. Inputs: generated 48x40 JPEGs (about 1.3 KB, each file different).
Every run is a fresh process (`pipeline.run.run`) that reports its wall time, its peak
resident set size and its worker processes' (ru_maxrss of children), and the run's counts.

Start-up (TensorFlow import, one model per worker, pipeline construction) is the same for
any folder, so each no-op run is paired with a no-op run on a one-file root in the same
round: the difference is what the no-op costs because of the folder's size. Rounds are
interleaved (no-op N, no-op 1, listing N) and repeated; figures are the median of rounds."""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np
from PIL import Image

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SETTINGS = ["--image_size", "32", "--layers", "res2", "--weights", "random", "--batch_size", "64",
            # Two worker processes for every run, the one-file baseline included (the local
            # default would run a one-batch input in one process, with less start-up).
            "--direct_num_workers", "2", "--direct_running_mode", "multi_processing", "--tf_threads", "1"]
_RUN = """
import json, resource, sys, time
from pipeline.run import run
started = time.perf_counter()
code = run(sys.argv[1:])
seconds = time.perf_counter() - started
print(json.dumps({"exit": code, "seconds": seconds,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "workers_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""
_LIST = """
import json, sys, time
from apache_beam.io.filesystems import FileSystems
started = time.perf_counter()
found = len(FileSystems.match([sys.argv[1]])[0].metadata_list)
print(json.dumps({"seconds": time.perf_counter() - started, "files": found}))
"""


def tiny_jpeg(index: int, background: int = 90) -> bytes:
    pixels = np.full((40, 48, 3), background, np.uint8)
    pixels.reshape(-1)[: 3 * 48 * 40][index % 5760] = 255  # every file differs
    pixels[index // 5760 % 40, :, 1] = (index * 7) % 256
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def make_folder(folder: pathlib.Path, count: int) -> None:
    """Written anew each time, so that a rewrite of an earlier bench is gone."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"img{i:06d}.jpg").write_bytes(tiny_jpeg(i))


def child(code: str, args: list[str]) -> dict:
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=False, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"child failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def run_once(folder: pathlib.Path, root: pathlib.Path) -> dict:
    row = child(_RUN, ["--input", str(folder / "*"), "--output", str(root), "--mode", "incremental",
                       "--progress_seconds", "3600", *SETTINGS])
    if row["exit"] != 0:
        raise SystemExit(f"run on {folder} exited {row['exit']}")
    entries = sorted((root / "_runs").glob("*.json"))
    row["counts"] = json.loads(entries[-1].read_text())["counts"]
    return row


def change_one_percent(folder: pathlib.Path, count: int) -> None:
    """Rewrite 1% of the files with new content (new bytes, a new time)."""
    for i in range(0, count, 100):
        (folder / f"img{i:06d}.jpg").write_bytes(tiny_jpeg(i, background=200))


def show(label: str, row: dict) -> None:
    counts = row["counts"]
    print(f"  {label:<22} {row['seconds']:>7.1f} s  read {counts['read']:>6}  embedded "
          f"{counts['embedded']:>6}  skipped unchanged {counts['skipped_unchanged']:>6}  "
          f"same content {counts['skipped_same_content']:>4}  peak RSS launcher "
          f"{row['rss_mb']:>5.0f} MB, largest worker {row['workers_rss_mb']:>5.0f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/resnet50-embeddings-bench-incremental")
    parser.add_argument("--sizes", default="2000,20000")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = pathlib.Path(args.work)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"settings: {' '.join(SETTINGS)}; generated 48x40 JPEGs")
    baseline_folder, baseline_root = work / "in-1", work / "root-1"
    make_folder(baseline_folder, 1)
    shutil.rmtree(baseline_root, ignore_errors=True)
    run_once(baseline_folder, baseline_root)
    for count in [int(size) for size in args.sizes.split(",")]:
        folder, root = work / f"in-{count}", work / f"root-{count}"
        started = time.perf_counter()
        make_folder(folder, count)
        shutil.rmtree(root, ignore_errors=True)
        print(f"\n{count} files (generated in {time.perf_counter() - started:.0f} s)")
        show("first run", run_once(folder, root))
        rounds = []
        for _ in range(args.repeats):
            noop, base = run_once(folder, root), run_once(baseline_folder, baseline_root)
            listing = child(_LIST, [str(folder / "*")])
            assert listing["files"] == count
            rounds.append((noop, base, listing))
            show("no-op run", noop)
        change_one_percent(folder, count)
        show("after 1% rewritten", run_once(folder, root))
        extra = statistics.median(n["seconds"] - b["seconds"] for n, b, _ in rounds)
        list_seconds = statistics.median(l["seconds"] for _, _, l in rounds)
        base_seconds = statistics.median(b["seconds"] for _, b, _ in rounds)
        print(f"  no-op run on a 1-file root (start-up and fixed costs): {base_seconds:.1f} s")
        print(f"  no-op run beyond that: {extra:.1f} s; listing the folder alone: {list_seconds:.2f} s; "
              f"ratio {extra / list_seconds:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
