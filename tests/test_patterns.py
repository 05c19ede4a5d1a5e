"""pipeline/patterns.py: existing names literally, WebDataset's braces expanded, Beam's glob
escaped where it must be."""

from __future__ import annotations

import pytest
from apache_beam.io.filesystems import FileSystems

from pipeline.patterns import MAX_BRACE_EXPANSION, PatternError, escape_glob, expand_braces, literal_if_existing


def test_brace_ranges_keep_their_zero_padding_and_lists_their_order():
    assert expand_braces("s/shard-{000000..000002}.tar") == [
        "s/shard-000000.tar", "s/shard-000001.tar", "s/shard-000002.tar"]
    assert expand_braces("{val,train}/*.jpg") == ["val/*.jpg", "train/*.jpg"]
    assert expand_braces("{a,a}/x") == ["a/x"]
    assert expand_braces("no/braces/*.png") == ["no/braces/*.png"]


def test_an_existing_name_with_braces_is_not_expanded(tmp_path):
    named = tmp_path / "{1,2}.png"
    named.write_bytes(b"x")
    assert expand_braces(str(named)) == [str(named)]
    assert expand_braces(r"a\{1,2\}") == ["a{1,2}"]


def test_unbalanced_and_oversized_braces_are_refused_with_the_way_out():
    with pytest.raises(PatternError, match=r"write a literal brace as \\\{"):
        expand_braces("photos/{a.png")
    with pytest.raises(PatternError, match=f"more than {MAX_BRACE_EXPANSION:,}"):
        expand_braces("s/{0..999999}.tar")


def test_an_escaped_name_matches_that_file_alone_through_beam(tmp_path):
    odd = tmp_path / "馬 #1 [x]*?.png"
    odd.write_bytes(b"odd")
    (tmp_path / "馬 #1 x.png").write_bytes(b"a different file [x] would match")
    assert escape_glob("a[1]*.png") == "a[[]1][*].png"
    pattern = literal_if_existing(str(odd))
    matched = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    assert matched == [str(odd)]
    missing = str(tmp_path / "new [x].png")
    assert literal_if_existing(missing) == missing  # not there: still a pattern


def test_a_quoted_tilde_is_the_home_folder_unless_such_a_name_exists(tmp_path, monkeypatch):
    from pipeline.patterns import home_expanded

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert home_expanded("~/photos/*.jpg") == str(tmp_path / "home" / "photos" / "*.jpg")
    assert home_expanded("photos/~x") == "photos/~x"
    (tmp_path / "~").mkdir()
    assert home_expanded("~") == "~"


def test_the_cli_reads_and_writes_under_a_quoted_tilde(tmp_path, monkeypatch):
    from pipeline.plan import parse_args

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "photos").mkdir()
    options = parse_args(["--input", "~/photos/*.png", "--output", "~/out", "--weights", "random"]).options
    assert options.input == [str(tmp_path / "photos" / "*.png")]
    assert options.output == str(tmp_path / "out")
