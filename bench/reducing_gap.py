"""Pillow's ``reducing_gap`` (issue 29, item 3): speed and pixel and embedding differences
against today's resize, beside what JPEG draft decoding already accepts.

    python -m bench.reducing_gap [--photos ../shared/sample-photos] [--rounds 3]

Photos: every photo in --photos, scaled up to 3000x2000 (center-fitted, bicubic) and
saved both as PNG (decoded in full: the case the gap is for) and as JPEG q90 (drafted).
For each: the resize as before (full decode, one antialiased bilinear step), with
``reducing_gap`` 2 and 3, and the JPEG's draft decode; per photo the mean absolute
difference in grey levels from the plain resize and the per-layer cosine of a calibrated
seeded ResNet50 (bench/network.py; nothing downloaded), plus milliseconds per resize
(best of ``rounds`` interleaved rounds, one core's worth: the calls are sequential).
Prints a table and one JSON line."""

from __future__ import annotations

import argparse
import io
import json
import pathlib
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
LAYERS = ("res2", "res3", "res4", "res5")
CAMERA = (3000, 2000)


def camera_photos(folder: pathlib.Path) -> dict[str, np.ndarray]:
    from PIL import Image, ImageOps

    photos = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        with Image.open(path) as image:
            photos[path.stem] = np.asarray(ImageOps.fit(image.convert("RGB"), CAMERA, Image.BICUBIC))
    return photos


def encoded(pixels: np.ndarray, kind: str) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, kind, **({"quality": 90} if kind == "JPEG" else {"compress_level": 1}))
    return out.getvalue()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=pathlib.Path, default=REPO_ROOT.parent / "shared" / "sample-photos")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    from bench.network import write_calibrated_weights
    from models.extractor import LayerExtractor
    from schemas import ExtractionConfig, ImageSize
    from transforms.decode import decode_image
    from transforms.resize import resize_pixels

    size = ImageSize(224, 224)
    photos = camera_photos(args.photos)
    pngs = {name: encoded(p, "PNG") for name, p in photos.items()}
    jpegs = {name: encoded(p, "JPEG") for name, p in photos.items()}
    full = {name: decode_image(data).pixels for name, data in pngs.items()}
    ways = {
        "plain (today)": lambda name: resize_pixels(full[name], size, "center_crop"),
        "reducing_gap 2": lambda name: resize_pixels(full[name], size, "center_crop", 2.0),
        "reducing_gap 3": lambda name: resize_pixels(full[name], size, "center_crop", 3.0),
    }
    times: dict = {way: [] for way in ways}
    for _ in range(args.rounds):
        for way, resize in ways.items():
            started = time.perf_counter()
            for name in photos:
                resize(name)
            times[way].append((time.perf_counter() - started) / len(photos) * 1000)
    outputs = {way: np.stack([resize(name) for name in photos]) for way, resize in ways.items()}
    outputs["JPEG draft decode (accepted today)"] = np.stack(
        [resize_pixels(decode_image(jpegs[name], target=size).pixels, size, "center_crop") for name in photos])
    jpeg_full = np.stack([resize_pixels(decode_image(jpegs[name]).pixels, size, "center_crop") for name in photos])
    with tempfile.TemporaryDirectory() as folder:
        weights = write_calibrated_weights(str(pathlib.Path(folder) / "calibrated.h5"))
        config = ExtractionConfig(layers=LAYERS, image_size=224, weights=weights, batch_size=len(photos))
        extractor = LayerExtractor(config, weights)
        embeddings = {way: extractor(pixels) for way, pixels in outputs.items()}
        jpeg_reference = extractor(jpeg_full)
    result = {}
    print(f"{len(photos)} photos at {CAMERA[0]}x{CAMERA[1]}; differences from the plain resize of the same decode")
    print("| resize | ms per resize | mean abs. difference (per photo, max) | min cosine " + " | ".join(LAYERS) + " |")
    print("|---|---:|---:|" + "---:|" * len(LAYERS))
    for way, pixels in outputs.items():
        reference = jpeg_full if way.startswith("JPEG") else outputs["plain (today)"]
        reference_embeddings = jpeg_reference if way.startswith("JPEG") else embeddings["plain (today)"]
        mad = np.abs(pixels.astype(np.int16) - reference.astype(np.int16)).reshape(len(pixels), -1).mean(1)
        cosines = {layer: float(cosine(embeddings[way][layer], reference_embeddings[layer]).min()) for layer in LAYERS}
        ms = min(times[way]) if way in times else None
        result[way] = {"ms": ms, "mad_max": float(mad.max()), "mad": [round(float(m), 3) for m in mad],
                       "min_cosine": cosines}
        print(f"| {way} | {'' if ms is None else f'{ms:.2f}'} | {mad.max():.2f} | "
              + " | ".join(f"{cosines[layer]:.5f}" for layer in LAYERS) + " |")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
