"""pipeline/chunks.py and the remote --commit_every path through run(): one job per chunk,
chunks commit one by one, read as one collection, and a command that failed in a chunk
resumes when run again. A remote runner plans a chunk per job (plan.py); here the local
runner is given such plans (``chunk_per_job``), which is how this path is tested without
Dataflow. A local run commits in parts inside one job instead (test_commit_parts.py)."""

from __future__ import annotations

import pytest

from pipeline.chunks import ChunkTotals, chunks_expected, next_chunk
from pipeline.inspection.results import read_layer
from pipeline.run import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, run
from beam_helpers import CrashingExtract
from schemas import Chunk, ExtractionConfig
from test_incremental import add_images, argv, assert_same_as_a_single_run, runs
from images import rgb_pattern, write_image

IMAGES = 10


def _folder(tmp_path):
    folder = tmp_path / "in"
    add_images(folder, 0, IMAGES)
    (folder / "img004x.png").write_bytes(b"not a png")  # fails in the second chunk
    return folder


def _counts(entry: dict) -> tuple:
    counts = entry["counts"]
    return counts["matched"], counts["read"], counts["embedded"], counts["errors"], counts["deferred"]


@pytest.fixture(autouse=True)
def chunk_per_job(monkeypatch):
    """Every plan a chunk plan, as on a remote runner (the loop then replaces its chunk)."""
    import pipeline.run as run_module

    real_plan_run = run_module.plan_run

    def chunked(argv_, launched_at):
        planned = real_plan_run(argv_, launched_at)
        size = planned.options.commit_every
        return planned._replace(chunk=Chunk(size)) if size else planned

    monkeypatch.setattr(run_module, "plan_run", chunked)


def test_chunks_commit_in_turn_and_read_as_one_run(tmp_path, capsys):
    folder, root = _folder(tmp_path), tmp_path / "root"

    def add_a_file_after_the_first_chunk(result):
        if not (folder / "late.png").exists():
            write_image(folder / "late.png", rgb_pattern(40, 48, 99), "PNG")

    assert run(argv(folder, root, "--commit_every", "4"), on_result=add_a_file_after_the_first_chunk) == EXIT_OK
    entries = runs(root)
    # matched, read, embedded, errors, deferred: each chunk matches the committed files
    # again (skipped unchanged, unopened) and reads only its own four. Each chunk's job
    # lists the input: the file added after the first chunk sorts last ("late" after
    # "img") and the third takes it; the file that failed in the second sorts before
    # the third's cursor and waits for the next command (deferred).
    assert [_counts(e) for e in entries] == [(4, 4, 4, 0, 7), (8, 4, 3, 1, 4), (11, 4, 4, 0, 1)]
    assert [e["counts"]["skipped_unchanged"] for e in entries] == [0, 4, 7]
    out = capsys.readouterr().out
    assert "3 chunks committed: 11 images embedded of 12 matched, 1 errors" in out
    assert "chunk 1 of 3 committed" in out and "chunk 3 of 3 committed" in out
    assert "0 embedded, 1 errors" not in out and "3 embedded, 1 errors; so far 7 embedded, 4 files to go" in out
    rows = read_layer(str(root), "res5")
    assert sorted(rows.uris) == sorted([str(folder / f"img{i:03d}.png") for i in range(IMAGES)]
                                       + [str(folder / "late.png")])
    assert_same_as_a_single_run(rows, folder, tmp_path / "single")


def test_a_failed_chunk_costs_that_chunk_and_the_same_command_resumes(tmp_path, capsys):
    folder, root = _folder(tmp_path), tmp_path / "root"
    config = ExtractionConfig(layers=("res2", "res5"), image_size=32, weights="random")
    command = argv(folder, root, "--commit_every", "4")
    assert run(command, extract=CrashingExtract("img006.png", config)) == EXIT_FAILED
    assert "1 chunk committed: 4 images embedded of 4 matched" in capsys.readouterr().err
    assert [_counts(e) for e in runs(root)] == [(4, 4, 4, 0, 7)]
    assert run(command) == EXIT_OK
    # The first chunk of the second command reads none of the four committed images.
    assert [_counts(e) for e in runs(root)][1:] == [(8, 4, 3, 1, 3), (10, 3, 3, 0, 1)]
    rows = read_layer(str(root), "res5")
    assert sorted(rows.uris) == sorted(str(folder / f"img{i:03d}.png") for i in range(IMAGES))


def test_a_ctrl_c_before_a_chunks_job_has_its_handler_reports_the_committed_chunks(tmp_path, capsys,
                                                                                   monkeypatch):
    """A Ctrl-C that lands after the second chunk's job is announced but before its own
    handler is in place (pipeline/interrupt.py) still says what the command committed."""
    import pipeline.run as run_module
    from pipeline.root.lock import read_lock

    folder, root = _folder(tmp_path), tmp_path / "root"
    prepared = []

    def prepare_then_ctrl_c(plan):
        prepared.append(plan.chunk)
        if len(prepared) == 2:
            raise KeyboardInterrupt
        return real_prepare(plan)

    real_prepare = run_module.prepare
    monkeypatch.setattr(run_module, "prepare", prepare_then_ctrl_c)
    command = argv(folder, root, "--commit_every", "4")
    assert run(command) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "interrupted (Ctrl-C) between chunks: 1 chunk committed: 4 images embedded" in err
    assert "the same command resumes" in err
    assert [_counts(e) for e in runs(root)] == [(4, 4, 4, 0, 7)] and read_lock(str(root)) is None
    monkeypatch.setattr(run_module, "prepare", real_prepare)
    assert run(command) == EXIT_OK  # resumes: every image once
    assert sorted(read_layer(str(root), "res5").uris) == sorted(
        str(folder / f"img{i:03d}.png") for i in range(IMAGES))


def test_commit_every_needs_an_incremental_root(tmp_path, capsys):
    folder = _folder(tmp_path)
    single = ["--input", str(folder / "*"), "--output", str(tmp_path / "o"), "--weights", "random",
              "--commit_every", "4"]
    assert run(single) == EXIT_USAGE
    assert "--mode incremental" in capsys.readouterr().err
    assert run(argv(folder, tmp_path / "root", "--commit_every", "0")) == EXIT_USAGE


@pytest.mark.parametrize("record,expected", [
    ({"last": "/in/b", "files_after_last": 2}, Chunk(4, "/in/b")),
    ({"last": "/in/b", "files_after_last": 0}, None),
    ({"last": None, "files_after_last": 0}, None),
])
def test_next_chunk_starts_after_the_last_file_taken(record, expected):
    assert next_chunk(Chunk(4), {"chunk": record, "counts": {}}) == expected


def test_totals_count_what_earlier_chunks_committed_once():
    totals = ChunkTotals()
    base = {"skipped_same_content": 0}
    totals.add({**base, "matched": 6, "embedded": 3, "errors": 1, "skipped_unchanged": 2})
    totals.add({**base, "matched": 10, "embedded": 4, "errors": 0, "skipped_unchanged": 6})
    assert totals.counts == {"matched": 10, "embedded": 7, "errors": 1, "skipped_unchanged": 2,
                             "skipped_same_content": 0}


def test_chunks_expected_from_the_files_after_the_last_one():
    manifest = {"chunk": {"commit_every": 4, "files_after_last": 9}}
    assert chunks_expected(2, manifest) == 5
    assert chunks_expected(3, {"chunk": {"commit_every": 4, "files_after_last": 0}}) == 3
