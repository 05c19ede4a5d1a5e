"""transforms/formats.py: the --image_formats allowlist, checked by magic bytes before Pillow
and again by Pillow's own formats=; EPS never opened, so Ghostscript never starts."""

from __future__ import annotations

import json
import os
import struct
import zlib

import pyarrow.parquet as pq
import pytest
from PIL import EpsImagePlugin, Image

from images import encode, rgb_pattern
from pipeline.run import EXIT_OK, EXIT_USAGE, run
from schemas import ALL_FORMATS, DEFAULT_IMAGE_FORMATS, TooManyPixels, UnsupportedFormat, layout
from transforms.decode import _load, decode_image
from transforms.formats import allowed_for_open, check_format, check_format_names, check_opened, identify

PIXELS = rgb_pattern(40, 48, 3)


def other_formats() -> dict[str, bytes]:
    return {name: encode(PIXELS, name) for name in ("PCX", "SGI", "EPS")}


def fake_ghostscript(tmp_path, monkeypatch):
    """A ``gs`` first on PATH that leaves a marker when anything runs it."""
    marker = tmp_path / "ghostscript-ran"
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "gs").write_text(f'#!/bin/sh\ntouch {marker}\n[ "$1" = --version ] && echo 10.05.1 && exit 0\nexit 1\n')
    (folder / "gs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # Pillow looks it up again
    return marker


def test_formats_are_identified_by_their_first_bytes():
    assert [identify(encode(PIXELS, f)) for f in ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")] == [
        "JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"]
    assert {name: identify(data) for name, data in other_formats().items()} == {
        "PCX": "PCX", "SGI": "SGI", "EPS": "EPS"}
    assert identify(b"just some text") is None


def test_only_allowed_formats_pass():
    for name, data in other_formats().items():
        with pytest.raises(UnsupportedFormat, match=name):
            check_format(data, DEFAULT_IMAGE_FORMATS)
    check_format(other_formats()["PCX"], ("PCX",))
    check_format(other_formats()["SGI"], (ALL_FORMATS,))
    check_format(encode(PIXELS, "JPEG"), ("MPO",))  # an MPO starts like a JPEG
    with pytest.raises(UnsupportedFormat, match="PNG: not in --image_formats"):
        check_format(encode(PIXELS, "PNG"), ("JPEG",))
    check_format(b"just some text", ("JPEG",))  # unclaimed: left to Pillow, which fails it
    check_opened("MPO", ("MPO",))
    with pytest.raises(UnsupportedFormat, match="JPEG: not in"):
        check_opened("JPEG", ("MPO",))  # opened by the JPEG plugin, but not an MPO
    assert allowed_for_open(("MPO", "PNG")) == ["JPEG", "PNG"]
    assert "EPS" not in allowed_for_open((ALL_FORMATS,)) and "PCX" in allowed_for_open((ALL_FORMATS,))
    assert check_format_names(("jpeg", "png")) == ("JPEG", "PNG")
    with pytest.raises(ValueError, match="BANANA"):
        check_format_names(("JPEG", "banana"))


def test_eps_is_refused_even_with_all_and_ghostscript_never_starts(tmp_path, monkeypatch):
    marker = fake_ghostscript(tmp_path, monkeypatch)
    eps = other_formats()["EPS"]
    for allowed in (DEFAULT_IMAGE_FORMATS, (ALL_FORMATS,)):
        with pytest.raises(UnsupportedFormat, match="EPS: never opened"):
            decode_image(eps, image_formats=allowed)
    assert not marker.exists()
    # The check can fail: Pillow left to itself does run the fake Ghostscript on this file.
    with pytest.raises(Exception):
        Image.open(__import__("io").BytesIO(eps)).load()
    assert marker.exists()


def test_pillow_itself_only_opens_allowed_plugins():
    """Behind the magic check, Image.open gets formats=: a PNG that the check let through
    (as when only an unclaimed prefix is known) is still not opened as PNG."""
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(__import__("io").BytesIO(encode(PIXELS, "PNG")), formats=allowed_for_open(("JPEG",)))


def _png_header_only(width: int, height: int) -> bytes:
    """A 1-bit greyscale PNG of ``width`` x ``height``, all zero, compressed row by row."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def icon_claiming_16px(png: bytes) -> bytes:
    """A Windows icon whose directory says 16x16 and whose image is ``png``."""
    header = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 6 + 16)
    return header + entry + png


def mac_icon_claiming_128px(png: bytes) -> bytes:
    """A macOS icon (ICNS) with one 128x128 entry ('ic07') whose image is ``png``. Its
    header size is the entry's; the PNG's own size is found only when pixels load."""
    entry = b"ic07" + struct.pack(">I", 8 + len(png)) + png
    return b"icns" + struct.pack(">I", 8 + len(entry)) + entry


def test_a_bomb_found_when_pixels_load_is_too_many_pixels():
    bomb = mac_icon_claiming_128px(_png_header_only(30_000, 10_000))  # 300 MP behind 128x128
    assert len(bomb) < 100_000
    with Image.open(__import__("io").BytesIO(bomb)) as image:
        assert image.size == (128, 128)  # the header check passes...
        with pytest.raises(Image.DecompressionBombError):
            image.load()  # ...and Pillow's own check fires at load
    with pytest.raises(TooManyPixels, match="when its pixels were loaded: 300000000 pixels, over --max_pixels 100000000"):
        decode_image(bomb, image_formats=("ICNS",))
    # Under Pillow's threshold the loaded size is compared with --max_pixels itself (no
    # plugin here grows an image at load without Pillow's check, so a plain PNG shows it).
    with Image.open(__import__("io").BytesIO(encode(PIXELS, "PNG"))) as image:
        with pytest.raises(TooManyPixels, match="loaded: 48x40 = 1920 pixels, over --max_pixels 1919"):
            _load(image, 1919)
    # An icon (ICO) loads while it opens: the same bomb is refused at open, same error type.
    with pytest.raises(TooManyPixels):
        decode_image(icon_claiming_16px(_png_header_only(30_000, 10_000)), image_formats=("ICO",))


def test_cli_refuses_other_formats_by_default_and_opens_them_with_all(tmp_path, monkeypatch):
    marker = fake_ghostscript(tmp_path, monkeypatch)
    folder = tmp_path / "in"
    folder.mkdir()
    for name, data in other_formats().items():
        (folder / f"picture.{name.lower()}").write_bytes(data)
    (folder / "photo.jpg").write_bytes(encode(PIXELS, "JPEG"))
    (folder / "icon.icns").write_bytes(mac_icon_claiming_128px(_png_header_only(30_000, 10_000)))
    common = ["--input", str(folder / "*"), "--weights", "random", "--image_size", "32", "--layers", "res5"]

    def outcome(out):
        errors = pq.read_table(layout.errors_dir(str(out))).to_pylist()
        images = pq.read_table(layout.images_dir(str(out))).to_pylist()
        return (sorted(r["uri"].rsplit("/", 1)[1] for r in images),
                {e["uri"].rsplit("/", 1)[1]: (e["stage"], e["error_type"], e["message"]) for e in errors})

    assert run(common + ["--output", str(tmp_path / "default")]) == EXIT_OK
    images, errors = outcome(tmp_path / "default")
    assert images == ["photo.jpg"]
    assert {k: v[:2] for k, v in errors.items()} == {
        name: ("validate", "UnsupportedFormat") for name in ("picture.pcx", "picture.sgi", "picture.eps", "icon.icns")}
    assert errors["picture.pcx"][2].startswith("PCX: not in --image_formats")

    assert run(common + ["--output", str(tmp_path / "all"), "--image_formats", "all"]) == EXIT_OK
    images, errors = outcome(tmp_path / "all")
    assert images == ["photo.jpg", "picture.pcx", "picture.sgi"]
    assert {k: v[:2] for k, v in errors.items()} == {
        "picture.eps": ("validate", "UnsupportedFormat"), "icon.icns": ("validate", "TooManyPixels")}
    assert not marker.exists()
    manifest = json.loads((tmp_path / "all" / "manifest.json").read_text())
    assert manifest["limits"]["image_formats"] == ["all"]

    assert run(common + ["--output", str(tmp_path / "x"), "--image_formats", "JPEG,EPS"]) == EXIT_USAGE
    assert run(common + ["--output", str(tmp_path / "y"), "--image_formats", "JPEG,NOPE"]) == EXIT_USAGE


def _twelve_bit_jpeg() -> bytes:
    """An 8-bit baseline JPEG whose frame header says extended, 12-bit (SOF1, precision 12),
    as libjpeg-turbo's testimages/monkey12.jpg does: Pillow refuses it on that header."""
    from images import encode, rgb_pattern

    data = bytearray(encode(rgb_pattern(40, 48, 1), "JPEG"))
    frame = data.index(b"\xff\xc0")
    data[frame + 1], data[frame + 4] = 0xC1, 12
    return bytes(data)


def test_jpeg_sample_precision_reads_the_frame_header():
    from images import encode, rgb_pattern
    from transforms.formats import jpeg_sample_precision

    assert jpeg_sample_precision(encode(rgb_pattern(40, 48, 1), "JPEG")) == 8
    assert jpeg_sample_precision(_twelve_bit_jpeg()) == 12
    assert jpeg_sample_precision(encode(rgb_pattern(40, 48, 1), "PNG")) is None
    assert jpeg_sample_precision(b"\xff\xd8\xff\xe0\x00") is None  # cut off before any frame


def test_a_12_bit_jpeg_is_named_as_such_not_unidentified():
    from transforms.decode import decode_image
    from transforms.formats import UnsupportedJpegPrecision

    with pytest.raises(UnsupportedJpegPrecision, match="12-bit JPEG.*8-bit JPEGs only"):
        decode_image(_twelve_bit_jpeg(), max_pixels=10**8, min_side=16)
