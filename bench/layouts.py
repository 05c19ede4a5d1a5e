"""Feed rate per worker layout on the local runner: how the same 2 cores move images when
they are one process, one process with two threads, two processes with a model each, or
two processes sharing one model in a model process (--model_copies 1).

    python -m bench.layouts [--work DIR] [--repeats 3] [--models zero,fp32] [--camera] [--skip_steps]

All in one run, interleaved: each round runs every layout at N1 and at N2 images, and a
round's marginal rate is (N2 - N1) / (t2 - t1), so start-up (imports, worker processes,
building the model) cancels out; the median over rounds is reported with its range. Every
run is a fresh launcher process, ``pipeline.run.run`` with ``--weights random
--image_size 224 --layers res2,res3,res4,res5 --batch_size 32`` on 500x375 web photos (JPEG
q90, from bench/feed.py; with ``--camera``, the zero model also on 3000x2000 camera photos)
and the layout's runner flags:

  1 process               --direct_num_workers 1 --direct_running_mode in_memory
  1 process x 2 threads   --direct_num_workers 2 --direct_running_mode multi_threading
  2 processes, own models --direct_num_workers 2 --direct_running_mode multi_processing
  2 processes, 1 model    the same plus --model_copies 1 (a model process of its own)

``zero``: the model returns zeros of the right shapes (bench.feed.ZeroExtractor), built
where the real model would be, TensorFlow import included. ``fp32``: the real ResNet50 in
float32 on the CPU. TensorFlow threads are the launcher's defaults: all cores for one
process, one each for two processes, all cores for the shared model process.

Then, with ``--skip_steps`` not given, three measurements in processes of their own:
  - each step's thread scaling: the images/s of 2 threads over 1 thread in one process
    (no TensorFlow imported, as in an SDK process that shares its model), same files;
  - the hand-over: a (32, 224, 224, 3) uint8 batch sent to a zero model in a model process
    and its four pooled layers back, wall time and CPU time of both sides per batch;
  - what right fitting (--accelerator_hint) shuffles: a batch of 32 web and of 32 camera
    photos at 224x224 as Beam encodes it for the shuffle, bytes per image against the JPEG
    bytes, and the CPU time to encode and decode it.
Prints tables and one JSON line."""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import pathlib
import shlex
import statistics
import subprocess
import sys
import time

import numpy as np

from bench.feed import REPO_ROOT, make_photos, subset

LAYERS = "res2,res3,res4,res5"
LAYOUTS = {
    "1 process": ["--direct_num_workers", "1", "--direct_running_mode", "in_memory"],
    "1 process x 2 threads": ["--direct_num_workers", "2", "--direct_running_mode", "multi_threading"],
    "2 processes, a model each": ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"],
    "2 processes, 1 shared model": ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing",
                                    "--model_copies", "1"],
}
COUNTS = {("zero", "web"): (200, 2200), ("fp32", "web"): (32, 288), ("zero", "camera"): (40, 440)}
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")

_RUN = """
import sys, time
from pipeline.run import run
model, pattern, out, *flags = sys.argv[1:]
factory = None
if model == "zero":
    from bench.feed import zero_extractor as factory
argv = ["--input", pattern, "--output", out, "--overwrite", "--weights", "random",
        "--image_size", "224", "--layers", "%s", "--batch_size", "32", "--progress_seconds", "3600", *flags]
started = time.perf_counter()
code = run(argv, model_factory=factory)
print("SECONDS", time.perf_counter() - started)
sys.exit(code)
""" % LAYERS


def timed_run(model: str, pattern: str, out: pathlib.Path, flags: list[str]) -> float:
    """Seconds from run() to its return, in a fresh launcher process."""
    cmd = [sys.executable, "-c", _RUN, model, pattern, str(out), *flags]
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=ENV)
    lines = [line for line in result.stdout.splitlines() if line.startswith("SECONDS ")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"failed: {shlex.join(cmd)}\n{result.stderr[-4000:]}")
    return float(lines[-1].split()[1])


def layout_rates(model: str, kind: str, folder: pathlib.Path, work: pathlib.Path, repeats: int) -> dict:
    n1, n2 = COUNTS[(model, kind)]
    rounds: dict = {name: [] for name in LAYOUTS}
    for _ in range(repeats):
        times: dict = {}
        for n in (n1, n2):
            for name, flags in LAYOUTS.items():
                times[(name, n)] = timed_run(model, subset(folder, n), work / f"out-{model}", flags)
        for name in LAYOUTS:
            rounds[name].append((n2 - n1) / (times[(name, n2)] - times[(name, n1)]))
    return {name: {"images_per_s": statistics.median(rates), "range": [min(rates), max(rates)],
                   "rounds": rates} for name, rates in rounds.items()}


# --- each step alone, 1 thread against 2 threads in one process ------------------------

def _steps(folder: pathlib.Path) -> dict:
    import io

    import simplejpeg
    from PIL import Image

    from schemas import ImageSize
    from transforms.decode import decode_image
    from transforms.resize import resize_pixels

    size = ImageSize(224, 224)
    datas = [p.read_bytes() for p in sorted(folder.glob("*.jpg"))][:400]
    decoded = [decode_image(d).pixels for d in datas]

    def pillow_decode(i):
        Image.open(io.BytesIO(datas[i])).convert("RGB").load()

    steps = {
        "simplejpeg decode": lambda i: simplejpeg.decode_jpeg(datas[i], colorspace="RGB"),
        "Pillow resize (bilinear, antialiased, crop box)": lambda i: resize_pixels(decoded[i], size, "center_crop"),
        "Pillow decode": pillow_decode,
        "SHA-256": lambda i: hashlib.sha256(datas[i]).digest(),
        "decode_image + resize_pixels (the pipeline's per-image work)":
            lambda i: resize_pixels(decode_image(datas[i], target=size).pixels, size, "center_crop"),
    }
    items = list(range(len(datas))) * 2

    def rate(step, threads: int) -> float:
        parts = [items[k::threads] for k in range(threads)]
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda part: [step(i) for i in part], parts))
        return len(items) / (time.perf_counter() - started)

    best: dict = {(name, t): 0.0 for name in steps for t in (1, 2)}
    for _ in range(5):  # interleaved: each step, both thread counts, per round
        for name, step in steps.items():
            for threads in (1, 2):
                best[(name, threads)] = max(best[(name, threads)], rate(step, threads))
    return {name: {"1 thread": best[(name, 1)], "2 threads": best[(name, 2)],
                   "2 threads / 1 thread": best[(name, 2)] / best[(name, 1)]} for name in steps}


# --- handing a batch to a model process ---------------------------------------------

def _cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _handover() -> dict:
    from bench.feed import zero_extractor
    from models.handler import ResNet50Handler
    from models.serving import SharedModel
    from schemas import ExtractionConfig

    config = ExtractionConfig(layers=tuple(LAYERS.split(",")), weights="random", batch_size=128)
    results = {}
    for transport in ("shared memory", "socket"):
        model = SharedModel(ResNet50Handler(config, model_copies=1, model_factory=zero_extractor))
        try:
            if transport == "socket":
                model._slot.close()  # pylint: disable=protected-access
                model._slot = None  # pylint: disable=protected-access
            server = model._copies[0].pid()  # pylint: disable=protected-access
            for batch in (32, 128):
                pixels = np.random.default_rng(0).integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
                for _ in range(3):
                    model(pixels)
                calls = 200 if batch == 32 else 50
                server_cpu, client_cpu, started = _cpu_seconds(server), time.process_time(), time.perf_counter()
                for _ in range(calls):
                    model(pixels)
                wall = (time.perf_counter() - started) / calls * 1000
                client = (time.process_time() - client_cpu) / calls * 1000
                served = (_cpu_seconds(server) - server_cpu) / calls * 1000
                results[f"{transport}, batch {batch}"] = {
                    "wall_ms": wall, "client_cpu_ms": client, "server_cpu_ms": served,
                    "cpu_ms_per_image": (client + served) / batch}
        finally:
            model.close()
    return results


def _shuffled(work: pathlib.Path) -> dict:
    import apache_beam as beam
    from apache_beam import typehints

    from schemas import ExtractionConfig, FileMeta, ImageBatch, ImageInfo
    from transforms.resize import model_input

    config = ExtractionConfig()
    coder = beam.coders.registry.get_coder(typehints.Any)  # what an ImageBatch PCollection uses
    results = {}
    for kind in ("web", "camera"):
        files = sorted(make_photos(work / kind, kind, 32).glob("*.jpg"))[:32]
        pixels = np.stack([model_input(f.read_bytes(), config) for f in files])
        infos = tuple(ImageInfo(FileMeta(str(f), hashlib.sha256(f.read_bytes()).hexdigest(),
                                         f.stat().st_size, 1_700_000_000_000_000, str(f)),
                                500, 375, "JPEG") for f in files)
        batch = ImageBatch(infos, pixels)
        encoded = coder.encode(batch)
        started = time.process_time()
        for _ in range(20):
            coder.encode(batch)
        encode = (time.process_time() - started) / 20
        started = time.process_time()
        for _ in range(20):
            coder.decode(encoded)
        decode = (time.process_time() - started) / 20
        results[kind] = {"bytes_per_image": len(encoded) / len(files),
                         "jpeg_bytes_per_image": sum(f.stat().st_size for f in files) / len(files),
                         "encode_ms_per_image": encode * 1000 / len(files),
                         "decode_ms_per_image": decode * 1000 / len(files)}
    return results


def _in_own_process(flag: str, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "bench.layouts", flag, *args], cwd=REPO_ROOT,
                            capture_output=True, text=True, env=ENV)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-4000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/resnet50-embeddings-bench-layouts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="zero,fp32")
    parser.add_argument("--camera", action="store_true", help="the zero model on camera photos too")
    parser.add_argument("--skip_steps", action="store_true")
    parser.add_argument("--_steps", help=argparse.SUPPRESS)
    parser.add_argument("--_handover", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_shuffled", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._steps:
        print(json.dumps(_steps(pathlib.Path(args._steps))))
        return 0
    if args._handover:
        print(json.dumps(_handover()))
        return 0
    if args._shuffled:
        print(json.dumps(_shuffled(pathlib.Path(args._shuffled))))
        return 0
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    folder = make_photos(work / "web", "web", COUNTS[("zero", "web")][1])
    print(f"{os.cpu_count()} cores; Python {sys.version.split()[0]}")
    runs = [(model, "web") for model in args.models.split(",")]
    if args.camera:
        runs.append(("zero", "camera"))
    results: dict = {}
    for model, kind in runs:
        photos = folder if kind == "web" else make_photos(work / kind, kind, COUNTS[(model, kind)][1])
        rates = layout_rates(model, kind, photos, work, args.repeats)
        results[f"{model} {kind}"] = rates
        one = rates["1 process"]["images_per_s"]
        n1, n2 = COUNTS[(model, kind)]
        print(f"\n{model} model, {kind} photos (JPEG q90), images/s (marginal {n1} -> {n2}, "
              f"median of {args.repeats} rounds):")
        for name, rate in rates.items():
            low, high = rate["range"]
            print(f"  {name:<30} {rate['images_per_s']:8.1f}   range {low:7.1f}-{high:7.1f}   "
                  f"x{rate['images_per_s'] / one:.2f} of 1 process")
        shared, own = rates["2 processes, 1 shared model"], rates["2 processes, a model each"]
        print(f"  shared / a model each: {shared['images_per_s'] / own['images_per_s']:.2f}")
    if not args.skip_steps:
        steps = _in_own_process("--_steps", str(folder))
        results["steps"] = steps
        print("\neach step alone, one process, no TensorFlow imported (images/s):")
        for name, rate in steps.items():
            print(f"  {name:<62} {rate['1 thread']:8.1f} {rate['2 threads']:8.1f}   "
                  f"x{rate['2 threads / 1 thread']:.2f}")
        handover = _in_own_process("--_handover")
        results["handover"] = handover
        print("\nhanding a batch to a zero model in a model process and four pooled layers back:")
        for name, row in handover.items():
            print(f"  {name}: {row['wall_ms']:.2f} ms wall, CPU {row['client_cpu_ms']:.2f} ms here + "
                  f"{row['server_cpu_ms']:.2f} ms there = {row['cpu_ms_per_image']:.3f} ms per image")
        shuffled = _in_own_process("--_shuffled", str(work))
        results["shuffled"] = shuffled
        print("\nright fitting: a batch at 224x224 as Beam encodes it for the shuffle, per image:")
        for kind, row in shuffled.items():
            print(f"  {kind}: {row['bytes_per_image']:,.0f} bytes ({row['bytes_per_image'] / row['jpeg_bytes_per_image']:.2f}x "
                  f"the JPEG's {row['jpeg_bytes_per_image']:,.0f}); encode {row['encode_ms_per_image']:.3f} ms, "
                  f"decode {row['decode_ms_per_image']:.3f} ms of CPU")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
