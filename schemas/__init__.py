"""Single source of truth: layer catalog and shapes, element types, the row mapping and
Arrow schema of every output, read settings, the accounting table, layout, and the shape
contract. Everything else imports from here."""

from schemas.arrow import (
    EMBEDDING_COLUMN,
    ERRORS_SCHEMA,
    IMAGES_SCHEMA,
    METADATA_KEYS,
    SHARDS_SCHEMA,
    SKIPPED_SCHEMA,
    embedding_metadata,
    embedding_type,
    embeddings_schema,
    image_rows,
    images_schema,
    parquet_encoding,
)
from schemas import accounting
from schemas.accounting import images_counted
from schemas.reading import (
    FORMAT_AUTO,
    FORMAT_FILES,
    FORMAT_ARROW,
    FORMAT_PARQUET,
    FORMAT_TFRECORD,
    FORMAT_WEBDATASET,
    IMAGE_PATHS,
    IMAGE_PATHS_NEVER,
    IMAGE_PATHS_RELATIVE,
    INPUT_FORMATS,
    MODE_INCREMENTAL,
    MODE_SINGLE,
    MODES,
    SHARD_FORMATS,
    SKIP_BY,
    SKIP_BY_CONTENT,
    SKIP_BY_METADATA,
    Chunk,
    Comparison,
    ReadConfig,
)
from schemas.rows import ERROR_ROWS, IMAGE_ROWS, SHARD_ROWS, SKIPPED_ROWS, Rows
from schemas.config import (
    DEFAULT_MIN_COSINE,
    JIT_COMPILE,
    MIXED_PRECISIONS,
    OUTPUT_DTYPES,
    POOLINGS,
    RESIZE_MODES,
    ExtractionConfig,
)
from schemas.contracts import ShapeContractError, assert_shape, shape_matches
from schemas.elements import (
    ERRORS_TAG,
    MODELS_TAG,
    STAGE_BATCH,
    STAGE_DECODE,
    STAGE_EXTRACT,
    STAGE_READ,
    STAGE_RESIZE,
    STAGE_VALIDATE,
    STAGE_WRITE,
    STAGES,
    BatchEmbeddings,
    DecodedImage,
    FileMeta,
    ImageBatch,
    ImageError,
    ImageFile,
    ImageInfo,
    ListedFile,
    ListedShard,
    ResizedImage,
    SeenFile,
    ShardRecord,
    Tally,
    Unchanged,
)
from schemas import layout
from schemas.limits import (
    ALL_FORMATS,
    DEFAULT_DECODE_WARN_SECONDS,
    DEFAULT_IMAGE_FORMATS,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_ROW_GROUP_BYTES,
    DEFAULT_MIN_SIDE,
    EmptyFile,
    FileTooLarge,
    ImageRejected,
    ImageTooSmall,
    InputLimits,
    NEVER_OPENED,
    RowGroupTooLarge,
    TooManyPixels,
    UnsupportedFormat,
)
from schemas.layers import (
    ALIASES,
    DEFAULT_LAYERS,
    LAYER_NAMES,
    MIN_IMAGE_SIDE,
    ImageSize,
    LayerShape,
    UnknownLayerError,
    alias_of,
    canonical_layer,
    layer_shape,
    parse_image_size,
    pooled_dim,
    valid_layer_choices,
)

__all__ = [name for name in dir() if not name.startswith("_")]
