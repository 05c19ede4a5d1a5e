"""Inputs as other tools write them, and command lines as new users type them, through the
CLI: every row of issue 20's table, each with its outcome checked in the written Parquet.

Files are made the way those tools make them: tars with the ``webdataset`` package (gzip
too), TFRecords with ``tf.io.TFRecordWriter`` (GZIP, TensorFlow Datasets' names and
features), Parquet files that Hugging Face ``datasets`` wrote (tests/huggingface_fixture.py)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import tarfile

import pyarrow.parquet as pq
import pytest

from huggingface_fixture import FIXTURES as HF_FIXTURES
from huggingface_fixture import IMAGE_PATHS
from images import encode, rgb_pattern, write_image
from pipeline.inspection.results import read_layer
from pipeline.run import EXIT_OK, EXIT_TOO_MANY_ERRORS, EXIT_USAGE, run
from schemas import layout

PICTURES = {f"{i:06d}": encode(rgb_pattern(36, 40, 900 + i), "PNG") for i in range(5)}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def argv(inputs, out, *extra) -> list[str]:
    patterns = inputs if isinstance(inputs, list) else [inputs]
    return [arg for pattern in patterns for arg in ("--input", str(pattern))] + [
        "--output", str(out), "--weights", "random", "--image_size", "32", "--layers", "res2",
        *extra]


def images_table(out):
    return pq.read_table(out / layout.IMAGES_DIR)


def errors_table(out):
    return pq.read_table(out / layout.ERRORS_DIR)


def manifest(out) -> dict:
    return json.loads((out / layout.MANIFEST_FILE).read_text())


def write_tgz(path) -> None:
    """WebDataset's own testdata/sample.tgz layout: PNG + cls samples, gzip-compressed."""
    import webdataset

    with webdataset.TarWriter(str(path), compress=True) as sink:
        for key, data in PICTURES.items():
            sink.write({"__key__": key, "png": data, "cls": str(int(key) % 2).encode()})


def write_tfds(path, gzip: bool = False, image_feature: str = "image") -> None:
    """TensorFlow Datasets' layout: an ``image`` feature with the encoded bytes, a ``label``."""
    import tensorflow as tf

    options = tf.io.TFRecordOptions(compression_type="GZIP") if gzip else None
    with tf.io.TFRecordWriter(str(path), options=options) as writer:
        for key, data in PICTURES.items():
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                image_feature: tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(key) % 3])),
            })).SerializeToString())


@pytest.mark.parametrize("name,extra", [("sample.tgz", ()), ("sample.tar.gz", ()),
                                        ("sample.tar.gz", ("--input_format", "webdataset"))])
def test_a_gzip_webdataset_shard_embeds_every_sample_with_its_class(tmp_path, name, extra):
    write_tgz(tmp_path / name)
    out = tmp_path / "out"
    assert run(argv(tmp_path / "*.*gz", out, "--keep_columns", "cls", *extra)) == EXIT_OK
    rows = images_table(out).to_pylist()
    assert sorted((r["uri"].rsplit("#", 1)[1], r["image_id"], r["cls"]) for r in rows) == [
        (key, sha(data), str(int(key) % 2)) for key, data in PICTURES.items()]
    assert len(read_layer(str(out), "res2").uris) == len(PICTURES)


@pytest.mark.parametrize("name,gzip", [("train.tfrecord.gz", True),
                                       ("mnist-train.tfrecord-00000-of-00001", False),
                                       ("mnist-train.tfrecord", False)])
def test_tfds_and_gzip_tfrecords_embed_with_their_labels(tmp_path, name, gzip):
    write_tfds(tmp_path / name, gzip=gzip)
    out = tmp_path / "out"
    assert run(argv(tmp_path / name, out, "--keep_columns", "label")) == EXIT_OK
    rows = images_table(out).to_pylist()
    assert sorted((r["image_id"], r["label"]) for r in rows) == sorted(
        (sha(data), str(int(key) % 3)) for key, data in PICTURES.items())


def test_a_tfrecord_without_an_image_feature_lists_the_features_it_has(tmp_path):
    import tensorflow as tf

    path = tmp_path / "labels.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
            "caption": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a", b"b"])),
            "thumbnail": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"])),
        })).SerializeToString())
    out = tmp_path / "out"
    assert run(argv(path, out, "--max_error_fraction", "1")) == EXIT_OK
    (error,) = errors_table(out).to_pylist()
    assert error["error_type"] == "NoImageInSample"
    assert "caption (bytes), label (int64), thumbnail (bytes)" in error["message"]
    assert "--image_column" in error["message"]


def test_huggingface_cifar_layout_finds_its_image_column_from_the_metadata(tmp_path):
    shard = HF_FIXTURES / "cifar" / "train.parquet"
    assert b"huggingface" in pq.read_schema(shard).metadata
    out = tmp_path / "out"
    assert run(argv(shard, out, "--keep_columns", "label")) == EXIT_OK
    source = pq.read_table(shard).to_pylist()
    rows = sorted(images_table(out).to_pylist(), key=lambda r: int(r["uri"].rsplit("#", 1)[1]))
    assert [(r["image_id"], r["label"]) for r in rows] == [
        (sha(row["img"]["bytes"]), str(row["label"])) for row in source]


def test_a_huggingface_save_to_disk_folder_is_read_from_its_arrow_files(tmp_path):
    """``save_to_disk`` writes Arrow IPC streams (data-0000x-of-00002.arrow) beside two JSON
    files: ``'saved/*.arrow'`` embeds every row, its Image column found from the metadata,
    and the folder itself does too, with one clear row per JSON file."""
    import pyarrow as pa

    saved = HF_FIXTURES / "saved"
    source = [row for path in sorted(saved.glob("*.arrow"))
              for row in pa.ipc.open_stream(path.read_bytes()).read_all().to_pylist()]
    assert len(source) == 3
    out = tmp_path / "out"
    assert run(argv(saved / "*.arrow", out, "--keep_columns", "label")) == EXIT_OK
    rows = images_table(out).to_pylist()
    assert sorted((r["image_id"], r["label"]) for r in rows) == sorted(
        (sha(row["img"]["bytes"]), str(row["label"])) for row in source)
    assert all("-of-00002.arrow#" in r["uri"] for r in rows)

    folder_out = tmp_path / "folder"
    run(argv(saved, folder_out, "--max_error_fraction", "1"))
    assert len(images_table(folder_out)) == 3
    errors = sorted(e["uri"].rsplit("/", 1)[1] for e in errors_table(folder_out).to_pylist())
    assert errors == ["dataset_info.json", "state.json"]


def test_huggingface_image_paths_are_read_only_when_asked_and_only_below_the_shard(tmp_path):
    folder = tmp_path / "huggingface"
    shutil.copytree(HF_FIXTURES, folder)
    shard = folder / "paths" / "data.parquet"

    out = tmp_path / "without"
    assert run(argv(shard, out)) == EXIT_TOO_MANY_ERRORS  # every row failed: nothing embedded
    messages = errors_table(out)["message"].to_pylist()
    assert len(messages) == len(IMAGE_PATHS)
    assert all("--image_paths relative" in message for message in messages)

    out = tmp_path / "relative"
    assert run(argv(shard, out, "--image_paths", "relative")) == EXIT_OK
    embedded = {r["image_id"] for r in images_table(out).to_pylist()}
    assert embedded == {sha((folder / "paths" / p).read_bytes()) for p, read in IMAGE_PATHS.items() if read}
    errors = {r["uri"].rsplit("#", 1)[1]: r for r in errors_table(out).to_pylist()}
    by_path = dict(zip(IMAGE_PATHS, map(str, range(len(IMAGE_PATHS)))))
    assert errors[by_path["../outside.jpg"]]["error_type"] == "ImagePathRefused"
    assert errors[by_path["/etc/hostname"]]["error_type"] == "ImagePathRefused"
    assert errors[by_path["missing.jpg"]]["error_type"] == "FileNotFoundError"
    assert sha((folder / "outside.jpg").read_bytes()) not in embedded


def test_keep_columns_on_tar_members_and_a_name_no_input_has(tmp_path, capsys):
    import webdataset

    with webdataset.TarWriter(str(tmp_path / "a.tar")) as sink:
        for key, data in PICTURES.items():
            sink.write({"__key__": key, "png": data, "txt": f"caption {key}".encode()})
    out = tmp_path / "out"
    assert run(argv(tmp_path / "a.tar", out, "--keep_columns", "txt,label")) == EXIT_OK
    rows = images_table(out).to_pylist()
    assert sorted(r["txt"] for r in rows) == sorted(f"caption {key}" for key in PICTURES)
    assert manifest(out)["kept_columns_missing"] == ["label"]
    assert "--keep_columns label: no input had it" in capsys.readouterr().out


def test_every_input_given_and_a_folder_means_everything_below_it(tmp_path, caplog):
    first, second = tmp_path / "a", tmp_path / "b" / "deep"
    second.mkdir(parents=True)
    first.mkdir()
    for i in range(3):
        write_image(first / f"img{i}.png", rgb_pattern(36, 40, 950 + i), "PNG")
        write_image(second / f"img{i}.png", rgb_pattern(36, 40, 960 + i), "PNG")
    out = tmp_path / "out"
    caplog.set_level(logging.INFO)
    # a file two patterns match is read once
    assert run(argv([first / "*.png", tmp_path / "b", first / "img0.png"], out)) == EXIT_OK
    assert f"--input {tmp_path / 'b'} is a folder: reading everything below it" in caplog.text
    uris = sorted(images_table(out)["uri"].to_pylist())
    assert uris == sorted([str(first / f"img{i}.png") for i in range(3)]
                          + [str(second / f"img{i}.png") for i in range(3)])
    assert manifest(out)["counts"]["matched"] == 6


@pytest.mark.parametrize("mode", ["single", "incremental"])
def test_an_output_inside_the_input_glob_is_never_read(tmp_path, mode):
    for i in range(3):
        write_image(tmp_path / f"img{i}.png", rgb_pattern(36, 40, 970 + i), "PNG")
    out = tmp_path / "out"
    if mode == "single":
        assert run(argv(tmp_path / "**", out)) == EXIT_OK
        counts = manifest(out)["counts"]
        assert counts["matched"] == counts["embedded"] == 3 and counts["errors"] == 0
        return
    root = tmp_path / "root"  # the second run's listing holds the first run's files
    for _ in range(2):
        assert run(argv(tmp_path / "**", root, "--mode", "incremental")) == EXIT_OK
    from pipeline.root.incremental import index_entries

    assert [e["counts"]["matched"] for e in index_entries(str(root))] == [3, 3]


def test_an_output_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    write_image(tmp_path / "img.png", rgb_pattern(36, 40, 1), "PNG")
    (tmp_path / "out").write_text("a file")
    assert run(argv(tmp_path / "img.png", tmp_path / "out")) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "is an existing file" in err and "Traceback" not in err


def test_a_run_that_embedded_nothing_exits_3_unless_failures_are_expected(tmp_path, capsys, caplog):
    """1,203 samples that all fail: exit 3; one summary line per error type with its count
    and an example, no line per image; every row in errors/."""
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tar:
        for i in range(1203):
            info = tarfile.TarInfo(f"{i:05d}.jpg")
            payload = b"not a jpeg at all"
            info.size = len(payload)


            tar.addfile(info, io.BytesIO(payload))
    out = tmp_path / "out"
    caplog.set_level(logging.INFO)
    assert run(argv(path, out)) == EXIT_TOO_MANY_ERRORS
    printed = capsys.readouterr().out
    assert errors_table(out).num_rows == 1203
    assert f"decode/UnidentifiedImageError: 1203, e.g. {path}#00000" in printed
    assert "none of the 1203 inputs was embedded or skipped" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "failed for" in r.getMessage()]
    assert run(argv(path, tmp_path / "expected", "--max_error_fraction", "1")) == EXIT_OK


def test_an_unchanged_compressed_shard_is_skipped_unopened_by_the_next_incremental_run(tmp_path):
    from pipeline.root.incremental import index_entries

    write_tgz(tmp_path / "sample.tar.gz")
    write_tfds(tmp_path / "train.tfrecord.gz", gzip=True)
    root = tmp_path / "root"
    for _ in range(2):
        assert run(argv(tmp_path / "*.gz", root, "--mode", "incremental")) == EXIT_OK
    first, second = (entry["counts"] for entry in index_entries(str(root)))
    assert first["embedded"] == 2 * len(PICTURES) and first["errors"] == 0
    assert second["read"] == 0 and second["skipped_unchanged"] == 2 * len(PICTURES)


def test_a_pattern_the_shell_expanded_is_read_whole_through_a_real_shell(tmp_path):
    """``--input photos/p{0..1}.png photos/p[2-4].png`` unquoted (a brace range and a glob):
    bash expands them to 5 paths and every one is embedded
    (Beam alone kept the first and warned about the rest, exit 0). A word no option takes
    elsewhere is exit 2, naming it."""
    import os
    import subprocess
    import sys

    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(5):
        write_image(photos / f"p{index}.png", rgb_pattern(40, 40, index), "PNG")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    common = "--weights random --image_size 32 --layers res5 --direct_num_workers 1"
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    # bash expands both, braces first: 2 + 3 paths reach the program
    done = subprocess.run(["bash", "-c", f"cd {tmp_path} && {sys.executable} -m pipeline.run "
                                         f"--input photos/p{{0..1}}.png photos/p[2-4].png "
                                         f"--output out {common} --model_copies 1"],
                          capture_output=True, text=True, timeout=600, env=dict(env, PYTHONPATH=repo))
    assert done.returncode == EXIT_OK, done.stderr[-2000:]
    assert "images embedded: 5 of 5 matched" in done.stdout
    assert "Unparseable" not in done.stderr
    # Quiet unless something is wrong: no TensorFlow start-up lines, no raw Beam server INFO.
    for noise in ("absl::InitializeLog", "cudart_stub", "cuInit", "cpu_feature_guard", "INFO:root:",
                  "fallback deterministic coder", "WARNING"):
        assert noise not in done.stderr, done.stderr
    assert len(read_layer(str(tmp_path / "out"), "res5").uris) == 5

    stray = run(["--input", str(photos / "p0.png"), "--output", str(tmp_path / "o2"), "--overwrite",
                 str(photos / "p1.png"), *common.split()])
    assert stray == EXIT_USAGE


def test_an_output_that_cannot_be_made_is_one_line_and_exit_2(tmp_path, capsys):
    """--output under a file (or, not as root, under a read-only folder), single and
    incremental: exit 2 before any work, one line naming the folder and why; no traceback."""
    import os

    photo = tmp_path / "p.png"
    write_image(photo, rgb_pattern(40, 40, 1), "PNG")
    (tmp_path / "a_file").write_text("not a folder")
    places = [tmp_path / "a_file" / "out"]
    if os.geteuid() != 0:  # root writes through permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        places.append(locked / "out")
    for place in places:
        for mode in ("single", "incremental"):
            assert run(argv(photo, place, "--mode", mode)) == EXIT_USAGE
            err = capsys.readouterr().err
            assert f"--output {place}: cannot write there (" in err and "Traceback" not in err, err


def test_webdatasets_brace_notation_reads_exactly_the_shards_it_names(tmp_path):
    """``--input 'shards/shard-{000000..000002}.tar'`` quoted, as every WebDataset README
    writes it: the three shards named are read, the fourth beside them is not."""
    import webdataset

    shards = tmp_path / "shards"
    shards.mkdir()
    for shard in range(4):
        with webdataset.TarWriter(str(shards / f"shard-{shard:06d}.tar")) as sink:
            for sample in range(2):
                sink.write({"__key__": f"s{shard}-{sample}", "png": PICTURES[f"{sample:06d}"]})
    out = tmp_path / "out"
    assert run(argv(str(shards / "shard-{000000..000002}.tar"), out)) == EXIT_OK
    uris = read_layer(str(out), "res2").uris
    assert len(uris) == 6 and not any("shard-000003" in uri for uri in uris)
    assert run(argv(str(shards / "shard-{000000..000009}.tar"), tmp_path / "o2")) == EXIT_USAGE


def test_an_existing_name_with_glob_characters_is_read_literally(tmp_path, capsys):
    """``--input "My Photos/馬 #1 [x].png"`` is that file ([x] is not a glob class), and a
    pattern that matches nothing says how to write [ ] * ? literally."""
    folder = tmp_path / "My Photos"
    folder.mkdir()
    odd = folder / "馬 #1 [x].png"
    odd.write_bytes(PICTURES["000000"])
    (folder / "馬 #1 x.png").write_bytes(PICTURES["000001"])  # what [x] as a class would match
    out = tmp_path / "out"
    assert run(argv(odd, out)) == EXIT_OK
    assert read_layer(str(out), "res2").uris == [str(odd)]
    assert run(argv(folder / "gone [y].png", tmp_path / "o2")) == EXIT_USAGE
    assert "write each as [[] [*] [?]" in capsys.readouterr().err


def test_broken_and_looping_symbolic_links_are_error_rows_not_silent_gaps(tmp_path):
    """Beam's local listing drops a link it cannot stat without a word; here each is a row
    (read/BrokenLink, read/LinkLoop) and the run accounts for every name in the folder."""
    import os

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "real.png").write_bytes(PICTURES["000000"])
    os.symlink(photos / "real.png", photos / "good-link.png")
    os.symlink(tmp_path / "gone.png", photos / "broken.png")
    os.symlink(photos / "loop-b.png", photos / "loop-a.png")
    os.symlink(photos / "loop-a.png", photos / "loop-b.png")
    out = tmp_path / "out"
    code = run(argv(photos, out, "--max_error_fraction", "1"))
    assert code == EXIT_OK
    errors = {row["uri"]: row for row in errors_table(out).to_pylist()}
    assert {os.path.basename(uri) for uri in errors} == {"broken.png", "loop-a.png", "loop-b.png"}
    assert errors[str(photos / "broken.png")]["error_type"] == "BrokenLink"
    assert "gone.png" in errors[str(photos / "broken.png")]["message"]
    assert {errors[str(photos / n)]["error_type"] for n in ("loop-a.png", "loop-b.png")} == {"LinkLoop"}
    assert all(row["stage"] == "read" for row in errors.values())
    assert len(read_layer(str(out), "res2").uris) == 2
    assert manifest(out)["counts"]["matched"] == 5


def test_a_parquet_of_urls_says_it_holds_urls_and_what_to_do(tmp_path):
    """LAION-style metadata (url, caption), with and without --image_column url: the error
    row says the column holds text, not images, and points to downloading them first."""
    import pyarrow as pa

    table = pa.table({"url": ["https://example.com/a.jpg", "https://example.com/b.jpg"],
                      "caption": ["a", "b"]})
    pq.write_table(table, tmp_path / "laion.parquet")
    for extra in ([], ["--image_column", "url"]):
        out = tmp_path / f"out{len(extra)}"
        assert run(argv(tmp_path / "laion.parquet", out, *extra)) == EXIT_TOO_MANY_ERRORS
        (error,) = errors_table(out).to_pylist()
        assert error["error_type"] == "NoImageColumn"
        assert "column url holds text (URLs or paths), not image bytes" in error["message"]
        assert "img2dataset" in error["message"] and "name it with" not in error["message"]
