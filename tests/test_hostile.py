"""Hostile inputs through the whole CLI: each file kind ends where it must, nothing is lost."""

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest

from hostile import MAX_FILE_BYTES, Embedded, Rejected, write_corpus
from pipeline.run import EXIT_OK, run
from reference import assert_close
from schemas import layout

LAYERS = ("res3", "res5")


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    folder = root / "in"
    folder.mkdir()
    expect = write_corpus(folder)
    out = root / "out"
    argv = ["--input", str(folder / "*"), "--output", str(out), "--weights", "random",
            "--image_size", "64", "--layers", ",".join(LAYERS), "--batch_size", "5",
            "--max_file_bytes", str(MAX_FILE_BYTES)]
    assert run(argv) == EXIT_OK
    return folder, out, expect


def _by_name(table):
    return {row["uri"].rsplit("/", 1)[1]: row for row in table.to_pylist()}


def test_every_file_is_in_images_or_errors_exactly_once(corpus_run):
    folder, out, expect = corpus_run
    images = pq.read_table(layout.images_dir(str(out)))["uri"].to_pylist()
    errors = pq.read_table(layout.errors_dir(str(out)))["uri"].to_pylist()
    assert sorted(images + errors) == sorted(str(folder / name) for name in expect)
    manifest = json.loads((out / layout.MANIFEST_FILE).read_text())
    assert manifest["counts"]["matched"] == len(expect)
    assert manifest["counts"]["embedded"] == len(images)
    assert manifest["counts"]["errors"] == len(errors)


def test_rejected_kinds_name_stage_and_type(corpus_run):
    _, out, expect = corpus_run
    errors = _by_name(pq.read_table(layout.errors_dir(str(out))))
    rejected = {name: e for name, e in expect.items() if isinstance(e, Rejected)}
    assert set(errors) == set(rejected)
    for name, expected in rejected.items():
        row = errors[name]
        assert (row["stage"], row["error_type"]) == tuple(expected), name
        assert row["message"] and not re.search(r"0x[0-9a-fA-F]{6,}", row["message"]), name
    assert errors["zero-bytes.jpg"]["image_id"] is None and errors["oversized.jpg"]["image_id"] is None
    assert errors["truncated.jpg"]["image_id"] is not None
    assert "100000x100000" in errors["bomb.png"]["message"] or "10000000000" in errors["bomb.png"]["message"]
    assert "12000x10000" in errors["bomb-under-pil-limit.png"]["message"]


def test_embedded_kinds_keep_size_format_and_orientation(corpus_run):
    _, out, expect = corpus_run
    images = _by_name(pq.read_table(layout.images_dir(str(out))))
    embedded = {name: e for name, e in expect.items() if isinstance(e, Embedded)}
    assert set(images) == set(embedded)
    for name, expected in embedded.items():
        row = images[name]
        assert (row["width"], row["height"], row["format"]) == expected[:3], name


def test_colour_and_orientation_handling_match_their_twins(corpus_run):
    """Alpha onto white, greyscale, 16-bit, CMYK, palette transparency, first GIF frame and
    EXIF rotation: each embeds exactly like a lossless file of the pixels it should become."""
    _, out, expect = corpus_run
    twins = {name: e.twin for name, e in expect.items() if isinstance(e, Embedded) and e.twin}
    assert len(twins) >= 12
    for layer in LAYERS:
        table = pq.read_table(layout.layer_dir(str(out), layer))
        vectors = dict(zip([u.rsplit("/", 1)[1] for u in table["uri"].to_pylist()],
                           np.stack(table["embedding"].to_numpy(zero_copy_only=False))))
        for name, twin in twins.items():
            try:
                assert_close(vectors[name], vectors[twin])
            except AssertionError as exc:
                raise AssertionError(f"{name} vs {twin} in {layer}") from exc
        # And the twins are not all alike: the comparison can fail.
        assert not np.allclose(vectors["rgba.png"], vectors["plain.png"], rtol=1e-3)
        assert not np.allclose(vectors["exif6.jpg"], vectors["exif8.jpg"], rtol=1e-3)


def test_identical_bytes_share_an_id_but_keep_their_uris(corpus_run):
    _, out, _ = corpus_run
    images = _by_name(pq.read_table(layout.images_dir(str(out))))
    assert images["really-a-jpeg.png"]["image_id"] == images["été photo — 写真 2024.jpg"]["image_id"]
    for layer in LAYERS:
        uris = pq.read_table(layout.layer_dir(str(out), layer))["uri"].to_pylist()
        assert len(uris) == len(set(uris)) == len(images)


def test_min_side_one_embeds_the_tiny_and_the_sliver(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    expect = write_corpus(folder)
    keep = {"one-pixel.png", "sliver.png"}
    for name in expect:
        if name not in keep:
            (folder / name).unlink()
    out = tmp_path / "out"
    argv = ["--input", str(folder / "*"), "--output", str(out), "--weights", "random",
            "--image_size", "64", "--layers", "res5", "--min_side", "1"]
    assert run(argv) == EXIT_OK
    images = _by_name(pq.read_table(layout.images_dir(str(out))))
    assert {(n, r["width"], r["height"]) for n, r in images.items()} == {
        ("one-pixel.png", 1, 1), ("sliver.png", 4000, 3)}
    vectors = np.stack(pq.read_table(layout.layer_dir(str(out), "res5"))["embedding"].to_numpy(zero_copy_only=False))
    assert np.isfinite(vectors).all()
