"""An incremental root that is damaged, then run again through the CLI: the run ends with a
clear message naming the file (never a traceback), nothing is left stuck, and across the
completed runs every image of the input is embedded exactly once under the key."""

from __future__ import annotations

import errno
import json
import shutil

import pytest

from images import rgb_pattern, write_image
from pipeline.root import atomic, incremental
from pipeline.inspection.results import read_layer
from pipeline.run import EXIT_FAILED, EXIT_OK, EXIT_USAGE, run
from schemas import layout

IMAGES = 6


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    for seed in range(IMAGES):
        write_image(images / f"img{seed}.png", rgb_pattern(36, 40, seed), "PNG")
    return images


def argv(folder, root):
    return ["--input", str(folder / "*"), "--output", str(root), "--mode", "incremental",
            "--weights", "random", "--image_size", "32", "--layers", "res2", "--batch_size", "4"]


def embedded_once(root) -> None:
    """Across the completed runs, every image of the input once."""
    ids, uris, _ = read_layer(str(root), "res2")
    assert len(ids) == len(set(ids)) == IMAGES and len(set(uris)) == IMAGES


def full_disk_for(fragment: str, monkeypatch):
    """Every atomic write of a path holding ``fragment`` fails as a full disk does."""
    real = atomic.write_atomically

    def write(path, payload, *args, **kwargs):
        if fragment in path:
            raise atomic.WriteFailed(errno.ENOSPC, f"could not write {path}: No space left on device")
        return real(path, payload, *args, **kwargs)

    monkeypatch.setattr(atomic, "write_atomically", write)
    monkeypatch.setattr(incremental, "write_atomically", write)


def test_a_garbled_index_entry_is_named_and_the_root_recovers(folder, tmp_path, capsys):
    root = tmp_path / "root"
    assert run(argv(folder, root)) == EXIT_OK
    (entry,) = (root / layout.RUNS_INDEX_DIR).iterdir()
    entry.write_text('{"run": "2026')
    capsys.readouterr()
    assert run(argv(folder, root)) == EXIT_USAGE
    err = capsys.readouterr().err
    assert str(entry) in err and "is damaged" in err and "Move the file" in err
    assert "Traceback" not in err and not (root / layout.LOCK_FILE).exists()
    with pytest.raises(incremental.DamagedIndexEntry, match=str(entry)):
        read_layer(str(root), "res2")
    # What the message says to do: move the entry and its partition out; run again.
    aside = tmp_path / "aside"
    aside.mkdir()
    shutil.move(str(entry), aside)
    for partition in root.glob(f"{layout.RUN_PARTITION_PREFIX}*"):
        shutil.move(str(partition), aside)
    assert run(argv(folder, root)) == EXIT_OK
    embedded_once(root)


def test_a_full_disk_while_the_index_entry_is_written_leaves_no_stuck_root(folder, tmp_path, monkeypatch):
    root = tmp_path / "root"
    full_disk_for(f"/{layout.RUNS_INDEX_DIR}/", monkeypatch)
    assert run(argv(folder, root)) == EXIT_FAILED
    assert not list(root.glob(f"{layout.RUNS_INDEX_DIR}/*"))  # no 0-byte entry, no temporary
    assert not (root / layout.LOCK_FILE).exists()
    monkeypatch.undo()
    assert run(argv(folder, root)) == EXIT_OK  # the failed run is not trusted: all embedded again
    (entry,) = incremental.index_entries(str(root))
    assert entry["counts"]["embedded"] == IMAGES
    embedded_once(root)


def test_a_full_disk_when_the_lock_is_taken_is_a_clear_refusal(folder, tmp_path, monkeypatch, capsys):
    root = tmp_path / "root"
    root.mkdir()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full_disk)
    assert run(argv(folder, root)) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "could not take the lock" in err and "No space left" in err and "Traceback" not in err
    assert not list(root.iterdir())
    monkeypatch.undo()
    assert run(argv(folder, root)) == EXIT_OK
    embedded_once(root)


def test_a_moved_root_reads_nothing_again(folder, tmp_path):
    root, moved = tmp_path / "root", tmp_path / "elsewhere" / "root"
    assert run(argv(folder, root)) == EXIT_OK
    moved.parent.mkdir()
    shutil.move(str(root), moved)
    assert run(argv(folder, moved)) == EXIT_OK
    first, second = incremental.index_entries(str(moved))
    assert json.loads((moved / layout.RUNS_INDEX_DIR / f"{first['run']}.json").read_text())[
        "partition"] == f"{layout.RUN_PARTITION_PREFIX}{first['run']}"
    assert second["counts"]["read"] == 0 and second["counts"]["skipped_unchanged"] == IMAGES
    assert second["counts"]["embedded"] == 0
    embedded_once(moved)


def _first_partition(root):
    (partition,) = root.glob(f"{layout.RUN_PARTITION_PREFIX}*")
    return partition


DAMAGES = {
    "manifest deleted": lambda p: (p / layout.MANIFEST_FILE).unlink(),
    "layer folder deleted": lambda p: shutil.rmtree(p / layout.EMBEDDINGS_DIR / "res2"),
    "layer part truncated": lambda p: next((p / layout.EMBEDDINGS_DIR / "res2").glob("part-*")).write_bytes(
        next((p / layout.EMBEDDINGS_DIR / "res2").glob("part-*")).read_bytes()[:100]),
    "images part deleted": lambda p: next((p / layout.IMAGES_DIR).glob("part-*")).unlink(),
    "images part garbled": lambda p: next((p / layout.IMAGES_DIR).glob("part-*")).write_bytes(b"garbage"),
}
WHAT_IS_WRONG = {
    "manifest deleted": "manifest.json is missing", "layer folder deleted": "is missing",
    "layer part truncated": "bytes, the manifest recorded", "images part deleted": "is missing",
    "images part garbled": "bytes, the manifest recorded",
}


@pytest.fixture(scope="session")
def _one_run(tmp_path_factory):
    """(input folder, a root holding one completed run of it), made once per test process
    (session scope: the damage cases still go to any worker)."""
    base = tmp_path_factory.mktemp("one_run")
    images = base / "in"
    images.mkdir()
    for seed in range(IMAGES):
        write_image(images / f"img{seed}.png", rgb_pattern(36, 40, seed), "PNG")
    assert run(argv(images, base / "root")) == EXIT_OK
    return images, base / "root"


@pytest.fixture
def one_run_root(_one_run, tmp_path):
    """The input folder and this test's own copy of that root, to damage (a root reads the
    same moved or copied: test_a_moved_root_reads_nothing_again)."""
    folder, pristine = _one_run
    root = tmp_path / "root"
    shutil.copytree(pristine, root)
    return folder, root


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_an_earlier_run_not_all_on_disk_is_not_trusted(damage, one_run_root, caplog):
    folder, root = one_run_root
    (first,) = incremental.index_entries(str(root))
    DAMAGES[damage](_first_partition(root))
    assert run(argv(folder, root)) == EXIT_OK
    assert f"run {first['run']} under {root} is not trusted" in caplog.text
    assert WHAT_IS_WRONG[damage] in caplog.text and "Traceback" not in caplog.text
    (second,) = incremental.index_entries(str(root))  # the first is set aside
    assert second["counts"]["embedded"] == IMAGES and second["counts"]["read"] == IMAGES
    assert (root / layout.RUNS_INDEX_DIR / f"{first['run']}.json{incremental.UNTRUSTED_SUFFIX}").exists()
    embedded_once(root)
    assert run(argv(folder, root)) == EXIT_OK  # and the root is healthy again: nothing read
    assert incremental.index_entries(str(root))[-1]["counts"]["read"] == 0


def test_readers_leave_out_a_run_not_all_on_disk(folder, tmp_path, caplog):
    root = tmp_path / "root"
    assert run(argv(folder, root)) == EXIT_OK
    DAMAGES["layer part truncated"](_first_partition(root))
    with pytest.raises(Exception, match="no complete manifest.json and no completed runs"):
        read_layer(str(root), "res2")
    assert "Readers leave it out" in caplog.text


def test_a_full_disk_while_parts_are_written_fails_the_run_and_the_next_one_completes(
        folder, tmp_path, monkeypatch, capsys):
    import pyarrow.parquet as pq

    root = tmp_path / "root"
    real = pq.ParquetWriter.write_table

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full_disk)
    assert run(argv(folder, root)) == EXIT_FAILED
    assert not (root / layout.LOCK_FILE).exists() and not list(root.glob(f"{layout.RUNS_INDEX_DIR}/*"))
    monkeypatch.setattr(pq.ParquetWriter, "write_table", real)
    assert run(argv(folder, root)) == EXIT_OK
    (entry,) = incremental.index_entries(str(root))
    assert entry["counts"]["embedded"] == IMAGES
    embedded_once(root)


def test_a_run_copied_under_a_new_id_is_read_once(folder, tmp_path, caplog):
    root = tmp_path / "root"
    assert run(argv(folder, root)) == EXIT_OK
    (first,) = incremental.index_entries(str(root))
    copy_id = first["run"] + "-copy"
    shutil.copytree(_first_partition(root), root / f"{layout.RUN_PARTITION_PREFIX}{copy_id}")
    entry = dict(first, run=copy_id, partition=f"{layout.RUN_PARTITION_PREFIX}{copy_id}")
    (root / layout.RUNS_INDEX_DIR / f"{copy_id}.json").write_text(json.dumps(entry))
    assert len(incremental.index_entries(str(root))) == 2
    embedded_once(root)
    assert f"{IMAGES} rows of res2 repeat an (image_id, uri) of an earlier run" in caplog.text
