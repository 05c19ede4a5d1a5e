"""``resnet50-inspect`` (or ``python -m pipeline.inspection``): layer shapes, feature-map
pictures, a run's summary, nearest neighbours.

    resnet50-inspect shapes [--image_size 224|HxW] [--layers L1,L2]
    resnet50-inspect featuremaps IMAGE --layers L1,L2 --out maps.png [--channels 16]
        [--weights imagenet|random|PATH.h5] [--image_size 224] [--resize_mode center_crop]
    resnet50-inspect summary OUTPUT_OR_ROOT [--embedding_key KEY]
    resnet50-inspect neighbors OUTPUT_OR_ROOT --layer L --image URI_PATH_OR_ID [-k 5]
        [--embedding_key KEY]
    resnet50-inspect index OUTPUT_OR_ROOT --layer L [--memory_gb 4] [--embedding_key KEY]
    resnet50-inspect duplicates OUTPUT_OR_ROOT --layer L [--threshold 0.97] [--out FILE.parquet]
    resnet50-inspect report OUTPUT_OR_ROOT -o report.html [--embedding_key KEY]
"""

from __future__ import annotations

import argparse
import os
import sys

from models.weights import WeightsError
from pipeline.root.incremental import DamagedIndexEntry
from pipeline.inspection.featuremaps import feature_map_figure
from pipeline.inspection.neighbors import indexed, nearest, nearest_indexed
from pipeline.inspection.vector_index import IndexProblem, PooledOnly, ensure_index
from pipeline.inspection.reports import shapes_table, summary
from pipeline.inspection.results import IncompleteOutput
from schemas import RESIZE_MODES, ExtractionConfig


def parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per tool; every option has its help."""
    top = argparse.ArgumentParser(prog="resnet50-inspect", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    shapes = commands.add_parser("shapes", help="every layer's output shape and size per image")
    shapes.add_argument("--image_size", default="224", help="N for NxN, or HxW (default 224)")
    shapes.add_argument("--layers", default=None, help="comma-separated; default: every layer")
    pictures = commands.add_parser("featuremaps", help="one PNG of the first channels of each layer")
    pictures.add_argument("image", help="the image file to run through the model")
    pictures.add_argument("--layers", required=True, help="comma-separated layers, e.g. res2,res4")
    pictures.add_argument("--out", required=True, help="the PNG to write")
    pictures.add_argument("--channels", type=int, default=16, help="channels shown per layer (default 16)")
    pictures.add_argument("--weights", default="imagenet",
                          help="imagenet (default; downloads once), random, or a .h5 weights file")
    pictures.add_argument("--seed", type=int, default=0, help="seed of --weights random (default 0)")
    pictures.add_argument("--image_size", default="224", help="N for NxN, or HxW (default 224)")
    pictures.add_argument("--resize_mode", default="center_crop",
                          choices=RESIZE_MODES, help="as the job's --resize_mode (default center_crop)")
    report = commands.add_parser("summary", help="what a completed run did, or every run of a root")
    report.add_argument("output", help="a run's --output, or an incremental root")
    report.add_argument("--embedding_key", default=None, help=EMBEDDING_KEY_HELP)
    near = commands.add_parser("neighbors", help="the k nearest images by cosine similarity")
    near.add_argument("output", help="a run's --output, or an incremental root")
    near.add_argument("--layer", required=True, help="the layer to compare in, e.g. res5")
    near.add_argument("--image", required=True,
                      help="a URI from images/, a local path (made absolute, as --input's are), "
                      "or an image_id (or prefix)")
    near.add_argument("-k", type=int, default=5, help="how many neighbours (default 5)")
    near.add_argument("--embedding_key", default=None, help=EMBEDDING_KEY_HELP)
    _add_index_commands(commands)
    return top


def _add_index_commands(commands) -> None:
    """index, duplicates and report: what reads (and keeps) a layer's FAISS index."""
    index = commands.add_parser("index", help="build or bring up to date the layer's FAISS index")
    index.add_argument("output", help="a run's --output, or an incremental root")
    index.add_argument("--layer", required=True, help="a pooled layer, e.g. res5")
    index.add_argument("--memory_gb", type=float, default=4.0,
                       help="the index's memory budget: above it vectors are quantized (default 4)")
    index.add_argument("--embedding_key", default=None, help=EMBEDDING_KEY_HELP)
    twins = commands.add_parser("duplicates", help="exact and near-duplicate groups, from the index")
    twins.add_argument("output", help="a run's --output, or an incremental root")
    twins.add_argument("--layer", required=True, help="a pooled layer, e.g. res5")
    twins.add_argument("--threshold", type=float, default=0.97,
                       help="the cosine at or above which two images are near duplicates (default 0.97)")
    twins.add_argument("-k", type=int, default=10, help="neighbours looked at per image (default 10)")
    twins.add_argument("--out", default=None,
                       help="the Parquet file of groups (default: duplicates.parquet in the index folder)")
    twins.add_argument("--memory_gb", type=float, default=4.0, help="as for index")
    twins.add_argument("--embedding_key", default=None, help=EMBEDDING_KEY_HELP)
    page = commands.add_parser("report", help="one self-contained HTML page about what the runs made")
    page.add_argument("output", help="a run's --output, or an incremental root")
    page.add_argument("-o", "--out", required=True, help="the HTML file to write")
    page.add_argument("--embedding_key", default=None, help=EMBEDDING_KEY_HELP)


EMBEDDING_KEY_HELP = ("on an incremental root whose runs used several settings: the key of "
                      "the runs to read (each run's index entry and manifest name it)")


def featuremaps(args) -> str:
    config = ExtractionConfig(layers=tuple(args.layers.split(",")), image_size=args.image_size,
                              resize_mode=args.resize_mode, weights=args.weights, seed=args.seed)
    figure = feature_map_figure(args.image, config, args.channels)
    figure.image.save(args.out)
    return (f"{args.out}: {figure.image.width}x{figure.image.height}, "
            f"{len(figure.tiles)} channel tiles from {len(config.layers)} layers")


def neighbors(args) -> str:
    stored, how = indexed(args.output, args.layer, args.embedding_key)
    found = (nearest_indexed(stored, args.layer, args.image, args.k) if stored is not None
             else nearest(args.output, args.layer, args.image, args.k, args.embedding_key))
    return "\n".join([how] + [
        f"{rank:>3}  cosine {neighbor.cosine:.4f}  {neighbor.uri}  ({neighbor.image_id[:12]})"
        for rank, neighbor in enumerate(found, 1)])


def index(args) -> str:
    stored, said = ensure_index(args.output, args.layer, args.embedding_key, int(args.memory_gb * 2**30))
    meta = stored.meta
    breadth = (f"nprobe {meta['nprobe']}, recall@10 {meta['recall_at_10']} against brute force"
               if meta["nprobe"] else "exact search")
    return "\n".join([said, f"{meta['factory']}: {meta['reason']}",
                      f"{meta['count']:,} vectors of {meta['dim']} from {len(meta['runs'])} run(s); {breadth}"])


def duplicates(args) -> str:
    from pipeline.inspection import duplicates as twins
    from schemas import layout

    stored, said = ensure_index(args.output, args.layer, args.embedding_key, int(args.memory_gb * 2**30))
    groups = twins.exact_groups(stored) + twins.near_groups(stored, args.threshold, args.k)
    out = args.out or layout.join(layout.vector_index_dir(args.output, args.layer, stored.meta["embedding_key"]),
                                  "duplicates.parquet")
    twins.write_table(twins.duplicates_table(stored, groups), out)
    return "\n".join([said] + twins.summary_lines(stored, groups, args.threshold) + [f"groups: {out}"])


def report(args) -> str:
    from pipeline.inspection.report_page import report_html

    page = report_html(args.output, args.embedding_key)
    with open(args.out, "w", encoding="utf-8") as handle:
        handle.write(page)
    return f"{args.out}: {len(page.encode()):,} bytes; open it in a browser (no server, no network)"


COMMANDS = {
    "shapes": lambda args: shapes_table(args.image_size, args.layers.split(",") if args.layers else None),
    "featuremaps": featuremaps,
    "summary": lambda args: summary(args.output, args.embedding_key),
    "neighbors": neighbors,
    "index": index,
    "duplicates": duplicates,
    "report": report,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        print(COMMANDS[args.command](args))
    except (ValueError, KeyError, IncompleteOutput, FileNotFoundError, WeightsError, ImportError,
            DamagedIndexEntry, IndexProblem, PooledOnly) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def console_main() -> None:
    """The resnet50-inspect command: main(), then exit without the interpreter's teardown.
    Importing Beam loads gRPC, whose C++ threads can abort a finishing process ("terminate
    called without an active exception", seen once in three runs of test_packaging) after
    every line was printed; this command has nothing left to clean up by then."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access


if __name__ == "__main__":
    console_main()
