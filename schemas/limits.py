"""Guards against hostile or unusable inputs, and the typed errors they raise.

Rejections go to ``errors/`` with stage 'validate' and the class name as error_type."""

from __future__ import annotations

import dataclasses

DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP: about 300 MB once decoded to RGB
DEFAULT_MIN_SIDE = 16
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024
#: Parquet inputs: a row group whose image column holds more bytes than this (from the file's
#: metadata) is refused row by row without being read. A reader's peak memory is about 1.5 to
#: 3 times the row group it reads (BENCHMARKS.md), so this bounds it.
DEFAULT_MAX_ROW_GROUP_BYTES = 256 * 1024 * 1024
#: --image_formats' default (Pillow's format names): what photo collections hold.
DEFAULT_IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO")
#: --image_formats all: every format Pillow opens, except those never opened.
ALL_FORMATS = "all"
#: Never opened, whatever --image_formats says: Pillow runs Ghostscript on EPS files
#: (Pillow's security handbook, E-2: block EPS at the input layer).
NEVER_OPENED = ("EPS",)
DEFAULT_DECODE_WARN_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class InputLimits:
    """``max_pixels``: width x height from the header, checked before any pixel is decoded,
    and again once pixels are loaded. ``min_side``: the shorter side, in pixels, below which
    an image is refused. ``image_formats``: Pillow format names ever opened, or ``(ALL_FORMATS,)``.
    ``decode_warn_seconds``: a decode running longer is logged with its URI."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE
    image_formats: tuple[str, ...] = DEFAULT_IMAGE_FORMATS
    decode_warn_seconds: float = DEFAULT_DECODE_WARN_SECONDS

    def __post_init__(self):
        for name in ("max_pixels", "min_side"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if not self.image_formats:
            raise ValueError("--image_formats names no format")
        never = [name for name in self.image_formats if name.upper() in NEVER_OPENED]
        if never:
            raise ValueError(f"--image_formats {', '.join(never)}: never opened, because Pillow "
                             "runs Ghostscript on it (see docs/security.md)")
        if not self.decode_warn_seconds > 0:
            raise ValueError(f"--decode_warn_seconds must be above 0, got {self.decode_warn_seconds}")


class ImageRejected(ValueError):
    """An input refused by a guard (stage 'validate'), not a failure of the pipeline."""


class EmptyFile(ImageRejected):
    """A file of zero bytes."""


class FileTooLarge(ImageRejected):
    """A file over --max_file_bytes; it is never read."""


class RowGroupTooLarge(ImageRejected):
    """A row of a Parquet row group whose images are over --max_row_group_bytes; not read."""


class TooManyPixels(ImageRejected):
    """A header claiming more than --max_pixels (or over Pillow's own bomb limit)."""


class UnsupportedFormat(ImageRejected):
    """An image whose magic bytes say a format outside --image_formats, or one never opened."""


class ImageTooSmall(ImageRejected):
    """An image whose shorter side is under --min_side."""
