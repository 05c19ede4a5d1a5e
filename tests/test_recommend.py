"""pipeline/devicecheck/recommend.py and the device check's pure parts: which row wins,
the flags that ask for it, vCPUs per GPU, which precisions a device is measured in."""

import pytest

from models.gpus import Gpu
from pipeline.devicecheck import recommend
from pipeline.devicecheck.cli import check_writable, precisions_for


def _row(precision, rate, *, jit=False, batch=32, cosine=None, refused=None):
    row = {"precision": precision, "jit_compile": jit, "batch_size": batch}
    if rate is not None:
        row["images_per_s"] = rate
    if cosine is not None:
        row["min_cosine"] = cosine
    if refused:
        row["refused"] = refused
    return row


def test_the_fastest_certified_row_wins_and_uncertified_or_refused_ones_never_do():
    rows = [_row("float32", 400.0), _row("mixed_float16", 990.0, cosine=0.995, batch=64),
            _row("mixed_bfloat16", 2000.0, cosine=0.97), _row("mixed_float16", None, cosine=-1.0, refused="x"),
            _row("mixed_float16", 1090.0, jit=True, cosine=0.995)]
    best = recommend.best_row(rows, 0.99)
    assert best["images_per_s"] == 1090.0
    assert recommend.recommended_flags(best, gpus=1) == [
        "--mixed_precision", "float16", "--jit_compile", "on", "--batch_size", "32"]
    assert recommend.best_row(rows, 0.999)["precision"] == "float32"
    assert recommend.best_row([_row("mixed_bfloat16", 9.0, cosine=0.5)], 0.99) is None


def test_several_gpus_get_one_copy_each_and_float32_is_spelled_as_the_flag_takes_it():
    flags = recommend.recommended_flags(_row("float32", 1.0, batch=256), gpus=4)
    assert flags == ["--mixed_precision", "none", "--jit_compile", "off", "--batch_size", "256",
                     "--gpus", "auto", "--model_copies", "4"]


@pytest.mark.parametrize("model,feed,vcpus", [(3570.0, 500.0, 9), (1000.0, 1000.0, 2), (415.0, 80.0, 7)])
def test_vcpus_to_feed_round_up_and_count_the_model_process(model, feed, vcpus):
    assert recommend.vcpus_to_feed(model, feed) == vcpus


def test_precisions_follow_compute_capability_and_cpu_flags():
    t4, a100, old = Gpu(0, "Tesla T4", compute_capability=(7, 5)), Gpu(0, "A100", compute_capability=(8, 0)), \
        Gpu(0, "Tesla P100", compute_capability=(6, 0))
    assert precisions_for(t4, None) == ["none", "float16"]
    assert precisions_for(a100, None) == ["none", "float16", "bfloat16"]
    assert precisions_for(old, None) == ["none"]
    assert precisions_for(Gpu(0, "Mystery"), None) == ["none", "float16"]
    assert precisions_for(None, frozenset({"avx2", "avx512_bf16"})) == ["none", "bfloat16"]
    assert precisions_for(None, frozenset({"avx2"})) == ["none"]
    assert precisions_for(None, None) == ["none"]


def test_an_unwritable_json_path_is_one_line_before_anything_is_measured(tmp_path):
    assert check_writable(str(tmp_path / "out.json")) is None
    assert not (tmp_path / "out.json").exists()  # the check leaves nothing behind
    assert "does not exist" in check_writable(str(tmp_path / "missing" / "out.json"))
    assert "is a folder" in check_writable(str(tmp_path))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        import os

        if os.geteuid() != 0:  # root writes anywhere
            assert "cannot write there" in check_writable(str(locked / "out.json"))
    finally:
        locked.chmod(0o700)
