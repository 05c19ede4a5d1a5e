"""What a job costs before it does any work: the floor under a run that commits as it goes
by running a job per chunk (issue 27).

    python -m bench.job_floor [--rounds 3] [--shuffles 0,1,5,10,20] [--workers 2]
                              [--commit_every 2000 --images_per_second 1200]

Jobs of 100 integers and nothing else (Create, a Map, then ``--shuffles`` Reshuffles, each
one more stage), on the warm worker processes a chunked command keeps
(pipeline/warm_workers.py) and the runner it uses (pipeline.local.CtrlCSafeRunner), so no
job pays for starting processes. The sizes run interleaved, ``--rounds`` times; printed per
size: min and median seconds per job, and the slope (seconds per Reshuffle, one stage each)
from the smallest size to the largest. With ``--commit_every`` and ``--images_per_second``
(the rate of one run), also the least overhead a job per chunk could reach: the smallest
job's seconds against a chunk's embedding time. Our own chunk jobs have 56-59 stages
(BENCHMARKS.md)."""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import apache_beam as beam  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from pipeline.local import CtrlCSafeRunner  # noqa: E402
from pipeline.warm_workers import WarmWorkers  # noqa: E402


def empty_job(shuffles: int, workers: int) -> float:
    """Seconds to build and run one job of ``shuffles`` Reshuffles on the warm workers."""
    options = PipelineOptions(["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"])
    started = time.perf_counter()
    pipeline = beam.Pipeline(runner=CtrlCSafeRunner(), options=options)
    values = pipeline | "Values" >> beam.Create(list(range(100))) | "Keyed" >> beam.Map(lambda v: (v % 7, v))
    for number in range(shuffles):
        values = values | f"Shuffle{number}" >> beam.Reshuffle()
    _ = values | "Drop" >> beam.Map(lambda v: None)
    pipeline.run().wait_until_finish()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shuffles", default="0,1,5,10,20")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--commit_every", type=int, default=None)
    parser.add_argument("--images_per_second", type=float, default=None)
    args = parser.parse_args()
    sizes = [int(size) for size in args.shuffles.split(",")]
    seconds: dict[int, list[float]] = {size: [] for size in sizes}
    with WarmWorkers():
        empty_job(0, args.workers)  # the processes start here, not in a measured job
        for _ in range(args.rounds):
            for size in sizes:
                seconds[size].append(empty_job(size, args.workers))
    for size in sizes:
        print(f"{size:3d} shuffle(s): min {min(seconds[size]):.3f} s, "
              f"median {statistics.median(seconds[size]):.3f} s per job")
    low, high = min(sizes), max(sizes)
    if high > low:
        slope = (statistics.median(seconds[high]) - statistics.median(seconds[low])) / (high - low)
        print(f"each shuffle more (one stage more): {slope * 1000:.0f} ms (medians, {low} to {high})")
    if args.commit_every and args.images_per_second:
        chunk_seconds = args.commit_every / args.images_per_second
        floor = min(seconds[low])
        print(f"a chunk of {args.commit_every} at {args.images_per_second:g} images/s embeds in "
              f"{chunk_seconds:.2f} s; a job of {low} shuffle(s) alone adds {floor:.3f} s: "
              f"at least {floor / chunk_seconds:.0%} overhead for a job per chunk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
