"""pipeline/progress.py: per-process count files, the launcher's progress and final lines."""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys

import apache_beam as beam
import pytest

from images import rgb_pattern, write_image
from pipeline.job.counting import CountProgress
from pipeline.progress import progress_line, read_counts
from pipeline.run import EXIT_OK, run
from schemas import ImageError
from schemas.accounting import EMBEDDED, ERRORS, READ, SKIPPED_SAME_CONTENT, SKIPPED_UNCHANGED

REPO_ROOT = str(__import__("pathlib").Path(__file__).resolve().parents[1])
LINE = re.compile(r"progress: (\d+)/(\d+) images done \((\d+)%\), ([\d.]+) images/s.*, (\d+) errors")
FINAL = re.compile(r"finished: (\d+)/(\d+) images done \(100%\), ([\d.]+) images/s, (\d+) errors, "
                   r"\d+ read in ([\d.]+) s")


def test_progress_line_format():
    counts = collections.Counter({EMBEDDED: 117, ERRORS: 3, READ: 120})
    assert progress_line(counts, 800, 10.0, 14.04) == (
        "progress: 120/800 images done (15%), 11.7 images/s (last interval: 14.0), 3 errors, 120 read")
    counts[SKIPPED_UNCHANGED], counts[SKIPPED_SAME_CONTENT] = 5, 2
    assert progress_line(counts, None, 0, None) == (
        "progress: 127 images done, - images/s, 3 errors, 120 read, 5 skipped unchanged, "
        "2 skipped same content")


def test_count_files_are_summed_across_processes(tmp_path):
    (tmp_path / "101.json").write_text(json.dumps({EMBEDDED: 10, ERRORS: 1}))
    (tmp_path / "202.json").write_text(json.dumps({EMBEDDED: 5}))
    (tmp_path / "303.json.tmp").write_text("{half-written")
    assert read_counts(str(tmp_path)) == {EMBEDDED: 15, ERRORS: 1}
    assert read_counts(str(tmp_path / "missing")) == {}


Batch = collections.namedtuple("Batch", "infos")


def test_count_progress_dofn_writes_its_process_file(tmp_path):
    folder = str(tmp_path)
    with beam.Pipeline() as p:
        _ = p | "B" >> beam.Create([Batch([None] * 4), Batch([None] * 3)]) | "E" >> beam.ParDo(CountProgress(folder, EMBEDDED))
        _ = (p | "X" >> beam.Create([ImageError("u", None, "decode", "OSError", "m")])
             | "R" >> beam.ParDo(CountProgress(folder, ERRORS)))
    assert os.listdir(folder) == [f"{os.getpid()}.json"]
    assert read_counts(folder) == {EMBEDDED: 7, ERRORS: 1}


def make_inputs(folder, good: int, broken: int) -> None:
    folder.mkdir()
    for i in range(good):
        write_image(folder / f"img{i:03d}.png", rgb_pattern(40, 48, i), "PNG")
    for i in range(broken):
        (folder / f"broken{i}.jpg").write_bytes(b"not an image")


def test_cli_logs_progress_and_a_final_line(tmp_path, caplog):
    caplog.set_level("INFO", logger="pipeline.progress")
    make_inputs(tmp_path / "in", 40, 2)
    argv = ["--input", str(tmp_path / "in" / "*"), "--output", str(tmp_path / "out"),
            "--weights", "random", "--image_size", "32", "--layers", "res5", "--batch_size", "4",
            "--progress_seconds", "0.2"]
    assert run(argv) == EXIT_OK
    lines = [r.getMessage() for r in caplog.records if r.name == "pipeline.progress"]
    ticks = [LINE.search(line) for line in lines if line.startswith("progress:")]
    assert ticks and all(ticks)
    assert all(int(t.group(2)) == 42 for t in ticks)
    done = [int(t.group(1)) for t in ticks]
    assert done == sorted(done)  # never goes backwards
    final = FINAL.search(lines[-1])
    assert final and final.groups()[:2] == ("42", "42") and final.group(4) == "2"


@pytest.mark.local_workers
def test_progress_adds_up_worker_processes(tmp_path):
    make_inputs(tmp_path / "in", 60, 1)
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline.run", "--input", str(tmp_path / "in" / "*"),
         "--output", str(tmp_path / "out"), "--weights", "random", "--image_size", "32",
         "--layers", "res5", "--batch_size", "4", "--direct_num_workers", "2",
         "--direct_running_mode", "multi_processing", "--progress_seconds", "0.5"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert completed.returncode == EXIT_OK, completed.stderr[-3000:]
    ticks = [m for m in LINE.finditer(completed.stderr)]
    assert any(0 < int(t.group(1)) for t in ticks), completed.stderr[-3000:]
    final = FINAL.search(completed.stderr)
    assert final and final.groups()[:2] == ("61", "61") and final.group(4) == "1"
