"""Real Hugging Face ``datasets`` output for tests: the committed fixtures under
tests/fixtures/huggingface/, and how to make them again.

``datasets`` is not a dependency of this project, so it runs from a venv of its own:

    python3.11 -m venv /tmp/hf && /tmp/hf/bin/pip install datasets pillow
    /tmp/hf/bin/python tests/huggingface_fixture.py

That rewrites:
- ``cifar/train.parquet``: CIFAR-10's layout, an ``img`` Image column (bytes that
  ``datasets`` encoded from PIL images, as PNG) and a ``label`` ClassLabel, 4 rows; its
  schema metadata ``huggingface`` names ``img`` as the Image;
- ``paths/data.parquet``: ``Dataset.from_dict({"image": [paths]}).cast_column("image",
  Image())`` then ``to_parquet()``: each image is ``{bytes: null, path}`` with the path as
  given: two that resolve inside ``paths/``, one leaving it (``../outside.jpg``, which
  exists), one absolute (``/etc/hostname``), one missing (it exists while ``to_parquet()`` runs, which looks every file up); plus the image files;
- ``saved/``: the CIFAR-like table (3 rows, ``img`` and ``label``) written by
  ``save_to_disk(num_shards=2)``: ``data-0000{0,1}-of-00002.arrow`` (Arrow IPC streams),
  ``dataset_info.json``, ``state.json``;
- ``VERSION``: the ``datasets`` version that wrote them.
tests/test_huggingface.py reads the committed files."""

from __future__ import annotations

import os
import pathlib

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "huggingface"
LABELS = ["airplane", "automobile", "bird", "cat"]
#: The paths of paths/data.parquet, relative to paths/, and whether each must be read.
IMAGE_PATHS = {"photo0.jpg": True, "sub/photo1.jpg": True, "../outside.jpg": False,
               "/etc/hostname": False, "missing.jpg": False}


def picture(seed: int, height: int = 32, width: int = 32):
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def make_cifar(folder: pathlib.Path) -> None:
    import datasets

    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=LABELS)})
    table = datasets.Dataset.from_dict(
        {"img": [picture(seed) for seed in range(4)], "label": [0, 1, 2, 3]}, features=features)
    folder.mkdir(parents=True, exist_ok=True)
    table.to_parquet(str(folder / "train.parquet"))


def make_paths(folder: pathlib.Path) -> None:
    import datasets

    (folder / "sub").mkdir(parents=True, exist_ok=True)
    picture(10, 40, 48).save(folder / "photo0.jpg", quality=90)
    picture(11, 40, 48).save(folder / "sub" / "photo1.jpg", quality=90)
    picture(12, 40, 48).save(folder.parent / "outside.jpg", quality=90)
    table = datasets.Dataset.from_dict({"image": list(IMAGE_PATHS)}).cast_column("image", datasets.Image())
    cwd = os.getcwd()
    os.chdir(folder)  # datasets stores each path as given
    picture(13).save("missing.jpg")  # to_parquet() looks every file up; deleted after
    try:
        table.to_parquet("data.parquet")
    finally:
        os.remove("missing.jpg")
        os.chdir(cwd)


def make_saved(folder: pathlib.Path) -> None:
    import shutil

    import datasets

    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=LABELS)})
    table = datasets.Dataset.from_dict(
        {"img": [picture(seed) for seed in range(20, 23)], "label": [0, 1, 2]}, features=features)
    shutil.rmtree(folder, ignore_errors=True)
    table.save_to_disk(str(folder), num_shards=2)


def main() -> None:
    import datasets

    make_cifar(FIXTURES / "cifar")
    make_saved(FIXTURES / "saved")
    make_paths(FIXTURES / "paths")
    (FIXTURES / "VERSION").write_text(f"datasets {datasets.__version__}\n")


if __name__ == "__main__":
    main()
