"""``python -m pipeline.inspect``: look at layer shapes, a run's summary, nearest neighbours.

    python -m pipeline.inspect shapes [--image_size 224|HxW] [--layers L1,L2]
    python -m pipeline.inspect summary OUTPUT
    python -m pipeline.inspect neighbors OUTPUT --layer L --image URI_OR_ID [-k 5]
"""

from __future__ import annotations

import argparse
import sys

from pipeline.neighbors import nearest
from pipeline.reports import shapes_table, summary
from pipeline.results import IncompleteOutput


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.inspect", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    shapes = commands.add_parser("shapes", help="every layer's output shape and size per image")
    shapes.add_argument("--image_size", default="224")
    shapes.add_argument("--layers", default=None, help="comma-separated; default: every layer")
    report = commands.add_parser("summary", help="what a completed run did")
    report.add_argument("output")
    near = commands.add_parser("neighbors", help="the k nearest images by cosine similarity")
    near.add_argument("output")
    near.add_argument("--layer", required=True)
    near.add_argument("--image", required=True, help="a URI from images/, or an image_id (or prefix)")
    near.add_argument("-k", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        if args.command == "shapes":
            print(shapes_table(args.image_size, args.layers.split(",") if args.layers else None))
        elif args.command == "summary":
            print(summary(args.output))
        else:
            for rank, neighbor in enumerate(nearest(args.output, args.layer, args.image, args.k), 1):
                print(f"{rank:>3}  cosine {neighbor.cosine:.4f}  {neighbor.uri}  ({neighbor.image_id[:12]})")
    except (ValueError, KeyError, IncompleteOutput, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
