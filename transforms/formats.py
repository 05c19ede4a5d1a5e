"""Which image formats are ever opened: the ``--image_formats`` allowlist, checked on the
file's magic bytes before Pillow sees it, then enforced again by Pillow itself
(``Image.open(..., formats=...)``), as Pillow's security handbook recommends (S-1, E-2).

EPS is never opened, whatever the allowlist: Pillow hands EPS to Ghostscript, a separate
program with a long history of sandbox escapes (handbook E-2)."""

from __future__ import annotations

from PIL import Image

from schemas import ALL_FORMATS, NEVER_OPENED, UnsupportedFormat

#: Magic bytes of the default formats, kept here independently of Pillow's plugins.
_SIGNATURES = {
    "JPEG": (b"\xff\xd8\xff",),
    "MPO": (b"\xff\xd8\xff",),  # a JPEG with several pictures (cameras' multi-picture files)
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "GIF": (b"GIF87a", b"GIF89a"),
    "BMP": (b"BM",),
    "TIFF": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),  # classic and BigTIFF
}
#: How many leading bytes identify a format (what Pillow itself reads to choose a plugin).
PREFIX_BYTES = 16
#: Formats Pillow opens through another format's plugin (an MPO file through JPEG's).
OPENED_BY = {"MPO": "JPEG"}


def _is_webp(prefix: bytes) -> bool:
    return prefix[:4] == b"RIFF" and prefix[8:12] == b"WEBP"


def pillow_formats() -> tuple[str, ...]:
    """Every format this Pillow can open, in its registry's order, then those it opens
    through another plugin (MPO)."""
    Image.init()
    return tuple(Image.ID) + tuple(name for name in OPENED_BY if name not in Image.ID)


def check_format_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` upper-cased, each one a format this Pillow opens; ValueError otherwise.
    ``(ALL_FORMATS,)`` stands for every format but those never opened."""
    if names == (ALL_FORMATS,):
        return names
    known = pillow_formats()
    upper = tuple(name.upper() for name in names)
    unknown = [name for name in upper if name not in known]
    if unknown:
        raise ValueError(f"--image_formats: {', '.join(unknown)} not a format this Pillow opens "
                         f"({', '.join(sorted(known))}; or {ALL_FORMATS})")
    return upper


def identify(data: bytes) -> str | None:
    """The format ``data`` starts like: first by the signatures above, then by Pillow's own
    test of each plugin (only a look at the first bytes; nothing is parsed). None when no
    format claims it. This names a format in messages; it is not the control."""
    prefix = data[:PREFIX_BYTES]
    if _is_webp(prefix):
        return "WEBP"
    for name, signatures in _SIGNATURES.items():
        if prefix.startswith(signatures):
            return name
    Image.init()
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        try:
            if accept is not None and accept(prefix):
                return name
        except Exception:  # A plugin's test that cannot handle a short prefix.
            continue
    return None


def _starts_like(name: str, prefix: bytes) -> bool:
    if name == "WEBP":
        return _is_webp(prefix)
    return prefix.startswith(_SIGNATURES.get(name, ()))


def allowed_for_open(allowed: tuple[str, ...]) -> list[str]:
    """What ``Image.open(..., formats=...)`` gets: the allowlist (MPO as JPEG, whose plugin
    opens it), or for ``all`` every format but those never opened."""
    if allowed == (ALL_FORMATS,):
        Image.init()
        return [name for name in Image.ID if name not in NEVER_OPENED]
    plugins = (OPENED_BY.get(name, name) for name in allowed if name not in NEVER_OPENED)
    return list(dict.fromkeys(plugins))


def check_opened(image_format: str | None, allowed: tuple[str, ...]) -> None:
    """After Image.open: the format Pillow says it opened must be allowed too (a plain
    JPEG when only MPO is)."""
    if allowed != (ALL_FORMATS,) and image_format not in allowed:
        raise UnsupportedFormat(f"{image_format}: not in --image_formats ({','.join(allowed)})")


def check_format(data: bytes, allowed: tuple[str, ...]) -> None:
    """Refuse ``data`` (UnsupportedFormat, stage 'validate') when its first bytes identify a
    format that is never opened or not in ``allowed``. Data no format claims is left to
    Pillow, which only tries the allowed plugins and fails with UnidentifiedImageError."""
    name = identify(data)
    if name in NEVER_OPENED:
        raise UnsupportedFormat(f"{name}: never opened, even with --image_formats {ALL_FORMATS} "
                                "(Pillow would run Ghostscript on it)")
    if name is None or allowed == (ALL_FORMATS,):
        return
    prefix = data[:PREFIX_BYTES]
    if name not in allowed and not any(_starts_like(other, prefix) for other in allowed):
        raise UnsupportedFormat(f"{name}: not in --image_formats ({','.join(allowed)})")


class UnsupportedJpegPrecision(ValueError):
    """A JPEG whose samples are not 8 bits (12-bit, as in medical and some raw workflows):
    Pillow and libjpeg-turbo's 8-bit decoder, which this pipeline uses, cannot read it."""


#: Start-of-frame markers (SOF0..SOF15 but DHT, JPG and DAC), which carry the precision.
_START_OF_FRAME = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_sample_precision(data: bytes, max_scan: int = 1 << 16) -> int | None:
    """The bits per sample of a JPEG, from its first start-of-frame segment; None when
    ``data`` is not a JPEG or the frame header is not in the first ``max_scan`` bytes."""
    if not data.startswith(b"\xff\xd8"):
        return None
    position, end = 2, min(len(data), max_scan)
    while position + 4 <= end:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = int.from_bytes(data[position + 2: position + 4], "big")
        if marker in _START_OF_FRAME:
            return data[position + 4] if position + 4 < len(data) else None
        position += 2 + length
    return None


def explain_unreadable_jpeg(data: bytes) -> UnsupportedJpegPrecision | None:
    """The error to report instead of Pillow's "cannot identify image file" for a JPEG whose
    samples are not 8 bits; None for anything else."""
    precision = jpeg_sample_precision(data)
    if precision is None or precision == 8:
        return None
    return UnsupportedJpegPrecision(
        f"{precision}-bit JPEG (sample precision {precision}): Pillow reads 8-bit JPEGs only; "
        "convert it first, for example to a 16-bit PNG with libjpeg-turbo 3's djpeg or ImageMagick")
