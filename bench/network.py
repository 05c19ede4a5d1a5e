"""The network that precision is judged on: seeded random ResNet50 weights with every
BatchNorm calibrated on generated images (models/calibrate.py), saved as an HDF5 file."""

from __future__ import annotations

import pathlib
import sys

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from images import rgb_pattern  # noqa: E402

CALIBRATION_IMAGES = 192
CALIBRATION_SIDE = 160


def write_calibrated_weights(path: str, *, seed: int = 0, images: int = CALIBRATION_IMAGES,
                             side: int = CALIBRATION_SIDE) -> str:
    """Build, calibrate and save; returns ``path``. Deterministic for ``seed``."""
    import tf_keras

    from models.calibrate import calibrate_batchnorm
    from models.weights import randomize

    model = tf_keras.applications.ResNet50(include_top=False, weights=None, input_shape=(side, side, 3))
    randomize(model, seed)
    pixels = np.stack([rgb_pattern(side, side, 10_000 + seed * 1000 + i) for i in range(images)])
    calibrate_batchnorm(model, pixels)
    model.save_weights(path)
    return path
