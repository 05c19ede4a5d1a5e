"""pipeline/job/commit_parts.py through run(): a local --commit_every run commits its images
and errors in parts inside one job, each a completed run of the root; the root reads as
one collection equal to a single run's; a job that fails keeps its committed parts and the
same command embeds only the rest; a part whose images all failed commits its errors."""

from __future__ import annotations

import collections

import pyarrow.parquet as pq
import pytest

from images import encode, rgb_pattern
from pipeline.inspection.results import read_layer
from pipeline.job.commit_parts import per_writer
from pipeline.job.counting import CHUNKS_COMMITTED, IMAGES_COMMITTED
from pipeline.job.finalize import own_counts, remove_stray_parts, with_parts
from pipeline.progress import part_line
from pipeline.root import incremental, outputs
from pipeline.root.manifest import read_manifest
from pipeline.run import EXIT_FAILED, EXIT_OK, EXIT_TOO_MANY_ERRORS, run
from beam_helpers import CrashingExtract
from schemas import ExtractionConfig, layout
from schemas.layout import is_part_of, part_run_id
from test_incremental import add_images, argv, assert_same_as_a_single_run, runs

IMAGES = 10
#: One writer, in this process: parts fill in a known way.
ONE_WRITER = ("--direct_num_workers", "1", "--batch_size", "2")


def _folder(tmp_path):
    folder = tmp_path / "in"
    add_images(folder, 0, IMAGES)
    (folder / "img004x.png").write_bytes(b"not a png")
    return folder


def _parts(root) -> list[dict]:
    return [e for e in runs(root) if e.get("part_of")]


def _mains(root) -> list[dict]:
    return [e for e in runs(root) if not e.get("part_of")]


def _all_uris(folder) -> list[str]:
    return sorted(str(folder / f"img{i:03d}.png") for i in range(IMAGES))


def test_parts_commit_as_runs_and_the_root_reads_as_one_single_run(tmp_path, capsys):
    folder, root = _folder(tmp_path), tmp_path / "root"
    assert run(argv(folder, root, "--commit_every", "4", *ONE_WRITER)) == EXIT_OK
    parts, (main,) = _parts(root), _mains(root)
    # 11 outcomes (10 images, 1 error), parts of at most 4: at least 3 parts, each a run
    # with a complete manifest whose files are all there.
    assert len(parts) >= 3 and all(0 < p["counts"]["matched"] <= 4 for p in parts)
    assert sum(p["counts"]["embedded"] for p in parts) == IMAGES
    assert sum(p["counts"]["errors"] for p in parts) == 1
    assert all(outputs.damage(p["partition"]) == [] for p in parts)
    assert all(p["part_of"] == main["run"] and is_part_of(p["run"], main["run"]) for p in parts)
    manifest = read_manifest(main["partition"])
    assert manifest["parts"] == sorted(p["run"] for p in parts)
    assert manifest["command_counts"]["embedded"] == IMAGES and manifest["command_counts"]["errors"] == 1
    assert manifest["command_counts"]["errors_by_stage"] == {"decode": {"UnidentifiedImageError": 1}}
    # The run's own rows: no image twice in any total over the index.
    assert main["counts"]["embedded"] == 0 and main["counts"]["matched"] == 0
    assert sum(e["counts"]["embedded"] for e in runs(root)) == IMAGES
    out = capsys.readouterr().out
    assert f"images embedded: {IMAGES} of 11 matched" in out and f"{len(parts)} parts committed" in out
    errors = [pq.read_table(str(tmp_path / "root" / f"run={p['run']}" / layout.ERRORS_DIR))
              for p in parts if p["counts"]["errors"]]
    assert [t["uri"].to_pylist() for t in errors] == [[str(folder / "img004x.png")]]
    rows = read_layer(str(root), "res5")
    assert sorted(rows.uris) == _all_uris(folder)
    assert_same_as_a_single_run(rows, folder, tmp_path / "single")
    # The next command opens none of the committed images; it tries the failed file again.
    assert run(argv(folder, root, "--commit_every", "4", *ONE_WRITER)) == EXIT_OK
    last = _mains(root)[-1]["counts"]
    assert (last["read"], last["skipped_unchanged"]) == (1, IMAGES)


def test_a_failed_job_keeps_its_committed_parts_and_the_same_command_embeds_the_rest(tmp_path, capsys):
    folder, root = _folder(tmp_path), tmp_path / "root"
    config = ExtractionConfig(layers=("res2", "res5"), image_size=32, weights="random")
    command = argv(folder, root, "--commit_every", "2", *ONE_WRITER)
    # Inputs are read in a shuffled order: crash on the last batch of them to come, so
    # that parts are committed before it whatever the order.
    crashed = None
    for name in [f"img{i:03d}.png" for i in range(IMAGES)]:
        code = run(command, extract=CrashingExtract(name, config))
        assert code == EXIT_FAILED
        if _parts(root):
            crashed = name
            break
    assert crashed is not None, "no part was committed before any crash"
    err = capsys.readouterr().err
    committed = sum(p["counts"]["matched"] for p in _parts(root))
    assert f"committed ({committed} images and errors): the same command resumes after them" in err
    assert not _mains(root) and committed < IMAGES + 1
    held = collections.Counter(uri for uri in read_layer(str(root), "res5").uris)
    assert max(held.values()) == 1 and len(held) == sum(p["counts"]["embedded"] for p in _parts(root))
    assert run(command) == EXIT_OK
    main = _mains(root)[-1]
    manifest = read_manifest(main["partition"])
    # Only what no committed part held was opened and embedded.
    assert manifest["command_counts"]["embedded"] == IMAGES - len(held)
    assert main["counts"]["skipped_unchanged"] == len(held)
    assert not incremental.unfinished_partitions(str(root))
    rows = read_layer(str(root), "res5")
    assert sorted(rows.uris) == _all_uris(folder) and len(rows.uris) == len(set(rows.uris))


def test_a_part_whose_images_all_fail_commits_its_errors(tmp_path):
    folder, root = tmp_path / "in", tmp_path / "root"
    folder.mkdir()
    for i in range(3):
        (folder / f"bad{i}.png").write_bytes(b"not a png")
    assert run(argv(folder, root, "--commit_every", "2", *ONE_WRITER)) == EXIT_TOO_MANY_ERRORS
    parts = _parts(root)
    assert [p["counts"]["embedded"] for p in parts] == [0] * len(parts)
    assert sum(p["counts"]["errors"] for p in parts) == 3 and len(_mains(root)) == 1
    uris = sorted(u for p in parts for u in pq.read_table(
        f"{p['partition']}/{layout.ERRORS_DIR}")["uri"].to_pylist())
    assert uris == sorted(str(folder / f"bad{i}.png") for i in range(3))


def _shard(path, first: int, members: int) -> list[str]:
    import webdataset

    with webdataset.TarWriter(str(path)) as sink:
        for i in range(first, first + members):
            sink.write({"__key__": f"{i:06d}", "png": encode(rgb_pattern(40, 48, i), "PNG")})
    return [f"{path}#{i:06d}" for i in range(first, first + members)]


def test_a_shard_split_across_parts_is_read_again_for_its_uncommitted_members_only(tmp_path):
    """Parts commit as they fill, so one shard's members can be in several parts; the
    shard itself is recorded (shards/) only when the run completes. A run that failed
    after committing some members: the next reads the shard again, skips those members
    and embeds the others; then every member is held once and the shard is skipped
    unopened from then on."""
    folder, root = tmp_path / "in", tmp_path / "root"
    folder.mkdir()
    members = _shard(folder / "a.tar", 0, 5) + _shard(folder / "b.tar", 10, 5)
    command = ["--input", str(folder / "*.tar"), "--output", str(root), "--mode", "incremental",
               "--weights", "random", "--image_size", "32", "--layers", "res2,res5",
               "--commit_every", "2", *ONE_WRITER]
    config = ExtractionConfig(layers=("res2", "res5"), image_size=32, weights="random")
    # A shard's members are read in order: crash on b's last member, after parts holding
    # b's first members (and a's, when a came first) are committed.
    assert run(command, extract=CrashingExtract("#000014", config)) == EXIT_FAILED
    held = read_layer(str(root), "res2").uris
    assert 0 < len(held) < len(members) and len(held) == len(set(held))
    assert run(command) == EXIT_OK
    main = _mains(root)[-1]
    manifest = read_manifest(main["partition"])
    assert manifest["command_counts"]["embedded"] == len(members) - len(held)
    rows = read_layer(str(root), "res2")
    assert sorted(rows.uris) == sorted(members) and len(rows.uris) == len(set(rows.uris))
    shards = pq.read_table(f"{main['partition']}/{layout.SHARDS_DIR}")
    assert sorted(u.rsplit("/", 1)[1] for u in shards["uri"].to_pylist()) == ["a.tar", "b.tar"]
    assert run(command) == EXIT_OK  # both shards recorded: neither is opened again
    assert _mains(root)[-1]["counts"]["read"] == 0


def test_writers_share_the_commit_size_so_at_most_n_outcomes_are_uncommitted():
    assert per_writer(2000, 2) == 1000 and per_writer(3, 2) == 1 and per_writer(1, 4) == 1
    assert part_run_id("20261205T000000000000Z", "abc", 7) == "20261205T000000000000Z-part-abc-00007"
    assert is_part_of("R-part-abc-00007", "R") and not is_part_of("R2-part-abc-00007", "R")


def test_the_part_line_estimates_the_parts_to_come():
    counts = collections.Counter({CHUNKS_COMMITTED: 3, IMAGES_COMMITTED: 30, "skipped_unchanged": 40})
    assert part_line(counts, 100, 10) == "part 3 of 6 committed: 30 of 100 images and errors committed"
    assert part_line(counts, None, 10) == "part 3 committed: 30 images and errors committed"


def _part(run_id, embedded, errors, stage_errors=None):
    return {"run": run_id, "kept_rows": embedded, "kept_nulls": {}, "counts": {
        "matched": embedded + errors, "embedded": embedded, "errors": errors,
        "rows_per_layer": {"res5": embedded}, "errors_by_stage": stage_errors or {},
        "error_examples": {f"{s}/{t}": f"/in/{s}" for s, types in (stage_errors or {}).items() for t in types}}}


def test_the_command_counts_add_the_parts_and_the_runs_own_count_none_twice():
    own = {"matched": 9, "read": 8, "embedded": 0, "errors": 0, "skipped_unchanged": 2,
           "skipped_same_content": 0, "skipped": 2, "rows_per_layer": {"res5": 0},
           "errors_by_stage": {}, "error_examples": {}}
    parts = [_part("R-part-a-00000", 4, 0), _part("R-part-a-00001", 2, 1, {"decode": {"X": 1}})]
    total = with_parts(own, parts)
    assert (total["embedded"], total["errors"], total["rows_per_layer"]) == (6, 1, {"res5": 6})
    assert total["errors_by_stage"] == {"decode": {"X": 1}} and total["matched"] == 9
    mine = own_counts(total, parts)
    assert (mine["matched"], mine["embedded"], mine["errors"], mine["skipped"]) == (2, 0, 0, 2)


def test_parts_that_no_record_names_are_removed(tmp_path):
    """A part committed by a bundle attempt that later failed (a Dataflow retry): not in
    the records, so the run's last step takes it out of the index and the root."""
    root = str(tmp_path)
    for part_id in ("R-part-a-00000", "R-part-b-00000", "Q-part-c-00000"):
        partition = tmp_path / f"run={part_id}"
        (partition / "images").mkdir(parents=True)
        (tmp_path / "_runs").mkdir(exist_ok=True)
        (tmp_path / "_runs" / f"{part_id}.json").write_text("{}")
    assert remove_stray_parts(root, "R", [{"run": "R-part-a-00000"}]) == ["R-part-b-00000"]
    assert sorted(p.name for p in (tmp_path / "_runs").iterdir()) == ["Q-part-c-00000.json", "R-part-a-00000.json"]
    assert not (tmp_path / "run=R-part-b-00000").exists() and (tmp_path / "run=Q-part-c-00000").exists()


@pytest.mark.parametrize("kept", [("caption",)])
def test_kept_columns_missing_in_every_part_is_reported(kept):
    from pipeline.job.finalize import kept_missing_in_parts

    parts = [{"kept_rows": 2, "kept_nulls": {"caption": 2}}, {"kept_rows": 3, "kept_nulls": {"caption": 3}}]
    assert kept_missing_in_parts(list(kept), parts) == ["caption"]
    parts[1]["kept_nulls"]["caption"] = 2
    assert kept_missing_in_parts(list(kept), parts) == []
