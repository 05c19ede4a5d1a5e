"""transforms/shards.py: WebDataset, Parquet and TFRecord shards, written with the tools users
have, read sample by sample; hostile shards accounted for."""

from __future__ import annotations

import hashlib
import json
import io
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from images import encode, rgb_pattern, write_image
from pipeline.inspection.results import read_layer
from pipeline.run import EXIT_OK, EXIT_USAGE, run
from reference import assert_same_embeddings
from schemas import ImageFile, ListedFile, layout
from transforms import shards

PICTURES = {f"{i:09d}": encode(rgb_pattern(40, 48, i), "JPEG" if i % 2 else "PNG") for i in range(4)}
EXTENSION = {key: ("jpg" if int(key) % 2 else "png") for key in PICTURES}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def outcomes(elements) -> list[tuple]:
    """(uri tail, 'image' or error type) per element a reader yields."""
    rows = []
    for element in elements:
        if isinstance(element, ImageFile):
            rows.append((element.uri.rsplit("#", 1)[-1], "image"))
        else:
            assert isinstance(element, shards.Refused)
            rows.append((element.key if element.key is not None else "<shard>", type(element.error).__name__))
    return rows


def write_webdataset(path) -> None:
    import webdataset

    with webdataset.TarWriter(str(path)) as sink:
        for key, data in PICTURES.items():
            sink.write({"__key__": key, EXTENSION[key]: data, "json": b'{"w": 48}', "txt": b"a caption"})


def write_img2dataset_parquet(path, column: str = "jpg", with_key: bool = True) -> None:
    """img2dataset's layout: key, the image bytes in a column named after the format, txt,
    then url and status; a failed download has a null image."""
    keys = list(PICTURES) + ["000000099"]
    columns = {
        column: pa.array(list(PICTURES.values()) + [None], pa.binary()),
        "txt": ["a caption"] * len(keys),
        "url": [f"https://example.com/{k}.jpg" for k in keys],
        "status": ["success"] * len(PICTURES) + ["failed_to_download"],
    }
    if with_key:
        columns = {"key": keys, **columns}
    pq.write_table(pa.table(columns), path, row_group_size=2)


def write_huggingface_parquet(path) -> None:
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    rows = [{"bytes": data, "path": f"{key}.jpg"} for key, data in PICTURES.items()]
    pq.write_table(pa.table({"image": pa.array(rows, image), "label": list(range(len(rows)))}), path)


def write_tfrecord(path) -> None:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for data in PICTURES.values():
            example = tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
                "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"jpeg"])),
            }))
            writer.write(example.SerializeToString())


def listed(path) -> ListedFile:
    return ListedFile(str(path), path.stat().st_size, 1)


def test_format_by_extension():
    assert [shards.shard_format(u) for u in ("a/00000.tar", "b.parquet", "c.TFRecord", "d.tfrecords",
                                             "e.tfrec", "f.jpg", "g.tar.gz", "h.TGZ",
                                             "i.tfrecord.gz", "mnist-train.tfrecord-00000-of-00004",
                                             "j.jpg.gz", "k.parquet.gz")] == [
        "webdataset", "parquet", "tfrecord", "tfrecord", "tfrecord", "files", "webdataset",
        "webdataset", "tfrecord", "tfrecord", "files", "parquet"]
    assert shards.shard_format("x.jpg", "parquet") == "parquet"


def test_image_names_answered_early_get_the_format_the_full_lookup_gives(monkeypatch):
    from transforms.shards import common

    names = ["a.jpg", "B.JPEG", "c.tar.jpg", "d.parquet.png", "e.tfrecord-00000-of-00001.webp", "f.gif",
             "g.bmp", "h.TIF", "i.tiff", "j.jpg.gz", "k.png.tar", "l.jpgx", "m.tfrecord-1-of-2", ".png"]
    early = [common.shard_format(name) for name in names]
    monkeypatch.setattr(common, "_IMAGE_SUFFIXES", ())
    assert early == [common.shard_format(name) for name in names]
    assert early.count("files") == 12


def test_webdataset_samples_from_tarwriter(tmp_path):
    path = tmp_path / "00000.tar"
    write_webdataset(path)
    got = list(shards.read_webdataset(listed(path), 10_000_000))
    assert [(f.uri, f.meta.key, f.meta.source, f.image_id) for f in got] == [
        (f"{path}#{key}", key, str(path), sha(data)) for key, data in PICTURES.items()]


@pytest.mark.parametrize("writer,column", [
    (write_img2dataset_parquet, None), (write_huggingface_parquet, None),
    (lambda p: write_img2dataset_parquet(p, column="pixels"), "pixels")])
def test_parquet_samples(tmp_path, writer, column):
    path = tmp_path / "00000.parquet"
    writer(path)
    got = list(shards.read_parquet(listed(path), 10_000_000, column))
    images = [f for f in got if isinstance(f, ImageFile)]
    assert [f.image_id for f in images] == [sha(d) for d in PICTURES.values()]
    if writer is write_huggingface_parquet:
        assert [f.meta.key for f in images] == ["0", "1", "2", "3"]  # no key column: the row number
    else:
        assert [f.meta.key for f in images] == list(PICTURES)
        assert outcomes(got)[-1] == ("000000099", "NoImageInSample")  # the failed download


def test_tfrecord_samples_from_tf_writer(tmp_path):
    path = tmp_path / "train-00000.tfrecord"
    write_tfrecord(path)
    got = list(shards.read_tfrecord(listed(path), 10_000_000))
    assert [(f.meta.key, f.image_id) for f in got] == [(str(i), sha(d)) for i, d in enumerate(PICTURES.values())]


def _tar(path, members) -> bytes:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path.read_bytes()


def test_hostile_tars(tmp_path):
    jpg = PICTURES["000000001"]
    members = [("a.jpg", jpg), ("a.txt", b"t"), ("b.txt", b"only text"), ("c.jpg", b"not an image"),
               ("a.jpg", jpg), ("../../etc/evil.png", jpg), ("/abs/d.jpg", jpg), ("big.png", b"x" * 2000)]
    whole = _tar(tmp_path / "hostile.tar", members)
    got = outcomes(shards.read_webdataset(listed(tmp_path / "hostile.tar"), 1500))
    assert got == [("a", "image"), ("b", "NoImageInSample"), ("c", "image"),  # c fails at decode
                   ("a~2", "image"), ("../../etc/evil", "image"), ("/abs/d", "image"),
                   ("big", "FileTooLarge")]
    assert not (tmp_path / "etc").exists() and not (tmp_path.parent / "etc" / "evil.png").exists()
    # Cut inside c.jpg's data (a.jpg: header + 3 blocks, a.txt, b.txt: header + 1 block each,
    # c.jpg's header at 4096): samples a and b, then one error naming the offset.
    (tmp_path / "cut.tar").write_bytes(whole[:4700])
    got = list(shards.read_webdataset(listed(tmp_path / "cut.tar"), 10_000))
    assert outcomes(got)[:2] == [("a", "image"), ("b", "NoImageInSample")]
    assert outcomes(got)[-1] == ("<shard>", "ShardBroken")
    assert "broken at byte" in str(got[-1].error) and str(tmp_path / "cut.tar") == got[-1].uri


def test_hostile_parquet_and_tfrecord(tmp_path):
    good = tmp_path / "good.parquet"
    write_img2dataset_parquet(good)
    (tmp_path / "footer.parquet").write_bytes(good.read_bytes()[:-20])
    pq.write_table(pa.table({"key": ["1"], "txt": ["no image here"]}), tmp_path / "noimage.parquet")
    assert outcomes(shards.read_parquet(listed(tmp_path / "footer.parquet"), 10_000)) == [("<shard>", "ShardBroken")]
    assert outcomes(shards.read_parquet(listed(tmp_path / "noimage.parquet"), 10_000)) == [("<shard>", "NoImageColumn")]

    records = tmp_path / "r.tfrecord"
    write_tfrecord(records)
    data = bytearray(records.read_bytes())
    second = 16 + int.from_bytes(data[:8], "little")  # start of the second record
    data[second + 12 + 5] ^= 0xFF  # a byte inside its payload: its data CRC no longer matches
    (tmp_path / "crc.tfrecord").write_bytes(bytes(data))
    got = list(shards.read_tfrecord(listed(tmp_path / "crc.tfrecord"), 10_000_000))
    assert outcomes(got) == [("0", "image"), ("<shard>", "ShardBroken")]
    assert "checksum" in str(got[-1].error) and "1 records read before it" in str(got[-1].error)


def test_cli_shards_give_the_loose_files_ids_and_embeddings(tmp_path):
    """One mixed glob: loose files, a WebDataset tar, img2dataset Parquet and a TFRecord, plus
    a broken tar. The same picture has the same image_id and embedding wherever it is."""
    loose, mixed = tmp_path / "loose", tmp_path / "mixed"
    loose.mkdir()
    mixed.mkdir()
    for key, data in PICTURES.items():
        (loose / f"{key}.{EXTENSION[key]}").write_bytes(data)
    write_webdataset(mixed / "00000.tar")
    write_img2dataset_parquet(mixed / "00000.parquet")
    write_tfrecord(mixed / "00000.tfrecord")
    write_image(mixed / "extra.png", rgb_pattern(40, 48, 50), "PNG")
    (mixed / "broken.tar").write_bytes((mixed / "00000.tar").read_bytes()[:1500])
    _tar(mixed / "fake.tar", [("x.jpg", b"not an image"), ("x.txt", b"caption")])
    common = ["--weights", "random", "--image_size", "32", "--layers", "res5"]
    assert run(["--input", str(loose / "*"), "--output", str(tmp_path / "a"), *common]) == EXIT_OK
    assert run(["--input", str(mixed / "*"), "--output", str(tmp_path / "b"), *common]) == EXIT_OK

    manifest = __import__("json").loads((tmp_path / "b" / "manifest.json").read_text())
    counts = manifest["counts"]
    # 4 samples x 3 shards + extra.png + the Parquet row without an image + what broken.tar gave.
    errors = pq.read_table(layout.errors_dir(str(tmp_path / "b"))).to_pylist()
    assert counts["embedded"] == 13 + sum(
        1 for row in pq.read_table(layout.images_dir(str(tmp_path / "b"))).to_pylist()
        if row["source"] == str(mixed / "broken.tar"))
    assert counts["matched"] == counts["embedded"] + counts["errors"]
    assert {(e["uri"].rsplit("/", 1)[1], e["stage"], e["error_type"]) for e in errors} >= {
        ("00000.parquet#000000099", "read", "NoImageInSample"), ("broken.tar", "read", "ShardBroken"),
        ("fake.tar#x", "decode", "UnidentifiedImageError")}

    reference = read_layer(str(tmp_path / "a"), "res5")
    by_id = dict(zip(reference.image_ids, reference.matrix))
    rows = read_layer(str(tmp_path / "b"), "res5")
    for fmt in ("00000.tar#", "00000.parquet#", "00000.tfrecord#"):
        ids = [i for i, u in zip(rows.image_ids, rows.uris) if fmt in u]
        assert sorted(ids) == sorted(by_id), fmt
        mine = dict(zip(rows.image_ids, rows.matrix))
        assert_same_embeddings(np.stack([mine[i] for i in ids]), np.stack([by_id[i] for i in ids]))
    images = pq.read_table(layout.images_dir(str(tmp_path / "b"))).to_pylist()
    tar_rows = [r for r in images if r["source"] == str(mixed / "00000.tar")]
    assert sorted(r["key"] for r in tar_rows) == sorted(PICTURES)
    assert all(r["uri"] == f"{r['source']}#{r['key']}" for r in tar_rows)
    extra = [r for r in images if r["uri"].endswith("extra.png")]
    assert extra[0]["source"] == extra[0]["uri"] and extra[0]["key"] is None


def test_keep_columns_copies_parquet_columns_into_images(tmp_path, capsys):
    write_img2dataset_parquet(tmp_path / "00000.parquet")
    write_image(tmp_path / "loose.png", rgb_pattern(40, 48, 60), "PNG")
    argv = ["--input", str(tmp_path / "*"), "--output", str(tmp_path / "out"), "--weights", "random",
            "--image_size", "32", "--layers", "res5", "--keep_columns", "url,txt,status,not_there"]
    assert run(argv) == EXIT_OK
    images = pq.read_table(layout.images_dir(str(tmp_path / "out")))
    assert images.column_names[-4:] == ["url", "txt", "status", "not_there"]
    rows = {r["key"] or "loose": r for r in images.to_pylist()}
    assert rows["000000002"]["url"] == "https://example.com/000000002.jpg"
    assert rows["000000002"]["txt"] == "a caption" and rows["000000002"]["status"] == "success"
    assert rows["000000002"]["not_there"] is None
    assert rows["loose"]["url"] is None  # not from Parquet
    clash = argv[:-1] + ["url,width"]
    clash[clash.index("--output") + 1] = str(tmp_path / "out2")
    assert run(clash) == EXIT_USAGE
    assert "images/ has such a column already" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()  # refused before anything was created or locked


def _special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def test_every_tar_member_with_an_image_extension_has_a_row(tmp_path):
    """Colliding names get distinct keys; a hard link reads its target; symlinks, devices,
    FIFOs and folders named like images are refused, each with a row."""
    path = tmp_path / "odd.tar"
    jpg, png = PICTURES["000000001"], PICTURES["000000000"]
    with tarfile.open(path, "w") as tar:
        for name, data in [("a.jpg", jpg), ("a.jpg", png), ("a~2.jpg", jpg), ("b.jpg", png)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.addfile(_special("c.jpg", tarfile.LNKTYPE, "b.jpg"))       # hard link to b.jpg
        tar.addfile(_special("d.jpg", tarfile.SYMTYPE, "b.jpg"))
        tar.addfile(_special("e.png", tarfile.CHRTYPE))
        tar.addfile(_special("f.png", tarfile.FIFOTYPE))
        tar.addfile(_special("g.jpg", tarfile.DIRTYPE))
        tar.addfile(_special("h.jpg", tarfile.LNKTYPE, "nowhere.jpg"))
        tar.addfile(_special("notes", tarfile.DIRTYPE))                 # structure: no row
    got = list(shards.read_webdataset(listed(path), 10_000_000))
    assert sorted(outcomes(got)) == sorted([
        ("a", "image"), ("a~2", "image"), ("a~2~2", "image"), ("b", "image"), ("c", "image"),
        ("d", "UnsupportedTarMember"), ("e", "UnsupportedTarMember"), ("f", "UnsupportedTarMember"),
        ("g", "UnsupportedTarMember"), ("h", "LinkTargetMissing")])
    assert len({element.uri for element in got}) == len(got)
    by_key = {element.meta.key: element.image_id for element in got if isinstance(element, ImageFile)}
    assert by_key == {"a": sha(jpg), "a~2": sha(png), "a~2~2": sha(jpg), "b": sha(png), "c": sha(png)}
    refused = {element.key: str(element.error) for element in got if isinstance(element, shards.Refused)}
    assert "symbolic link, not a file" in refused["d"] and "character device" in refused["e"]
    assert "FIFO" in refused["f"] and "directory" in refused["g"] and "nowhere.jpg" in refused["h"]


def test_odd_tars_through_the_cli_account_for_every_member_in_both_modes(tmp_path):
    path = tmp_path / "in" / "odd.tar"
    path.parent.mkdir()
    jpg = PICTURES["000000001"]
    with tarfile.open(path, "w") as tar:
        for name in ("a.jpg", "a.jpg", "a~2.jpg"):
            info = tarfile.TarInfo(name)
            info.size = len(jpg)
            tar.addfile(info, io.BytesIO(jpg))
        tar.addfile(_special("b.jpg", tarfile.LNKTYPE, "a.jpg"))
        tar.addfile(_special("c.jpg", tarfile.SYMTYPE, "a.jpg"))
    common = ["--input", str(path), "--weights", "random", "--image_size", "32", "--layers", "res2"]
    assert run(common + ["--output", str(tmp_path / "single")]) == EXIT_OK
    single = json.loads((tmp_path / "single" / layout.MANIFEST_FILE).read_text())["counts"]
    assert (single["matched"], single["embedded"], single["errors"]) == (5, 4, 1)
    uris = pq.read_table(tmp_path / "single" / layout.IMAGES_DIR)["uri"].to_pylist()
    assert len(set(uris)) == 4
    incremental = common + ["--output", str(tmp_path / "root"), "--mode", "incremental"]
    assert run(incremental) == EXIT_OK and run(incremental) == EXIT_OK  # no AccountingError


def test_a_row_group_over_the_limit_is_refused_row_by_row_unread(tmp_path, monkeypatch):
    """Its size comes from the metadata; its image column is never read."""
    path = tmp_path / "groups.parquet"
    small, large = PICTURES["000000000"], PICTURES["000000001"] * 40
    table = pa.table({"key": ["s0", "s1", "l0", "l1", "s2"],
                      "jpg": [small, small, large, large, small]})
    with pq.ParquetWriter(path, table.schema) as writer:
        for rows in ((0, 2), (2, 2), (4, 1)):  # three row groups; the middle one is large
            writer.write_table(table.slice(*rows))
    limit = 10 * len(small)
    sizes = [shards.image_bytes(pq.ParquetFile(path).metadata.row_group(g), "jpg") for g in range(3)]
    assert sizes[0] < limit < sizes[1]
    read_groups = []
    real = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        read_groups.extend(kwargs.get("row_groups", []))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    got = list(shards.read_parquet(listed(path), 10_000_000, max_row_group_bytes=limit))
    assert outcomes(got) == [("s0", "image"), ("s1", "image"), ("l0", "RowGroupTooLarge"),
                             ("l1", "RowGroupTooLarge"), ("s2", "image")]
    assert read_groups == [0, 2]
    assert "row group 1 holds" in str(got[2].error) and "--max_row_group_bytes" in str(got[2].error)


def test_hostile_arrow_streams(tmp_path):
    """An Arrow stream cut mid-batch keeps its whole batches and ends in one ShardBroken row;
    a file that is no Arrow stream, and one whose batch of images is over the limit, are rows."""
    import pyarrow as pa

    images = [encode(rgb_pattern(20, 20, seed), "PNG") for seed in range(4)]
    table = pa.table({"image": pa.array(images, pa.binary()), "label": [0, 1, 2, 3]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=2):
            writer.write_batch(batch)
    whole = sink.getvalue().to_pybytes()
    (tmp_path / "good.arrow").write_bytes(whole)
    (tmp_path / "cut.arrow").write_bytes(whole[:-40])
    (tmp_path / "text.arrow").write_bytes(b"not arrow at all")
    assert shards.shard_format("data-00000-of-00002.arrow") == "arrow"
    assert outcomes(shards.read_arrow(listed(tmp_path / "good.arrow"), 10_000)) == [
        (str(i), "image") for i in range(4)]
    assert outcomes(shards.read_arrow(listed(tmp_path / "cut.arrow"), 10_000)) == [
        ("0", "image"), ("1", "image"), ("<shard>", "ShardBroken")]
    assert outcomes(shards.read_arrow(listed(tmp_path / "text.arrow"), 10_000)) == [("<shard>", "ShardBroken")]
    over = outcomes(shards.read_arrow(listed(tmp_path / "good.arrow"), 10_000, max_row_group_bytes=100))
    assert [kind for _, kind in over] == ["RowGroupTooLarge"] * 4
