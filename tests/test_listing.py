"""transforms/listing.py: ListFiles, the listing step (nothing is opened)."""

import os

import apache_beam as beam
from apache_beam.io.filesystem import FileMetadata
from apache_beam.testing.util import assert_that, equal_to

from beam_helpers import local_test_pipeline
from schemas import ListedFile
from transforms import ListFiles
from transforms.listing import SPREAD_GROUP, Spread, listed_file, modified_micros


def test_lists_every_file_with_size_and_time_without_opening_it(tmp_path):
    contents = {"a.jpg": b"first", "b c é.png": b"second!", "sub/d.gif": b"3"}
    for name, data in contents.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    (tmp_path / "unreadable.jpg").write_bytes(b"secret")
    os.chmod(tmp_path / "unreadable.jpg", 0)  # listed, not opened: no error here
    os.utime(tmp_path / "a.jpg", (1_700_000_000.25, 1_700_000_000.25))
    expected = [
        ListedFile(str(tmp_path / name), len(data), round(os.path.getmtime(tmp_path / name) * 1e6))
        for name, data in {**contents, "unreadable.jpg": b"secret"}.items()
    ]
    with local_test_pipeline() as p:
        assert_that(p | ListFiles(str(tmp_path / "**")), equal_to(expected))
    assert expected[0].modified_us == 1_700_000_000_250_000


def test_spread_hands_on_every_record_once_as_a_listed_file():
    records = [ListedFile(f"/in/{index}.jpg", index if index % 3 else None, None if index % 5 else index)
               for index in range(2 * SPREAD_GROUP + 7)]  # two full groups and a part
    with local_test_pipeline() as p:
        spread = p | beam.Create(records, reshuffle=False) | Spread()
        assert_that(spread, equal_to(records))
        assert_that(spread | beam.Map(lambda record: type(record).__name__) | beam.Distinct(),
                    equal_to(["ListedFile"]), label="types")


def test_single_star_does_not_descend(tmp_path):
    (tmp_path / "top.jpg").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.jpg").write_bytes(b"y")
    with local_test_pipeline() as p:
        uris = p | ListFiles(str(tmp_path / "*")) | beam.Map(lambda f: f.uri)
        assert_that(uris, equal_to([str(tmp_path / "top.jpg")]))


def test_unknown_time_is_none_never_zero():
    assert modified_micros(0.0) is None and modified_micros(None) is None
    assert listed_file(FileMetadata("gs://b/x.jpg", 12)) == ListedFile("gs://b/x.jpg", 12, None)
    assert listed_file(FileMetadata("gs://b/x.jpg", 12, 1.5)).modified_us == 1_500_000


def test_unreadable_links_are_found_where_beam_would_list_and_nowhere_else(tmp_path):
    import os

    from transforms.listing import unreadable_links

    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "nowhere", tmp_path / "a.png")
    os.symlink(tmp_path / "nowhere", tmp_path / "sub" / "b.png")
    os.symlink(tmp_path / "nowhere", tmp_path / "c.txt")
    os.symlink(tmp_path / "sub", tmp_path / "folder-link")  # a link to a folder is not followed
    (tmp_path / "ok.png").write_bytes(b"x")
    assert sorted(unreadable_links(f"{tmp_path}/**")) == sorted(
        [str(tmp_path / "a.png"), str(tmp_path / "sub" / "b.png"), str(tmp_path / "c.txt")])
    assert list(unreadable_links(f"{tmp_path}/*.png")) == [str(tmp_path / "a.png")]
    assert list(unreadable_links(str(tmp_path / "a.png"))) == [str(tmp_path / "a.png")]
    assert list(unreadable_links(str(tmp_path / "ok.png"))) == []
    assert list(unreadable_links("gs://bucket/*.png")) == []


def test_match_local_lists_what_beam_lists_plus_unreadable_links_in_one_walk(tmp_path):
    """The one-walk local listing gives, for every kind of glob, the same paths, sizes and
    modification times as FileSystems.match, plus the links that lead nowhere."""
    import os

    from apache_beam.io.filesystems import FileSystems

    from transforms.listing import listed_file, match_local, unreadable_links

    (tmp_path / "sub" / "deep").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    for name, size in (("a.png", 3), ("b.png", 5), (".hidden.png", 7), ("c.jpg", 11), ("a[1].png", 13),
                       ("sub/d.png", 17), ("sub/deep/e.png", 19), ("elsewhere/f.png", 23)):
        (tmp_path / name).write_bytes(b"x" * size)
    os.utime(tmp_path / "b.png", (1_600_000_000.123456, 1_600_000_000.123456))
    os.symlink(tmp_path / "c.jpg", tmp_path / "to_c.jpg")  # a link to a file: listed, the file's size
    os.symlink(tmp_path / "elsewhere", tmp_path / "sub" / "to_folder")  # a link to a folder: not walked
    os.symlink(tmp_path / "missing.png", tmp_path / "dangling.png")
    os.symlink(tmp_path / "loop.png", tmp_path / "loop.png")
    patterns = [f"{tmp_path}/*.png", f"{tmp_path}/**", f"{tmp_path}/**/*.png", f"{tmp_path}/?.png",
                f"{tmp_path}/[ab].png", f"{tmp_path}/sub/", f"{tmp_path}/a[[]1].png", f"{tmp_path}/s*/**",
                f"{tmp_path}/nothing/*.png"]
    for pattern in patterns:
        beam_listing = {listed_file(metadata) for metadata in FileSystems.match([pattern])[0].metadata_list}
        links = {link for link in unreadable_links(pattern)}
        ours = list(match_local(pattern))
        assert len(ours) == len(set(ours)), pattern
        assert {f for f in ours if f.size_bytes is not None} == beam_listing, pattern
        assert {f.uri for f in ours if f.size_bytes is None} == links, pattern
    everything = {f.uri: f for f in match_local(f"{tmp_path}/**")}
    assert everything[f"{tmp_path}/b.png"].modified_us == 1_600_000_000_123_456
    assert everything[f"{tmp_path}/to_c.jpg"].size_bytes == 11
    assert f"{tmp_path}/sub/to_folder/f.png" not in everything
    assert {f"{tmp_path}/dangling.png", f"{tmp_path}/loop.png"} <= everything.keys()
