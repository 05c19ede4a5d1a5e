"""pipeline/inspection/cli.py (with reports.py, neighbors.py, results.py): the three look-ups."""

import numpy as np
import pytest

from images import rgb_pattern, write_image
from pipeline.inspection.cli import main as inspect
from pipeline.run import EXIT_OK, run
from schemas import LAYER_NAMES


def test_shapes_table_matches_keras(capsys):
    import tf_keras

    assert inspect(["shapes", "--image_size", "299x200"]) == 0
    lines = capsys.readouterr().out.splitlines()[3:]
    model = tf_keras.applications.ResNet50(include_top=False, weights=None, input_shape=(299, 200, 3))
    assert [line.split()[0] for line in lines] == list(LAYER_NAMES)
    for line in lines:
        name = line.split()[0]
        h, w, c = model.get_layer(name).output.shape[1:]
        assert f"{h}x{w}x{c}" in line.split()
        full_f32 = h * w * c * 4 / 1024 / 1024
        assert f"{full_f32:.1f} MiB" in line or full_f32 < 1


def test_shapes_for_chosen_layers_and_bad_names(capsys):
    assert inspect(["shapes", "--layers", "res5,pool1_pool"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[3:]}
    assert list(rows) == ["conv5_block3_out", "pool1_pool"]
    assert rows["conv5_block3_out"] == ["res5", "7x7x2048", "2048", "8.0", "KiB", "4.0", "KiB",
                                        "392.0", "KiB", "196.0", "KiB"]
    assert inspect(["shapes", "--layers", "res9"]) == 2
    assert "valid choices" in capsys.readouterr().err


@pytest.fixture(scope="module")
def near_duplicates_output(tmp_path_factory, calibrated_weights_file):
    """Six distinct images and slightly noised copies of img0 and img1. (Mirrored copies
    are not nearest with untrained weights: flip invariance comes from training.)"""
    folder = tmp_path_factory.mktemp("near") / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        pixels = rgb_pattern(96, 96, 500 + i)
        write_image(folder / f"img{i}.png", pixels, "PNG")
        if i in (0, 1):
            noisy = np.clip(pixels.astype(int) + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8)
            write_image(folder / f"img{i}-noised.png", noisy, "PNG")
    (folder / "broken.jpg").write_bytes(b"not an image")
    out = folder.parent / "out"
    argv = ["--input", str(folder / "*"), "--output", str(out), "--weights", calibrated_weights_file,
            "--image_size", "96", "--layers", "res4,res5"]
    assert run(argv) == EXIT_OK
    return folder, out


def test_near_duplicates_are_each_others_nearest(near_duplicates_output, capsys):
    folder, out = near_duplicates_output
    for query, twin in (("img0.png", "img0-noised.png"), ("img0-noised.png", "img0.png"),
                        ("img1.png", "img1-noised.png"), ("img1-noised.png", "img1.png")):
        assert inspect(["neighbors", str(out), "--layer", "res5", "--image", str(folder / query), "-k", "3"]) == 0
        how, first = capsys.readouterr().out.splitlines()[:2]
        assert how.startswith("brute force over every row")  # no index yet: says so
        assert first.split()[3] == str(folder / twin), (query, first)


def test_neighbors_by_image_id_prefix(near_duplicates_output, capsys):
    from pipeline.inspection.results import read_layer

    folder, out = near_duplicates_output
    rows = read_layer(str(out), "res5")
    image_id = rows.image_ids[rows.uris.index(str(folder / "img0.png"))]
    assert inspect(["neighbors", str(out), "--layer", "res5", "--image", image_id[:10], "-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]  # after the line saying how
    assert len(lines) == 2 and str(folder / "img0-noised.png") in lines[0]
    assert inspect(["neighbors", str(out), "--layer", "res5", "--image", "nothing-like-this"]) == 2


def test_summary_reports_counts_errors_and_norms(near_duplicates_output, capsys):
    folder, out = near_duplicates_output
    assert inspect(["summary", str(out)]) == 0
    text = capsys.readouterr().out
    assert ("images embedded: 8 of 9 matched; errors: 1; images read: 9, skipped unchanged: 0, "
            "skipped same content: 0") in text
    assert f"errors at decode: UnidentifiedImageError x1  e.g. {folder / 'broken.jpg'}" in text
    assert "layer res5" in text and "dims     2048" in text and "norm min" in text


def test_incomplete_output_is_refused(tmp_path, capsys):
    (tmp_path / "embeddings").mkdir()
    assert inspect(["summary", str(tmp_path)]) == 2
    assert inspect(["neighbors", str(tmp_path), "--layer", "res5", "--image", "x"]) == 2
    assert "no complete manifest" in capsys.readouterr().err


def test_neighbors_names_a_missing_layer_and_takes_relative_paths(near_duplicates_output, capsys,
                                                                  monkeypatch):
    folder, out = near_duplicates_output
    assert inspect(["neighbors", str(out), "--layer", "res3", "--image", str(folder / "img0.png")]) == 2
    err = capsys.readouterr().err
    assert "layer res3 was not written" in err and "res4, res5" in err and "img0.png" not in err
    monkeypatch.chdir(folder)
    assert inspect(["neighbors", str(out), "--layer", "res5", "--image", "img0.png", "-k", "1"]) == 0
    assert str(folder / "img0-noised.png") in capsys.readouterr().out


@pytest.fixture(scope="module")
def incremental_root(tmp_path_factory):
    """A root with two runs under one key (the second adds two images) and one run under
    another key (other layers)."""
    folder = tmp_path_factory.mktemp("root") / "in"
    folder.mkdir()
    for i in range(4):
        write_image(folder / f"img{i}.png", rgb_pattern(40, 40, 700 + i), "PNG")
    root = folder.parent / "root"
    argv = ["--input", str(folder), "--output", str(root), "--mode", "incremental",
            "--weights", "random", "--image_size", "32"]
    assert run(argv + ["--layers", "res2,res5"]) == EXIT_OK
    for i in range(4, 6):
        write_image(folder / f"img{i}.png", rgb_pattern(40, 40, 700 + i), "PNG")
    assert run(argv + ["--layers", "res2,res5"]) == EXIT_OK
    assert run(argv + ["--layers", "res2"]) == EXIT_OK
    return folder, root


def test_summary_and_neighbors_read_an_incremental_root_by_key(incremental_root, capsys):
    from pipeline.root.incremental import index_entries

    folder, root = incremental_root
    entries = index_entries(str(root))
    wide = entries[0]["embedding_key"]
    assert inspect(["summary", str(root)]) == 2
    assert "--embedding_key" in capsys.readouterr().err
    assert inspect(["summary", str(root), "--embedding_key", wide]) == 0
    text = capsys.readouterr().out
    assert f"2 completed runs, embedding key {wide}; 6 images embedded in all" in text
    assert "embedded 4 of 4 matched" in text and "embedded 2 of 6 matched" in text
    assert "layer res5" in text
    assert inspect(["neighbors", str(root), "--layer", "res5", "--image", str(folder / "img5.png"),
                    "-k", "10"]) == 0  # only one key has res5: no key needed
    assert len(capsys.readouterr().out.splitlines()) == 1 + 5
    assert inspect(["neighbors", str(root), "--layer", "res2", "--image", str(folder / "img5.png"),
                    "--embedding_key", entries[-1]["embedding_key"], "-k", "10"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + 5


def test_read_layer_reads_what_write_embeddings_wrote_when_asked(tmp_path):
    import apache_beam as beam

    from pipeline.inspection.results import IncompleteOutput, read_layer
    from schemas import ExtractionConfig
    from transforms import EmbedImages, WriteEmbeddings

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        write_image(folder / f"img{i}.png", rgb_pattern(40, 40, 800 + i), "PNG")
    config = ExtractionConfig(layers=("res5",), image_size=32, weights="random")
    pictures = [(str(path), path.read_bytes()) for path in sorted(folder.iterdir())]
    with beam.Pipeline() as p:  # the README's "use it in your own Beam pipeline"
        embedded = p | beam.Create(pictures) | EmbedImages(config)
        _ = embedded | WriteEmbeddings(str(tmp_path / "out"), config)
    with pytest.raises(IncompleteOutput, match="require_manifest=False"):
        read_layer(str(tmp_path / "out"), "res5")
    rows = read_layer(str(tmp_path / "out"), "res5", require_manifest=False)
    assert sorted(rows.uris) == sorted(str(folder / f"img{i}.png") for i in range(3))
    assert rows.matrix.shape == (3, 2048)


def test_every_inspect_option_has_help():
    from pipeline.inspection.cli import parser

    top = parser()
    subcommands = next(a for a in top._actions if a.dest == "command").choices
    for name, sub in subcommands.items():
        for action in sub._actions:
            assert action.help, (name, action.dest)
