"""Per-core feed rate for GPU workers: how many images one CPU core reads, hashes, decodes,
resizes, batches and writes per second when the model costs nothing.

    python -m bench.feed [--work DIR] [--core 0] [--repeats 3] [--pairs 3] [--kinds web,camera]

All in one run, every process pinned to one core (``taskset -c CORE``), one Beam worker
(``--direct_num_workers 1 --direct_running_mode in_memory``):

  (a) this pipeline (``python -m pipeline.run``) with its model replaced by one that
      returns zeros of the right shapes (``zero_extractor``);
  (b) the same job written the way Beam documents it (bench/beam_documented.py:
      RunInference + TFModelHandlerNumpy + WriteToParquet) with an ``inference_fn`` that
      returns the same zeros without running the model (``--zero_inference``);
  (c) bare decode loops on the same files: our decode_image + resize_pixels; Pillow
      open + convert + resize (the documented job's decode); simplejpeg + Pillow resize;
      tf.io.decode_jpeg + tf.image.resize.
      Ours twice: as the pipeline runs it (JPEGs through libjpeg-turbo, transforms/turbojpeg.py)
      and with ``turbo=False`` (Pillow only). TensorFlow is imported, as in a worker: it
      changes how fast Pillow decodes (BENCHMARKS.md, the block pool).

(a) and (b) are zero-cost the same way: neither runs a TensorFlow graph per batch, and both
import TensorFlow in the process that would hold the model (the documented job's handler
loads its SavedModel; our zero model imports TensorFlow where the real one would be built).
What still differs is each job's own work: ours hashes, decodes with libjpeg-turbo at draft
scale, center-crops and writes a row group per batch; the documented job decodes in full
with Pillow, stretches, runs ``preprocess_input`` in numpy, splits each batch into one
PredictionResult per image and writes rows as Python lists.

All are marginal rates, (N2 - N1) / (t2 - t1), so start-up cancels out, given by wall time
and by the CPU time (user + system) the process used, which is what sizes vCPUs. (a) runs
in-process pairs (a warm-up run, then ``--pairs`` pairs of N1 and N2 images in the same
process: imports and TensorFlow's start, whose time varies by a second here, are paid
once); ``--repeats`` such processes, interleaved with (b); the median pair rate is reported
with the range. (b) is timed per process: each t is the fastest of ``repeats`` runs. Inputs:
500x375 web photos and 3000x2000 camera photos (JPEG quality 90), made from the photos in
samples/images with a unique patch each (camera photos are upscaled, with noise added so
that they do not compress like a smooth upscale). Settings: --image_size 224 --layers
res2,res3,res4,res5 --batch_size 32. Prints a table and one JSON line."""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import platform
import re
import resource
import shlex
import subprocess
import sys
import time

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SIZES = {"web": (500, 375), "camera": (3000, 2000)}
COUNTS = {"web": (64, 2048), "camera": (8, 200)}
IMAGE_SIZE = 224
LAYERS = "res2,res3,res4,res5"
BATCH = 32
ONE_WORKER = ["--direct_num_workers", "1", "--direct_running_mode", "in_memory"]

# Ours in one process: a warm-up run, then PAIRS pairs of runs (SMALL, BIG), each timed by
# wall and CPU time (all threads; the in-memory runner works in this process). Imports and
# TensorFlow's start are paid once, so a pair's difference is the images' cost.
PAIRED_OURS = """
import json, sys, time
from bench.feed import zero_extractor
from pipeline.run import run
pairs, small, big, out, *settings = sys.argv[1:]

def once(pattern):
    argv = ["--input", pattern, "--output", out, "--overwrite", *settings]
    wall, cpu = time.perf_counter(), time.process_time()
    if run(argv, model_factory=zero_extractor) != 0:
        sys.exit(1)
    return time.perf_counter() - wall, time.process_time() - cpu

once(small)
print("PAIRS " + json.dumps([[once(small), once(big)] for _ in range(int(pairs))]))
"""


class ZeroExtractor:
    """The model's contract at no cost: each layer's (n, C) zeros in the output dtype.
    Built where the real model would be, it imports TensorFlow as the real one does: a
    process that has imported it decodes at another speed (BENCHMARKS.md)."""

    def __init__(self, config):
        import tensorflow  # noqa: F401  # pylint: disable=unused-import,import-outside-toplevel

        self._shapes = {layer: config.embedding_shape(layer) for layer in config.layers}
        self._dtype = np.dtype(config.output_dtype)

    def __call__(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        return {layer: np.zeros((len(pixels),) + shape, self._dtype) for layer, shape in self._shapes.items()}


def zero_extractor(config) -> ZeroExtractor:
    return ZeroExtractor(config)


def make_photos(folder: pathlib.Path, kind: str, count: int) -> pathlib.Path:
    """``count`` JPEGs of the ``kind`` size from samples/images, each with a unique patch."""
    from PIL import Image, ImageOps

    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.jpg"))) >= count:
        return folder
    width, height = SIZES[kind]
    rng = np.random.default_rng(7)
    sources = []
    for path in sorted((REPO_ROOT / "samples" / "images").iterdir()):
        with Image.open(path) as image:
            sources.append(np.asarray(ImageOps.fit(image.convert("RGB"), (width, height), Image.BICUBIC)))
    for i in range(count):
        pixels = sources[i % len(sources)].copy()
        if kind == "camera":
            pixels = np.clip(pixels.astype(np.int16) + rng.normal(0, 3, pixels.shape), 0, 255).astype(np.uint8)
        pixels[: 8 + i % 32, : 8 + i % 48] = (i * 37) % 256
        Image.fromarray(pixels).save(folder / f"{kind}{i:05d}.jpg", "JPEG", quality=90)
    return folder


def subset(folder: pathlib.Path, n: int) -> str:
    """A glob of the first ``n`` files (they are numbered)."""
    files = sorted(folder.glob("*.jpg"))[:n]
    target = folder.parent / f"{folder.name}-{n}"
    if not target.exists():
        target.mkdir()
        for f in files:
            (target / f.name).symlink_to(f)
    return str(target / "*")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; (wall seconds, CPU seconds of the process and its children)."""
    started, cpu = time.perf_counter(), _children_cpu()
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""))
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"failed: {shlex.join(cmd)}\n{result.stderr[-4000:]}")
    return seconds, _children_cpu() - cpu


def job_commands(core: int, work: pathlib.Path, model_dir: pathlib.Path):
    """Each job: (pattern, output) -> command; run from REPO_ROOT."""
    pin = ["taskset", "-c", str(core), sys.executable]

    def ours(pairs: int, small: str, big: str, out: str) -> list[str]:
        return pin + ["-c", PAIRED_OURS, str(pairs), small, big, out,
                      "--weights", "random", "--image_size", str(IMAGE_SIZE), "--layers", LAYERS,
                      "--batch_size", str(BATCH), "--progress_seconds", "3600", *ONE_WORKER]

    def documented(pattern: str, out: str) -> list[str]:
        return pin + ["-m", "bench.beam_documented", "--input", pattern, "--output", out,
                      "--model_dir", str(model_dir), "--image_size", str(IMAGE_SIZE), "--layers", LAYERS,
                      "--batch_size", str(BATCH), "--zero_inference", "--runner",
                      "apache_beam.runners.portability.fn_api_runner.FnApiRunner", *ONE_WORKER]

    return {"ours": ours, "documented": documented}


def marginal_rates(kind: str, folder: pathlib.Path, jobs: dict, work: pathlib.Path, repeats: int) -> dict:
    n1, n2 = COUNTS[kind]
    times: dict = {(job, n): [] for job in jobs for n in (n1, n2)}
    for _ in range(repeats):
        for n in (n1, n2):
            for job, command in jobs.items():
                out = work / f"out-{kind}-{job}-{n}"
                times[(job, n)].append(timed(command(subset(folder, n), str(out))))
    rates = {}
    for job in jobs:
        (wall1, cpu1), (wall2, cpu2) = (
            [min(t[i] for t in times[(job, n)]) for i in (0, 1)] for n in (n1, n2))
        rates[job] = {"t1": wall1, "t2": wall2, "images_per_s": (n2 - n1) / (wall2 - wall1),
                      "cpu1": cpu1, "cpu2": cpu2, "images_per_cpu_s": (n2 - n1) / (cpu2 - cpu1)}
    return rates


def paired_rates(kind: str, folder: pathlib.Path, command, trees: dict, work: pathlib.Path,
                 repeats: int, pairs: int) -> dict:
    """(a): each checkout in ``trees`` (job -> root) runs ``repeats`` processes of ``pairs``
    in-process pairs, interleaved; the rate of a pair is (N2 - N1) / (t2 - t1).
    Returns the median pair rate by wall and CPU time, with the range of the wall rates."""
    n1, n2 = COUNTS[kind]
    samples: dict = {job: [] for job in trees}
    for _ in range(repeats):
        for job, tree in trees.items():
            cmd = command(pairs, subset(folder, n1), subset(folder, n2), str(work / f"out-{kind}-{job}"))
            result = subprocess.run(cmd, cwd=tree, capture_output=True, text=True,
                                    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""))
            lines = [line for line in result.stdout.splitlines() if line.startswith("PAIRS ")]
            if result.returncode != 0 or not lines:
                raise SystemExit(f"failed: {shlex.join(cmd)}\n{result.stderr[-4000:]}")
            for (wall1, cpu1), (wall2, cpu2) in json.loads(lines[-1][len("PAIRS "):]):
                samples[job].append(((n2 - n1) / (wall2 - wall1), (n2 - n1) / (cpu2 - cpu1)))
    return {job: {"images_per_s": float(np.median([wall for wall, _ in rates])),
                  "images_per_cpu_s": float(np.median([cpu for _, cpu in rates])),
                  "wall_range": [min(w for w, _ in rates), max(w for w, _ in rates)], "pairs": len(rates)}
            for job, rates in samples.items()}


# --- (c): bare decode loops, run in a pinned process of their own ----------------------

def _loops(folder: pathlib.Path, repeats: int) -> dict:
    import simplejpeg
    import tensorflow as tf
    from PIL import Image

    from schemas import ImageSize
    from transforms.decode import decode_image
    from transforms.resize import resize_pixels

    datas = [p.read_bytes() for p in sorted(folder.glob("*.jpg"))]
    size = ImageSize(IMAGE_SIZE, IMAGE_SIZE)

    def ours(data):
        resize_pixels(decode_image(data, target=size).pixels, size, "center_crop")

    def ours_pillow(data):
        resize_pixels(decode_image(data, target=size, turbo=False).pixels, size, "center_crop")

    def pillow(data):
        Image.open(io.BytesIO(data)).convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE))

    loops = {"decode_image + resize_pixels": ours, "the same, turbo=False (Pillow only)": ours_pillow,
             "Pillow open + convert + resize": pillow}
    loops["simplejpeg + Pillow resize"] = lambda data: Image.fromarray(
        simplejpeg.decode_jpeg(data, colorspace="RGB")).resize((IMAGE_SIZE, IMAGE_SIZE))

    loops["tf.io.decode_jpeg + tf.image.resize"] = lambda data: tf.image.resize(
        tf.io.decode_jpeg(data, channels=3), (IMAGE_SIZE, IMAGE_SIZE)).numpy()
    rates: dict = {name: [] for name in loops}
    for _ in range(repeats):  # interleaved: each loop once per round
        for name, loop in loops.items():
            loop(datas[0])
            started = time.perf_counter()
            for data in datas:
                loop(data)
            rates[name].append(len(datas) / (time.perf_counter() - started))
    return {name: max(values) for name, values in rates.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/resnet50-embeddings-bench-feed")
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=3, help="in-process pairs per run of ours")
    parser.add_argument("--kinds", default="web,camera")
    parser.add_argument("--_loops", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._loops:
        print(json.dumps(_loops(pathlib.Path(args._loops), args.repeats)))
        return 0
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dir = work / f"zero-model-{IMAGE_SIZE}"
    if not model_dir.exists():
        timed([sys.executable, "-m", "bench.beam_documented", "--save_model", "zero",
               "--model_dir", str(model_dir), "--image_size", str(IMAGE_SIZE), "--layers", LAYERS])
    jobs = job_commands(args.core, work, model_dir)
    trees = {"ours": REPO_ROOT}
    cpu = re.search(r"model name\s*:\s*(.*)", pathlib.Path("/proc/cpuinfo").read_text())
    print(f"machine: {cpu.group(1) if cpu else platform.processor()}, {os.cpu_count()} cores; "
          f"pinned to core {args.core}; Python {platform.python_version()}")
    results = {}
    for kind in args.kinds.split(","):
        folder = make_photos(work / kind, kind, COUNTS[kind][1])
        rates = paired_rates(kind, folder, jobs["ours"], trees, work, args.repeats, args.pairs)
        rates.update(marginal_rates(kind, folder, {"documented": jobs["documented"]}, work, args.repeats))
        loops = subprocess.run(
            ["taskset", "-c", str(args.core), sys.executable, "-m", "bench.feed", "--_loops", str(folder),
             "--repeats", str(args.repeats)], cwd=REPO_ROOT, capture_output=True, text=True, check=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""))
        decode = json.loads(loops.stdout.strip().splitlines()[-1])
        ours, documented = rates["ours"]["images_per_s"], rates["documented"]["images_per_s"]
        results[kind] = {**rates, "decode_loops": decode, "ours/documented": ours / documented,
                         "ours/documented by CPU time": rates["ours"]["images_per_cpu_s"]
                         / rates["documented"]["images_per_cpu_s"]}
        width, height = SIZES[kind]
        print(f"\n{kind} photos ({width}x{height}, JPEG q90), images/s on one core, by wall time "
              f"and by CPU time:")
        named = [("(a) this pipeline, zero model", "ours"),
                 ("(b) Beam-documented job, zero inference_fn", "documented")]
        for label, job in named:
            if job in rates:
                wall, cpu = rates[job]["images_per_s"], rates[job]["images_per_cpu_s"]
                ratio = "" if job == "ours" else (
                    f"   a/{label[1:label.index(')')]} = {ours / wall:.2f} (CPU time: "
                    f"{rates['ours']['images_per_cpu_s'] / cpu:.2f})")
                spread = ("   wall range {:.0f}-{:.0f} over {} pairs".format(*rates[job]["wall_range"], rates[job]["pairs"])
                          if "wall_range" in rates[job] else "")
                print(f"  {label:<40} {wall:8.1f} {cpu:8.1f}{ratio}{spread}")
        for name, rate in decode.items():
            print(f"  (c) {name:<36} {rate:8.1f}   a/c = {ours / rate:.2f}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
