"""Shape assertions between stages, and the error they raise."""

from __future__ import annotations

from typing import Sequence

import numpy as np


class ShapeContractError(ValueError):
    """An array whose shape is not what the next stage needs."""

    def __init__(self, *, stage: str, uri: str, image_id: str | None, expected, actual):
        self.stage = stage
        self.uri = uri
        self.image_id = image_id
        self.expected = tuple(expected)
        self.actual = tuple(actual)
        super().__init__(
            f"shape contract broken at stage {stage!r} for image {uri} (id {image_id}): "
            f"expected shape {_fmt(self.expected)}, got {_fmt(self.actual)}"
        )

    def __reduce__(self):  # Keep the keyword-only constructor picklable across workers.
        return (
            _rebuild,
            (self.stage, self.uri, self.image_id, self.expected, self.actual),
        )


def _rebuild(stage, uri, image_id, expected, actual):
    return ShapeContractError(
        stage=stage, uri=uri, image_id=image_id, expected=expected, actual=actual
    )


def _fmt(shape: Sequence) -> str:
    return "(" + ", ".join("*" if d is None else str(d) for d in shape) + ")"


def shape_matches(actual: Sequence[int], expected: Sequence[int | None]) -> bool:
    """True when ``actual`` has the rank of ``expected`` and every non-None dim equal."""
    return len(actual) == len(expected) and all(
        e is None or a == e for a, e in zip(actual, expected)
    )


def assert_shape(
    array: np.ndarray,
    expected: Sequence[int | None],
    *,
    stage: str,
    uri: str,
    image_id: str | None,
    dtype=None,
) -> np.ndarray:
    """Return ``array`` when its shape (and dtype, if given) is as expected; raise
    ShapeContractError otherwise. ``None`` in ``expected`` matches any size."""
    if not shape_matches(array.shape, expected):
        raise ShapeContractError(
            stage=stage, uri=uri, image_id=image_id, expected=expected, actual=array.shape
        )
    if dtype is not None and array.dtype != np.dtype(dtype):
        raise ShapeContractError(
            stage=stage,
            uri=uri,
            image_id=image_id,
            expected=tuple(expected) + (f"dtype {np.dtype(dtype)}",),
            actual=tuple(array.shape) + (f"dtype {array.dtype}",),
        )
    return array
