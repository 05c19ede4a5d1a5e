"""Small pictures of source images for the report page, made with the job's own guards:
the file size limit when reading, then the format allowlist, the pixel limit and the header
checks of decode_image. Anything that cannot be shown becomes a labelled placeholder."""

from __future__ import annotations

import base64
import html
import io

from PIL import Image

from schemas import ImageSize, InputLimits
from transforms.decode import decode_image
from transforms.read import read_bytes

THUMBNAIL_SIDE = 96
MAX_FILE_BYTES = 64 << 20


def thumbnail_jpeg(uri: str, limits: InputLimits = InputLimits(), side: int = THUMBNAIL_SIDE) -> bytes:
    """A JPEG at most ``side`` pixels on its longer side; raises what reading or decoding
    raises (a shard member, ``<shard>#<key>``, is not opened here: ValueError)."""
    if "#" in uri.rsplit("/", 1)[-1]:
        raise ValueError("a member of a shard")
    data = read_bytes(uri, MAX_FILE_BYTES)
    decoded = decode_image(data, max_pixels=limits.max_pixels, min_side=1, image_formats=limits.image_formats,
                           target=ImageSize(side, side), resize_mode="pad")
    image = Image.fromarray(decoded.pixels)
    image.thumbnail((side, side))
    sink = io.BytesIO()
    image.save(sink, format="JPEG", quality=70)
    return sink.getvalue()


def thumbnail_html(uri: str, caption: str = "", limits: InputLimits = InputLimits()) -> str:
    """A <figure> with the image inline (data: URI), or a placeholder saying why not."""
    label = html.escape(caption or uri.rsplit("/", 1)[-1])
    title = html.escape(uri, quote=True)
    try:
        encoded = base64.b64encode(thumbnail_jpeg(uri, limits)).decode()
    except Exception as exc:  # noqa: BLE001 - untrusted input: any failure is a placeholder
        why = html.escape(f"not shown: {type(exc).__name__}")
        return (f'<figure class="thumb" title="{title}"><div class="placeholder">{why}</div>'
                f"<figcaption>{label}</figcaption></figure>")
    return (f'<figure class="thumb" title="{title}"><img alt="{label}" src="data:image/jpeg;base64,{encoded}">'
            f"<figcaption>{label}</figcaption></figure>")
