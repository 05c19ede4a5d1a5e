"""Real img2dataset output (tests/img2dataset_fixture.py): its WebDataset tars and Parquet
files give the loose files' image ids and embeddings, and its failed download an error row."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest

from img2dataset_fixture import FIXTURES, MISSING, SOURCE, run_img2dataset
from pipeline.inspection.results import read_layer
from pipeline.run import EXIT_OK, run
from reference import assert_same_embeddings
from schemas import layout


def common(folder_glob: str, out, *extra) -> list[str]:
    return ["--input", folder_glob, "--output", str(out), "--weights", "random", "--image_size", "32",
            "--layers", "res5", *extra]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_img2dataset_output(folder, tmp_path):
    """``folder`` holds img2dataset's webdataset/ and parquet/ outputs of SOURCE."""
    loose_ids = {sha(p.read_bytes()): p.name for p in SOURCE.iterdir()}
    assert run(common(str(SOURCE / "*"), tmp_path / "loose")) == EXIT_OK
    reference = read_layer(str(tmp_path / "loose"), "res5")
    by_id = dict(zip(reference.image_ids, reference.matrix))

    # WebDataset: one sample per downloaded picture; the failed download has no image member
    # (img2dataset writes only its metadata), so the tar holds the 5 others.
    out = tmp_path / "wds"
    assert run(common(str(folder / "webdataset" / "*.tar"), out)) == EXIT_OK
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["counts"]["matched"], manifest["counts"]["embedded"], manifest["counts"]["errors"]) == (5, 5, 0)
    urls = {}
    with tarfile.open(next((folder / "webdataset").glob("*.tar"))) as tar:
        for member in tar.getmembers():
            if member.name.endswith(".json"):
                urls[member.name.split(".")[0]] = json.loads(tar.extractfile(member).read())["url"].rsplit("/", 1)[1]
    images = pq.read_table(layout.images_dir(str(out))).to_pylist()
    by_name = {urls[row["key"]]: row for row in images}
    assert set(by_name) == {p.name for p in SOURCE.iterdir()}
    # JPEGs are stored as downloaded (--skip_reencode): the loose files' ids. img2dataset
    # re-encodes the PNG to JPEG, so that one is another picture's bytes.
    for name, row in by_name.items():
        assert (loose_ids.get(row["image_id"]) == name) == name.endswith(".jpg"), name
    rows = read_layer(str(out), "res5")
    jpegs = [i for i, image_id in enumerate(rows.image_ids) if image_id in by_id]
    assert len(jpegs) == 4
    assert_same_embeddings(rows.matrix[jpegs], np.stack([by_id[rows.image_ids[i]] for i in jpegs]))

    # Parquet: every URL is a row, the failed download with a null jpg; url and status
    # copied into images/ join each embedding back to its URL.
    out = tmp_path / "pq"
    assert run(common(str(folder / "parquet" / "*.parquet"), out, "--keep_columns", "url,status")) == EXIT_OK
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["counts"]["matched"], manifest["counts"]["embedded"], manifest["counts"]["errors"]) == (6, 5, 1)
    (error,) = pq.read_table(layout.errors_dir(str(out))).to_pylist()
    assert (error["stage"], error["error_type"]) == ("read", "NoImageInSample")
    images = pq.read_table(layout.images_dir(str(out))).to_pylist()
    assert sorted(row["url"].rsplit("/", 1)[1] for row in images) == sorted(p.name for p in SOURCE.iterdir())
    assert all(row["status"] == "success" for row in images)
    assert sorted(r["image_id"] for r in images) == sorted(by_name[n]["image_id"] for n in by_name)

    # img2dataset also writes a metadata Parquet (no image column) and a _stats.json next
    # to each tar: a glob of the whole folder gives one clear error row for each, and the
    # samples all the same.
    out = tmp_path / "all"
    assert run(common(str(folder / "webdataset" / "*"), out)) == EXIT_OK
    errors = sorted(pq.read_table(layout.errors_dir(str(out))).to_pylist(), key=lambda e: e["uri"])
    assert [(e["uri"].rsplit("/", 1)[1], e["stage"], e["error_type"]) for e in errors] == [
        ("00000.parquet", "read", "NoImageColumn"), ("00000_stats.json", "decode", "UnidentifiedImageError")]
    assert "img2dataset's metadata table" in errors[0]["message"] and "'*.tar'" in errors[0]["message"]
    assert json.loads((out / "manifest.json").read_text())["counts"]["embedded"] == 5


def test_committed_img2dataset_output(tmp_path):
    assert not (SOURCE / MISSING).exists()
    check_img2dataset_output(FIXTURES, tmp_path)


@pytest.mark.skipif(not os.environ.get("IMG2DATASET"), reason="set IMG2DATASET to an img2dataset executable")
def test_img2dataset_run_now(tmp_path):
    """img2dataset itself, offline, on file:// URLs (see tests/img2dataset_fixture.py)."""
    for output_format in ("webdataset", "parquet"):
        run_img2dataset(os.environ["IMG2DATASET"], SOURCE, tmp_path / "i2d", output_format)
    check_img2dataset_output(tmp_path / "i2d", tmp_path)
