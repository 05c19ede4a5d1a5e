"""Throughput, side by side in one run, on the same generated JPEGs (mostly 500x375 at
quality 90, one in ten 3000x2000):

  (a) ceiling: the same multi-layer model's float32 forward pass on ready batches
      (best of predict_on_batch, our tf.function, XLA jit_compile);
  (b) our pipeline end to end (python -m pipeline.run), marginal images/s
      (N2 - N1) / (t2 - t1), and its start-up (process start to first batch);
  (c) the anchor: the job written the way Beam documents it (bench/beam_documented.py),
      marginal images/s;
  (d) our pipeline with --mixed_precision bfloat16, marginal images/s, and its deviation
      from (b) per layer (minimum cosine, maximum relative error over the images);
  plus decode + resize images/s on one core, and the ratios b/a, b/c, d/a.

    python -m bench.throughput [--n1 64] [--n2 640] [--batch_size 32] [--weights W.h5]
                               [--ours_args "--direct_num_workers 2 ..."]

Every run is a fresh process. Without --weights, a seeded ResNet50 with calibrated
BatchNorm statistics (bench/network.py) is written and used everywhere, so that reduced
precision is judged on realistic activations."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import shlex
import subprocess
import sys
import time

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from images import rgb_pattern, write_image  # noqa: E402

BIG_EVERY = 10
TARGETS = {"b/a": 0.95, "b/c": 1.4, "d/a": 1.4, "b/a'": 0.95, "cosine": 0.99, "startup_s": 8.0}


def machine() -> dict:
    flags = set()
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as info:
            text = info.read()
        model = re.search(r"model name\s*:\s*(.*)", text).group(1)
        flags = set(re.search(r"flags\s*:\s*(.*)", text).group(1).split())
    except (OSError, AttributeError):
        pass
    wanted = ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile"]
    import importlib.metadata as md

    return {"cpu": model, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags],
            "python": platform.python_version(), "tensorflow": md.version("tensorflow"),
            "apache-beam": md.version("apache-beam")}


def make_inputs(work: pathlib.Path, counts: list[int]) -> dict[int, pathlib.Path]:
    pool = work / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    small, big = rgb_pattern(375, 500, seed=1), None
    names = []
    for i in range(max(counts)):
        is_big = i % BIG_EVERY == BIG_EVERY - 1
        name = f"{'big' if is_big else 'photo'}{i:05d}.jpg"
        names.append(name)
        if (pool / name).exists():
            continue
        if is_big:
            big = rgb_pattern(2000, 3000, seed=2) if big is None else big
            pixels = big.copy()
        else:
            pixels = small.copy()
        pixels[: 1 + i % 200, : 1 + i % 300] = (i * 37) % 256  # every file differs
        write_image(pool / name, pixels, "JPEG", quality=90)
    sets = {}
    for count in counts:
        folder = work / f"set{count}"
        folder.mkdir(exist_ok=True)
        for name in names[:count]:
            if not (folder / name).exists():
                os.link(pool / name, folder / name)
        sets[count] = folder
    return sets


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True,
                            env=dict(os.environ, **(env or {})))
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"failed: {shlex.join(cmd)}\n{result.stderr[-4000:]}")
    return seconds, result.stdout + result.stderr


def marginal(make_cmd, sets: dict[int, pathlib.Path], env=None, repeats: int = 2) -> dict:
    """(N2 - N1) / (t2 - t1), each t the fastest of ``repeats`` runs: start-up cancels out,
    and one slow start (several worker processes importing TensorFlow at once) does not
    pass for throughput."""
    (n1, folder1), (n2, folder2) = sorted(sets.items())
    runs1 = [timed(make_cmd(folder1, n1), env) for _ in range(repeats)]
    runs2 = [timed(make_cmd(folder2, n2), env) for _ in range(repeats)]
    t1, log1 = min(runs1)
    t2, log2 = min(runs2)
    startup = re.findall(r"first batch after ([\d.]+) s", log1 + log2)
    return {"t1": t1, "t2": t2, "images_per_s": (n2 - n1) / (t2 - t1),
            "startup_s": min(float(s) for s in startup) if startup else None}


def two_process_ceiling(py: str, common: list[str]) -> float:
    """The bare model in the local default layout: two processes, one TF thread each,
    running at the same time; the sum of their images/s (tf.function variant)."""
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    procs = [subprocess.Popen([py, "-m", "bench.ceiling", *common, "--only", "tf.function", "--repeats", "6"],
                              cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(2)]
    return sum(json.loads(p.communicate()[0].strip().splitlines()[-1])["tf.function"] for p in procs)


def paired_rounds(py: str, common: list[str], make_cmd, sets: dict[int, pathlib.Path], rounds: int) -> dict:
    """b/a and b/a' measured in rounds, each round the bare model in one process (a, the best
    of bench/ceiling.py's three ways), in our layout (a'), and then our pipeline at N1 and N2
    (b, marginal), so that each ratio compares figures taken within a few minutes of each
    other. b and a' run the same tf.function in graph mode; a may be XLA or Keras' predict."""
    (n1, folder1), (n2, folder2) = sorted(sets.items())
    results = []
    for number in range(1, rounds + 1):
        single = max(single_process_ceiling(py, common).values())
        bare = two_process_ceiling(py, common)
        t1, _ = timed(make_cmd(folder1, n1))
        t2, _ = timed(make_cmd(folder2, n2))
        ours = (n2 - n1) / (t2 - t1)
        results.append({"a": single, "a'": bare, "b": ours, "b/a": ours / single, "b/a'": ours / bare})
        print(f"round {number}: a {single:.1f}, a' {bare:.1f}, b {ours:.1f}, b/a {ours / single:.3f}, "
              f"b/a' {ours / bare:.3f}", flush=True)
    summary = {"rounds": results}
    for name in ("b/a", "b/a'"):
        ratios = sorted(r[name] for r in results)
        summary[name] = {"median": ratios[len(ratios) // 2], "range": [ratios[0], ratios[-1]]}
    return summary


def single_process_ceiling(py: str, common: list[str]) -> dict:
    """(a): the bare forward pass in one process with TensorFlow's default threads, three
    ways (bench/ceiling.py); images/s per variant."""
    _, log = timed([py, "-m", "bench.ceiling", *common])
    return json.loads([line for line in log.splitlines() if line.startswith("{")][-1])


def decode_rate(folder: pathlib.Path, image_size: int, draft: bool) -> float:
    """Decode + resize (center_crop) images/s on one core, as DecodeImages/ResizeImages do."""
    from schemas import ImageSize
    from transforms.decode import decode_image
    from transforms.resize import resize_pixels

    files = sorted(folder.iterdir())
    datas = [f.read_bytes() for f in files]
    started = time.perf_counter()
    size = ImageSize(image_size, image_size)
    for data in datas:
        decoded = decode_image(data, target=size if draft else None)
        resize_pixels(decoded.pixels, size, "center_crop")
    return len(datas) / (time.perf_counter() - started)


def read_layer(root: pathlib.Path, layer: str) -> dict[str, np.ndarray]:
    from pipeline.inspection.results import read_layer as read_output_layer

    rows = read_output_layer(str(root), layer)
    return dict(zip(rows.uris, rows.matrix))


def deviation(reference: pathlib.Path, other: pathlib.Path, layers: list[str]) -> dict:
    result = {}
    for layer in layers:
        a, b = read_layer(reference, layer), read_layer(other, layer)
        uris = sorted(a)
        x = np.stack([a[u] for u in uris]).astype(np.float64)
        y = np.stack([b[u] for u in uris]).astype(np.float64)
        cosine = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
        relative = np.linalg.norm(x - y, axis=1) / np.linalg.norm(x, axis=1)
        result[layer] = {"min_cosine": float(cosine.min()), "max_relative_error": float(relative.max())}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/resnet50-embeddings-throughput")
    parser.add_argument("--n1", type=int, default=64)
    parser.add_argument("--n2", type=int, default=640)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--layers", default="res2,res3,res4,res5")
    parser.add_argument("--weights", help="a ResNet50 notop .h5 (default: the calibrated test network)")
    parser.add_argument("--ours_args", default="", help="extra arguments for our pipeline, quoted")
    parser.add_argument("--skip_anchor", action="store_true")
    parser.add_argument("--paired", type=int, metavar="ROUNDS",
                        help="measure only b/a and b/a', in this many interleaved rounds (a, a', then b)")
    args = parser.parse_args()
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    report: dict = {"machine": machine(), "settings": vars(args)}
    print("machine:", json.dumps(report["machine"]))

    weights = args.weights
    if not weights:
        weights = str(work / "calibrated_seed0.h5")
        if not os.path.exists(weights):
            from bench.network import write_calibrated_weights

            write_calibrated_weights(weights)
    sets = make_inputs(work, [args.n1, args.n2])
    common = ["--weights", weights, "--batch_size", str(args.batch_size), "--layers", args.layers,
              "--image_size", str(args.image_size)]

    def ours(extra: list[str], tag: str):
        return lambda folder, n: [py, "-m", "pipeline.run", "--input", f"{folder}/*",
                                  "--output", str(work / f"out-{tag}-{n}"), "--overwrite", *common,
                                  *shlex.split(args.ours_args), *extra]

    if args.paired:
        report["paired"] = paired_rounds(py, common, ours([], "f32"), sets, args.paired)
        for name in ("b/a", "b/a'"):
            found = report["paired"][name]
            print(f"{name} median {found['median']:.3f} (range {found['range'][0]:.3f}-"
                  f"{found['range'][1]:.3f}; target >= {TARGETS[name]})")
        print(json.dumps(report))
        return 0

    report["decode_images_per_s_per_core"] = decode_rate(sets[args.n1], args.image_size, draft=True)
    report["decode_images_per_s_per_core_no_draft"] = decode_rate(sets[args.n1], args.image_size, draft=False)
    print(f"decode+resize: {report['decode_images_per_s_per_core']:.1f} images/s on one core "
          f"({report['decode_images_per_s_per_core_no_draft']:.1f} with --jpeg_draft off)")

    report["ceiling"] = single_process_ceiling(py, common)
    print("ceiling (a):", {k: round(v, 1) for k, v in report["ceiling"].items()})
    report["ceiling_two_processes"] = two_process_ceiling(py, common)
    print("bare model, 2 processes x 1 thread (a'):", round(report["ceiling_two_processes"], 1))

    report["ours"] = marginal(ours([], "f32"), sets)
    print("ours (b):", report["ours"])
    report["ours_bf16"] = marginal(ours(["--mixed_precision", "bfloat16"], "bf16"), sets)
    print("ours bfloat16 (d):", report["ours_bf16"])
    report["bf16_deviation"] = deviation(work / f"out-f32-{args.n2}", work / f"out-bf16-{args.n2}",
                                         args.layers.split(","))
    if not args.skip_anchor:
        model_dir = work / f"anchor-model-{args.image_size}"
        if not model_dir.exists():
            timed([py, "-m", "bench.beam_documented", "--save_model", weights, "--model_dir", str(model_dir),
                   "--image_size", str(args.image_size), "--layers", args.layers])
        report["anchor"] = marginal(
            lambda folder, n: [py, "-m", "bench.beam_documented", "--input", f"{folder}/*",
                               "--output", str(work / f"out-anchor-{n}"), "--model_dir", str(model_dir),
                               "--image_size", str(args.image_size), "--batch_size", str(args.batch_size),
                               "--layers", args.layers], sets)
        print("anchor (c):", report["anchor"])

    a = max(report["ceiling"].values())
    b, d = report["ours"]["images_per_s"], report["ours_bf16"]["images_per_s"]
    ratios = {"b/a": b / a, "d/a": d / a, "b/a'": b / report["ceiling_two_processes"]}
    if "anchor" in report:
        ratios["b/c"] = b / report["anchor"]["images_per_s"]
    report["ratios"] = ratios
    min_cos = min(v["min_cosine"] for v in report["bf16_deviation"].values())

    print()
    print(f"{'measure':<52} {'images/s':>9}")
    for name, value in report["ceiling"].items():
        print(f"{'(a) ceiling, ' + name:<52} {value:>9.1f}")
    label = "(a') bare model, 2 processes x 1 thread"
    print(f"{label:<52} {report['ceiling_two_processes']:>9.1f}")
    print(f"{'(b) ours, float32, marginal':<52} {b:>9.1f}")
    if "anchor" in report:
        print(f"{'(c) Beam-documented RunInference job, marginal':<52} {report['anchor']['images_per_s']:>9.1f}")
    print(f"{'(d) ours, --mixed_precision bfloat16, marginal':<52} {d:>9.1f}")
    print(f"{'decode + resize, one core (draft on)':<52} {report['decode_images_per_s_per_core']:>9.1f}")
    print(f"{'decode + resize, one core (draft off)':<52} {report['decode_images_per_s_per_core_no_draft']:>9.1f}")
    print(f"start-up (process start to first batch): {report['ours']['startup_s']} s "
          f"(target <= {TARGETS['startup_s']})")
    for layer, dev in report["bf16_deviation"].items():
        print(f"bfloat16 vs float32 {layer:<6} min cosine {dev['min_cosine']:.4f}  "
              f"max relative error {dev['max_relative_error']:.4f}")
    for name, value in ratios.items():
        print(f"ratio {name} = {value:.2f} (target >= {TARGETS[name]}): {'met' if value >= TARGETS[name] else 'NOT met'}")
    print(f"min cosine {min_cos:.4f} (target >= {TARGETS['cosine']}): {'met' if min_cos >= TARGETS['cosine'] else 'NOT met'}")
    (work / "throughput.json").write_text(json.dumps(report, indent=2))
    print(f"report: {work / 'throughput.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
