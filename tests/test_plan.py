"""pipeline/plan.py: a run planned before any work: parsed settings, preflight, the
weights' identity resolved once, the output's lock, the manifest's launcher record."""

import pytest

from images import rgb_pattern, write_image
from models.weights import file_sha256
from pipeline.root import lock
from pipeline.plan import UsageError, parse_args, plan_run, run_record
from schemas import ReadConfig, layout


def test_parse_args_makes_every_typed_setting_once():
    parsed = parse_args(["--input", "x/*", "--output", "out", "--weights", "random",
                         "--input_format", "parquet", "--keep_columns", "url, txt", "--max_file_bytes", "99",
                         "--max_pixels", "1000"])
    assert parsed.read == ReadConfig("parquet", None, ("url", "txt"), 99, 256 * 1024 * 1024)
    assert parsed.limits.max_pixels == 1000 and parsed.config.weights == "random"
    with pytest.raises(UsageError, match="--keep_columns key: images/ has such a column"):
        parse_args(["--input", "x/*", "--output", "out", "--keep_columns", "key"])


def test_plan_resolves_the_weights_identity_once_and_takes_the_lock(tmp_path, weights_file):
    write_image(tmp_path / "a.png", rgb_pattern(40, 40, 1), "PNG")
    output = tmp_path / "out"
    plan = plan_run(["--input", str(tmp_path / "*.png"), "--output", str(output),
                     "--weights", weights_file, "--image_size", "32"], launched_at=1.0)
    try:
        assert plan.config.weights_sha256 == plan.weights["sha256"] == file_sha256(weights_file)
        assert plan.weights["file"] == weights_file and plan.matched == 1 and not plan.remote
        assert plan.output.locked and (output / layout.LOCK_FILE).exists()
        record = run_record(plan, "FnApiRunner")
        assert record["read"] == ReadConfig().record() and record["weights"] is plan.weights
        assert record["config"]["weights"] == file_sha256(weights_file)
        # A second plan of the same output is refused while this one holds it.
        with pytest.raises(UsageError, match="is locked by run"):
            plan_run(["--input", str(tmp_path / "*.png"), "--output", str(output), "--weights", "random"], 2.0)
    finally:
        lock.release_lock(plan.output.lock_root, plan.output.run_id)
    assert not (output / layout.LOCK_FILE).exists()


def test_a_dry_run_plan_touches_nothing(tmp_path):
    plan = plan_run(["--input", "gs://b/images/*", "--output", "gs://b/out", "--weights", "gs://b/w.h5",
                     "--runner", "DataflowRunner", "--dry_run=True", "--mode", "incremental"], 1.0)
    assert plan.remote and plan.dry_run and not plan.output.locked
    assert plan.config.weights_sha256 is None and plan.weights == {"spec": "gs://b/w.h5", "kind": "file"}
    assert plan.output.comparison.image_parts is None  # the full graph is planned


def test_the_launcher_lists_the_input_only_for_local_runs(tmp_path, monkeypatch):
    """Remote runs stop at the first match (the job lists the collection); local runs count
    every file for the progress line."""
    import pipeline.plan as plan_module
    from apache_beam.io.filesystems import FileSystems

    for i in range(50):
        (tmp_path / f"f{i}.jpg").write_bytes(b"x")
    asked, real_match = [], FileSystems.match

    def spy(patterns, limits=None):
        asked.append(limits)
        results = real_match(patterns, limits)
        asked.append(len(results[0].metadata_list))
        return results

    real_walk = plan_module.match_pattern

    def spy_walk(pattern):  # a local glob: one walk of the folder (match_local)
        files = list(real_walk(pattern))
        asked.append(("walk", len(files)))
        return iter(files)

    monkeypatch.setattr(FileSystems, "match", spy)
    monkeypatch.setattr(plan_module, "match_pattern", spy_walk)
    pattern = str(tmp_path / "*.jpg")
    assert plan_module.input_file_count(pattern, count_all=False) is None
    assert asked == [[1], 1]
    asked.clear()
    assert plan_module.input_file_count(pattern, count_all=True) == 50
    assert asked == [("walk", 50)]
    with pytest.raises(plan_module.UsageError, match="matches no file"):
        plan_module.input_file_count(str(tmp_path / "*.png"), count_all=False)
    # A shard among the files: its samples are not known before it is read.
    (tmp_path / "s.tar").write_bytes(b"x")
    assert plan_module.input_file_count(str(tmp_path / "*"), count_all=True) is None
    assert plan_module.input_file_count(str(tmp_path / "*"), count_all=True, input_format="files") == 51

    # preflight asks for the full count only when the runner is local.
    counted = []
    monkeypatch.setattr(plan_module, "input_file_count", lambda p, count_all, input_format, output: counted.append(count_all))
    monkeypatch.setattr(plan_module.outputs, "is_local", lambda path: False)
    parsed = plan_module.parse_args(["--input", pattern, "--output", "gs://b/out", "--weights", "random"])
    for remote in (True, False):
        plan_module.preflight(parsed.options, parsed.config, remote=remote, check_paths=True)
    assert counted == [False, True]
