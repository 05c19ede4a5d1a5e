"""pipeline/inspection/featuremaps.py through `python -m pipeline.inspection featuremaps`: the PNG itself."""

import numpy as np
from PIL import Image

from images import rgb_pattern, write_image
from pipeline.inspection.featuremaps import GAP, TILE, TITLE, feature_map_figure
from pipeline.inspection.cli import main as inspect
from schemas import ExtractionConfig


def test_png_has_the_layout_and_no_constant_tile(tmp_path, calibrated_weights_file, capsys):
    source = tmp_path / "photo.jpg"
    write_image(source, rgb_pattern(90, 120, 77), "JPEG", quality=92)
    out = tmp_path / "maps.png"
    argv = ["featuremaps", str(source), "--layers", "res2,res4", "--out", str(out), "--channels", "8",
            "--weights", calibrated_weights_file, "--image_size", "64"]
    assert inspect(argv) == 0
    assert "16 channel tiles from 2 layers" in capsys.readouterr().out

    png = np.asarray(Image.open(out).convert("RGB")).astype(int)
    # 8 tiles of 96 px with gaps across; input, then per layer a title and one row of tiles.
    assert png.shape == (TITLE + 64 + GAP + 2 * (TITLE + TILE + GAP), 8 * (TILE + GAP) + GAP, 3)

    config = ExtractionConfig(layers=("res2", "res4"), image_size=64, weights=calibrated_weights_file)
    figure = feature_map_figure(str(source), config, channels=8)
    assert np.array_equal(np.asarray(figure.image.convert("RGB")), png)
    assert [(t.layer, t.channel) for t in figure.tiles] == [(l, c) for l in ("res2", "res4") for c in range(8)]
    for tile in figure.tiles:
        left, top, right, bottom = tile.box
        assert png[top:bottom, left:right].std() > 0, tile
    left, top, right, bottom = figure.input_box
    assert png[top:bottom, left:right].std() > 0 and (right - left, bottom - top) == (64, 64)


def test_unavailable_imagenet_weights_are_a_clear_error(tmp_path, offline_imagenet, capsys):
    source = tmp_path / "photo.png"
    write_image(source, rgb_pattern(40, 40, 1), "PNG")
    argv = ["featuremaps", str(source), "--layers", "res2", "--out", str(tmp_path / "m.png")]
    assert inspect(argv) == 2
    assert "--weights random" in capsys.readouterr().err


def test_the_pipelines_own_guards_apply(tmp_path, capsys):
    """featuremaps decodes through the job's chain with the job's defaults: an image under
    the default --min_side (16) is refused as the job refuses it, naming the guard."""
    source = tmp_path / "tiny.png"
    write_image(source, rgb_pattern(10, 40, 2), "PNG")
    argv = ["featuremaps", str(source), "--layers", "res2", "--out", str(tmp_path / "m.png"),
            "--weights", "random", "--image_size", "32"]
    assert inspect(argv) == 2
    assert "--min_side" in capsys.readouterr().err and not (tmp_path / "m.png").exists()


def test_titles_keep_their_spaces():
    from PIL import ImageDraw, Image as PILImage

    from pipeline.inspection.featuremaps import title_font

    draw = ImageDraw.Draw(PILImage.new("RGB", (10, 10)))
    font = title_font()
    joined = draw.textlength("inputas", font=font)
    spaced = draw.textlength("input as", font=font)
    assert spaced - joined >= 4  # a space at least 4 pixels wide
