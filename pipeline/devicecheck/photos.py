"""Generated photos for the device check: JPEGs at web (500x375) and camera (3000x2000)
size, made here so the check needs no files of its own. Each is a smooth random scene
(low-frequency colour fields, as a photo's sky and walls) with sensor-like noise, so that
it compresses like a photo (measured: ~40-60 KB per web photo at quality 90), and a unique
patch so no two are alike."""

from __future__ import annotations

import io
import pathlib

import numpy as np

SIZES = {"web": (500, 375), "camera": (3000, 2000)}
QUALITY = 90


def photo(kind: str, index: int) -> bytes:
    """JPEG bytes of generated photo ``index`` of ``kind`` (deterministic)."""
    from PIL import Image

    width, height = SIZES[kind]
    rng = np.random.default_rng(1000 * index + len(kind))
    coarse = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
    scene = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.int16)
    detail = np.asarray(Image.fromarray(rng.uniform(0, 255, (height // 8, width // 8, 3)).astype(np.uint8))
                        .resize((width, height), Image.BILINEAR), np.int16)
    pixels = scene * 3 // 4 + detail // 4 + rng.normal(0, 4, (height, width, 3)).astype(np.int16)
    pixels[: 8 + index % 32, : 8 + index % 48] = (index * 37) % 256
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=QUALITY)
    return buffer.getvalue()


def write_photos(folder: pathlib.Path, kind: str, count: int) -> list[pathlib.Path]:
    """``count`` photos of ``kind`` in ``folder`` (kept when already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"{kind}{index:05d}.jpg"
        if not path.exists():
            path.write_bytes(photo(kind, index))
        paths.append(path)
    return paths
