"""Peak memory does not grow with shard size: one shard of about 50 MB and one of about
500 MB in each format (WebDataset tar, img2dataset-layout Parquet, TFRecord), each embedded
by a fresh process into an incremental root, then a no-op incremental run on the same root.

    python -m bench.shards [--work DIR] [--sizes_mb 50,500] [--formats webdataset,parquet,tfrecord]
    python -m bench.shards --formats webdataset-gz,tfrecord-gz   # .tar.gz, .tfrecord.gz: streamed
    python -m bench.shards --huge_rows_mb 100 [--huge_rows 3]

``--huge_rows_mb`` measures instead a Parquet shard whose one row group holds ``--huge_rows``
rows of that many MB each (random bytes, as a hostile or broken writer would leave), next to
a shard of one small JPEG row: peak RSS with the default --max_row_group_bytes (the group is
refused from the metadata, unread) and with the limit lifted (the group is read).

Samples are generated 500x375 JPEGs (quality 95, noise, about 228 KB each), the same ones in
every format, written with webdataset's TarWriter, pyarrow (256-row groups) and
tf.io.TFRecordWriter (gzip: TarWriter(compress=True), TFRecordOptions("GZIP")). Settings: --image_size 32 --layers res2 --weights random, one process
(--direct_num_workers 1), so that the reader's memory, not a second model, shows. Each run
reports its peak RSS (ru_maxrss) and wall time; the no-op run also how many samples it read
(0: the shard is skipped unopened)."""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SETTINGS = ["--image_size", "32", "--layers", "res2", "--weights", "random",
            "--direct_num_workers", "1", "--progress_seconds", "3600", "--mode", "incremental"]
EXTENSIONS = {"webdataset": ".tar", "parquet": ".parquet", "tfrecord": ".tfrecord",
              "webdataset-gz": ".tar.gz", "tfrecord-gz": ".tfrecord.gz"}
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


def _samples(megabytes: int):
    """(key, JPEG bytes) up to about ``megabytes`` MB of images, the same for every format."""
    rng = np.random.default_rng(megabytes)
    count, written = 0, 0
    while written < megabytes * 1_000_000:
        image = noisy_jpeg(rng)
        yield f"{count:09d}", image
        written += len(image) + 2048  # the tar members' headers and padding, roughly
        count += 1


def _write_webdataset(path, samples, compress: bool = False) -> int:
    import webdataset

    count = 0
    with webdataset.TarWriter(str(path), compress=compress) as sink:
        for key, image in samples:
            sink.write({"__key__": key, "jpg": image, "txt": b"caption"})
            count += 1
    return count


def _write_parquet(path, samples) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("key", pa.string()), ("jpg", pa.binary()), ("txt", pa.string())])
    count, rows = 0, []
    with pq.ParquetWriter(str(path), schema) as writer:
        for key, image in samples:
            rows.append((key, image))
            if len(rows) == 256:
                writer.write_table(pa.table({"key": [k for k, _ in rows], "jpg": [i for _, i in rows],
                                             "txt": ["caption"] * len(rows)}, schema=schema))
                count, rows = count + len(rows), []
        if rows:
            writer.write_table(pa.table({"key": [k for k, _ in rows], "jpg": [i for _, i in rows],
                                         "txt": ["caption"] * len(rows)}, schema=schema))
            count += len(rows)
    return count


def _write_tfrecord(path, samples, compress: bool = False) -> int:
    import tensorflow as tf

    count = 0
    options = tf.io.TFRecordOptions(compression_type="GZIP") if compress else None
    with tf.io.TFRecordWriter(str(path), options=options) as writer:
        for _key, image in samples:
            example = tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))}))
            writer.write(example.SerializeToString())
            count += 1
    return count


WRITERS = {"webdataset": _write_webdataset, "parquet": _write_parquet, "tfrecord": _write_tfrecord,
           "webdataset-gz": lambda path, samples: _write_webdataset(path, samples, compress=True),
           "tfrecord-gz": lambda path, samples: _write_tfrecord(path, samples, compress=True)}


def write_shard(path: pathlib.Path, megabytes: int, shard_format: str) -> int:
    """A shard of about ``megabytes`` MB; returns the number of samples (cached by size)."""
    marker = path.with_suffix(".count")
    if path.exists() and marker.exists():
        return int(marker.read_text())
    count = WRITERS[shard_format](path, _samples(megabytes))
    marker.write_text(str(count))
    return count


def embed(shard: pathlib.Path, root: pathlib.Path, extra=()) -> tuple[dict, dict]:
    """One incremental run on ``root`` in a fresh process: (its RSS and time, its counts)."""
    result = subprocess.run(
        [sys.executable, "-c", _RUN, "--input", str(shard), "--output", str(root), *SETTINGS, *extra],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines or json.loads(lines[-1])["exit"] != 0:
        raise SystemExit(f"run on {shard} failed:\n{result.stderr[-3000:]}")
    entries = sorted((root / "_runs").glob("*.json"))
    return json.loads(lines[-1]), json.loads(entries[-1].read_text())["counts"]


def write_huge_rows(path: pathlib.Path, megabytes: int, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(megabytes)
    values = [rng.bytes(megabytes * 1_000_000) for _ in range(rows)]
    pq.write_table(pa.table({"key": [f"huge{i}" for i in range(rows)], "jpg": values}), str(path),
                   row_group_size=rows, compression="none")


def huge_rows(work: pathlib.Path, megabytes: int, rows: int) -> None:
    """Peak RSS of one run on a small shard, and on the huge-rows shard with and without
    the row-group limit, each in a fresh process."""
    small = work / "small.parquet"
    _write_parquet(small, _samples(1))
    huge = work / f"huge-{rows}x{megabytes}mb.parquet"
    if not huge.exists():
        write_huge_rows(huge, megabytes, rows)
    print(f"{'shard':>28} {'--max_row_group_bytes':>22} {'peak RSS MB':>12} {'errors':>7}")
    for shard, limit in ((small, None), (huge, None), (huge, str(10 ** 12))):
        root = work / "root-huge"
        shutil.rmtree(root, ignore_errors=True)
        extra = ["--max_row_group_bytes", limit] if limit else []
        measured, counts = embed(shard, root, extra)
        print(f"{shard.name:>28} {limit or 'default (256 MiB)':>22} {measured['rss_mb']:>12.0f} "
              f"{counts['errors']:>7}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/resnet50-embeddings-bench-shards")
    parser.add_argument("--sizes_mb", default="50,500")
    parser.add_argument("--formats", default="webdataset,parquet,tfrecord")
    parser.add_argument("--huge_rows_mb", type=int, default=None)
    parser.add_argument("--huge_rows", type=int, default=3)
    args = parser.parse_args()
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"settings: {' '.join(SETTINGS)}")
    if args.huge_rows_mb:
        huge_rows(work, args.huge_rows_mb, args.huge_rows)
        return 0
    print(f"{'format':>10} {'shard MB':>9} {'samples':>8} {'peak RSS MB':>12} {'seconds':>8} "
          f"{'no-op read':>10} {'no-op RSS MB':>12} {'no-op s':>8}")
    for shard_format in args.formats.split(","):
        for megabytes in [int(size) for size in args.sizes_mb.split(",")]:
            shard = work / f"shard-{megabytes}mb{EXTENSIONS[shard_format]}"
            samples = write_shard(shard, megabytes, shard_format)
            root = work / f"root-{shard_format}-{megabytes}"
            shutil.rmtree(root, ignore_errors=True)
            first, counts = embed(shard, root)
            assert counts["embedded"] == samples, (counts, samples)
            noop, counts = embed(shard, root)
            assert counts["skipped_unchanged"] == samples and counts["embedded"] == 0, counts
            print(f"{shard_format:>10} {shard.stat().st_size / 1e6:>9.0f} {samples:>8} {first['rss_mb']:>12.0f} "
                  f"{first['seconds']:>8.1f} {counts['read']:>10} {noop['rss_mb']:>12.0f} {noop['seconds']:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
