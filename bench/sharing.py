"""Sharing the model must not cost the feed (issue 25, item 7), measured through the CLI:
two SDK worker processes with a model each against the same two sharing one model in a
model process (``--model_copies 1``), a real but cheap model so that the feed decides.

    python -m bench.sharing [--rounds 5] [--n1 500] [--n2 12000] [--image_size 32] [--layers res2]

Every run is ``python -m pipeline.run`` in a fresh process, timed from start to exit, on
generated 500x375 web photos (bench/feed.py), ``--weights random --direct_num_workers 2``.
A round runs both layouts at N1 and at N2 images in turn; its marginal rate is
(N2 - N1) / (t2 - t1), so start-up cancels out, and its ratio shared / own compares two
rates measured minutes apart at most. Prints each round and the median ratio, then one
JSON line."""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import time

from bench.feed import REPO_ROOT, make_photos, subset
from bench.layouts import ENV

LAYOUTS = {"own": [], "shared": ["--model_copies", "1"]}


def seconds_of(pattern: str, out: pathlib.Path, flags: list[str], args) -> float:
    cmd = [sys.executable, "-m", "pipeline.run", "--input", pattern, "--output", str(out), "--overwrite",
           "--weights", "random", "--image_size", str(args.image_size), "--layers", args.layers,
           "--direct_num_workers", "2", "--progress_seconds", "3600", *flags]
    started = time.perf_counter()
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=ENV)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{result.stderr[-4000:]}")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/resnet50-embeddings-bench-sharing")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n1", type=int, default=500)
    parser.add_argument("--n2", type=int, default=12000)  # at 4,000 the marginal work is shorter than start-up's scatter
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--layers", default="res2")
    args = parser.parse_args()
    work = pathlib.Path(args.work)
    folder = make_photos(work / "web", "web", args.n2)
    patterns = {n: subset(folder, n) for n in (args.n1, args.n2)}
    rounds = []
    for number in range(1, args.rounds + 1):
        seconds = {(name, n): seconds_of(patterns[n], work / f"out-{name}", flags, args)
                   for n in (args.n1, args.n2) for name, flags in LAYOUTS.items()}
        rates = {name: (args.n2 - args.n1) / (seconds[(name, args.n2)] - seconds[(name, args.n1)])
                 for name in LAYOUTS}
        rounds.append({**rates, "ratio": rates["shared"] / rates["own"]})
        print(f"round {number}: own {rates['own']:.0f} images/s, shared {rates['shared']:.0f}, "
              f"shared/own {rounds[-1]['ratio']:.2f}", flush=True)
    ratios = [r["ratio"] for r in rounds]
    print(f"median shared/own {statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f}, "
          f"{len(ratios)} rounds; goal >= 0.9)")
    print(json.dumps({"settings": vars(args), "rounds": rounds, "median_ratio": statistics.median(ratios)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
