"""pipeline/inspection/duplicates.py through ``resnet50-inspect duplicates``: a JPEG q60
re-encoding and a half-size copy of a sample photo are grouped with it, a byte-identical
copy is an exact duplicate, and two different photos are never grouped."""

from __future__ import annotations

import pathlib
import shutil

import pyarrow.parquet as pq
from PIL import Image

from pipeline.inspection.cli import main as inspect_main
from pipeline.run import EXIT_OK, run

SAMPLES = pathlib.Path(__file__).resolve().parents[1] / "samples" / "images"
#: Seeded weights with calibrated BatchNorm (not ImageNet's): measured on these photos at
#: res3, copies >= 0.9997 and different photos <= 0.983, so the threshold sits between.
THRESHOLD = "0.995"


def _photos_with_copies(folder: pathlib.Path) -> None:
    folder.mkdir()
    for photo in SAMPLES.iterdir():
        shutil.copy(photo, folder / photo.name)
    shutil.copy(SAMPLES / "astronaut.jpg", folder / "astronaut_same_bytes.jpg")
    with Image.open(SAMPLES / "astronaut.jpg") as image:
        rgb = image.convert("RGB")
    rgb.save(folder / "astronaut_q60.jpg", quality=60)
    rgb.resize((rgb.width // 2, rgb.height // 2), Image.LANCZOS).save(folder / "astronaut_half.png")
    with Image.open(SAMPLES / "coffee.jpg") as image:
        rgb = image.convert("RGB")
    rgb.resize((rgb.width * 2 // 3, rgb.height * 2 // 3)).save(folder / "coffee_small.jpg", quality=75)


def _photo(uri: str) -> str:
    """The sample a file name was made from: astronaut_q60.jpg -> astronaut."""
    return uri.split(".")[0].split("_")[0]


def test_copies_are_grouped_and_different_photos_never(tmp_path, calibrated_weights_file, capsys):
    folder, out = tmp_path / "in", tmp_path / "out"
    _photos_with_copies(folder)
    assert run(["--input", str(folder / "*"), "--output", str(out), "--layers", "res3",
                "--weights", calibrated_weights_file]) == EXIT_OK
    groups_file = tmp_path / "groups.parquet"
    assert inspect_main(["duplicates", str(out), "--layer", "res3", "--threshold", THRESHOLD,
                         "--out", str(groups_file)]) == 0
    printed = capsys.readouterr().out
    assert "exact: 1 groups, 2 images" in printed and "built Flat over 12 vectors" in printed
    rows = pq.read_table(groups_file).to_pylist()
    groups: dict[tuple, set] = {}
    for row in rows:
        groups.setdefault((row["kind"], row["group"]), set()).add(row["uri"].rsplit("/", 1)[1])
        assert row["similarity"] >= float(THRESHOLD)
    exact = [names for (kind, _), names in groups.items() if kind == "exact"]
    assert exact == [{"astronaut.jpg", "astronaut_same_bytes.jpg"}]
    near = sorted((names for (kind, _), names in groups.items() if kind == "near"), key=len, reverse=True)
    assert {"astronaut.jpg", "astronaut_q60.jpg", "astronaut_half.png"} <= near[0]
    assert {"coffee.jpg", "coffee_small.jpg"} in near
    for names in near:  # never two different photos in one group
        assert len({_photo(name) for name in names}) == 1, names
    assert len(near) == 2
