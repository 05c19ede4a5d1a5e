"""The fast JPEG path: libjpeg-turbo through simplejpeg, straight into a numpy array.

Pillow decodes JPEGs with libjpeg-turbo too, but hands the pixels over through its own
buffers: a decode loop fed in blocks, an RGBX image, then a copy into numpy (and another
for EXIF orientation). simplejpeg calls TurboJPEG once and writes (h, w, 3) RGB where numpy
owns it: the same library and settings (accurate integer DCT, fancy upsampling), so the
same pixels, about twice as fast on 500x375 photos (BENCHMARKS.md).

Only files Pillow has already opened and checked take this path (see decode_image): the
format allowlist and the header's size limits run first, on Pillow's parse of the header.
Anything unusual stays with Pillow: CMYK and YCCK (TurboJPEG does not convert them to RGB),
and any file for which libjpeg-turbo reports an error or even a warning (``strict``): the
caller then decodes it with Pillow, so such files come out exactly as before, errors
included.
"""

from __future__ import annotations

import numpy as np
import simplejpeg
from PIL import Image

#: Pillow's names for JPEG files; MPO is a JPEG followed by more pictures (its first
#: picture is what Pillow and TurboJPEG decode).
JPEG_FORMATS = ("JPEG", "MPO")
#: Pillow modes of a JPEG that TurboJPEG turns into RGB exactly as Pillow does.
FAST_MODES = ("RGB", "L")


def takes_fast_path(image: Image.Image) -> bool:
    """Whether the opened, not yet loaded ``image`` is a JPEG that decode_turbo handles."""
    return image.format in JPEG_FORMATS and image.mode in FAST_MODES


def decode_turbo(data: bytes, size: tuple[int, int]) -> np.ndarray | None:
    """``data`` (a JPEG) -> (h, w, 3) uint8 RGB with (w, h) == ``size``: the full size, or
    the size Pillow's ``draft`` set (1/2, 1/4 or 1/8, scaled in the DCT; TurboJPEG picks
    the smallest of its scales that covers ``size``, which is that one). None when
    libjpeg-turbo raises or warns, or the result is not exactly ``size``: decode with
    Pillow instead."""
    width, height = size
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, fastupsample=False,
                                        min_width=width, min_height=height, strict=True)
    except ValueError:  # simplejpeg's one error type: corrupt data, warnings, no JPEG.
        return None
    if pixels.shape != (height, width, 3):
        return None
    return pixels


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """(h, w, 3) in stored orientation -> upright by EXIF ``orientation`` (1-8), as
    ``PIL.ImageOps.exif_transpose`` does; other values leave it as it is. Returns a
    C-contiguous array (a copy only when it moved)."""
    if orientation == 2:
        pixels = pixels[:, ::-1]
    elif orientation == 3:
        pixels = pixels[::-1, ::-1]
    elif orientation == 4:
        pixels = pixels[::-1]
    elif orientation == 5:
        pixels = pixels.transpose(1, 0, 2)
    elif orientation == 6:
        pixels = pixels.transpose(1, 0, 2)[:, ::-1]
    elif orientation == 7:
        pixels = pixels[::-1, ::-1].transpose(1, 0, 2)
    elif orientation == 8:
        pixels = pixels.transpose(1, 0, 2)[::-1]
    return np.ascontiguousarray(pixels)
