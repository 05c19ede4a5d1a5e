"""Guards against hostile or unusable inputs, and the typed errors they raise.

Rejections go to ``errors/`` with stage 'validate' and the class name as error_type."""

from __future__ import annotations

import dataclasses

DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP: about 300 MB once decoded to RGB
DEFAULT_MIN_SIDE = 16
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class InputLimits:
    """``max_pixels``: width x height from the header, checked before any pixel is decoded.
    ``min_side``: the shorter side, in pixels, below which an image is refused.
    ``max_file_bytes``: file size from the listing, checked before the file is read."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES

    def __post_init__(self):
        for name in ("max_pixels", "min_side", "max_file_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")


class ImageRejected(ValueError):
    """An input refused by a guard (stage 'validate'), not a failure of the pipeline."""


class EmptyFile(ImageRejected):
    """A file of zero bytes."""


class FileTooLarge(ImageRejected):
    """A file over --max_file_bytes; it is never read."""


class TooManyPixels(ImageRejected):
    """A header claiming more than --max_pixels (or over Pillow's own bomb limit)."""


class ImageTooSmall(ImageRejected):
    """An image whose shorter side is under --min_side."""
