"""The ResNet50 layer catalog and the output shape of each layer for any input size.

Pure Python (no TensorFlow import), so the CLI can validate a request before any work.
The shapes follow tf_keras' ResNet50 v1 with ``include_top=False``:
conv1 (7x7, stride 2, padding 3) and pool1 (3x3, stride 2, padding 1) each halve the
side rounding up; conv3, conv4 and conv5 start with a stride-2 1x1 convolution (valid
padding), which also gives ceil(side / 2).
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

MIN_IMAGE_SIDE = 32
#: The largest model input, in pixels (2048x2048). res2's feature map alone holds 256
#: float32 values for every 4x4 input pixels, 64 bytes per input pixel: 268 MB per image
#: at 2048x2048, 8.6 GB for a batch of 32, before the other layers and the float32 input.
#: Past it a run would exhaust a GPU's memory (or a worker's) on its first batch.
MAX_IMAGE_PIXELS = 2048 * 2048
DEFAULT_IMAGE_SIDE = 224

# stage -> (number of blocks, output channels, spatial stride relative to pool1 output)
_STAGES = {2: (3, 256), 3: (4, 512), 4: (6, 1024), 5: (3, 2048)}

POOL1_LAYER = "pool1_pool"
POOL1_CHANNELS = 64

#: Every selectable layer, in network order.
LAYER_NAMES: tuple[str, ...] = (POOL1_LAYER,) + tuple(
    f"conv{stage}_block{block}_out"
    for stage, (blocks, _) in _STAGES.items()
    for block in range(1, blocks + 1)
)

#: Short names for the last block of each stage.
ALIASES: dict[str, str] = {
    f"res{stage}": f"conv{stage}_block{blocks}_out" for stage, (blocks, _) in _STAGES.items()
}

DEFAULT_LAYERS: tuple[str, ...] = ("res2", "res3", "res4", "res5")

_BLOCK_NAME = re.compile(r"^conv(\d)_block(\d+)_out$")


class ImageSize(NamedTuple):
    """Model input size in pixels."""

    height: int
    width: int

    def __str__(self) -> str:
        return f"{self.height}x{self.width}"


class LayerShape(NamedTuple):
    """Output shape of one layer for one image (no batch dimension)."""

    height: int
    width: int
    channels: int


class UnknownLayerError(ValueError):
    """A layer name that is neither in the catalog nor an alias."""


def valid_layer_choices() -> str:
    """Human-readable list of every accepted layer name, for error messages."""
    aliases = ", ".join(f"{a} (= {n})" for a, n in ALIASES.items())
    return f"aliases: {aliases}; layers: {', '.join(LAYER_NAMES)}"


def canonical_layer(name: str) -> str:
    """Map an alias or a catalog name to the Keras layer name; raise for anything else."""
    name = name.strip()
    if name in ALIASES:
        return ALIASES[name]
    if name in LAYER_NAMES:
        return name
    raise UnknownLayerError(f"unknown layer {name!r}; valid choices are {valid_layer_choices()}")


def alias_of(layer: str) -> str | None:
    """The alias of a Keras layer name, if it has one."""
    for alias, target in ALIASES.items():
        if target == layer:
            return alias
    return None


def parse_image_size(text: str | int | ImageSize) -> ImageSize:
    """Parse ``224`` (square) or ``HxW`` such as ``384x512`` (height first)."""
    if isinstance(text, ImageSize):
        size = text
    elif isinstance(text, int):
        size = ImageSize(text, text)
    else:
        match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", str(text))
        if not match:
            raise ValueError(f"image size {text!r} is not N or HxW (for example 224 or 384x512)")
        height = int(match.group(1))
        size = ImageSize(height, int(match.group(2)) if match.group(2) else height)
    if min(size) < MIN_IMAGE_SIDE:
        raise ValueError(
            f"image size {size} is too small: ResNet50 needs at least "
            f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}"
        )
    if size.height * size.width > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"image size {size.height}x{size.width} is too large: at most {MAX_IMAGE_PIXELS:,} pixels "
            "(2048x2048); res2 alone takes 64 bytes per input pixel, 268 MB per image at 2048x2048"
        )
    return size


def _halve(side: int) -> int:
    return math.ceil(side / 2)


def layer_shape(layer: str, image_size: ImageSize | int | str) -> LayerShape:
    """Output shape (h, w, c) of ``layer`` (name or alias) for one image of ``image_size``."""
    layer = canonical_layer(layer)
    size = parse_image_size(image_size)
    # conv1 and pool1 each halve, rounding up.
    height, width = _halve(_halve(size.height)), _halve(_halve(size.width))
    if layer == POOL1_LAYER:
        return LayerShape(height, width, POOL1_CHANNELS)
    stage = int(_BLOCK_NAME.match(layer).group(1))
    for _ in range(3, stage + 1):  # conv3, conv4 and conv5 each halve again.
        height, width = _halve(height), _halve(width)
    return LayerShape(height, width, _STAGES[stage][1])


def pooled_dim(layer: str) -> int:
    """Length of the embedding of ``layer`` after global average or max pooling."""
    return layer_shape(layer, DEFAULT_IMAGE_SIDE).channels


def weight_layout() -> list[tuple[str, list[tuple[int, ...]]]]:
    """Every ResNet50 (include_top=False) layer that has weights, in the order Keras saves
    and loads them (HDF5 weights load by position), with the shape of each weight.
    Lets a weights file be checked with h5py alone, before TensorFlow is imported."""

    def conv(prefix, part, kernel, channels_in, channels_out):
        return f"{prefix}_{part}_conv", [(kernel, kernel, channels_in, channels_out), (channels_out,)]

    def norm(prefix, part, channels):
        return f"{prefix}_{part}_bn", [(channels,)] * 4

    layout = [("conv1_conv", [(7, 7, 3, 64), (64,)]), ("conv1_bn", [(64,)] * 4)]
    channels_in = 64
    for stage, (blocks, channels_out) in _STAGES.items():
        width = channels_out // 4
        for block in range(1, blocks + 1):
            prefix = f"conv{stage}_block{block}"
            block_in = channels_in if block == 1 else channels_out
            layout += [conv(prefix, 1, 1, block_in, width), norm(prefix, 1, width),
                       conv(prefix, 2, 3, width, width), norm(prefix, 2, width)]
            if block == 1:  # the projection shortcut comes after _2_bn in Keras' order
                layout += [conv(prefix, 0, 1, block_in, channels_out), conv(prefix, 3, 1, width, channels_out),
                           norm(prefix, 0, channels_out), norm(prefix, 3, channels_out)]
            else:
                layout += [conv(prefix, 3, 1, width, channels_out), norm(prefix, 3, channels_out)]
        channels_in = channels_out
    return layout
