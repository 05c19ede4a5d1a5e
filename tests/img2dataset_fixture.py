"""Real img2dataset output for tests: the committed fixtures under
tests/fixtures/img2dataset/, and how to make them again.

img2dataset is not a dependency of this project (its own dependencies, wandb, albumentations
and opencv among them, would change the pinned stack), so it runs from a venv of its own:

    python3.11 -m venv /tmp/i2d && /tmp/i2d/bin/pip install img2dataset
    .venv/bin/python tests/img2dataset_fixture.py /tmp/i2d/bin/img2dataset

That rewrites source/ (4 JPEGs and a PNG, generated), webdataset/ and parquet/ (img2dataset
on file:// URLs of the sources, plus one URL that does not exist). tests/test_img2dataset.py
reads the committed output, and with IMG2DATASET=/tmp/i2d/bin/img2dataset also runs
img2dataset afresh."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "img2dataset"
SOURCE = FIXTURES / "source"
FORMATS = ("webdataset", "parquet")
MISSING = "missing.jpg"


def make_sources(folder: pathlib.Path) -> None:
    """4 JPEGs and 1 PNG of 96x72 generated pictures."""
    from images import rgb_pattern, write_image

    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(4):
        write_image(folder / f"photo{seed}.jpg", rgb_pattern(72, 96, 100 + seed), "JPEG", quality=90)
    write_image(folder / "drawing.png", rgb_pattern(72, 96, 104), "PNG")


def run_img2dataset(binary: str, source: pathlib.Path, out: pathlib.Path, output_format: str) -> pathlib.Path:
    """img2dataset over file:// URLs of every file in ``source`` plus a missing one, without
    resizing and without re-encoding JPEGs (its --skip_reencode); returns its output folder."""
    out.mkdir(parents=True, exist_ok=True)
    urls = out / "urls.txt"
    files = sorted(p for p in source.iterdir() if p.is_file())
    urls.write_text("".join(f"file://{p}\n" for p in files) + f"file://{source / MISSING}\n")
    folder = out / output_format
    subprocess.run([binary, "--url_list", str(urls), "--output_folder", str(folder),
                    "--output_format", output_format, "--resize_mode", "no", "--skip_reencode", "True",
                    "--processes_count", "1", "--thread_count", "2", "--enable_wandb", "False",
                    "--disallowed_header_directives", "[]"], check=True, capture_output=True, timeout=300)
    urls.unlink()
    return folder


def main(binary: str) -> None:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    shutil.rmtree(FIXTURES, ignore_errors=True)
    make_sources(SOURCE)
    for output_format in FORMATS:
        run_img2dataset(binary, SOURCE, FIXTURES, output_format)


if __name__ == "__main__":
    main(sys.argv[1])
