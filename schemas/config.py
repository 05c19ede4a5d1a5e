"""The extraction settings every stage agrees on, validated once."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Literal

from schemas.layers import (
    DEFAULT_LAYERS,
    ImageSize,
    LayerShape,
    canonical_layer,
    layer_shape,
    parse_image_size,
)

RESIZE_MODES = ("center_crop", "stretch", "pad")
POOLINGS = ("avg", "max", "none")
OUTPUT_DTYPES = ("float32", "float16")
MIXED_PRECISIONS = ("none", "float16", "bfloat16")
#: --jit_compile: XLA on, off, or auto (on where the model runs on a GPU).
JIT_COMPILE = ("auto", "on", "off")
DEFAULT_MIN_COSINE = 0.99

ResizeMode = Literal["center_crop", "stretch", "pad"]
Pooling = Literal["avg", "max", "none"]


@dataclasses.dataclass(frozen=True)
class ExtractionConfig:
    """What to extract and how. ``layers`` holds the names as the user gave them
    (aliases such as ``res5`` or Keras names); each also names its output folder."""

    layers: tuple[str, ...] = DEFAULT_LAYERS
    image_size: ImageSize = ImageSize(224, 224)
    resize_mode: str = "center_crop"
    pooling: str = "avg"
    batch_size: int = 32
    weights: str = "imagenet"
    seed: int = 0
    output_dtype: str = "float32"
    mixed_precision: str = "none"
    jpeg_draft: bool = True
    #: XLA for the forward pass: auto (on for a GPU, off for a CPU), on or off. Does not
    #: change values beyond float rounding, so it is not in the embedding key.
    jit_compile: str = "auto"
    #: Reduced precision's certificate: each model's first batch is also run in float32,
    #: and a layer whose minimum cosine similarity is under this fails the run.
    min_cosine: float = DEFAULT_MIN_COSINE
    #: SHA-256 of the weights file, filled in by the launcher once it has read the file
    #: (ImageNet's cached file included); None for random weights and for dry runs.
    weights_sha256: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "image_size", parse_image_size(self.image_size))
        if not self.layers:
            raise ValueError("at least one layer is needed")
        seen: dict[str, str] = {}
        for name in self.layers:
            keras_name = canonical_layer(name)
            if keras_name in seen:
                raise ValueError(
                    f"layer {name!r} is the same layer as {seen[keras_name]!r}; give it once"
                )
            seen[keras_name] = name
        for value, choices, flag in (
            (self.resize_mode, RESIZE_MODES, "resize_mode"),
            (self.pooling, POOLINGS, "pooling"),
            (self.output_dtype, OUTPUT_DTYPES, "output_dtype"),
            (self.mixed_precision, MIXED_PRECISIONS, "mixed_precision"),
            (self.jit_compile, JIT_COMPILE, "jit_compile"),
        ):
            if value not in choices:
                raise ValueError(f"--{flag} {value!r} is not one of {', '.join(choices)}")
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be at least 1, got {self.batch_size}")
        if not -1.0 <= self.min_cosine <= 1.0:
            raise ValueError(f"--min_cosine must be between -1 and 1, got {self.min_cosine}")

    @property
    def keras_layers(self) -> dict[str, str]:
        """Output name -> Keras layer name, in the order given."""
        return {name: canonical_layer(name) for name in self.layers}

    def feature_shape(self, layer: str) -> LayerShape:
        """Shape of ``layer``'s full feature map for one image at this input size."""
        return layer_shape(layer, self.image_size)

    def embedding_shape(self, layer: str) -> tuple[int, ...]:
        """Shape of one image's stored embedding for ``layer``: (C,) pooled, (h, w, c) not."""
        shape = self.feature_shape(layer)
        return tuple(shape) if self.pooling == "none" else (shape.channels,)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one model input image: (H, W, 3)."""
        return (self.image_size.height, self.image_size.width, 3)

    @property
    def weights_identity(self) -> str:
        """What the weights are, by content: the file's SHA-256, ``random:<seed>``, or the
        spec as given when the file was not read (a dry run)."""
        if self.weights_sha256:
            return self.weights_sha256
        if self.weights == "random":
            return f"random:{self.seed}"
        return self.weights

    def value_settings(self) -> dict:
        """Every setting that changes an embedding's values, and nothing else: the one list
        behind the embedding key, the manifest's ``config`` and the Parquet metadata. The
        batch size and XLA do not change values (beyond float rounding) and are not here. Keep the keys and their encoding
        as they are: the embedding key of an existing incremental root is a hash of them."""
        return {
            "layers": sorted(canonical_layer(name) for name in self.layers),
            "image_size": [self.image_size.height, self.image_size.width],
            "resize_mode": self.resize_mode,
            "pooling": self.pooling,
            "weights": self.weights_identity,
            "output_dtype": self.output_dtype,
            "mixed_precision": self.mixed_precision,
            "jpeg_draft": self.jpeg_draft,
        }

    @property
    def embedding_key(self) -> str:
        """16 hex digits naming ``value_settings()``: runs with the same key produce the same
        numbers for the same bytes."""
        encoded = json.dumps(self.value_settings(), sort_keys=True).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]

    def settings_record(self) -> dict:
        """The run's settings as recorded in the manifest and in every Parquet file: the
        value settings, their embedding key, and how they were asked for (layers as given,
        weights spec, seed, batch size)."""
        return {
            **self.value_settings(),
            "embedding_key": self.embedding_key,
            "layers_as_given": list(self.layers),
            "weights_spec": self.weights,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "jit_compile": self.jit_compile,
            "min_cosine": self.min_cosine,
        }
