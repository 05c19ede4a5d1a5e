"""transforms/slow.py: a decode over --decode_warn_seconds is logged once, with its URI."""

from __future__ import annotations

import logging
import time

from schemas import FileMeta, ImageFile
from transforms import decode
from transforms.slow import SlowDecodes


def test_over_threshold_is_reported_once_and_not_after_it_ends():
    watch = SlowDecodes(3600)  # its own thread never reports in this test
    first, second = watch.begin("mem://slow.jpg"), watch.begin("mem://fast.jpg")
    watch.end(second)
    later = time.monotonic() + 3601
    assert [(uri, round(s) >= 3600) for _, uri, s in watch.over(later)] == [("mem://slow.jpg", True)]
    assert watch.over(time.monotonic()) == []
    watch.end(first)
    assert watch.over(later) == []


def test_a_slow_decode_logs_its_uri_once(monkeypatch, caplog):
    def slow_decode(data, **_):
        time.sleep(0.9)
        raise ValueError("gave up")

    monkeypatch.setattr(decode, "decode_image", slow_decode)
    fn = decode._DecodeFn(100, 1, None, "center_crop", ("JPEG",), decode_warn_seconds=0.2)
    fn.setup()
    with caplog.at_level(logging.WARNING, logger="transforms.slow"):
        out = list(fn.process(ImageFile(FileMeta("gs://bucket/stuck.jpg", "id"), b"x")))
        time.sleep(0.5)  # the decode is over: nothing more is logged
    assert [o.value.error_type for o in out] == ["ValueError"]
    lines = [r.getMessage() for r in caplog.records if r.name == "transforms.slow"]
    assert len(lines) == 1 and "gs://bucket/stuck.jpg" in lines[0] and "--decode_warn_seconds 0.2" in lines[0]
