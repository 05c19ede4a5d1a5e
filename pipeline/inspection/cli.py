"""``resnet50-inspect`` (or ``python -m pipeline.inspection``): layer shapes, feature-map
pictures, a run's summary, nearest neighbours.

    resnet50-inspect shapes [--image_size 224|HxW] [--layers L1,L2]
    resnet50-inspect featuremaps IMAGE --layers L1,L2 --out maps.png [--channels 16]
        [--weights imagenet|random|PATH.h5] [--image_size 224] [--resize_mode center_crop]
    resnet50-inspect summary OUTPUT
    resnet50-inspect neighbors OUTPUT --layer L --image URI_OR_ID [-k 5]
"""

from __future__ import annotations

import argparse
import sys

from models.weights import WeightsError
from pipeline.incremental import DamagedIndexEntry
from pipeline.inspection.featuremaps import feature_map_figure
from pipeline.inspection.neighbors import nearest
from pipeline.inspection.reports import shapes_table, summary
from pipeline.inspection.results import IncompleteOutput
from schemas import ExtractionConfig


def parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per tool."""
    top = argparse.ArgumentParser(prog="resnet50-inspect", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    shapes = commands.add_parser("shapes", help="every layer's output shape and size per image")
    shapes.add_argument("--image_size", default="224")
    shapes.add_argument("--layers", default=None, help="comma-separated; default: every layer")
    pictures = commands.add_parser("featuremaps", help="one PNG of the first channels of each layer")
    pictures.add_argument("image")
    pictures.add_argument("--layers", required=True)
    pictures.add_argument("--out", required=True)
    pictures.add_argument("--channels", type=int, default=16)
    pictures.add_argument("--weights", default="imagenet")
    pictures.add_argument("--seed", type=int, default=0)
    pictures.add_argument("--image_size", default="224")
    pictures.add_argument("--resize_mode", default="center_crop")
    report = commands.add_parser("summary", help="what a completed run did")
    report.add_argument("output")
    near = commands.add_parser("neighbors", help="the k nearest images by cosine similarity")
    near.add_argument("output")
    near.add_argument("--layer", required=True)
    near.add_argument("--image", required=True, help="a URI from images/, or an image_id (or prefix)")
    near.add_argument("-k", type=int, default=5)
    return top


def featuremaps(args) -> str:
    config = ExtractionConfig(layers=tuple(args.layers.split(",")), image_size=args.image_size,
                              resize_mode=args.resize_mode, weights=args.weights, seed=args.seed)
    figure = feature_map_figure(args.image, config, args.channels)
    figure.image.save(args.out)
    return (f"{args.out}: {figure.image.width}x{figure.image.height}, "
            f"{len(figure.tiles)} channel tiles from {len(config.layers)} layers")


def neighbors(args) -> str:
    return "\n".join(
        f"{rank:>3}  cosine {neighbor.cosine:.4f}  {neighbor.uri}  ({neighbor.image_id[:12]})"
        for rank, neighbor in enumerate(nearest(args.output, args.layer, args.image, args.k), 1))


COMMANDS = {
    "shapes": lambda args: shapes_table(args.image_size, args.layers.split(",") if args.layers else None),
    "featuremaps": featuremaps,
    "summary": lambda args: summary(args.output),
    "neighbors": neighbors,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        print(COMMANDS[args.command](args))
    except (ValueError, KeyError, IncompleteOutput, FileNotFoundError, WeightsError, ImportError,
            DamagedIndexEntry) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
