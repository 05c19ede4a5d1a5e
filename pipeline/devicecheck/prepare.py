"""The network and the batch the device check measures, made once in a process of its own
with no GPU visible (CUDA_VISIBLE_DEVICES=""):

    python -m pipeline.devicecheck.prepare SPEC_JSON

SPEC: {"photos": [JPEG paths], "image_size": H, "weights": "calibrated" or a file,
"weights_out": h5 path, "pixels_out": .npy path}.
The photos are decoded and resized as a run does (decode_image + resize_pixels,
center_crop) into ``pixels_out``. ``calibrated``: seeded random ResNet50 weights with every
BatchNorm set from these photos (models/calibrate.py), so activations have the scale a
trained network's have and reduced precision is judged as it would be on ImageNet weights,
with nothing downloaded; any other value is a weights file, used as it is."""

from __future__ import annotations

import json
import pathlib
import shutil
import sys

import numpy as np

SEED = 0


def decoded(paths: list[str], image_size: int) -> np.ndarray:
    from schemas import ImageSize
    from transforms.decode import decode_image
    from transforms.resize import REDUCING_GAP, resize_pixels

    size = ImageSize(image_size, image_size)
    return np.stack([resize_pixels(decode_image(pathlib.Path(path).read_bytes(), target=size).pixels, size,
                                   "center_crop", REDUCING_GAP) for path in paths])


def main(argv: list[str] | None = None) -> int:
    spec = json.loads((argv if argv is not None else sys.argv[1:])[0])
    pixels = decoded(spec["photos"], spec["image_size"])
    np.save(spec["pixels_out"], pixels)
    if spec["weights"] != "calibrated":
        shutil.copyfile(spec["weights"], spec["weights_out"])
        return 0
    import tf_keras

    from models.calibrate import calibrate_batchnorm
    from models.weights import randomize

    model = tf_keras.applications.ResNet50(include_top=False, weights=None, input_shape=pixels.shape[1:])
    randomize(model, SEED)
    calibrate_batchnorm(model, pixels)
    model.save_weights(spec["weights_out"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
