"""setup.py: the sdist and wheel build, and the wheel alone, installed into a fresh virtual
environment outside the repository, runs the pipeline (what Dataflow workers get from
--setup_file, and what the container installs)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile

import pytest

from images import rgb_pattern, write_image

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "transforms", "schemas", "models")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """sdist and wheel built from a copy of the tracked sources (the repo stays clean)."""
    source = tmp_path_factory.mktemp("source")
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    for name in tracked:
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--no-isolation",
                    "--outdir", str(dist), str(source)], check=True, capture_output=True, text=True)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_wheel_and_sdist_hold_the_packages_and_nothing_else(built):
    names = zipfile.ZipFile(built["wheel"]).namelist()
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names
    assert "pipeline/run.py" in names and "schemas/layers.py" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "samples/"))]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(built["wheel"]).read(entry_points).decode()
    assert "resnet50-embed = pipeline.run:main" in scripts
    assert "resnet50-inspect = pipeline.inspection.cli:console_main" in scripts
    assert "resnet50-device = pipeline.devicecheck.cli:main" in scripts
    assert "pipeline/job/finalize.py" in names and "pipeline/inspection/cli.py" in names
    # matplotlib only draws feature maps: an extra, never what workers install.
    metadata = zipfile.ZipFile(built["wheel"]).read(next(n for n in names if n.endswith("/METADATA"))).decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist: matplotlib")]
    assert requires and all("extra ==" in line for line in requires), requires
    members = tarfile.open(built["sdist"]).getnames()
    assert any(m.endswith("/setup.py") for m in members)
    assert any(m.endswith("/README.md") for m in members)  # setup.py reads it


def test_wheel_in_a_fresh_venv_outside_the_repo_runs_the_pipeline(built, tmp_path):
    """The fresh venv gets only the wheel; its dependencies (TensorFlow, Beam, ...) come
    from this environment's site-packages through a .pth line, so nothing is downloaded.
    Editable-install hooks there are not processed, so the repo is not importable."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    venv_site = pathlib.Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    (venv_site / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                    str(built["wheel"])], check=True)

    images = tmp_path / "images"
    images.mkdir()
    for seed in range(3):
        write_image(images / f"img{seed}.png", rgb_pattern(40, 50, seed), "PNG")
    write_image(images / "photo.jpg", rgb_pattern(60, 80, 9), "JPEG", quality=90)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    where = subprocess.run([str(python), "-c", "import pipeline, schemas; print(pipeline.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(venv_site)), where.stdout
    completed = subprocess.run(
        [str(venv / "bin" / "resnet50-embed"), "--input", str(images / "*"), "--output", str(out),
         "--weights", "random", "--image_size", "32", "--layers", "res3,res5",
         "--direct_num_workers", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["embedded"] == 4 and manifest["counts"]["errors"] == 0
    assert manifest["versions"]["resnet50-embeddings"] == "0.1.0"
    assert manifest["counts"]["rows_per_layer"] == {"res3": 4, "res5": 4}
    summary = subprocess.run([str(venv / "bin" / "resnet50-inspect"), "summary", str(out)],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert summary.returncode == 0 and "images embedded: 4 of 4 matched" in summary.stdout, summary.stderr
