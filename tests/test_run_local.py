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
    """No cached weights and no way to download them: a proxy that refuses at once stands
    for a machine offline (without it, this test downloaded 94 MB where it could)."""
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "empty_keras_home"), NO_PROXY="", no_proxy="",
               **{name: "http://127.0.0.1:9" for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")})
    out = tmp_path / "output"
    result = subprocess.run(
        ["./run_local.sh", "--output", str(out), "--image_size", "64"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / layout.MANIFEST_FILE).read_text())
    assert manifest["weights"]["kind"] == "random"
    assert "CONTINUING WITH SEEDED RANDOM WEIGHTS" in result.stderr
    assert manifest["counts"]["embedded"] == len(SAMPLES) and manifest["counts"]["errors"] == 0
    assert f"images embedded: {len(SAMPLES)} of {len(SAMPLES)} matched" in result.stdout
    assert pq.read_table(layout.layer_dir(str(out), "res5")).num_rows == len(SAMPLES)
