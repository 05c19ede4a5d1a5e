"""The element types passed between transforms. Arrays are numpy; shapes are per docstring."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Stages named in errors/ and in ShapeContractError messages.
STAGE_READ = "read"
STAGE_VALIDATE = "validate"
STAGE_DECODE = "decode"
STAGE_RESIZE = "resize"
STAGE_BATCH = "batch"
STAGE_EXTRACT = "extract"
STAGE_WRITE = "write"  # named in ShapeContractError only: a write failure fails the run
STAGES = (STAGE_READ, STAGE_VALIDATE, STAGE_DECODE, STAGE_RESIZE, STAGE_BATCH, STAGE_EXTRACT)


class ListedFile(NamedTuple):
    """One record of the input listing, before anything is opened: the file's ``uri``, its
    size and its last-updated time as ``FileSystems.match`` reports them (``modified_us``:
    microseconds since the Unix epoch, UTC). None where the filesystem does not say."""

    uri: str
    size_bytes: int | None = None
    modified_us: int | None = None


class SeenFile(NamedTuple):
    """An image whose bytes were hashed, without the bytes: ``image_id`` is their hex
    SHA-256, the rest is the listing it was read under and ``source``, the listed file it
    came from (the shard of a sample; for a loose file its own uri, or None). One row of
    ``skipped/``, and what earlier runs' ``images/`` rows are read back as (their metadata
    None when written before it was recorded)."""

    uri: str
    image_id: str
    size_bytes: int | None = None
    modified_us: int | None = None
    source: str | None = None

    @property
    def in_shard(self) -> bool:
        """True for a sample of a shard (its uri is ``<source>#<key>``), False for a file."""
        return self.source is not None and self.source != self.uri


class ListedShard(NamedTuple):
    """A listed shard to read, with the uris of its samples (``known``) that earlier runs
    embedded or recorded under the same listing: those are skipped as unchanged, the rest
    hashed and compared."""

    listed: ListedFile
    known: frozenset


class Unchanged(NamedTuple):
    """An input skipped because its listing is the one an earlier run read: a loose file or
    one known sample of a shard (``images`` 1), or a whole shard never opened (``images``:
    its samples, from its ShardRecord)."""

    uri: str
    images: int = 1


class Tally(NamedTuple):
    """``images`` input images counted together by the step that saw them (ReadImages: a
    part of one bundle), so that counting costs one element per many images, not one per
    image."""

    images: int


class ShardRecord(NamedTuple):
    """One row of ``shards/``: a shard that was read to its end, under the listing
    (``size_bytes``, ``modified_us``) it was read under. ``samples`` counts every sample the
    reader found in it, ``refused`` those it refused for what the shard holds (no image
    bytes, an oversized member): they will be refused again while the shard is unchanged."""

    uri: str
    size_bytes: int | None
    modified_us: int | None
    samples: int
    refused: int


class FileMeta(NamedTuple):
    """What is known of an input image apart from its pixels: its ``uri``, ``image_id``
    (the hex SHA-256 of its bytes), the listing it was read under (``size_bytes``,
    ``modified_us``; None when not from a listing), ``source``, the listed file it came
    from, and ``key``, its key inside a shard (a sample of a shard has ``uri``
    ``<source>#<key>``; a loose file has no key), and ``kept``, the ``--keep_columns``
    values of a Parquet row, as text, in the flag's order."""

    uri: str
    image_id: str
    size_bytes: int | None = None
    modified_us: int | None = None
    source: str | None = None
    key: str | None = None
    kept: tuple[str | None, ...] | None = None


def _meta_uri(element) -> str:
    """``uri`` of an element that holds a FileMeta."""
    return element.meta.uri


def _meta_image_id(element) -> str:
    """``image_id`` of an element that holds a FileMeta."""
    return element.meta.image_id


class ImageFile(NamedTuple):
    """An input image's bytes: ``data``, and ``meta`` (FileMeta; ``meta.image_id`` is the
    hex SHA-256 of ``data``)."""

    meta: FileMeta
    data: bytes
    uri = property(_meta_uri)
    image_id = property(_meta_image_id)


class ImageInfo(NamedTuple):
    """What is known about a source image once decoded: one row of ``images/``. ``meta``
    as read (FileMeta); ``width`` and ``height`` are after EXIF orientation; ``format`` is
    PIL's (JPEG, PNG...)."""

    meta: FileMeta
    width: int
    height: int
    format: str
    uri = property(_meta_uri)
    image_id = property(_meta_image_id)


class DecodedImage(NamedTuple):
    """A decoded image: ``pixels`` is (height, width, 3) uint8 RGB at source resolution."""

    info: ImageInfo
    pixels: np.ndarray


class ResizedImage(NamedTuple):
    """An image at the model's input size: ``pixels`` is (H, W, 3) uint8 RGB."""

    info: ImageInfo
    pixels: np.ndarray


class ImageBatch(NamedTuple):
    """Images of one shape: ``pixels`` is (n, H, W, 3) uint8, row i belongs to ``infos[i]``."""

    infos: tuple[ImageInfo, ...]
    pixels: np.ndarray


class BatchEmbeddings(NamedTuple):
    """Per-layer outputs for one batch: ``layers[name]`` is (n, C) pooled or (n, h, w, c)
    for full feature maps; row i belongs to ``infos[i]``."""

    infos: tuple[ImageInfo, ...]
    layers: dict[str, np.ndarray]


class ImageError(NamedTuple):
    """An input that could not be embedded: one row of ``errors/``."""

    uri: str
    image_id: str | None
    stage: str
    error_type: str
    message: str


#: Tag of the error output of every transform that can reject an image.
ERRORS_TAG = "errors"
#: ExtractLayers' output of model records (JSON text): where each model ran, for the manifest.
MODELS_TAG = "models"
