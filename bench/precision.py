"""Reduced precision and XLA on this CPU, in one run: per-layer cosines of bfloat16 and
float16 against float32 on real photos, and the speed of float32 / bfloat16, each with XLA
off (graph mode, tf.function) and on, at one batch size.

    python -m bench.precision [--photos ../shared/sample-photos] [--batch_size 32] [--rounds 3]

Photos: every image in --photos (real photos with licences; greyscale and RGBA ones go
through the product's own decode) plus generated camera-size photos
(pipeline/devicecheck/photos.py), decoded and resized to 224x224 as a run does. Weights: a
seeded ResNet50 with every BatchNorm calibrated on generated images (bench/network.py), so
activations have a trained network's scale; nothing is downloaded. Cosines are the
certificate a run makes on its first batch (models/extractor.py), here over all the
photos. Speed: each setting built once (compiled by a warm-up call), then ``rounds``
interleaved rounds, each setting timed over 2 calls per round; images/s is the median
round. All four settings run the same TensorFlow model through LayerExtractor; only the
precision policy and jit_compile differ."""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
LAYERS = ("pool1_pool", "res2", "res3", "res4", "res5")


def photos(folder: pathlib.Path, camera: int) -> tuple[list[str], np.ndarray]:
    from pipeline.devicecheck.photos import photo
    from schemas import ImageSize
    from transforms.decode import decode_image
    from transforms.resize import resize_pixels

    size = ImageSize(224, 224)
    named = [(path.name, path.read_bytes()) for path in sorted(folder.iterdir())
             if path.suffix.lower() in (".png", ".jpg", ".jpeg")]
    named += [(f"generated camera {i} (3000x2000)", photo("camera", i)) for i in range(camera)]
    pixels = [resize_pixels(decode_image(data, target=size).pixels, size, "center_crop") for _, data in named]
    return [name for name, _ in named], np.stack(pixels)


def cosines(weights: str, pixels: np.ndarray, precision: str) -> dict:
    from models.extractor import LayerExtractor
    from schemas import ExtractionConfig

    config = ExtractionConfig(layers=LAYERS, image_size=224, weights=weights, batch_size=len(pixels),
                              mixed_precision=precision, min_cosine=-1.0)
    extractor = LayerExtractor(config, weights)
    extractor(pixels)
    return extractor.certificate["layers"]


def speeds(weights: str, pixels: np.ndarray, batch: int, rounds: int) -> dict:
    from models.extractor import LayerExtractor
    from schemas import ExtractionConfig

    data = np.concatenate([pixels] * (-(-batch // len(pixels))))[:batch]
    models = {}
    for precision in ("none", "bfloat16"):
        for jit in ("off", "on"):
            config = ExtractionConfig(layers=LAYERS, image_size=224, weights=weights, batch_size=batch,
                                      mixed_precision=precision, jit_compile=jit, min_cosine=-1.0)
            models[(precision, jit)] = LayerExtractor(config, weights)
            models[(precision, jit)](data)  # compile (and certify)
    rates: dict = {key: [] for key in models}
    for _ in range(rounds):
        for key, model in models.items():
            started = time.perf_counter()
            for _ in range(2):
                model(data)
            rates[key].append(2 * batch / (time.perf_counter() - started))
    return {f"{'float32' if p == 'none' else p} XLA {j}": round(statistics.median(r), 2)
            for (p, j), r in rates.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default=str(REPO_ROOT.parent / "shared" / "sample-photos"))
    parser.add_argument("--camera", type=int, default=4, help="generated camera photos added")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    from bench.network import write_calibrated_weights
    from models.precision import cpu_flags

    names, pixels = photos(pathlib.Path(args.photos), args.camera)
    with tempfile.TemporaryDirectory() as work:
        weights = write_calibrated_weights(str(pathlib.Path(work) / "calibrated.h5"))
        result = {"photos": names, "cpu_bf16_flags": sorted(set(cpu_flags() or ()) & {"avx512_bf16", "amx_bf16"}),
                  "cosines": {p: cosines(weights, pixels, p) for p in ("bfloat16", "float16")},
                  "images_per_s": speeds(weights, pixels, args.batch_size, args.rounds)}
    rates = result["images_per_s"]
    base = rates["float32 XLA off"]
    result["ratios_to_float32_graph"] = {name: round(rate / base, 3) for name, rate in rates.items()}
    print(f"{len(names)} photos: " + ", ".join(names))
    print(f"{'layer':<12}" + "".join(f"{p + ' min':>16}{p + ' mean':>16}" for p in result["cosines"]))
    for layer in LAYERS:
        print(f"{layer:<12}" + "".join(f"{result['cosines'][p][layer]['min']:>16.6f}"
                                       f"{result['cosines'][p][layer]['mean']:>16.6f}" for p in result["cosines"]))
    print(f"batch {args.batch_size}, median of {args.rounds} interleaved rounds:")
    for name, rate in rates.items():
        print(f"  {name:<22}{rate:>9} images/s   x{result['ratios_to_float32_graph'][name]}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
