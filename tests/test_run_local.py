"""run_local.sh: the README's first command, on the bundled samples, as a user runs it."""

import json
import os
import pathlib
import subprocess

import pyarrow.parquet as pq

from schemas import layout

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLES = sorted((REPO_ROOT / "samples" / "images").iterdir())


def test_samples_are_varied():
    from PIL import Image

    modes = {Image.open(p).mode for p in SAMPLES}
    formats = {Image.open(p).format for p in SAMPLES}
    assert 6 <= len(SAMPLES) <= 10 and "L" in modes and "PNG" in formats and "JPEG" in formats
    assert len({Image.open(p).size for p in SAMPLES}) >= 5


def test_run_local_without_imagenet_weights_says_so_and_uses_random(tmp_path):
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "empty_keras_home"))
    out = tmp_path / "output"
    result = subprocess.run(
        ["./run_local.sh", "--output", str(out), "--image_size", "64"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / layout.MANIFEST_FILE).read_text())
    if manifest["weights"]["kind"] == "random":  # no network to the Keras weights here
        assert "CONTINUING WITH SEEDED RANDOM WEIGHTS" in result.stderr
    else:
        assert manifest["weights"]["kind"] == "imagenet"
    assert manifest["counts"]["embedded"] == len(SAMPLES) and manifest["counts"]["errors"] == 0
    assert f"images embedded: {len(SAMPLES)} of {len(SAMPLES)} matched" in result.stdout
    assert pq.read_table(layout.layer_dir(str(out), "res5")).num_rows == len(SAMPLES)
