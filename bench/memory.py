"""Peak resident memory of a whole run, for 200 and for 2,000 images: it must not grow with
the number of images (target: difference under 300 MB).

    python -m bench.memory [--work DIR] [--small 200] [--large 2000] [--big_jpegs 3]

Each run is a fresh process (`pipeline.run.run`, default settings: 224x224, res2..res5,
avg pooling, batch 32, in-process runner, seeded random weights) that reports its own
ru_maxrss. Both input sets hold mostly 500x375 JPEGs (quality 90) plus a few 6000x4000
JPEGs. Generated images are cached under --work and reused."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from images import rgb_pattern, write_image  # noqa: E402

LIMIT_MB = 300
_CHILD = """
import json, resource, sys, time
from pipeline.run import run
started = time.perf_counter()
code = run(sys.argv[1:])
print(json.dumps({"exit": code, "seconds": time.perf_counter() - started,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_inputs(work: pathlib.Path, count: int, big_jpegs: int) -> pathlib.Path:
    """A folder of ``count`` 500x375 JPEGs plus ``big_jpegs`` 6000x4000 ones (cached)."""
    pool = work / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    base = rgb_pattern(375, 500, seed=0)
    for i in range(count):
        path = pool / f"photo{i:05d}.jpg"
        if not path.exists():
            pixels = base.copy()
            pixels[: 1 + i % 300, : 1 + i % 400] = (i * 37) % 256  # every file differs
            write_image(path, pixels, "JPEG", quality=90)
    for i in range(big_jpegs):
        path = pool / f"big{i}.jpg"
        if not path.exists():
            write_image(path, rgb_pattern(4000, 6000, seed=100 + i), "JPEG", quality=90)
    folder = work / f"set{count}"
    folder.mkdir(exist_ok=True)
    wanted = [f"photo{i:05d}.jpg" for i in range(count)] + [f"big{i}.jpg" for i in range(big_jpegs)]
    for name in wanted:
        if not (folder / name).exists():
            os.link(pool / name, folder / name)
    return folder


def measure(folder: pathlib.Path, work: pathlib.Path, extra: list[str]) -> dict:
    out = work / f"out-{folder.name}"
    argv = ["--input", str(folder / "*"), "--output", str(out), "--overwrite", "--weights", "random"] + extra
    result = subprocess.run([sys.executable, "-c", _CHILD] + argv, cwd=REPO_ROOT,
                            capture_output=True, text=True, check=False)
    lines = [l for l in result.stdout.splitlines() if l.startswith("{")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"run on {folder} failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/resnet50-embeddings-bench", help="cache and output folder")
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--big_jpegs", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="extra pipeline arguments, after --")
    args = parser.parse_args()
    work = pathlib.Path(args.work)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    started = time.perf_counter()
    sets = {n: make_inputs(work, n, args.big_jpegs) for n in (args.small, args.large)}
    print(f"inputs ready in {time.perf_counter() - started:.0f} s under {work}")
    rows = {}
    for count, folder in sets.items():
        rows[count] = measure(folder, work, args.extra)
    print(f"{'images':>8} {'peak RSS MB':>12} {'seconds':>8} {'images/s':>9}")
    for count, row in rows.items():
        total = count + args.big_jpegs
        print(f"{total:>8} {row['peak_rss_mb']:>12.0f} {row['seconds']:>8.1f} {total / row['seconds']:>9.1f}")
    growth = rows[args.large]["peak_rss_mb"] - rows[args.small]["peak_rss_mb"]
    verdict = "OK" if growth < LIMIT_MB else "OVER"
    print(f"peak RSS growth from {args.small} to {args.large} images: {growth:+.0f} MB "
          f"(limit {LIMIT_MB} MB): {verdict}")
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    raise SystemExit(main())
