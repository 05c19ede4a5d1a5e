"""Generated test images: structured, seeded, in any PIL mode and format."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def rgb_pattern(height: int, width: int, seed: int) -> np.ndarray:
    """(height, width, 3) uint8: smooth gradients, a few blobs and noise, unique per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for _ in range(3):
        fy, fx, phase = rng.uniform(0.5, 6, 2).tolist() + [rng.uniform(0, 6.28)]
        wave = np.sin(2 * np.pi * (fy * y / height + fx * x / width) + phase)
        channels.append(wave)
    image = (np.stack(channels, axis=-1) + 1) * 100
    for _ in range(4):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(3, max(4, min(height, width) / 3))
        mask = (y - cy) ** 2 + (x - cx) ** 2 < r**2
        image[mask] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray, fmt: str, mode: str | None = None, **save_args) -> bytes:
    """Encode RGB ``pixels`` as ``fmt`` after converting to PIL ``mode`` (if given)."""
    image = Image.fromarray(pixels, "RGB")
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def write_image(path, pixels: np.ndarray, fmt: str, mode: str | None = None, **save_args) -> bytes:
    data = encode(pixels, fmt, mode, **save_args)
    path.write_bytes(data)
    return data
