"""One PNG of feature maps: the input as the model saw it, then for each layer a titled grid
of its first channels, each normalised to its own range and drawn in a perceptual colour
map (viridis)."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from schemas import ExtractionConfig, InputLimits, canonical_layer, layer_shape

TILE = 96  # pixels per channel tile (the longer side)
COLUMNS = 8
TITLE = 22


def title_font() -> ImageFont.ImageFont:
    """Pillow's bitmap font: the default FreeType font at its default size draws spaces
    about one pixel wide ("inputas the model saw it"), so titles ran together."""
    return ImageFont.load_default_imagefont()
GAP = 4
BACKGROUND = (255, 255, 255)


class Tile(NamedTuple):
    layer: str
    channel: int
    box: tuple[int, int, int, int]  # left, top, right, bottom in the PNG


class FeatureMapFigure(NamedTuple):
    image: Image.Image
    input_box: tuple[int, int, int, int]
    tiles: list[Tile]


def colourise(channel: np.ndarray) -> np.ndarray:
    """(h, w) float -> (h, w, 3) uint8: scaled to its own [min, max], then viridis."""
    try:
        from matplotlib import colormaps
    except ImportError as exc:  # an extra: workers never draw
        raise ImportError("feature-map pictures need matplotlib: pip install "
                          "'resnet50-embeddings[featuremaps]'") from exc

    low, high = float(channel.min()), float(channel.max())
    scaled = (channel - low) / (high - low) if high > low else np.zeros_like(channel)
    return (colormaps["viridis"](scaled)[..., :3] * 255).astype(np.uint8)


def render(pixels: np.ndarray, maps: dict[str, np.ndarray], config: ExtractionConfig, channels: int) -> FeatureMapFigure:
    """Lay out ``pixels`` (H, W, 3) uint8 and ``maps[layer]`` (h, w, c) into one image."""
    height, width = config.image_size
    tile_w, tile_h = (TILE, max(1, round(TILE * height / width))) if width >= height else (
        max(1, round(TILE * width / height)), TILE)
    columns = min(COLUMNS, channels)
    canvas_w = max(columns * (tile_w + GAP) + GAP, width + 2 * GAP)
    rows_per_layer = -(-channels // columns)
    canvas_h = TITLE + height + GAP + len(maps) * (TITLE + rows_per_layer * (tile_h + GAP))
    canvas = Image.new("RGB", (canvas_w, canvas_h), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.font = title_font()
    draw.text((GAP, 4), f"input as the model saw it: {config.image_size} ({config.resize_mode}); "
              f"weights: {config.weights}", fill=(0, 0, 0))
    canvas.paste(Image.fromarray(pixels), (GAP, TITLE))
    input_box = (GAP, TITLE, GAP + width, TITLE + height)
    top = TITLE + height + GAP
    tiles = []
    for layer, feature_map in maps.items():
        h, w, c = feature_map.shape
        shown = min(channels, c)
        keras_name = canonical_layer(layer)
        named = layer if keras_name == layer else f"{layer} ({keras_name})"
        draw.text((GAP, top + 4), f"{named} {h}x{w}x{c}, channels 0-{shown - 1}", fill=(0, 0, 0))
        top += TITLE
        for index in range(shown):
            row, column = divmod(index, columns)
            left, upper = GAP + column * (tile_w + GAP), top + row * (tile_h + GAP)
            tile = Image.fromarray(colourise(feature_map[:, :, index])).resize((tile_w, tile_h), Image.Resampling.NEAREST)
            canvas.paste(tile, (left, upper))
            tiles.append(Tile(layer, index, (left, upper, left + tile_w, upper + tile_h)))
        top += rows_per_layer * (tile_h + GAP)
    return FeatureMapFigure(canvas, input_box, tiles)


def feature_map_figure(image_path: str, config: ExtractionConfig, channels: int = 16,
                       limits: InputLimits = InputLimits()) -> FeatureMapFigure:
    """Decode and resize ``image_path`` with the pipeline's own chain and guards
    (``transforms.resize.model_input``, ``limits`` defaulting as the job's), run the model
    with ``pooling='none'`` for ``config.layers``, and render the figure."""
    from apache_beam.io.filesystems import FileSystems

    from models.extractor import LayerExtractor
    from transforms.resize import model_input

    with FileSystems.open(image_path) as handle:
        data = handle.read()
    pixels = model_input(data, config, limits)
    full_maps = dataclasses.replace(config, pooling="none")
    outputs = LayerExtractor(full_maps)(pixels[None])
    maps = {layer: outputs[layer][0] for layer in config.layers}
    for layer, feature_map in maps.items():
        assert feature_map.shape == tuple(layer_shape(layer, config.image_size)), layer
    return render(pixels, maps, config, channels)
