"""resnet50-device: check how this machine runs the extractor, in one command.

    resnet50-device [--json PATH] [--gpus auto|none|0,2] [--batch_sizes 32,64,128,256] ...

Lists the GPUs from the driver (never through TensorFlow: this process creates no CUDA
context), then measures, each in a process of its own: the model alone on each GPU (pinned
by CUDA_VISIBLE_DEVICES) or, when there is none, on the CPU (model_speed.py); this
machine's decode feed per vCPU on generated web and camera photos (feed.py). Prints a table
per device, the recommended flags, how many vCPUs feed one GPU, and writes all of it as
JSON (checked writable before anything is measured). docs/gpus.md explains how to read it."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from models.gpus import Gpu, list_gpus
from models.placement import GPUS_AUTO, GPUS_NONE, parse_gpus
from models.precision import BFLOAT16, CPU_BF16_FLAGS, FLOAT16, FLOAT32, cpu_flags
from pipeline.devicecheck import recommend
from pipeline.devicecheck.feed import sizing_rate
from pipeline.devicecheck.photos import SIZES, write_photos
from schemas import DEFAULT_LAYERS, DEFAULT_MIN_COSINE

GPU_BATCHES, CPU_BATCHES = (32, 64, 128, 256), (32, 64)
#: Photos per kind for the feed's marginal rate (a warm-up run, then n1 and n2).
FEED_COUNTS = {"web": (32, 160), "camera": (2, 12)}
#: Photos of the batch the model is timed and certified on: web and camera, decoded.
CERTIFY_PHOTOS = {"web": 12, "camera": 4}
PACKAGE_ROOT = str(pathlib.Path(__file__).resolve().parents[2])


class CheckFailed(RuntimeError):
    """A measuring process failed; the message holds the end of what it printed."""


def _ints(text: str) -> tuple[int, ...]:
    values = tuple(int(part) for part in text.split(",") if part.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="resnet50-device", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default="resnet50-device.json",
                        help="where the results go as JSON (default: ./resnet50-device.json)")
    parser.add_argument("--gpus", default=GPUS_AUTO,
                        help="which GPUs to measure: auto (every one the driver lists), none (the CPU), or "
                             "indexes such as 0,2")
    parser.add_argument("--batch_sizes", type=_ints, default=None,
                        help=f"batch sizes to time (default: {','.join(map(str, GPU_BATCHES))} on a GPU, "
                             f"{','.join(map(str, CPU_BATCHES))} on the CPU)")
    parser.add_argument("--image_size", type=int, default=224, help="model input side (default 224)")
    parser.add_argument("--layers", default=",".join(DEFAULT_LAYERS), help="layers to extract (default: the run's)")
    parser.add_argument("--weights", default="calibrated",
                        help="calibrated (default: seeded weights with BatchNorm set from the photos; nothing "
                             "is downloaded) or a ResNet50 weights file (.h5)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="timed seconds per row, at least 2 calls (default 3 on a GPU, 1 on the CPU)")
    parser.add_argument("--min_cosine", type=float, default=DEFAULT_MIN_COSINE,
                        help=f"the certificate's bound a reduced precision must reach (default {DEFAULT_MIN_COSINE})")
    parser.add_argument("--kinds", default="web,camera", help="generated photos to measure the feed on")
    parser.add_argument("--feed_counts", default=None,
                        help="photos per kind for the feed's marginal rate, as kind=n1:n2,... "
                             "(default web=32:160,camera=2:12)")
    parser.add_argument("--no_jit", action="store_true", help="leave out the XLA rows")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed)")
    return parser.parse_args(argv)


def check_writable(path: str) -> str | None:
    """None when ``path`` can be written, else one line saying why not."""
    target = pathlib.Path(path)
    if target.is_dir():
        return f"--json {path}: is a folder; give a file name"
    folder = target.parent if str(target.parent) else pathlib.Path(".")
    if not folder.is_dir():
        return f"--json {path}: folder {folder} does not exist"
    try:
        existed = target.exists()
        with open(target, "a", encoding="utf-8"):
            pass
        if not existed:
            target.unlink()
    except OSError as exc:
        return f"--json {path}: cannot write there ({exc.strerror or exc})"
    return None


def precisions_for(gpu: Gpu | None, flags) -> list[str]:
    """float32 plus the reduced precisions the device runs natively: float16 from compute
    capability 7.0, bfloat16 from 8.0 (an unknown GPU gets float16); a CPU, bfloat16 when
    it has AVX512_BF16 or AMX."""
    if gpu is None:
        return [FLOAT32] + ([BFLOAT16] if flags and set(CPU_BF16_FLAGS) & set(flags) else [])
    capability = gpu.compute_capability
    if capability is None:
        return [FLOAT32, FLOAT16]
    return [FLOAT32] + ([FLOAT16] if capability >= (7, 0) else []) + ([BFLOAT16] if capability >= (8, 0) else [])


def _child(module: str, spec: dict, env: dict, log: pathlib.Path) -> dict:
    """Run ``python -m module SPEC`` and return its RESULT line's JSON."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
                   "PYTHONPATH": os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")])), **env}
    with open(log, "w", encoding="utf-8") as errors:
        done = subprocess.run([sys.executable, "-m", module, json.dumps(spec)], env=environment, stdout=subprocess.PIPE,
                              stderr=errors, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or (module != "pipeline.devicecheck.prepare" and not lines):
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        raise CheckFailed(f"{module} failed (exit {done.returncode}): " + " | ".join(tail))
    return json.loads(lines[-1][len("RESULT "):]) if lines else {}


def _gpu_env(gpu: Gpu) -> dict:
    return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": gpu.uuid or str(gpu.index)}


def _feed_counts(args) -> dict:
    counts = dict(FEED_COUNTS)
    for part in filter(None, (args.feed_counts or "").split(",")):
        kind, _, numbers = part.partition("=")
        small, _, big = numbers.partition(":")
        counts[kind.strip()] = (int(small), int(big))
    return counts


def _machine() -> dict:
    model = ""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"host": platform.node(), "vcpus": os.cpu_count(), "cpu": model, "python": platform.python_version()}


def measure(args, work: pathlib.Path, say) -> dict:
    listing = list_gpus()
    choice = parse_gpus(args.gpus)
    if choice == GPUS_NONE or not listing.gpus:
        gpus: list[Gpu] = []
    elif choice == GPUS_AUTO:
        gpus = list(listing.gpus)
    else:
        gpus = [gpu for gpu in listing.gpus if gpu.index in choice]
    report = {"machine": _machine(), "listing": listing.record(), "settings": {
        "image_size": args.image_size, "layers": args.layers.split(","), "weights": args.weights,
        "min_cosine": args.min_cosine}}
    if listing.gpus:
        say(f"GPUs found ({listing.source}): " + "; ".join(
            f"{g.index}: {g.name}, compute capability {g.capability_text or '?'}, {g.memory_mib or '?'} MiB"
            for g in listing.gpus))
    else:
        say("no GPU found; looked with: " + "; ".join(listing.tried) + ". The rows below are this CPU's.")
    kinds = [kind for kind in args.kinds.split(",") if kind]
    counts = _feed_counts(args)
    folders = {kind: work / "photos" / kind for kind in kinds}
    for kind in kinds:
        write_photos(folders[kind], kind, max(counts[kind]))
    certify = [str(p) for kind in kinds for p in sorted(folders[kind].glob("*.jpg"))[:CERTIFY_PHOTOS.get(kind, 4)]]
    say(f"preparing the network ({args.weights}) and a batch of {len(certify)} generated photos at "
        f"{args.image_size}x{args.image_size}")
    no_gpu = {"CUDA_VISIBLE_DEVICES": ""}
    weights, pixels = str(work / "weights.h5"), str(work / "pixels.npy")
    _child("pipeline.devicecheck.prepare", {"photos": certify, "image_size": args.image_size, "weights": args.weights,
                                            "weights_out": weights, "pixels_out": pixels}, no_gpu, work / "prepare.log")
    devices = []
    for gpu in gpus or [None]:
        where = "CPU" if gpu is None else f"GPU {gpu.index} ({gpu.name})"
        batches = args.batch_sizes or (CPU_BATCHES if gpu is None else GPU_BATCHES)
        spec = {"weights": weights, "pixels": pixels, "layers": args.layers.split(","),
                "precisions": precisions_for(gpu, cpu_flags()), "jit": ["off"] + ([] if args.no_jit else ["on"]),
                "batch_sizes": list(batches), "min_cosine": args.min_cosine,
                "seconds": args.seconds if args.seconds is not None else (1.0 if gpu is None else 3.0)}
        say(f"measuring the model alone on {where}: {len(spec['precisions'])} precisions x "
            f"{len(spec['jit'])} XLA settings x {len(batches)} batch sizes")
        model = _child("pipeline.devicecheck.model_speed", spec, no_gpu if gpu is None else _gpu_env(gpu),
                       work / f"model-{'cpu' if gpu is None else gpu.index}.log")
        best = recommend.best_row(model["rows"], args.min_cosine)
        devices.append({"kind": "cpu" if gpu is None else "gpu",
                        "gpu": None if gpu is None else gpu.record(),
                        "model": model, "best": best,
                        "flags": recommend.recommended_flags(best, gpus=len(gpus)) if best else None})
    say(f"measuring the decode feed per vCPU on generated {' and '.join(kinds)} photos (zero-cost model)")
    feed = _child("pipeline.devicecheck.feed", {
        "folders": {kind: str(folders[kind]) for kind in kinds}, "counts": {kind: counts[kind] for kind in kinds},
        "image_size": args.image_size, "layers": args.layers.split(","), "batch_size": 32,
        "work": str(work / "feed")}, no_gpu, work / "feed.log")
    for device in devices:
        if device["kind"] == "gpu" and device["best"]:
            device["vcpus_to_feed"] = {kind: recommend.vcpus_to_feed(device["best"]["images_per_s"],
                                                                     sizing_rate(feed[kind]))
                                       for kind in kinds}
    return {**report, "devices": devices, "feed": feed}


def render(report: dict) -> str:
    """The report as the table a person reads."""
    lines = []
    for device in report["devices"]:
        model = device["model"]
        batches = sorted({row["batch_size"] for row in model["rows"]})
        title = ("CPU: " + (report["machine"]["cpu"] or "?") + f", {report['machine']['vcpus']} vCPUs"
                 if device["kind"] == "cpu" else
                 f"GPU {device['gpu']['index']}: {device['gpu']['name']}, compute capability "
                 f"{device['gpu'].get('compute_capability') or '?'}, {device['gpu'].get('memory_mib') or '?'} MiB")
        lines += ["", title, f"model alone, {model['image_size'][0]}x{model['image_size'][1]}, "
                  f"{len(report['settings']['layers'])} layers, images/s (TensorFlow device {model['device']})",
                  f"{'precision':<16}{'XLA':<5}" + "".join(f"{'batch ' + str(b):>11}" for b in batches)
                  + "   min cosine vs float32 (worst layer)"]
        keys = []
        for row in model["rows"]:
            key = (row["precision"], row["jit_compile"])
            if key not in keys:
                keys.append(key)
        for precision, jit in keys:
            rows = {row["batch_size"]: row for row in model["rows"]
                    if (row["precision"], row["jit_compile"]) == (precision, jit)}
            cells = "".join(f"{rows[b].get('images_per_s', 'refused')!s:>11}" if b in rows else f"{'':>11}"
                            for b in batches)
            certified = [row for row in rows.values() if "layers" in row]
            cosine = ""
            if certified:
                worst = min(certified[0]["layers"].items(), key=lambda item: item[1]["min"])
                cosine = f"   {worst[1]['min']:.6f} ({worst[0]})"
            lines.append(f"{precision:<16}{'on' if jit else 'off':<5}{cells}{cosine}")
        best = device["best"]
        if best:
            lines.append(f"fastest that passes --min_cosine {report['settings']['min_cosine']}: "
                         f"{best['images_per_s']} images/s; recommended: resnet50-embed " + " ".join(device["flags"]))
        else:
            lines.append("no setting passed: every row failed or was refused (see the JSON)")
        if device.get("vcpus_to_feed"):
            lines.append("vCPUs that feed this GPU at that rate (decode + one for the model process): " + ", ".join(
                f"{kind} photos {n}" for kind, n in device["vcpus_to_feed"].items()))
        elif device["kind"] == "cpu":
            lines.append("no GPU: on a CPU the model, not decoding, sets the pace; vCPUs per GPU need a GPU")
    lines += ["", "decode feed per vCPU (images per CPU-second; pipeline = the whole job with a zero-cost model)",
              f"{'photos':<9}{'size':>11}{'mean KB':>9}{'loop':>8}{'pipeline':>10}{'kept':>7}"]
    unmeasured = []
    for kind, values in report["feed"].items():
        width, height = SIZES[kind]
        piped, kept = values["pipeline_images_per_cpu_s"], values["pipeline_keeps"]
        if piped is None:
            unmeasured.append(kind)
        lines.append(f"{kind:<9}{f'{width}x{height}':>11}{values['mean_kb']:>9}{values['loop_images_per_cpu_s']:>8}"
                     f"{'-' if piped is None else piped:>10}{'-' if kept is None else kept:>7}")
    if unmeasured:
        lines.append(f"pipeline not measured for {', '.join(unmeasured)} photos: the difference between its two "
                     "runs was within this machine's noise (more photos: --feed_counts KIND=N1:N2); vCPUs "
                     "are sized by the loop's rate there, a ceiling")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    problem = check_writable(args.json)
    if problem:
        print(f"resnet50-device: {problem}", file=sys.stderr)
        return 2
    try:
        parse_gpus(args.gpus)
    except ValueError as exc:
        print(f"resnet50-device: --gpus: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    work = pathlib.Path(args.work) if args.work else pathlib.Path(tempfile.mkdtemp(prefix="resnet50-device-"))
    work.mkdir(parents=True, exist_ok=True)
    say = lambda text: print(f"[{time.perf_counter() - started:5.0f} s] {text}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        report = measure(args, work, say)
    except CheckFailed as exc:
        print(f"resnet50-device: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(render(report))
    with open(args.json, "w", encoding="utf-8") as out:
        json.dump(report, out, indent=1)
    print(f"\nJSON: {args.json}; {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
