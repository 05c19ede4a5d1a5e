"""pipeline/root/incremental.py through the CLI: --mode incremental on an output root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from images import rgb_pattern, write_image
from pipeline.root import incremental
from pipeline.root.outputs import is_complete
from pipeline.inspection.results import completed_runs, layer_dataset, read_layer
from pipeline.run import EXIT_FAILED, EXIT_OK, EXIT_USAGE, run
from reference import assert_same_embeddings
from schemas import layout
from test_run import CrashingExtract

REPO_ROOT = str(__import__("pathlib").Path(__file__).resolve().parents[1])


def add_images(folder, first: int, count: int) -> None:
    folder.mkdir(exist_ok=True)
    for seed in range(first, first + count):
        write_image(folder / f"img{seed:03d}.png", rgb_pattern(40, 48, seed), "PNG")


def argv(folder, root, *extra):
    return ["--input", str(folder / "*"), "--output", str(root), "--mode", "incremental",
            "--weights", "random", "--image_size", "32", "--layers", "res2,res5", *extra]


def runs(root) -> list[dict]:
    return incremental.index_entries(str(root))


def assert_same_as_a_single_run(rows, folder, single) -> None:
    """``rows`` (res5 of a root, read_layer) equal, uri by uri, a single run over ``folder``
    written to ``single``."""
    assert run(["--input", str(folder / "*"), "--output", str(single), "--weights", "random",
                "--image_size", "32", "--layers", "res2,res5"]) == EXIT_OK
    reference = read_layer(str(single), "res5")
    order = {uri: i for i, uri in enumerate(reference.uris)}
    assert_same_embeddings(rows.matrix, reference.matrix[[order[u] for u in rows.uris]])


def embedded(entry: dict) -> int:
    return entry["counts"]["embedded"]


def test_second_run_embeds_nothing_then_exactly_the_new_images(tmp_path, capsys):
    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 0, 5)
    assert run(argv(folder, root)) == EXIT_OK
    assert run(argv(folder, root)) == EXIT_OK  # unchanged input
    add_images(folder, 5, 3)
    assert run(argv(folder, root)) == EXIT_OK  # 3 new
    entries = runs(root)
    assert [(e["counts"]["matched"], embedded(e), e["counts"]["skipped"]) for e in entries] == [
        (5, 5, 0), (5, 0, 5), (8, 3, 5)]
    assert [e["counts"]["read"] for e in entries] == [5, 0, 3]
    assert ("3 of 8 matched; 3 images read, 5 skipped unchanged (not opened), 0 skipped for the "
            "same content") in capsys.readouterr().out
    # Each run is its own complete partition with a manifest; the lock is gone.
    for entry in entries:
        assert entry["partition"] == layout.run_partition(str(root), entry["run"])
        assert is_complete(entry["partition"])
    assert len({e["run"] for e in entries}) == 3 and len({e["embedding_key"] for e in entries}) == 1
    assert not (root / layout.LOCK_FILE).exists()
    # Across runs: each image exactly once, equal to a single full run's numbers.
    rows = read_layer(str(root), "res5")
    assert sorted(rows.uris) == sorted(str(folder / f"img{i:03d}.png") for i in range(8))
    assert_same_as_a_single_run(rows, folder, tmp_path / "single")


CHANGES = [
    ["--layers", "res5"],                 # other layers
    ["--seed", "7"],                      # other weights
    ["--image_size", "64"],
]


def test_other_settings_do_not_count_old_embeddings_as_done(tmp_path):
    """Each change of settings embeds everything again under a key of its own, once; the
    first settings, run again after them, embed nothing."""
    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 0, 4)
    assert run(argv(folder, root)) == EXIT_OK
    for flag, value in CHANGES:
        changed = argv(folder, root)
        if flag in changed:
            changed[changed.index(flag) + 1] = value
        else:
            changed += [flag, value]
        assert run(changed) == EXIT_OK
    assert run(changed) == EXIT_OK  # the last change again: done under its key
    assert run(argv(folder, root)) == EXIT_OK  # the first settings again: done under theirs
    entries = runs(root)
    assert [embedded(e) for e in entries] == [4] + [4] * len(CHANGES) + [0, 0]
    keys = [e["embedding_key"] for e in entries]
    assert len(set(keys)) == 1 + len(CHANGES)
    assert keys[-2] == keys[-3] and keys[-1] == keys[0]


def test_other_weights_file_is_other_settings(tmp_path, weights_file):
    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 0, 3)
    copy = tmp_path / "same_weights_elsewhere.h5"
    copy.write_bytes(open(weights_file, "rb").read())
    assert run(argv(folder, root) + ["--weights", weights_file]) == EXIT_OK
    assert run(argv(folder, root) + ["--weights", str(copy)]) == EXIT_OK  # same bytes: done
    assert run(argv(folder, root)) == EXIT_OK  # random weights: not done
    assert [embedded(e) for e in runs(root)] == [3, 0, 3]


def test_a_failed_run_leaves_no_completed_partition(tmp_path):
    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 0, 4)
    assert run(argv(folder, root), extract=CrashingExtract()) == EXIT_FAILED
    partitions = [p for p in os.listdir(root) if p.startswith(layout.RUN_PARTITION_PREFIX)]
    assert len(partitions) == 1 and not is_complete(str(root / partitions[0]))
    assert runs(root) == [] and not (root / layout.LOCK_FILE).exists()
    with pytest.raises(Exception, match="no completed runs"):
        read_layer(str(root), "res5")
    assert run(argv(folder, root)) == EXIT_OK  # the failed run's images are not done
    assert [embedded(e) for e in runs(root)] == [4]
    assert len(read_layer(str(root), "res5").image_ids) == 4


def test_two_processes_started_together_cannot_both_write(tmp_path):
    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 0, 6)
    command = [sys.executable, "-m", "pipeline.run", *argv(folder, root)]
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    first = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    outcomes = sorted([first.wait(timeout=600), second.wait(timeout=600)])
    errors = first.stderr.read() + second.stderr.read()
    assert outcomes == [EXIT_OK, EXIT_USAGE], errors
    assert "is locked by run" in errors
    entries = runs(root)
    assert [embedded(e) for e in entries] == [6]
    assert [p for p in os.listdir(root) if p.startswith("run=")] == [f"run={entries[0]['run']}"]


def test_root_must_be_empty_or_incremental(tmp_path, capsys):
    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 0, 2)
    root.mkdir()
    (root / "manifest.json").write_text("{}")
    assert run(argv(folder, root)) == EXIT_USAGE
    assert "not an incremental root" in capsys.readouterr().err
    assert run(argv(folder, tmp_path / "r2", "--overwrite")) == EXIT_USAGE


def test_dataset_view_and_duckdb_query_over_completed_runs(tmp_path):
    import duckdb

    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 0, 3)
    assert run(argv(folder, root)) == EXIT_OK
    add_images(folder, 3, 2)
    assert run(argv(folder, root)) == EXIT_OK
    add_images(folder, 5, 1)
    assert run(argv(folder, root), extract=CrashingExtract()) == EXIT_FAILED  # not counted
    table = layer_dataset(str(root), "res5").to_table()
    assert table.num_rows == 5 and set(table.column_names) == {"image_id", "uri", "embedding", "run"}
    run_ids = [e["run"] for e in completed_runs(str(root))]
    assert sorted(table["run"].to_pylist()) == sorted([run_ids[0]] * 3 + [run_ids[1]] * 2)
    matrix = table["embedding"].combine_chunks().flatten().to_numpy().reshape(5, -1)
    by_id = dict(zip(read_layer(str(root), "res5").image_ids, read_layer(str(root), "res5").matrix))
    for image_id, row in zip(table["image_id"].to_pylist(), matrix):
        np.testing.assert_array_equal(row, by_id[image_id])
    # The README's DuckDB query: completed runs only, through the index.
    rows = duckdb.sql(f"""
        SELECT e.run, e.image_id, len(e.embedding) AS dims
        FROM read_parquet('{root}/run=*/embeddings/res5/*.parquet', hive_partitioning = true) e
        JOIN read_json_auto('{root}/_runs/*.json') r ON e.run = r.run
    """).fetchall()
    assert sorted((r[0], r[1]) for r in rows) == sorted(
        zip(table["run"].to_pylist(), table["image_id"].to_pylist()))
    assert {r[2] for r in rows} == {2048}
    # A single run's output reads the same way, without the run column.
    single = layer_dataset(completed_runs(str(root))[0]["partition"], "res5").to_table()
    assert single.num_rows == 3 and "run" not in single.column_names


def counts_of(entry: dict) -> dict:
    keys = ("matched", "read", "embedded", "errors", "skipped_unchanged", "skipped_same_content")
    return {k: entry["counts"][k] for k in keys}


def test_a_run_reads_only_what_its_listing_says_changed(tmp_path):
    """The issue's scenario: 300 files; unchanged; then 5 touched, 5 rewritten, 5 renamed
    and 5 new."""
    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 0, 300)
    assert run(argv(folder, root)) == EXIT_OK
    assert run(argv(folder, root)) == EXIT_OK
    later = time.time() + 100
    for i in range(0, 5):  # touched: a new time, the same bytes
        os.utime(folder / f"img{i:03d}.png", (later, later))
    for i in range(5, 10):  # rewritten: other content under the same name
        write_image(folder / f"img{i:03d}.png", rgb_pattern(40, 48, 1000 + i), "PNG")
    for i in range(10, 15):  # renamed: rename keeps size and time, the uri is new
        os.rename(folder / f"img{i:03d}.png", folder / f"renamed{i:03d}.png")
    add_images(folder, 300, 5)  # new
    assert run(argv(folder, root)) == EXIT_OK
    assert run(argv(folder, root)) == EXIT_OK  # the touched and renamed files were recorded
    first, unchanged, changed, after = (counts_of(e) for e in runs(root))
    assert first == dict(matched=300, read=300, embedded=300, errors=0, skipped_unchanged=0,
                         skipped_same_content=0)
    assert unchanged == dict(matched=300, read=0, embedded=0, errors=0, skipped_unchanged=300,
                             skipped_same_content=0)
    assert changed == dict(matched=305, read=20, embedded=10, errors=0, skipped_unchanged=285,
                           skipped_same_content=10)
    assert after == dict(matched=305, read=0, embedded=0, errors=0, skipped_unchanged=305,
                         skipped_same_content=0)
    entries = runs(root)
    skipped = pq.read_table(layout.skipped_dir(entries[2]["partition"])).to_pylist()
    assert sorted(row["uri"].rsplit("/", 1)[1] for row in skipped) == sorted(
        [f"img{i:03d}.png" for i in range(5)] + [f"renamed{i:03d}.png" for i in range(10, 15)])
    assert all(row["size_bytes"] == os.path.getsize(row["uri"]) for row in skipped)
    images = pq.read_table(layout.images_dir(entries[0]["partition"])).to_pylist()
    by_uri = {row["uri"]: row for row in images}
    sample = by_uri[str(folder / "img299.png")]
    assert sample["size_bytes"] == os.path.getsize(folder / "img299.png")
    assert abs(sample["modified"].timestamp() - os.path.getmtime(folder / "img299.png")) < 1e-5

    # All completed runs together hold every final image once, with a full run's values.
    rows = read_layer(str(root), "res5")
    assert len(rows.image_ids) == len(set(rows.image_ids)) == 310  # 5 old contents stay
    single = tmp_path / "single"
    assert run(["--input", str(folder / "*"), "--output", str(single), "--weights", "random",
                "--image_size", "32", "--layers", "res2,res5"]) == EXIT_OK
    reference = read_layer(str(single), "res5")
    assert len(reference.image_ids) == 305
    across_runs = dict(zip(rows.image_ids, rows.matrix))
    assert set(reference.image_ids) <= set(across_runs)
    assert_same_embeddings(np.stack([across_runs[i] for i in reference.image_ids]), reference.matrix)
    stale = set(rows.image_ids) - set(reference.image_ids)
    assert {by_uri[u]["image_id"] for u in by_uri if u.endswith(("5.png", "6.png", "7.png", "8.png", "9.png"))
            and "img00" in u} == stale


def test_skip_by_content_reads_every_file_and_records_nothing(tmp_path):
    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 0, 6)
    assert run(argv(folder, root)) == EXIT_OK
    os.rename(folder / "img000.png", folder / "moved.png")
    assert run(argv(folder, root, "--skip_by", "content")) == EXIT_OK
    assert run(argv(folder, root)) == EXIT_OK  # metadata again: the moved file is read once more
    assert [counts_of(e) for e in runs(root)][1:] == [
        dict(matched=6, read=6, embedded=0, errors=0, skipped_unchanged=0, skipped_same_content=6),
        dict(matched=6, read=1, embedded=0, errors=0, skipped_unchanged=5, skipped_same_content=1),
    ]
    assert pq.read_table(layout.skipped_dir(runs(root)[1]["partition"])).num_rows == 0


def test_files_that_failed_are_tried_again(tmp_path):
    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 0, 3)
    (folder / "broken.png").write_bytes(b"not a picture")
    assert run(argv(folder, root)) == EXIT_OK
    assert run(argv(folder, root)) == EXIT_OK  # unchanged, but it failed: read again
    write_image(folder / "broken.png", rgb_pattern(40, 48, 77), "PNG")  # repaired
    assert run(argv(folder, root)) == EXIT_OK
    assert [counts_of(e) for e in runs(root)] == [
        dict(matched=4, read=4, embedded=3, errors=1, skipped_unchanged=0, skipped_same_content=0),
        dict(matched=4, read=1, embedded=0, errors=1, skipped_unchanged=3, skipped_same_content=0),
        dict(matched=4, read=1, embedded=1, errors=0, skipped_unchanged=3, skipped_same_content=0),
    ]


def test_outputs_written_before_metadata_are_read_and_hashed_once_more(tmp_path):
    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 0, 4)
    assert run(argv(folder, root)) == EXIT_OK
    # Make run 1 look like an output of the earlier version: images/ without the two columns.
    partition = runs(root)[0]["partition"]
    images = layout.images_dir(partition)
    for name in os.listdir(images):
        table = pq.read_table(os.path.join(images, name))
        pq.write_table(table.drop_columns(["size_bytes", "modified"]), os.path.join(images, name))
    # ... whose manifest did not list its files either (what a later run checks them against).
    manifest = json.loads(open(layout.manifest_path(partition)).read())
    del manifest["files"]
    open(layout.manifest_path(partition), "w").write(json.dumps(manifest))
    assert run(argv(folder, root)) == EXIT_OK
    assert run(argv(folder, root)) == EXIT_OK
    assert [counts_of(e) for e in runs(root)][1:] == [
        dict(matched=4, read=4, embedded=0, errors=0, skipped_unchanged=0, skipped_same_content=4),
        dict(matched=4, read=0, embedded=0, errors=0, skipped_unchanged=4, skipped_same_content=0),
    ]
    assert len(read_layer(str(root), "res5").image_ids) == 4


def test_folders_of_runs_that_never_completed_are_removed_and_never_read(tmp_path, caplog):
    """A killed run leaves run=<id>/ (with beam-temp-* inside) and no index entry: the next
    run, holding the lock, removes it and says so in one warning line; the index decides
    what is read, so it never is. A run set aside as untrusted keeps its folder."""
    import logging

    from pipeline.root.incremental import unfinished_partitions

    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 0, 2)
    assert run(argv(folder, root)) == EXIT_OK
    (completed,) = [p.name for p in root.iterdir() if p.name.startswith("run=")]
    killed = root / "run=20261202T000000000000Z" / "beam-temp-images-1"
    killed.mkdir(parents=True)
    (killed / "part").write_bytes(b"half a file")
    set_aside = root / "run=20261201T000000000000Z"
    set_aside.mkdir()
    (root / layout.RUNS_INDEX_DIR / "20261201T000000000000Z.json.untrusted").write_text("{}")
    assert unfinished_partitions(str(root)) == ["run=20261202T000000000000Z"]
    add_images(folder, 2, 1)
    with caplog.at_level(logging.WARNING):
        assert run(argv(folder, root)) == EXIT_OK
    named = [r.getMessage() for r in caplog.records if "did not complete" in r.getMessage()]
    assert len(named) == 1 and "removed 1 folder" in named[0] and "run=20261202T000000000000Z" in named[0]
    assert completed not in named[0]
    assert not killed.parent.exists() and set_aside.exists()
    assert [embedded(e) for e in runs(root)] == [2, 1]
