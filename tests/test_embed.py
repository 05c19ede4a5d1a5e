"""transforms/embed.py: EmbedImages on (key, bytes) a user already has."""

from __future__ import annotations

import hashlib

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.testing.util import assert_that, equal_to

from beam_helpers import local_test_pipeline
from images import encode, rgb_pattern, write_image
from pipeline.inspection.results import read_layer
from pipeline.run import EXIT_OK, run
from reference import assert_same_embeddings
from schemas import ERRORS_SCHEMA, ExtractionConfig, layout
from transforms import EmbedImages, WriteEmbeddings


def test_bytes_in_hand_give_the_files_ids_and_embeddings(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    pictures = {f"img{i}.png": write_image(folder / f"img{i}.png", rgb_pattern(40, 48, i), "PNG")
                for i in range(5)}
    config = ExtractionConfig(layers=("res2", "res5"), image_size=32, weights="random")
    out = tmp_path / "beam"
    with local_test_pipeline() as p:
        embedded = p | beam.Create(sorted(pictures.items())) | EmbedImages(config)
        _ = embedded | WriteEmbeddings(str(out), config)
    assert run(["--input", str(folder / "*"), "--output", str(tmp_path / "cli"), "--weights", "random",
                "--image_size", "32", "--layers", "res2,res5"]) == EXIT_OK
    for layer in ("res2", "res5"):
        mine = read_layer_folder(out, layer)
        cli = read_layer(str(tmp_path / "cli"), layer)
        by_id = dict(zip(cli.image_ids, cli.matrix))
        assert sorted(mine) == sorted(by_id) == sorted(hashlib.sha256(d).hexdigest() for d in pictures.values())
        assert_same_embeddings(
            __import__("numpy").stack([mine[i] for i in sorted(mine)]),
            __import__("numpy").stack([by_id[i] for i in sorted(mine)]))
    images = pq.read_table(layout.images_dir(str(out))).to_pylist()
    assert sorted(row["uri"] for row in images) == sorted(pictures)  # the key is the uri
    assert all(row["size_bytes"] is None and row["modified"] is None for row in images)


def read_layer_folder(out, layer) -> dict:
    table = pq.read_table(layout.layer_dir(str(out), layer))
    matrix = table["embedding"].combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)
    return dict(zip(table["image_id"].to_pylist(), matrix))


def test_every_element_comes_out_once_as_a_row_or_an_error(tmp_path):
    good = encode(rgb_pattern(40, 48, 1), "JPEG")
    elements = [
        ("good.jpg", good),
        ("empty.jpg", b""),
        ("text.jpg", b"not an image"),
        ("huge.jpg", b"x" * 5000),
        ("tiny.png", encode(rgb_pattern(4, 4, 2), "PNG")),
        ("str-not-bytes.jpg", "a string"),
        42,
        ("a", "b", "c"),
    ]
    config = ExtractionConfig(layers=("res5",), image_size=32, weights="random")
    with local_test_pipeline() as p:
        embedded = p | beam.Create(elements, reshuffle=False) | EmbedImages(
            config, max_file_bytes=4000)
        uris = embedded["embeddings"] | beam.FlatMap(lambda batch: [i.uri for i in batch.infos])
        assert_that(uris, equal_to(["good.jpg"]), label="embedded")
        rows = embedded["errors"] | beam.Map(lambda e: (e.uri, e.stage, e.error_type))
        assert_that(rows, equal_to([
            ("empty.jpg", "validate", "EmptyFile"),
            ("text.jpg", "decode", "UnidentifiedImageError"),
            ("huge.jpg", "validate", "FileTooLarge"),
            ("tiny.png", "validate", "ImageTooSmall"),
            ("str-not-bytes.jpg", "read", "NotKeyedBytes"),
            ("<element of type int>", "read", "NotKeyedBytes"),
            ("<element of type tuple>", "read", "NotKeyedBytes"),
        ]), label="errors")
        _ = embedded | WriteEmbeddings(str(tmp_path / "out"), config)
    errors = pq.read_table(layout.errors_dir(str(tmp_path / "out")))
    assert errors.schema.equals(ERRORS_SCHEMA) and errors.num_rows == 7
