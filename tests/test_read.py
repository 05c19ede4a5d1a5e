"""transforms/read.py: ReadImages (listing records -> bytes) and RereadImages."""

import hashlib

import pytest

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from beam_helpers import local_test_pipeline
from schemas import FileMeta, ImageFile, ListedFile, ListedShard, ReadConfig, SeenFile, ShardRecord, Unchanged
from transforms import ListFiles, ReadImages, RereadImages
from transforms.read import _RereadSamplesFn
from test_shards import _tar


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_reads_every_listed_file_with_its_sha256_and_listing(tmp_path):
    contents = {"a.jpg": b"first", "b c é.png": b"second", "sub/d.gif": b"third"}
    for name, data in contents.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    listed = [ListedFile(str(tmp_path / name), len(data), 1000 + i)
              for i, (name, data) in enumerate(contents.items())]
    expected = [ImageFile(FileMeta(f.uri, sha(data), f.size_bytes, f.modified_us, source=f.uri), data)
                for f, data in zip(listed, contents.values())]
    with local_test_pipeline() as p:
        read = p | beam.Create(listed) | ReadImages()
        assert_that(read.files, equal_to(expected), label="files")
        assert_that(read.errors, equal_to([]), label="errors")


def test_listing_then_reading(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"pixels")
    with local_test_pipeline() as p:
        read = p | ListFiles(str(tmp_path / "*")) | ReadImages()
        assert_that(read.files | beam.Map(lambda f: (f.uri, f.image_id, f.meta.size_bytes)),
                    equal_to([(str(tmp_path / "x.jpg"), sha(b"pixels"), 6)]))


def test_empty_and_oversized_files_are_refused_unread(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "huge.jpg").write_bytes(b"x" * 2000)
    (tmp_path / "fine.jpg").write_bytes(b"y" * 1000)
    # A listing without sizes: the reader stops one byte past the limit.
    unsized = ListedFile(str(tmp_path / "huge.jpg"))
    with local_test_pipeline() as p:
        listed = p | ListFiles(str(tmp_path / "*"))
        read = (listed, p | "Unsized" >> beam.Create([unsized])) | beam.Flatten() | ReadImages(ReadConfig(max_file_bytes=1000))
        assert_that(read.files | "Names" >> beam.Map(lambda f: f.uri),
                    equal_to([str(tmp_path / "fine.jpg")]), label="files")
        assert_that(
            read.errors | "Rows" >> beam.Map(lambda e: (e.uri, e.image_id, e.stage, e.error_type)),
            equal_to([(str(tmp_path / "empty.jpg"), None, "validate", "EmptyFile"),
                      (str(tmp_path / "huge.jpg"), None, "validate", "FileTooLarge"),
                      (str(tmp_path / "huge.jpg"), None, "validate", "FileTooLarge")]),
            label="errors",
        )


def test_matched_and_read_come_as_tallies_that_add_up_over_bundles(tmp_path):
    """More files than one Tally holds, in several bundles, some refused: the tallies add up
    to every listed file (matched) and every file read (read), each under TALLY_EVERY."""
    from transforms.read import TALLY_EVERY

    listed = []
    for i in range(TALLY_EVERY * 2 + 37):
        path = tmp_path / f"{i:04d}.jpg"
        path.write_bytes(b"" if i % 50 == 0 else b"x%d" % i)
        listed.append(ListedFile(str(path), path.stat().st_size, i))
    refused = sum(1 for i in range(len(listed)) if i % 50 == 0)
    with local_test_pipeline() as p:
        read = p | beam.Create(listed) | beam.Reshuffle() | ReadImages()
        for tag, expected in (("matched", len(listed)), ("read", len(listed) - refused)):
            tallies = read[tag]
            assert_that(tallies | f"Sum[{tag}]" >> beam.Map(lambda t: t.images) | f"Total[{tag}]" >> beam.CombineGlobally(sum),
                        equal_to([expected]), label=f"sum {tag}")
            assert_that(tallies | f"Big[{tag}]" >> beam.Filter(lambda t: t.images > TALLY_EVERY),
                        equal_to([]), label=f"none over {tag}")


def test_a_file_that_vanished_after_listing_is_a_read_error(tmp_path):
    gone = str(tmp_path / "gone.jpg")
    with local_test_pipeline() as p:
        out = p | beam.Create([ListedFile(gone, 10, 5)]) | ReadImages()
        assert_that(out.files, equal_to([]), label="files")
        assert_that(out.errors | beam.Map(lambda e: (e.uri, e.stage, e.error_type)),
                    equal_to([(gone, "read", "FileNotFoundError")]), label="errors")


def test_reread_checks_the_content_did_not_change(tmp_path):
    same, changed, gone = tmp_path / "same.jpg", tmp_path / "changed.jpg", tmp_path / "gone.jpg"
    same.write_bytes(b"kept")
    changed.write_bytes(b"rewritten after hashing")
    seen = [SeenFile(str(same), sha(b"kept"), 4, 7), SeenFile(str(changed), sha(b"before"), 6, 8),
            SeenFile(str(gone), sha(b"x"), 1, 9)]
    with local_test_pipeline() as p:
        out = p | beam.Create(seen) | RereadImages()
        assert_that(out["files"], equal_to([ImageFile(FileMeta(str(same), sha(b"kept"), 4, 7, source=str(same)), b"kept")]), label="files")
        assert_that(out["errors"] | beam.Map(lambda e: (e.uri, e.image_id is not None, e.stage, e.error_type)),
                    equal_to([(str(changed), True, "read", "ContentChanged"),
                              (str(gone), True, "read", "FileNotFoundError")]), label="errors")


def _shard(path, members) -> ListedFile:
    _tar(path, members)
    return ListedFile(str(path), path.stat().st_size, 5)


def test_known_samples_of_a_shard_are_unchanged_and_shards_read_to_the_end_recorded(tmp_path):
    whole = _shard(tmp_path / "s.tar", [("a.png", b"A"), ("b.png", b"B"), ("c.txt", b"no image")])
    cut = tmp_path / "cut.tar"
    cut.write_bytes((tmp_path / "s.tar").read_bytes()[:700])  # a.png, then the cut
    cut_listed = ListedFile(str(cut), 700, 6)
    with local_test_pipeline() as p:
        read = p | beam.Create([ListedShard(whole, frozenset({f"{whole.uri}#a"})), cut_listed]) | ReadImages()
        assert_that(read.files | beam.Map(lambda f: f.uri), equal_to([f"{whole.uri}#b", f"{cut}#a"]), label="files")
        assert_that(read.unchanged, equal_to([Unchanged(f"{whole.uri}#a")]), label="unchanged")
        assert_that(read.errors | beam.Map(lambda e: (e.uri, e.error_type)),
                    equal_to([(f"{whole.uri}#c", "NoImageInSample"), (str(cut), "ShardBroken")]), label="errors")
        # Only the shard read to its end is recorded: 3 samples, 1 refused.
        assert_that(read.shards, equal_to([ShardRecord(whole.uri, whole.size_bytes, 5, 3, 1)]), label="shards")


def test_reread_samples_streams_each_shard_once_and_checks_each_sample(tmp_path, monkeypatch):
    listed = _shard(tmp_path / "s.tar", [("a.png", b"A"), ("b.png", b"B2"), ("c.txt", b"t"), ("d.png", b"D")])
    seen = lambda key, data: SeenFile(f"{listed.uri}#{key}", sha(data), listed.size_bytes, 5, listed.uri)
    wanted = [seen("a", b"A"), seen("b", b"B"), seen("c", b"C"), seen("gone", b"G")]
    with local_test_pipeline() as p:
        out = p | beam.Create(wanted + [SeenFile(str(tmp_path / "loose"), sha(b"x"), 1, 1)]) | RereadImages()
        assert_that(out["files"] | beam.Map(lambda f: (f.uri, f.data, f.meta.source, f.meta.key)),
                    equal_to([(f"{listed.uri}#a", b"A", listed.uri, "a")]), label="files")
        assert_that(out["errors"] | beam.Map(lambda e: (e.uri.rsplit("/", 1)[1], e.error_type)), equal_to([
            ("s.tar#b", "ContentChanged"), ("s.tar#c", "NoImageInSample"), ("s.tar#gone", "ContentChanged"),
            ("loose", "FileNotFoundError")]), label="errors")
    # It stops reading once the last wanted sample has come by.
    from transforms import shards

    taken, read_shard = [], shards.read_shard

    def spy(*args, **kwargs):
        for element in read_shard(*args, **kwargs):
            taken.append(element.uri)
            yield element

    monkeypatch.setattr(shards, "read_shard", spy)
    got = list(_RereadSamplesFn(ReadConfig(max_file_bytes=10_000)).process((listed.uri, [seen("a", b"A")])))
    assert [f.uri for f in got] == [f"{listed.uri}#a"] and taken == [f"{listed.uri}#a"]


def test_read_bytes_reads_to_the_end_whatever_the_listed_size_says(tmp_path, monkeypatch):
    """The listed size only sizes the first read: a file that grew since, or one read in
    many chunks, comes back whole; past the limit it is refused."""
    from schemas import FileTooLarge
    from transforms import read as read_module

    monkeypatch.setattr(read_module, "READ_CHUNK_BYTES", 1000)
    data = bytes(range(256)) * 20  # 5,120 bytes
    path = tmp_path / "grown.jpg"
    path.write_bytes(data)
    for listed_size in (None, 10, len(data), len(data) + 7):
        assert read_module.read_bytes(str(path), 10_000, listed_size) == data
    with pytest.raises(FileTooLarge):
        read_module.read_bytes(str(path), len(data) - 1, 10)
    assert read_module.read_bytes(str(path), len(data), None) == data


def test_local_files_are_read_through_their_descriptor_and_none_is_left_open(tmp_path, monkeypatch):
    """A local path never goes through FileSystems (25 -> 12 us a photo); errors (a folder,
    a missing file, a file over the limit) propagate and leave no descriptor open."""
    import os

    from apache_beam.io.filesystems import FileSystems

    from schemas import FileTooLarge
    from transforms import read as read_module

    def no_filesystems(*_args, **_kwargs):
        raise AssertionError("a local file went through FileSystems.open")

    monkeypatch.setattr(FileSystems, "open", no_filesystems)
    path = tmp_path / "a.jpg"
    path.write_bytes(b"\xff\xd8" + b"x" * 3000)
    open_before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        assert read_module.read_bytes(str(path), 10_000, 3002) == path.read_bytes()
        with pytest.raises(IsADirectoryError):
            read_module.read_bytes(str(tmp_path), 10_000)
        with pytest.raises(FileNotFoundError):
            read_module.read_bytes(str(tmp_path / "gone.jpg"), 10_000)
        with pytest.raises(FileTooLarge):
            read_module.read_bytes(str(path), 100, 3002)
    assert len(os.listdir("/proc/self/fd")) == open_before
