"""read_tfrecord: the tf.train.Example records of one TFRecord file (plain or gzip), streamed,
their CRCs checked."""

from __future__ import annotations

import json
import struct

from schemas import ListedFile
from transforms.shards.codecs import open_shard
from transforms.shards.common import Keys, NoImageInSample, ShardBroken, as_text, refusal, sample

#: The image feature tried first, then TFRECORD_FALLBACK_FEATURE, then the only bytes feature.
TFRECORD_IMAGE_FEATURE = "image/encoded"
TFRECORD_FALLBACK_FEATURE = "image"  # TensorFlow Datasets' Image feature

def _masked_crc32c(data: bytes) -> int:
    from apache_beam.io.tfrecordio import _TFRecordUtil

    return _TFRecordUtil._masked_crc32c(data)  # pylint: disable=protected-access


def tfrecord_records(handle, max_record_bytes: int):
    """The payload of each record, CRCs checked; ShardBroken at the first bad one."""
    offset = 0
    while True:
        header = handle.read(12)
        if not header:
            return
        if len(header) != 12:
            raise ShardBroken(f"TFRecord cut off at byte {offset} (record header)")
        length, length_crc = struct.unpack("<QI", header)
        if _masked_crc32c(header[:8]) != length_crc:
            hint = ("; the file starts as gzip does: name it *.gz to read it compressed"
                    if offset == 0 and header[:2] == b"\x1f\x8b" else "")
            raise ShardBroken(f"TFRecord length checksum wrong at byte {offset}{hint}")
        if length > max_record_bytes:
            raise ShardBroken(f"TFRecord record at byte {offset} claims {length} bytes, over "
                              f"--max_file_bytes {max_record_bytes}")
        body = handle.read(length + 4)
        if len(body) != length + 4:
            raise ShardBroken(f"TFRecord cut off at byte {offset} (record of {length} bytes)")
        payload, payload_crc = body[:length], struct.unpack("<I", body[length:])[0]
        if _masked_crc32c(payload) != payload_crc:
            raise ShardBroken(f"TFRecord data checksum wrong in the record at byte {offset}")
        yield payload
        offset += 16 + length



def _kind(feature) -> str:
    return feature.WhichOneof("kind") or "empty"


def _describe(example) -> str:
    return ", ".join(f"{name} ({_kind(value).replace('_list', '')})"
                     for name, value in sorted(example.features.feature.items())) or "none"


def image_feature(example, requested: str | None) -> bytes:
    """The image bytes of one Example: ``requested``'s, else ``image/encoded``'s, else
    ``image``'s, else the only bytes feature's. NoImageInSample lists the features present."""
    features = example.features.feature
    if requested:
        names = [requested]
    else:
        names = [n for n in (TFRECORD_IMAGE_FEATURE, TFRECORD_FALLBACK_FEATURE) if n in features]
        if not names:
            names = [n for n, v in features.items() if _kind(v) == "bytes_list"]
            if len(names) > 1:
                raise NoImageInSample(f"no feature {TFRECORD_IMAGE_FEATURE!r} or "
                                      f"{TFRECORD_FALLBACK_FEATURE!r}, and several bytes features; "
                                      f"name one with --image_column (features: {_describe(example)})")
    for name in names:
        values = features[name].bytes_list.value if name in features else []
        if values and values[0]:
            return values[0]
    wanted = names[0] if names else TFRECORD_IMAGE_FEATURE
    raise NoImageInSample(f"no bytes in feature {wanted!r} (features: {_describe(example)}); "
                          "name the image feature with --image_column")


def kept_features(example, keep: tuple[str, ...]):
    """The ``keep`` features of one Example as text (a list of values as JSON), None where absent."""
    if not keep:
        return None
    features, kept = example.features.feature, []
    for name in keep:
        if name not in features or _kind(features[name]) == "empty":
            kept.append(None)
            continue
        values = list(getattr(features[name], _kind(features[name])).value)
        texts = [as_text(v) for v in values]
        kept.append(texts[0] if len(texts) == 1 else json.dumps(texts))
    return tuple(kept)


def read_tfrecord(listed: ListedFile, max_record_bytes: int, feature: str | None = None, hashing=None,
                  keep: tuple[str, ...] = ()):
    """One ImageFile per tf.train.Example record; the key is the record number. The image is
    ``feature`` (--image_column), else found by image_feature; ``keep`` names features
    whose values go to ``kept`` as text. A ``.gz`` file is decompressed as it is read."""
    from tensorflow.core.example import example_pb2

    keys = Keys()
    with open_shard(listed.uri) as handle:
        number = 0
        try:
            for payload in tfrecord_records(handle, max_record_bytes):
                key = keys(str(number))
                number += 1
                try:
                    example = example_pb2.Example.FromString(payload)
                except Exception as exc:  # Not a tf.train.Example.
                    yield refusal(listed, key, NoImageInSample(
                        f"record is not a tf.train.Example: {type(exc).__name__}: {exc}"))
                    continue
                try:
                    data = image_feature(example, feature)
                except NoImageInSample as exc:
                    yield refusal(listed, key, exc)
                    continue
                yield sample(listed, key, data, kept_features(example, keep), hashing)
        except ShardBroken as exc:
            yield refusal(listed, None, ShardBroken(f"{exc}; {number} records read before it"))
