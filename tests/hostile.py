"""A hostile-input corpus, generated: every kind of file a real folder holds, with what must
happen to it. Embedded kinds whose colour or orientation needs handling have a *twin*: a
lossless file of the pixels the pipeline should see, which must embed identically."""

from __future__ import annotations

import io
import pathlib
import struct
import zlib
from typing import NamedTuple

import numpy as np
from PIL import Image

from images import encode, rgb_pattern

MAX_FILE_BYTES = 3_000_000  # the corpus run sets --max_file_bytes to this


class Embedded(NamedTuple):
    width: int
    height: int
    format: str
    twin: str | None = None  # file name of the twin that must embed the same


class Rejected(NamedTuple):
    stage: str
    error_type: str


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A minimal PNG writer, for what Pillow will not write (48-bit RGB, lying headers)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows))
            + _png_chunk(b"IEND", b""))


def _save(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def _on_white(rgba: np.ndarray) -> np.ndarray:
    """Composite (h, w, 4) uint8 onto white exactly as Pillow's alpha_composite does."""
    background = Image.new("RGBA", (rgba.shape[1], rgba.shape[0]), (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(background, Image.fromarray(rgba, "RGBA")).convert("RGB"))


def write_corpus(folder: pathlib.Path) -> dict[str, Embedded | Rejected]:
    """Write every hostile kind into ``folder``; return file name -> expected outcome."""
    expect: dict[str, Embedded | Rejected] = {}

    def put(name: str, data: bytes, outcome):
        (folder / name).write_bytes(data)
        expect[name] = outcome

    base = rgb_pattern(72, 96, seed=11)  # 96 wide, 72 high
    h, w = base.shape[:2]
    jpeg = encode(base, "JPEG", quality=90)
    png = encode(base, "PNG")

    put("zero-bytes.jpg", b"", Rejected("validate", "EmptyFile"))
    put("notes.jpg", b"Dear diary, this is not a JPEG.\n" * 20, Rejected("decode", "UnidentifiedImageError"))
    put("truncated.jpg", jpeg[: len(jpeg) // 2], Rejected("decode", "OSError"))
    put("truncated.png", png[: len(png) // 2], Rejected("decode", "OSError"))
    put("really-a-jpeg.png", jpeg, Embedded(w, h, "JPEG"))
    put("progressive.jpg", encode(base, "JPEG", quality=90, progressive=True), Embedded(w, h, "JPEG"))
    put("plain.bmp", encode(base, "BMP"), Embedded(w, h, "BMP", twin="plain.png"))
    put("plain.png", png, Embedded(w, h, "PNG"))
    put("scan.tiff", encode(base, "TIFF"), Embedded(w, h, "TIFF", twin="plain.png"))
    put("lossless.webp", encode(base, "WEBP", lossless=True), Embedded(w, h, "WEBP", twin="plain.png"))

    cmyk = encode(base, "JPEG", "CMYK", quality=90)
    put("cmyk.jpg", cmyk, Embedded(w, h, "JPEG", twin="cmyk-twin.png"))
    put("cmyk-twin.png", _save(Image.open(io.BytesIO(cmyk)).convert("RGB"), "PNG"), Embedded(w, h, "PNG"))

    grey = np.asarray(Image.fromarray(base).convert("L"))
    put("grey.png", _save(Image.fromarray(grey, "L"), "PNG"), Embedded(w, h, "PNG", twin="grey-twin.png"))
    put("grey-twin.png", encode(np.repeat(grey[..., None], 3, axis=2), "PNG"), Embedded(w, h, "PNG"))

    grey16 = (grey.astype(np.uint32) * 257 + 100).clip(0, 65535).astype(np.uint16)
    put("grey16.png", _save(Image.fromarray(grey16), "PNG"), Embedded(w, h, "PNG", twin="grey16-twin.png"))
    grey16_as_8 = (grey16.astype(np.int64) // 257).astype(np.uint8)
    put("grey16-twin.png", encode(np.repeat(grey16_as_8[..., None], 3, axis=2), "PNG"), Embedded(w, h, "PNG"))

    rgb16 = base.astype(np.uint16) * 256 + 77
    rows = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    put("rgb16.png", _png(w, h, 16, 2, rows), Embedded(w, h, "PNG", twin="plain.png"))

    alpha = np.zeros((h, w), np.uint8)
    alpha[:, : w // 2] = 255
    alpha[:, w // 2 :] = np.linspace(0, 255, w - w // 2).astype(np.uint8)
    rgba = np.dstack([base, alpha])
    put("rgba.png", _save(Image.fromarray(rgba, "RGBA"), "PNG"), Embedded(w, h, "PNG", twin="rgba-twin.png"))
    put("rgba-twin.png", encode(_on_white(rgba), "PNG"), Embedded(w, h, "PNG"))

    la = np.dstack([grey, grey, grey, alpha])
    put("grey-alpha.png", _save(Image.fromarray(np.dstack([grey, alpha]), "LA"), "PNG"),
        Embedded(w, h, "PNG", twin="grey-alpha-twin.png"))
    put("grey-alpha-twin.png", encode(_on_white(la), "PNG"), Embedded(w, h, "PNG"))

    palette = Image.fromarray(base).quantize(colors=16)
    palette_rgba = np.array(palette.convert("RGBA"))
    palette_rgba[: h // 3, :, 3] = 0
    transparent_index = int(np.asarray(palette)[0, 0])
    indices = np.asarray(palette).copy()
    indices[: h // 3] = transparent_index
    palette_image = Image.fromarray(indices, "P")
    palette_image.putpalette(palette.getpalette())
    put("palette-transparent.png", _save(palette_image, "PNG", transparency=transparent_index),
        Embedded(w, h, "PNG", twin="palette-twin.png"))
    expected_palette = np.array(palette_image.convert("RGBA"))
    expected_palette[..., 3] = np.where(indices == transparent_index, 0, 255)
    put("palette-twin.png", encode(_on_white(expected_palette), "PNG"), Embedded(w, h, "PNG"))

    frames = [Image.fromarray(base).quantize(colors=64), Image.fromarray(255 - base).quantize(colors=64)]
    put("animated.gif", _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        Embedded(w, h, "GIF", twin="animated-twin.png"))
    put("animated-twin.png", encode(np.asarray(frames[0].convert("RGB")), "PNG"), Embedded(w, h, "PNG"))

    for orientation in (6, 8):
        exif = Image.Exif()
        exif[0x0112] = orientation
        data = encode(base, "JPEG", quality=90, exif=exif.tobytes())
        stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # as written, not rotated
        upright = np.rot90(stored, k=-1 if orientation == 6 else 1)
        put(f"exif{orientation}.jpg", data, Embedded(h, w, "JPEG", twin=f"exif{orientation}-twin.png"))
        put(f"exif{orientation}-twin.png", encode(np.ascontiguousarray(upright), "PNG"), Embedded(h, w, "PNG"))

    put("one-pixel.png", encode(np.full((1, 1, 3), 200, np.uint8), "PNG"), Rejected("validate", "ImageTooSmall"))
    put("sliver.png", encode(rgb_pattern(3, 4000, seed=12), "PNG"), Rejected("validate", "ImageTooSmall"))
    put("bomb.png", _png(100_000, 100_000, 8, 2, b"\x00" * 64), Rejected("validate", "TooManyPixels"))
    put("bomb-under-pil-limit.png", _png(12_000, 10_000, 8, 2, b"\x00" * 64), Rejected("validate", "TooManyPixels"))
    put("oversized.jpg", jpeg + bytes(MAX_FILE_BYTES), Rejected("validate", "FileTooLarge"))
    put("été photo — 写真 2024.jpg", jpeg, Embedded(w, h, "JPEG"))
    return expect
