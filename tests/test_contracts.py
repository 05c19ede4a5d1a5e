"""schemas/contracts.py: assert_shape and ShapeContractError."""

import pickle

import numpy as np
import pytest

from schemas import ShapeContractError, assert_shape


def test_message_names_stage_image_expected_and_actual():
    with pytest.raises(ShapeContractError) as err:
        assert_shape(np.zeros((2, 5, 3)), (None, 4, 3), stage="resize", uri="gs://b/cat.jpg", image_id="abc")
    text = str(err.value)
    for part in ("'resize'", "gs://b/cat.jpg", "abc", "(*, 4, 3)", "(2, 5, 3)"):
        assert part in text
    assert err.value.expected == (None, 4, 3) and err.value.actual == (2, 5, 3)


def test_rank_and_dtype_are_checked():
    with pytest.raises(ShapeContractError):
        assert_shape(np.zeros((4, 3)), (None, None, 3), stage="decode", uri="u", image_id=None)
    with pytest.raises(ShapeContractError, match="dtype uint8"):
        assert_shape(np.zeros((4, 4, 3), np.float32), (4, 4, 3), stage="decode", uri="u", image_id=None, dtype=np.uint8)
    array = np.zeros((4, 4, 3), np.uint8)
    assert assert_shape(array, (None, 4, 3), stage="decode", uri="u", image_id=None, dtype=np.uint8) is array


def test_error_survives_pickling_between_workers():
    error = ShapeContractError(stage="extract", uri="u", image_id="i", expected=(1, 2), actual=(3, 4))
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.stage == "extract"
