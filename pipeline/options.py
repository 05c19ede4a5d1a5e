"""Command-line options of the extraction job, as a Beam PipelineOptions subclass."""

from __future__ import annotations

import argparse
import dataclasses
import difflib

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from models.handler import ResNet50Handler
from models.placement import GPUS_AUTO, parse_gpus
from models.precision import AUTO
from schemas import (
    ALL_FORMATS,
    DEFAULT_DECODE_WARN_SECONDS,
    DEFAULT_IMAGE_FORMATS,
    DEFAULT_LAYERS,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_ROW_GROUP_BYTES,
    DEFAULT_MIN_COSINE,
    DEFAULT_MIN_SIDE,
    FORMAT_AUTO,
    IMAGE_PATHS,
    IMAGE_PATHS_NEVER,
    INPUT_FORMATS,
    JIT_COMPILE,
    MIXED_PRECISIONS,
    MODE_SINGLE,
    MODES,
    OUTPUT_DTYPES,
    POOLINGS,
    RESIZE_MODES,
    SKIP_BY,
    SKIP_BY_METADATA,
    ExtractionConfig,
    InputLimits,
    ReadConfig,
)
from transforms.formats import check_format_names


def parse_bool(value: str) -> bool:
    """``--overwrite`` alone means true; ``--overwrite=true|false`` is accepted too, as
    Flex Template launchers pass every parameter with a value."""
    lowered = str(value).strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


class ExtractOptions(PipelineOptions):
    """``--input`` and ``--output`` plus what to extract; any other Beam option passes through."""

    @classmethod
    def _add_argparse_args(cls, parser):
        for add_options in (cls._add_input_options, cls._add_model_options,
                            cls._add_compute_options, cls._add_guard_options, cls._add_run_options):
            add_options(parser)

    @staticmethod
    def _add_input_options(parser) -> None:
        """Where the images are and how to read them."""
        parser.add_argument(
            "--input",
            action="append",
            help="Images to embed: a file, a folder (everything below it), a glob such as "
            "'photos/*.jpg' or 'photos/**', or any Beam filesystem pattern such as "
            "gs://bucket/images/*. Give it several times to read several; a file that two "
            "match is read once. Files under --output are never read.",
        )
        parser.add_argument(
            "--output",
            help="Output directory (local or gs://...). Must be empty unless --overwrite.",
        )
        parser.add_argument(
            "--input_format",
            default=FORMAT_AUTO,
            choices=INPUT_FORMATS,
            help="auto (default): by each matched file's extension: .tar, .tar.gz or .tgz a "
            "WebDataset shard, .parquet a Parquet table, .tfrecord/.tfrecords/.tfrec (or "
            ".tfrecord.gz, or TFDS's name.tfrecord-00000-of-00010) TFRecords of "
            "tf.train.Example, anything else an image file. Or one of files, webdataset, "
            "parquet, tfrecord for every file. Compressed shards (.gz, .bz2, .xz, .zst) are "
            "decompressed as they are read.",
        )
        parser.add_argument(
            "--image_column",
            default=None,
            help="Parquet: the column with the image bytes (binary, or a struct with a binary "
            "'bytes' field). Default: the Image column named in the file's Hugging Face "
            "metadata, else the first of jpg, png, webp, image, image_bytes, bytes. "
            "TFRecord: the tf.train.Example feature. Default: image/encoded, else image, "
            "else the only bytes feature.",
        )
        parser.add_argument(
            "--image_paths",
            default=IMAGE_PATHS_NEVER,
            choices=IMAGE_PATHS,
            help="Parquet images stored as {bytes: null, path} (Hugging Face datasets built "
            "from local files): never (default) makes each an error row naming this flag; "
            "relative reads the path relative to the Parquet file's folder. An absolute path, "
            "or one leaving that folder, is an error row: a Parquet file never makes the "
            "pipeline read other files.",
        )
        parser.add_argument(
            "--keep_columns",
            default="",
            help="Comma-separated columns copied into images/ as text, so results join back "
            "to captions, labels and URLs: Parquet columns (url,txt from img2dataset), "
            "TFRecord features (label), WebDataset members by extension (cls,txt,json). "
            "Null where an input has none; a name no input has is a warning. Default: none.",
        )

    @staticmethod
    def _add_model_options(parser) -> None:
        """What to extract."""
        parser.add_argument(
            "--layers",
            default=",".join(DEFAULT_LAYERS),
            help="Comma-separated layers: aliases res2..res5, pool1_pool or convN_blockM_out "
            "(docs/cli.md lists them all). Default: %(default)s.",
        )
        parser.add_argument(
            "--image_size",
            default="224",
            help="Model input size: N for NxN or HxW such as 384x512 (height first), at "
            "least 32 per side and at most 2048x2048 pixels in all. Default: %(default)s.",
        )
        parser.add_argument(
            "--resize_mode",
            default="center_crop",
            choices=RESIZE_MODES,
            help="center_crop: cover the size and cut the centre (default); stretch: ignore "
            "the aspect ratio; pad: fit inside and letterbox with the ImageNet mean colour.",
        )
        parser.add_argument(
            "--pooling",
            default="avg",
            choices=POOLINGS,
            help="Global pooling of each layer inside the model: avg (default), max, or none "
            "to store the full h x w x c feature map.",
        )
        parser.add_argument(
            "--batch_size", type=int, default=None,
            help="Images per forward pass. Default: by the device the model runs on, from "
            "NVIDIA's published tables: 32 on a CPU; on a GPU 64 (T4), 128 (V100), 64 "
            "(A100/L4/H100 in reduced precision) or 256 (the same in float32), for 224x224 "
            "and smaller for larger inputs (docs/gpus.md). The manifest records it and why.",
        )
        parser.add_argument(
            "--weights",
            default="imagenet",
            help="imagenet (default; Keras cache, downloaded when missing), random (seeded "
            "by --seed, for tests and offline machines), or the path of a ResNet50 "
            "include_top=False weights file (.h5), local or on a Beam filesystem.",
        )
        parser.add_argument(
            "--seed", type=int, default=0, help="Seed of --weights random. Default: %(default)s."
        )

    @staticmethod
    def _add_compute_options(parser) -> None:
        """How and where the model computes."""
        parser.add_argument(
            "--output_dtype",
            default="float32",
            choices=OUTPUT_DTYPES,
            help="Stored value type of the embeddings. Default: %(default)s.",
        )
        parser.add_argument(
            "--mixed_precision",
            default="none",
            choices=MIXED_PRECISIONS + (AUTO,),
            help="Compute in bfloat16 (CPUs with AVX512_BF16/AMX, GPUs of compute capability "
            ">= 8.0) or float16 (GPUs >= 7.0, tensor cores); weights stay float32, pooling is "
            "done in float32, outputs are stored as --output_dtype. auto: float16 on 7.x, "
            "bfloat16 on >= 8.0 and on CPUs with AVX512_BF16 or AMX, else none; resolved by "
            "the launcher from the driver's GPU listing (local) or the Dataflow accelerator "
            "type, so one embedding key never mixes precisions. Each model's first batch is "
            "also run in float32 and compared (--min_cosine). Default: none (float32).",
        )
        parser.add_argument(
            "--min_cosine", type=float, default=DEFAULT_MIN_COSINE,
            help="Reduced precision's certificate: a layer whose minimum cosine similarity "
            "with float32 on a model's first batch is under this stops the run before that "
            "model writes an embedding. The manifest records each model's per-layer min and "
            "mean. Default: %(default)s.",
        )
        parser.add_argument(
            "--jit_compile",
            default="auto",
            choices=JIT_COMPILE,
            help="XLA for the forward pass: on, off, or auto (on when the model runs on a "
            "GPU, +5-33%% in NVIDIA's tables; off on a CPU, where it measured slower). With "
            "XLA every batch is padded to --batch_size, so each model compiles once. "
            "Default: %(default)s.",
        )
        parser.add_argument(
            "--gpus", default=GPUS_AUTO,
            help="GPUs the models use on each machine: auto (every GPU the NVIDIA driver "
            "lists, or those CUDA_VISIBLE_DEVICES allows), none (the CPU), or indexes as "
            "nvidia-smi numbers them, such as 0,2. Model copy i runs on GPU i mod G, pinned "
            "through CUDA_VISIBLE_DEVICES in its own process; a model per process takes the "
            "GPU with the fewest processes. Default: %(default)s.",
        )
        parser.add_argument(
            "--tf_threads", type=int, default=None,
            help="TensorFlow intra-op threads per worker process. Default: TensorFlow's own "
            "choice, except for local runs (see docs/cli.md), which use cores / workers.",
        )
        parser.add_argument(
            "--model_copies", type=int, default=None,
            help="Load exactly N models per machine, each in a model process of its own, shared "
            "by all of the machine's SDK processes (Beam's multi_process_shared, as "
            "RunInference's model_copies), so every vCPU decodes while one model per GPU "
            "infers. Default: the number of GPUs where the model runs on GPUs (the driver's "
            "listing locally, count: of the Dataflow accelerator), else one model in each SDK "
            "process.",
        )
        parser.add_argument(
            "--accelerator_hint", default=None,
            help="Dataflow right fitting: put this accelerator resource hint on the model step "
            "alone, e.g. 'type:nvidia-l4;count:1;install-nvidia-driver', so that reading and "
            "decoding run on the job's default (CPU) workers and the decoded batches are handed "
            "to GPU workers. Do not combine with the worker_accelerator service option. "
            "Default: none.",
        )
        parser.add_argument(
            "--jpeg_draft",
            default="on",
            choices=("on", "off"),
            help="on (default): decode JPEGs at least twice the needed size at 1/2, 1/4 or 1/8 "
            "scale in the DCT, 2-3x faster on large photos, and reduce other large images (PNG, "
            "WebP, ...) by an integer box factor before resizing (Pillow's reducing_gap 2), 2x "
            "faster at 3000x2000; pixels within about one grey level on average after resizing; "
            "off: always decode in full and resize in one step.",
        )

    @staticmethod
    def _add_guard_options(parser) -> None:
        """Guards against hostile or unusable inputs, and reporting."""
        parser.add_argument(
            "--max_pixels", type=int, default=DEFAULT_MAX_PIXELS,
            help="Refuse images whose header claims more pixels (width x height) than this, "
            "before any pixel is decoded (stage validate, TooManyPixels). Default: %(default)s.",
        )
        parser.add_argument(
            "--min_side", type=int, default=DEFAULT_MIN_SIDE,
            help="Refuse images whose shorter side is under this many pixels (stage validate, "
            "ImageTooSmall). Default: %(default)s.",
        )
        parser.add_argument(
            "--max_file_bytes", type=int, default=DEFAULT_MAX_FILE_BYTES,
            help="Refuse files larger than this without reading them (stage validate, "
            "FileTooLarge). Default: %(default)s (256 MiB).",
        )
        parser.add_argument(
            "--max_row_group_bytes", type=int, default=DEFAULT_MAX_ROW_GROUP_BYTES,
            help="Parquet inputs: refuse, row by row and without reading it, a row group whose "
            "image column holds more bytes than this, by the file's metadata (stage validate, "
            "RowGroupTooLarge). Bounds a reader's memory. Default: %(default)s (256 MiB).",
        )
        parser.add_argument(
            "--image_formats", default=",".join(DEFAULT_IMAGE_FORMATS),
            help="Comma-separated Pillow formats that are ever opened; a file whose first bytes "
            "say another format is refused (stage validate, UnsupportedFormat). 'all' opens "
            "every format Pillow has. EPS is never opened (Pillow would run Ghostscript). "
            "Default: %(default)s.",
        )
        parser.add_argument(
            "--decode_warn_seconds", type=float, default=DEFAULT_DECODE_WARN_SECONDS,
            help="Log the URI of any image whose decode runs longer than this, once, so that "
            "the file behind a stuck worker can be found. Default: %(default)s.",
        )
        parser.add_argument(
            "--max_error_fraction", type=float, default=None,
            help="After writing everything, exit with code 3 when more than this fraction "
            "(0..1) of the matched inputs ended in errors/. Default: no limit.",
        )
        parser.add_argument(
            "--progress_seconds", type=float, default=10.0,
            help="Local runs: log a progress line (images done / matched, images/s, errors) "
            "this often, and a final line at the end. Default: %(default)s.",
        )

    @staticmethod
    def _add_run_options(parser) -> None:
        """Single or incremental runs, and the output's lock."""
        parser.add_argument(
            "--mode",
            default=MODE_SINGLE,
            choices=MODES,
            help="single (default): --output is one run's folder. incremental: --output is a "
            "root; each run writes its own run=<UTC time>/ partition and skips files that an "
            "earlier completed run with the same settings embedded (see --skip_by).",
        )
        parser.add_argument(
            "--skip_by",
            default=SKIP_BY_METADATA,
            choices=SKIP_BY,
            help="--mode incremental: metadata (default): a file whose uri, size and "
            "last-updated time equal an earlier run's record is skipped without being opened; "
            "other files are read, and skipped when their content (SHA-256) was embedded. "
            "content: every file is read and hashed, for storage that rewrites files but "
            "keeps their times.",
        )
        parser.add_argument(
            "--commit_every", type=int, default=None, metavar="N",
            help="--mode incremental: commit as the run goes. Locally, one job whose writers "
            "commit parts as they fill, each a completed run of the root, so that at most N "
            "images (and errors) are uncommitted at any moment. On Dataflow, one job per "
            "chunk of at most N input files (an image file, or a whole shard), one after the "
            "other; a template launch runs one chunk (schedule it again for the next). A crash "
            "or Ctrl-C loses at most N; the same command resumes. Default: commit at the end.",
        )
        parser.add_argument(
            "--lock_stale_hours", type=float, default=24.0,
            help="An output's lock (_lock.json) older than this many hours, a run that died "
            "without releasing it, is broken. Default: %(default)s.",
        )
        parser.add_argument(
            "--overwrite",
            nargs="?",
            const=True,
            default=False,
            type=parse_bool,
            metavar="true|false",
            help="Replace the outputs of an earlier run in --output (manifest.json, images/, "
            "embeddings/, errors/); other files there are left alone.",
        )


def extraction_config(options: ExtractOptions) -> ExtractionConfig:
    """The validated ExtractionConfig of parsed options, whose ``auto`` precision and batch
    size pipeline/compute.py has resolved; raises ValueError with the choices."""
    if options.mixed_precision == AUTO or options.batch_size is None:
        raise ValueError("--mixed_precision auto and the default --batch_size are resolved "
                         "for the device first (pipeline.compute.resolve_compute)")
    return ExtractionConfig(
        layers=_names(options.layers),
        image_size=options.image_size,
        resize_mode=options.resize_mode,
        pooling=options.pooling,
        batch_size=options.batch_size,
        weights=options.weights,
        seed=options.seed,
        output_dtype=options.output_dtype,
        mixed_precision=options.mixed_precision,
        jpeg_draft=options.jpeg_draft == "on",
        jit_compile=options.jit_compile,
        min_cosine=options.min_cosine,
    )


def model_handler(options: ExtractOptions, config: ExtractionConfig,
                  model_factory=None) -> ResNet50Handler:
    """The ResNet50Handler of parsed options for ``config`` (its weights' SHA-256 filled in
    by the launcher); raises ValueError for a --model_copies under 1. ``model_factory``
    replaces the model (benchmarks and tests)."""
    return ResNet50Handler(config, model_copies=options.model_copies, gpus=parse_gpus(options.gpus),
                           accelerator=(options.accelerator_hint or "").strip() or None,
                           model_factory=model_factory)


def _names(value: str | None) -> tuple[str, ...]:
    """A comma-separated flag value as a tuple of its non-empty, stripped names."""
    return tuple(name.strip() for name in (value or "").split(",") if name.strip())


def read_config(options: ExtractOptions) -> ReadConfig:
    """The validated ReadConfig of parsed options; raises ValueError naming the flag."""
    return ReadConfig(input_format=options.input_format, image_column=options.image_column,
                      keep_columns=_names(options.keep_columns),
                      max_file_bytes=options.max_file_bytes,
                      max_row_group_bytes=options.max_row_group_bytes,
                      image_paths=options.image_paths)


def input_limits(options: ExtractOptions) -> InputLimits:
    """The validated guards of parsed options; raises ValueError naming the flag."""
    names = _names(options.image_formats)
    if len(names) == 1 and names[0].lower() == ALL_FORMATS:
        names = (ALL_FORMATS,)
    limits = InputLimits(
        max_pixels=options.max_pixels,
        min_side=options.min_side,
        image_formats=names,
        decode_warn_seconds=options.decode_warn_seconds,
    )
    return dataclasses.replace(limits, image_formats=check_format_names(limits.image_formats))


def all_options_parser() -> argparse.ArgumentParser:
    """A parser of every option this job and any Beam options class defines."""
    parser = _BeamArgumentParser(allow_abbrev=False, add_help=False)
    classes = {str(cls): cls for cls in PipelineOptions.__subclasses__()}
    for cls in classes.values():
        cls._add_argparse_args(parser)  # pylint: disable=protected-access
    return parser


def unknown_arguments(argv: list[str]) -> list[str]:
    """Flags that neither this job nor any Beam options class defines, each with a
    suggestion when one is close. Beam itself only warns about them and goes on."""
    parser = all_options_parser()
    _, unknown = parser.parse_known_args(argv)
    known_flags = [flag for action in parser._actions for flag in action.option_strings]
    problems = []
    for arg in unknown:
        if not arg.startswith("-"):
            continue  # the value of an unknown flag
        flag = arg.split("=", 1)[0]
        close = difflib.get_close_matches(flag, known_flags, n=1)
        problems.append(f"{flag} (did you mean {close[0]}?)" if close else flag)
    return problems


def options_parser(**parser_arguments) -> argparse.ArgumentParser:
    """An argparse parser holding exactly this job's options (not Beam's); no -h/--help
    unless ``add_help=True`` is passed."""
    parser = argparse.ArgumentParser(**{"add_help": False, **parser_arguments})
    ExtractOptions._add_argparse_args(parser)  # pylint: disable=protected-access
    return parser


HELP_WIDTH = 100


def help_text(prog: str = "python -m pipeline.run") -> str:
    """``--help``: this job's options; every Beam pipeline option is accepted as well.
    ``prog`` names the command (``resnet50-embed`` when run as the installed script)."""
    return options_parser(
        add_help=True,
        prog=prog,
        # The same width on every terminal: docs/cli.md holds this text verbatim.
        formatter_class=lambda prog: argparse.HelpFormatter(prog, width=HELP_WIDTH),
        description="Embed images with a multi-layer ResNet50 and write per-layer Parquet.",
        epilog="Any Apache Beam pipeline option is accepted too (--runner, --project, "
        "--region, --temp_location, --direct_num_workers, ...). Exit codes: 0 run completed "
        "(per-image errors are in errors/), 1 run failed, 2 bad usage, before any work, 3 completed "
        "but over --max_error_fraction, or inputs matched and none embedded or skipped (unless "
        "--max_error_fraction 1), 130 interrupted (Ctrl-C).",
    ).format_help()
