"""Feed per core (issue 29): what one CPU core moves through the whole pipeline against its
own decode+resize loop, and against Daft's documented job, all in one run.

    python -m bench.per_core [--core 0] [--rounds 3] [--n1 200] [--n2 1200]
                             [--daft_python /tmp/daftvenv/bin/python] [--profile]
                             [--same_process REPEATS]

Every process is pinned to core ``--core`` with ``taskset``. Inputs: 500x375 web photos,
JPEG quality 90 (bench/feed.py's ``make_photos``). Rounds are interleaved (loop, pipeline,
Daft, loop, ...) and every rate is by CPU time (user + system) of the process, which is
what sizes vCPUs; wall rates are printed beside them.

  loop      ``decode_image`` + ``resize_pixels`` over the files' bytes already in memory,
            in a process that has imported TensorFlow and kept freed memory
            (models/malloc_tuning.py), as a worker has: images / CPU s.
  pipeline  ``pipeline.run`` in process (one worker, in_memory), the model replaced by one
            that returns zeros of the right shapes (bench/feed.py's ZeroExtractor), res2..res5,
            batch 32, 224x224; in-process pairs (a warm-up run, then 2 pairs of N1 and N2
            images), so imports and start-up cancel: the median (N2 - N1) / (cpu2 - cpu1).
  daft      bench/daft_job.py in the Python given by ``--daft_python`` (a virtualenv of
            its own), one process per run, N1 and N2: (N2 - N1) / (cpu2 - cpu1) of the job
            after imports. Daft stretches, hashes nothing and applies no EXIF orientation;
            our pipeline center-crops, hashes, checks formats and sizes, and writes an
            images/ table and error rows too.

``--same_process R``: also R repeats of the loop (N2 images) and a pipeline pair (N1, N2),
alternating in one pinned process, and pipeline/loop per repeat: the two sides seconds apart.
A diagnostic, not the goal's measure: there the loop runs in a process the pipeline has
used (its heap, its allocator), so whatever the pipeline does to decoding's own speed is
hidden from the ratio; the goal's loop is a fresh process that has imported TensorFlow.

``--profile``: the per-step table. py-spy (``pip install py-spy``; not a project
dependency) samples runs of N1 and of N2 images, alternating, in one warm pinned process;
each sample goes to the innermost step it is in (read, header, decode, resize, batch,
tables, Parquet, progress, Beam's own work inside bundles, outside bundles), and a step's
samples in the N2 runs minus those in the N1 runs, in seconds over the N2 - N1 extra
images, are its milliseconds per image: marginal like the rates, so what a run pays once
cancels. Their sum is printed beside the measured marginal CPU per image.
Prints the tables and one JSON line."""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

from bench.feed import PAIRED_OURS, make_photos, subset

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SETTINGS = ["--image_size", "224", "--layers", "res2,res3,res4,res5", "--batch_size", "32",
            "--weights", "random", "--direct_num_workers", "1", "--direct_running_mode", "in_memory"]
GOAL_LOOP_RATIO = 0.85

# Runs on request: a warm-up run first, then one run per line read ("RUN <pattern>"), each
# answered with "DONE"; py-spy attaches to this process for each run alone.
_RUNS_ON_REQUEST = """
import sys
from bench.feed import zero_extractor
from pipeline.run import run
first, out, *settings = sys.argv[1:]
once = lambda pattern: run(["--input", pattern, "--output", out, "--overwrite", *settings],
                           model_factory=zero_extractor)
once(first)
print("READY", flush=True)
for line in sys.stdin:
    if once(line.split(" ", 1)[1].strip()) != 0:
        sys.exit(1)
    print("DONE", flush=True)
"""

# The loop itself: decode + resize over the files' bytes in memory (``datas``), shared by
# the loop's own process and the one-process diagnostic.
_LOOP_STEPS = """
from models.malloc_tuning import keep_freed_memory
from schemas import ImageSize
from transforms.decode import decode_image
from transforms.resize import REDUCING_GAP, resize_pixels
size = ImageSize(224, 224)
keep_freed_memory()  # as the pipeline's decoding step does (transforms/prepare.py)

def loop(images):
    for data in images:
        resize_pixels(decode_image(data, target=size).pixels, size, "center_crop", REDUCING_GAP)
"""

_LOOP = """
import json, pathlib, sys, time
import tensorflow  # noqa: F401  (as in a worker: it changes how Pillow allocates)
""" + _LOOP_STEPS + """
datas = [p.read_bytes() for p in sorted(pathlib.Path(sys.argv[1]).glob("*"))]
loop(datas[:20])
wall, cpu = time.perf_counter(), time.process_time()
loop(datas)
print("LOOP " + json.dumps([len(datas), time.perf_counter() - wall, time.process_time() - cpu]))
"""

# The loop and the pipeline in one process, alternating: loop over N2 images' bytes, then a
# pair of pipeline runs (N1, N2), repeated; a disturbance of the host then lands on both
# sides of a repeat instead of on one side of a round.
_SAME_PROCESS = """
import json, pathlib, sys, time
from bench.feed import zero_extractor
from pipeline.run import run
""" + _LOOP_STEPS + """
repeats, folder, small, big, out, *settings = sys.argv[1:]
datas = [p.read_bytes() for p in sorted(pathlib.Path(folder).glob("*"))]

def cpu_of(step, *args):
    cpu = time.process_time()
    step(*args)
    return time.process_time() - cpu

def once(pattern):
    if run(["--input", pattern, "--output", out, "--overwrite", *settings], model_factory=zero_extractor) != 0:
        sys.exit(1)

once(small)
loop(datas)
print("SAME " + json.dumps([[len(datas) / cpu_of(loop, datas), cpu_of(once, small), cpu_of(once, big)]
                            for _ in range(int(repeats))]))
"""


def same_process_rates(core: int, small: str, big: str, n: int, work: pathlib.Path,
                       repeats: int) -> list[dict]:
    """{"loop", "pipeline"} images per CPU-second per repeat, measured in one pinned process,
    one after the other."""
    found = output_of(pinned(core, sys.executable, "-c", _SAME_PROCESS, str(repeats), folder_of(big), small,
                             big, str(work / "out"), *SETTINGS), "SAME ")
    return [{"loop": loop, "pipeline": n / (cpu_big - cpu_small)} for loop, cpu_small, cpu_big in found]


#: Innermost match wins: (step, pattern over one py-spy frame).
STEPS = [
    ("read: SHA-256", re.compile(r"content_id \(")),
    ("read: open + read", re.compile(r"read_bytes \(")),
    ("decode: libjpeg-turbo", re.compile(r"decode_turbo \(")),
    ("decode: header, format checks, EXIF", re.compile(r"open_checked \(|getexif|draft \(|check_format")),
    ("decode: the rest", re.compile(r"decode_image \(")),
    ("resize", re.compile(r"resize_pixels \(")),
    ("batch: stack", re.compile(r"stack_batch \(")),
    ("write: Arrow tables", re.compile(r"layer_table \(|images_table \(|rows_table|\.table \(schemas")),
    ("write: Parquet", re.compile(r"write_table \(|write_record \(|parquetio.py")),
    ("model (zeros)", re.compile(r"ZeroExtractor")),
    ("progress counts", re.compile(r"CountProgress|_write_counts")),
    ("shape asserts", re.compile(r"assert_shape \(")),
    ("pickling between stages", re.compile(r"PickleCoder|coders.py|coder_impl")),
]
BEAM = "Beam's own work inside bundles"
OUTSIDE = "outside bundles (job set-up, finalize)"


def pinned(core: int, *args: str) -> list[str]:
    return ["taskset", "-c", str(core), *args]


def output_of(cmd: list[str], marker: str, env=None):
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    for line in done.stdout.splitlines():
        if line.startswith(marker):
            return json.loads(line[len(marker):])
    raise RuntimeError(f"{cmd[:4]} failed ({done.returncode}): {done.stderr[-1500:]}")


def folder_of(pattern: str) -> str:
    """The folder of a ``subset`` glob (``<folder>/*``)."""
    return pattern.rstrip("*").rstrip("/")


def loop_rate(core: int, pattern: str) -> dict:
    count, wall, cpu = output_of(pinned(core, sys.executable, "-c", _LOOP, folder_of(pattern)), "LOOP ")
    return {"cpu": count / cpu, "wall": count / wall}


def pipeline_rate(core: int, small: str, big: str, n: int, work: pathlib.Path, pairs: int = 2) -> dict:
    """The median of ``pairs`` in-process pairs' marginal rates."""
    measured = output_of(pinned(core, sys.executable, "-c", PAIRED_OURS, str(pairs), small, big, str(work / "out"),
                                *SETTINGS), "PAIRS ")
    return {"cpu": statistics.median(n / (cpu2 - cpu1) for (_, cpu1), (_, cpu2) in measured),
            "wall": statistics.median(n / (wall2 - wall1) for (wall1, _), (wall2, _) in measured)}


def daft_rate(core: int, python: str, small: str, big: str, n: int, work: pathlib.Path) -> dict:
    runs = []
    for pattern in (small, big):
        out = work / "daft-out"
        shutil.rmtree(out, ignore_errors=True)
        for attempt in range(3):  # Daft 0.7.26 crashed (SIGSEGV) once in 8 runs here: try again
            done = subprocess.run(pinned(core, python, str(REPO_ROOT / "bench" / "daft_job.py"), pattern, str(out)),
                                  capture_output=True, text=True)
            if done.returncode == 0:
                break
            print(f"daft run failed ({done.returncode}), attempt {attempt + 1} of 3", file=sys.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"daft failed 3 times: {done.stderr[-1500:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"cpu": n / (runs[1]["cpu_rusage"] - runs[0]["cpu_rusage"]), "wall": n / (runs[1]["wall"] - runs[0]["wall"])}


def classify(raw: str) -> collections.Counter:
    """py-spy raw (collapsed) stacks -> samples per step."""
    steps: collections.Counter = collections.Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():  # a frame whose text held a line break: its stack is cut
            continue
        frames = stack.split(";")
        step = next((name for frame in reversed(frames) for name, pattern in STEPS if pattern.search(frame)), None)
        if step is None:
            step = BEAM if any("process_bundle" in frame for frame in frames) else OUTSIDE
        steps[step] += int(count)
    return steps


def wait_for(runner: subprocess.Popen, line: str) -> None:
    """Read ``runner``'s output (the run's own lines too) up to ``line``."""
    for said in runner.stdout:
        if said.strip() == line:
            return
    raise RuntimeError(f"the pipeline process ended before it said {line} (exit {runner.wait()})")


def py_spy() -> str:
    """py-spy beside this Python (a virtualenv's bin/), else on PATH."""
    beside = pathlib.Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else (shutil.which("py-spy") or "py-spy")


def profiled_steps(runner: subprocess.Popen, pattern: str, work: pathlib.Path, rate_hz: int) -> collections.Counter:
    """Samples per step of one run of ``pattern`` in ``runner`` (a warm process)."""
    raw = work / "profile.txt"
    spy = subprocess.Popen([py_spy(), "record", "--rate", str(rate_hz), "--nonblocking", "--format", "raw",
                            "--output", str(raw), "--pid", str(runner.pid)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while "Sampling process" not in spy.stdout.readline():  # py-spy says when it has attached
        if spy.poll() is not None:
            raise RuntimeError("py-spy could not attach (ptrace allowed? pip install py-spy)")
    runner.stdin.write(f"RUN {pattern}\n")
    runner.stdin.flush()
    wait_for(runner, "DONE")
    spy.send_signal(signal.SIGINT)
    spy.wait()
    return classify(raw.read_text())


def step_table(core: int, small: str, big: str, images: int, work: pathlib.Path,
               repeats: int = 2, rate_hz: int = 250) -> dict:
    """Milliseconds per image for each step, marginal like the rates: py-spy samples of
    ``repeats`` runs of ``big`` minus those of as many runs of ``small`` (``images`` fewer),
    alternating in one warm process (after a warm-up run of ``small``), at ``rate_hz``.
    What a run pays once (job set-up, bundles, finalize) cancels, wherever it is sampled;
    a step's figure is its sampled seconds over the extra images."""
    runner = subprocess.Popen(pinned(core, sys.executable, "-c", _RUNS_ON_REQUEST, small, str(work / "out"),
                                     *SETTINGS),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        wait_for(runner, "READY")
        samples = {small: collections.Counter(), big: collections.Counter()}
        for _ in range(repeats):
            for pattern in (small, big):
                samples[pattern].update(profiled_steps(runner, pattern, work, rate_hz))
    finally:
        runner.stdin.close()
        runner.wait()
    steps = set(samples[small]) | set(samples[big])
    per_image = {step: (samples[big][step] - samples[small][step]) / rate_hz * 1000 / (repeats * images)
                 for step in steps}
    return {step: round(value, 3) for step, value in sorted(per_image.items(), key=lambda kv: -kv[1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n1", type=int, default=200)
    parser.add_argument("--n2", type=int, default=2200)
    parser.add_argument("--daft_python", help="a Python with daft installed (its own virtualenv)")
    parser.add_argument("--profile", action="store_true", help="also the per-step table (needs py-spy)")
    parser.add_argument("--work", type=pathlib.Path)
    parser.add_argument("--same_process", type=int, default=0, metavar="REPEATS",
                        help="also the loop and the pipeline alternating in one process, REPEATS times")
    args = parser.parse_args()
    if args.work:
        return measure(args, args.work)
    with tempfile.TemporaryDirectory(prefix="per-core-") as work:  # 2,200 photos and outputs: about 90 MB
        return measure(args, pathlib.Path(work))


def measure(args: argparse.Namespace, work: pathlib.Path) -> int:
    """The rounds, ratios, and with ``--same_process`` and ``--profile`` their tables, in ``work``."""
    folder = make_photos(work / "web", "web", args.n2)
    small, big = subset(folder, args.n1), subset(folder, args.n2)
    n = args.n2 - args.n1
    rates = collections.defaultdict(list)
    for round_ in range(args.rounds):
        rates["loop"].append(loop_rate(args.core, big))
        rates["pipeline"].append(pipeline_rate(args.core, small, big, n, work))
        if args.daft_python:
            rates["daft"].append(daft_rate(args.core, args.daft_python, small, big, n, work))
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]['cpu']:.0f}" for k, v in rates.items()),
              file=sys.stderr, flush=True)
    summary = {name: {"cpu_median": statistics.median(r["cpu"] for r in runs),
                      "cpu_range": [min(r["cpu"] for r in runs), max(r["cpu"] for r in runs)],
                      "wall_median": statistics.median(r["wall"] for r in runs)}
               for name, runs in rates.items()}
    ratios = {"pipeline/loop": [p["cpu"] / l["cpu"] for p, l in zip(rates["pipeline"], rates["loop"])]}
    if args.daft_python:
        ratios["pipeline/daft"] = [p["cpu"] / d["cpu"] for p, d in zip(rates["pipeline"], rates["daft"])]
    print(f"\nimages per CPU-second on core {args.core}, web 500x375, {args.rounds} interleaved rounds, "
          f"marginal {args.n1} -> {args.n2}")
    print("| what | median | range | wall median |\n|---|---:|---:|---:|")
    for name, row in summary.items():
        print(f"| {name} | {row['cpu_median']:.1f} | {row['cpu_range'][0]:.1f}-{row['cpu_range'][1]:.1f} "
              f"| {row['wall_median']:.1f} |")
    for name, values in ratios.items():
        goal = f" (goal >= {GOAL_LOOP_RATIO})" if name == "pipeline/loop" else " (goal > 1)"
        print(f"{name} per round: {', '.join(f'{v:.3f}' for v in values)}; median "
              f"{statistics.median(values):.3f}{goal}")
    # The issue's own measure: each side's least disturbed round (its best rate), a noisy
    # neighbour only ever slows a round down.
    best = {name: max(r["cpu"] for r in runs) for name, runs in rates.items()}
    best_ratios = {f"pipeline/{other}": best["pipeline"] / best[other] for other in ("loop", "daft") if other in best}
    print("best round against best round: " + ", ".join(f"{k} {v:.3f}" for k, v in best_ratios.items()))
    result = {"summary": summary, "ratios": ratios, "best_ratios": best_ratios, "rounds": rates,
              "n1": args.n1, "n2": args.n2}
    if args.same_process:
        same = same_process_rates(args.core, small, big, n, work, args.same_process)
        ratios_same = [r["pipeline"] / r["loop"] for r in same]
        listed = {side: ", ".join(f"{r[side]:.1f}" for r in same) for side in ("loop", "pipeline")}
        print(f"in one process, alternating, images per CPU-second per repeat: loop {listed['loop']}; "
              f"pipeline {listed['pipeline']}")
        print(f"pipeline/loop in one process per repeat: {', '.join(f'{v:.3f}' for v in ratios_same)}; "
              f"median {statistics.median(ratios_same):.3f} (goal >= {GOAL_LOOP_RATIO})")
        result["same_process"] = {"rates": same, "ratios": ratios_same}
    if args.profile:
        ms = 1000 / summary["pipeline"]["cpu_median"]
        table = step_table(args.core, small, big, n, work)
        loop_ms = 1000 / summary["loop"]["cpu_median"]
        print(f"\nper-step CPU per image in the pipeline (py-spy, marginal: {args.n2}-image runs minus "
              f"{args.n1}-image runs; sampled total {sum(table.values()):.3f} ms against the measured "
              f"{ms:.3f} ms; the bare loop {loop_ms:.3f} ms)")
        print("| step | ms per image |\n|---|---:|")
        for step, value in table.items():
            print(f"| {step} | {value:.3f} |")
        result["steps_ms"] = table
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
