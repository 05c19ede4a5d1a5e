"""Peak memory does not grow with shard size: one WebDataset tar of about 50 MB and one of
about 500 MB, each embedded by a fresh process.

    python -m bench.shards [--work DIR] [--sizes_mb 50,500]

Samples are generated 500x375 JPEGs (quality 95, noise, about 100 KB each), written with
webdataset's TarWriter. Settings: --image_size 32 --layers res2 --weights random, one
process (--direct_num_workers 1), so that the reader's memory, not a second model, shows.
Each run reports its peak RSS (ru_maxrss) and wall time."""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import platform
import subprocess
import sys

import numpy as np
from PIL import Image

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SETTINGS = ["--image_size", "32", "--layers", "res2", "--weights", "random",
            "--direct_num_workers", "1", "--progress_seconds", "3600", "--overwrite"]
_RUN = """
import json, resource, sys, time
from pipeline.run import run
started = time.perf_counter()
code = run(sys.argv[1:])
print(json.dumps({"exit": code, "seconds": time.perf_counter() - started,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def noisy_jpeg(rng: np.random.Generator) -> bytes:
    pixels = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def write_shard(path: pathlib.Path, megabytes: int) -> int:
    """A tar of about ``megabytes`` MB; returns the number of samples (cached by size)."""
    import webdataset

    marker = path.with_suffix(".count")
    if path.exists() and marker.exists():
        return int(marker.read_text())
    rng = np.random.default_rng(megabytes)
    count, written = 0, 0
    with webdataset.TarWriter(str(path)) as sink:
        while written < megabytes * 1_000_000:
            image = noisy_jpeg(rng)
            sink.write({"__key__": f"{count:09d}", "jpg": image, "txt": b"caption"})
            written += len(image) + 2048  # the members' headers and padding, roughly
            count += 1
    marker.write_text(str(count))
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/resnet50-embeddings-bench-shards")
    parser.add_argument("--sizes_mb", default="50,500")
    args = parser.parse_args()
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"settings: {' '.join(SETTINGS)}")
    print(f"{'shard MB':>9} {'samples':>8} {'peak RSS MB':>12} {'seconds':>8}")
    for megabytes in [int(size) for size in args.sizes_mb.split(",")]:
        shard = work / f"shard-{megabytes}mb.tar"
        samples = write_shard(shard, megabytes)
        result = subprocess.run(
            [sys.executable, "-c", _RUN, "--input", str(shard), "--output", str(work / f"out-{megabytes}"),
             *SETTINGS], cwd=REPO_ROOT, capture_output=True, text=True, check=False,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if not lines or json.loads(lines[-1])["exit"] != 0:
            raise SystemExit(f"run on {shard} failed:\n{result.stderr[-3000:]}")
        row = json.loads(lines[-1])
        embedded = json.loads((work / f"out-{megabytes}" / "manifest.json").read_text())["counts"]["embedded"]
        assert embedded == samples, (embedded, samples)
        print(f"{shard.stat().st_size / 1e6:>9.0f} {samples:>8} {row['rss_mb']:>12.0f} {row['seconds']:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
