"""This machine's decode feed per vCPU: how many photos one CPU-second turns into model
input. Runs in a process of its own with no GPU visible (CUDA_VISIBLE_DEVICES=""):

    python -m pipeline.devicecheck.feed SPEC_JSON   ->  last stdout line "RESULT {...}"

SPEC: {"folders": {kind: folder of JPEGs}, "counts": {kind: [n1, n2]}, "image_size": H,
"layers": [...], "batch_size": B, "work": a scratch folder}.
Per kind, by CPU time (user + system of this process, all its threads: what sizes vCPUs):
  - ``loop``: decode_image + resize_pixels over every photo, nothing else;
  - ``pipeline``: the whole job (python -m pipeline.run's run(), one in-memory worker) with a
    model that returns zeros of the right shapes: read, hash, decode, resize, batch, write.
    Marginal: (n2 - n1) / (cpu(n2) - cpu(n1)) after a warm-up run, so start-up cancels.
``pipeline`` is the rate to size vCPUs by; ``loop`` is its ceiling."""

from __future__ import annotations

import json
import pathlib
import sys
import time

import numpy as np

#: One in-memory Beam worker in this process: its CPU time is this process's.
ONE_WORKER = ["--direct_num_workers", "1", "--direct_running_mode", "in_memory"]
#: Runs of the job per size, interleaved; each size's least CPU counts (a disturbed run
#: only ever costs more).
REPEATS = 2
#: The job does the loop's work and more, so a marginal rate above the loop's by more than
#: this is the machine's noise (a few photos' CPU against a run's own start-up), not a rate:
#: once it read 10 camera photos as 10^10 per CPU-second.
PLAUSIBLE_OVER_LOOP = 1.1


class ZeroModel:
    """The model's contract at no cost: each layer's (n, C) zeros. Imports TensorFlow where
    the real model would be built: a process that has imported it decodes at another speed
    (BENCHMARKS.md)."""

    def __init__(self, config):
        import tensorflow  # noqa: F401  # pylint: disable=unused-import,import-outside-toplevel

        self._shapes = {layer: config.embedding_shape(layer) for layer in config.layers}
        self._dtype = np.dtype(config.output_dtype)

    def __call__(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        return {layer: np.zeros((len(pixels),) + shape, self._dtype) for layer, shape in self._shapes.items()}


def loop_rate(paths: list[pathlib.Path], image_size: int) -> float:
    """decode_image + resize_pixels over ``paths`` (read first): images per CPU-second."""
    from schemas import ImageSize
    from transforms.decode import decode_image
    from transforms.resize import REDUCING_GAP, resize_pixels

    size = ImageSize(image_size, image_size)
    datas = [path.read_bytes() for path in paths]
    resize_pixels(decode_image(datas[0], target=size).pixels, size, "center_crop", REDUCING_GAP)  # warm
    started = time.process_time()
    for data in datas:
        resize_pixels(decode_image(data, target=size).pixels, size, "center_crop", REDUCING_GAP)
    return len(datas) / max(time.process_time() - started, 1e-9)


def _subset(folder: pathlib.Path, n: int) -> str:
    target = folder.parent / f"{folder.name}-first{n}"
    if not target.exists():
        target.mkdir()
        for path in sorted(folder.glob("*.jpg"))[:n]:
            (target / path.name).symlink_to(path.resolve())
    return str(target / "*.jpg")


def pipeline_rate(folder: pathlib.Path, counts: tuple[int, int], spec: dict, kind: str) -> float | None:
    """The job with a zero model: marginal images per CPU-second between ``counts``, each
    size's least CPU of REPEATS runs; None when the larger size did not cost more."""
    from pipeline.run import run

    work = pathlib.Path(spec["work"])

    def once(n: int) -> float:
        argv = ["--input", _subset(folder, n), "--output", str(work / f"out-{kind}-{n}"), "--overwrite",
                "--weights", "random", "--image_size", str(spec["image_size"]), "--layers", ",".join(spec["layers"]),
                "--batch_size", str(spec["batch_size"]), "--progress_seconds", "3600", *ONE_WORKER]
        started = time.process_time()
        if run(argv, model_factory=ZeroModel) != 0:
            raise SystemExit(f"the zero-model job failed on {n} {kind} photos")
        return time.process_time() - started

    small, big = counts
    once(small)  # warm-up: imports, TensorFlow's start
    spent = {small: [], big: []}
    for _ in range(REPEATS):
        for n in (small, big):
            spent[n].append(once(n))
    extra = min(spent[big]) - min(spent[small])
    return (big - small) / extra if extra > 0 else None


def judged_rate(loop: float, marginal: float | None) -> float | None:
    """The job's measured rate, or None where it cannot be one: not measured, or above its
    own loop's by more than PLAUSIBLE_OVER_LOOP."""
    if marginal is None or marginal > loop * PLAUSIBLE_OVER_LOOP:
        return None
    return marginal


def sizing_rate(row: dict) -> float:
    """The feed rate that sizes vCPUs: the job's, or its loop's (a ceiling) where the job's
    was within the machine's noise."""
    return row["pipeline_images_per_cpu_s"] or row["loop_images_per_cpu_s"]


def measure(spec: dict) -> dict:
    result = {}
    for kind, folder in spec["folders"].items():
        folder = pathlib.Path(folder)
        paths = sorted(folder.glob("*.jpg"))
        loop = loop_rate(paths, spec["image_size"])
        piped = judged_rate(loop, pipeline_rate(folder, tuple(spec["counts"][kind]), spec, kind))
        result[kind] = {"photos": len(paths), "mean_kb": round(np.mean([p.stat().st_size for p in paths]) / 1024, 1),
                        "loop_images_per_cpu_s": round(loop, 1),
                        "pipeline_images_per_cpu_s": None if piped is None else round(piped, 1),
                        "pipeline_keeps": None if piped is None else round(piped / loop, 3)}
    return result


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.getLogger().setLevel(logging.WARNING)
    spec = json.loads((argv if argv is not None else sys.argv[1:])[0])
    print("RESULT " + json.dumps(measure(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
