"""How inputs are read and what a run compares them with: ReadConfig, the run modes and the
incremental Comparison. Validated once, where they are made; recorded in the manifest."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from schemas.arrow import images_schema
from schemas.limits import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_ROW_GROUP_BYTES

# --input_format: by extension (auto), or one reader for every matched file.
FORMAT_AUTO, FORMAT_FILES = "auto", "files"
FORMAT_WEBDATASET, FORMAT_PARQUET, FORMAT_TFRECORD = "webdataset", "parquet", "tfrecord"
FORMAT_ARROW = "arrow"  # Arrow IPC streams: Hugging Face save_to_disk's data-*.arrow
SHARD_FORMATS = (FORMAT_WEBDATASET, FORMAT_PARQUET, FORMAT_TFRECORD, FORMAT_ARROW)
INPUT_FORMATS = (FORMAT_AUTO, FORMAT_FILES) + SHARD_FORMATS

# --mode: one run's folder, or a root of run partitions.
MODE_SINGLE, MODE_INCREMENTAL = "single", "incremental"
MODES = (MODE_SINGLE, MODE_INCREMENTAL)

# --skip_by (incremental runs): what makes an input the same as an earlier run's.
SKIP_BY_METADATA, SKIP_BY_CONTENT = "metadata", "content"
SKIP_BY = (SKIP_BY_METADATA, SKIP_BY_CONTENT)

# --image_paths: whether an image struct with null bytes and a ``path`` is read from that path.
IMAGE_PATHS_NEVER, IMAGE_PATHS_RELATIVE = "never", "relative"
IMAGE_PATHS = (IMAGE_PATHS_NEVER, IMAGE_PATHS_RELATIVE)


@dataclasses.dataclass(frozen=True)
class ReadConfig:
    """What the readers need: ``input_format`` (INPUT_FORMATS), ``image_column`` (the
    Parquet column or TFRecord feature with the image bytes; None for each reader's
    default), ``keep_columns`` (Parquet columns, TFRecord features or WebDataset members
    copied into ``images/`` as text), ``image_paths`` (IMAGE_PATHS: whether a Parquet image
    whose bytes are null is read from its ``path``, relative to the shard's folder),
    ``max_file_bytes`` (a file, sample or element over it is refused unread) and
    ``max_row_group_bytes`` (a Parquet row group whose images hold more is refused row by
    row, unread). Raises ValueError, naming the flag, when made with a value that cannot
    work."""

    input_format: str = FORMAT_AUTO
    image_column: str | None = None
    keep_columns: tuple[str, ...] = ()
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_row_group_bytes: int = DEFAULT_MAX_ROW_GROUP_BYTES
    image_paths: str = IMAGE_PATHS_NEVER

    def __post_init__(self):
        object.__setattr__(self, "keep_columns", tuple(self.keep_columns))
        if self.input_format not in INPUT_FORMATS:
            raise ValueError(f"--input_format {self.input_format!r} is not one of "
                             f"{', '.join(INPUT_FORMATS)}")
        if self.image_paths not in IMAGE_PATHS:
            raise ValueError(f"--image_paths {self.image_paths!r} is not one of {', '.join(IMAGE_PATHS)}")
        if self.image_column is not None and not self.image_column.strip():
            raise ValueError("--image_column is empty")
        for name in ("max_file_bytes", "max_row_group_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        images_schema(self.keep_columns)  # names images/ has already, or twice

    def record(self) -> dict:
        """The manifest's ``read`` record."""
        return {**dataclasses.asdict(self), "keep_columns": list(self.keep_columns)}


class Comparison(NamedTuple):
    """What an incremental run compares its input with: globs of the ``images/``,
    ``skipped/`` and ``shards/`` part files of the earlier completed runs under the same
    embedding key. None for each when they were not looked up (a dry run builds the full
    graph without reading the root); empty tuples on a root with no such run (nothing to
    compare)."""

    skip_by: str
    image_parts: tuple[str, ...] | None
    skipped_parts: tuple[str, ...] | None
    shard_parts: tuple[str, ...] | None = None

    @property
    def has_earlier_runs(self) -> bool:
        return self.image_parts is None or bool(self.image_parts)

    @property
    def by_metadata(self) -> bool:
        """Skips by listing (uri, size, last-updated time) before reading anything."""
        return self.skip_by == SKIP_BY_METADATA


class Chunk(NamedTuple):
    """One job's chunk of a remote run that commits as it goes (``--commit_every``): at
    most ``size`` input files (an image file, or a whole shard) that no completed run
    holds, the first by uri among those after ``after`` (the last uri the previous chunk
    took; "" for the first)."""

    size: int
    after: str = ""

    def record(self) -> dict:
        """The manifest's ``chunk`` record (the job adds ``last``, the last uri it took)."""
        return {"commit_every": self.size, "after": self.after}
