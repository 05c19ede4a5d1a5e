"""transforms/shards/codecs.py and the readers over it: WebDataset .tar.gz/.tgz written by
the webdataset package, gzip TFRecords written by TensorFlow, each read whole, streamed;
a cut-off or corrupt stream accounted like a truncated tar, naming the codec."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from schemas import ImageFile
from test_shards import PICTURES, listed, outcomes
from transforms import shards
from transforms.shards.codecs import open_shard


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_webdataset_gz(path) -> None:
    """webdataset's TarWriter compresses when the name ends in .gz (as its own tests do)."""
    import webdataset

    with webdataset.TarWriter(str(path), compress=True) as sink:
        for key, data in PICTURES.items():
            sink.write({"__key__": key, "jpg": data, "cls": str(int(key) % 3).encode(), "txt": b"caption"})


def write_gzip_tfrecord(path) -> None:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path), options=tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        for key, data in PICTURES.items():
            example = tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(key) % 3])),
            }))
            writer.write(example.SerializeToString())


@pytest.mark.parametrize("name", ["00000.tar.gz", "00000.tgz"])
def test_a_gzip_webdataset_shard_is_read_whole(tmp_path, name):
    path = tmp_path / name
    write_webdataset_gz(path)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert shards.shard_format(str(path)) == "webdataset"
    got = list(shards.read_webdataset(listed(path), 10_000_000, keep=("cls", "txt", "json")))
    assert [(f.meta.key, f.image_id, f.meta.kept) for f in got] == [
        (key, sha(data), (str(int(key) % 3), "caption", None)) for key, data in PICTURES.items()]


def test_a_gzip_tfrecord_is_read_whole(tmp_path):
    path = tmp_path / "train.tfrecord.gz"
    write_gzip_tfrecord(path)
    got = list(shards.read_tfrecord(listed(path), 10_000_000, keep=("label", "absent")))
    assert [(f.meta.key, f.image_id, f.meta.kept) for f in got] == [
        (str(i), sha(data), (str(int(key) % 3), None)) for i, (key, data) in enumerate(PICTURES.items())]


def test_a_gzip_tfrecord_without_gz_in_its_name_says_so(tmp_path):
    path = tmp_path / "train.tfrecord"
    write_gzip_tfrecord(path)
    ((_, error),) = [(r.key, r.error) for r in shards.read_tfrecord(listed(path), 10_000_000)]
    assert isinstance(error, shards.ShardBroken) and "name it *.gz" in str(error)


@pytest.mark.parametrize("writer,name,reader", [
    (write_webdataset_gz, "cut.tar.gz", lambda l: shards.read_webdataset(l, 10_000_000)),
    (write_gzip_tfrecord, "cut.tfrecord.gz", lambda l: shards.read_tfrecord(l, 10_000_000)),
])
def test_a_cut_off_compressed_shard_keeps_what_came_before_and_says_gzip(tmp_path, writer, name, reader):
    whole = tmp_path / ("whole." + name.split(".", 1)[1])
    writer(whole)
    data = whole.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) * 3 // 4])
    got = list(reader(listed(path)))
    images = [g for g in got if isinstance(g, ImageFile)]
    assert 1 <= len(images) < len(PICTURES)
    assert [image.image_id for image in images] == [sha(d) for d in list(PICTURES.values())[: len(images)]]
    last = got[-1]
    assert isinstance(last, shards.Refused) and last.key is None
    assert "gzip stream cut off" in str(last.error) and "truncated" in str(last.error)


def test_a_corrupt_gzip_shard_is_an_error_naming_gzip(tmp_path):
    whole = tmp_path / "whole.tar.gz"
    write_webdataset_gz(whole)
    data = bytearray(whole.read_bytes())
    data[-8] ^= 0xFF  # the CRC-32 of gzip's trailer: every byte decompresses, the check fails
    path = tmp_path / "corrupt.tar.gz"
    path.write_bytes(bytes(data))
    got = list(shards.read_webdataset(listed(path), 10_000_000))
    assert outcomes(got) == [(key, "image") for key in PICTURES] + [("<shard>", "ShardBroken")]
    assert "gzip stream corrupt" in str(got[-1].error) and "CRC" in str(got[-1].error)


def test_garbage_inside_a_gzip_tar_is_one_error_saying_it_was_decompressed(tmp_path):
    whole = tmp_path / "whole.tar.gz"
    write_webdataset_gz(whole)
    data = bytearray(whole.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    path = tmp_path / "corrupt.tar.gz"
    path.write_bytes(bytes(data))
    got = list(shards.read_webdataset(listed(path), 10_000_000))
    assert outcomes(got)[-1] == ("<shard>", "ShardBroken") and "gzip" in str(got[-1].error)


def test_a_plain_tar_named_tar_gz_is_not_called_truncated(tmp_path):
    import webdataset

    path = tmp_path / "plain.tar.gz"
    with webdataset.TarWriter(str(path), compress=False) as sink:
        sink.write({"__key__": "a", "jpg": PICTURES["000000001"]})
    (refused,) = list(shards.read_webdataset(listed(path), 10_000_000))
    assert refused.key is None and "gzip stream corrupt" in str(refused.error)
    assert "Not a gzipped file" in str(refused.error)


def test_open_shard_streams_a_large_gzip_in_small_reads(tmp_path):
    path = tmp_path / "big.bin.gz"
    payload = bytes(range(256)) * 40_000  # 10 MB
    path.write_bytes(gzip.compress(payload))
    with open_shard(str(path)) as handle:
        pieces = iter(lambda: handle.read(65536), b"")
        total = sum(len(piece) for piece in pieces)
        assert total == len(payload) and handle.tell() == len(payload)
