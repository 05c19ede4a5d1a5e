"""models/placement.py: --gpus, copy i on GPU i mod G, per-process models spread by claims,
and CUDA_VISIBLE_DEVICES set only where it can still take effect."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from models.gpus import Gpu, GpuListing
from models.placement import (
    ProcessClaims,
    Target,
    parse_gpus,
    target_for_copy,
    target_for_process,
    visible_to_this_process,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWO = GpuListing((Gpu(0, "Tesla T4", "GPU-aaaa-0000", (7, 5)), Gpu(1, "Tesla T4", "GPU-bbbb-1111", (7, 5))),
                 "nvidia-smi")
NONE = GpuListing((), "none")


@pytest.mark.parametrize("given, parsed", [
    ("auto", "auto"), (None, "auto"), (" NONE ", "none"), ("0,2", (0, 2)), ("3", (3,)), ("1, 0", (1, 0))])
def test_gpus_option(given, parsed):
    assert parse_gpus(given) == parsed


@pytest.mark.parametrize("given", ["0,,x", "gpu0", "1,1", ","])
def test_bad_gpus_option_names_the_flag(given):
    with pytest.raises(ValueError, match="--gpus"):
        parse_gpus(given)


def test_copy_i_runs_on_gpu_i_mod_g_named_by_uuid(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    targets = [target_for_copy(copy, "auto", TWO) for copy in range(4)]
    assert [t.visible for t in targets] == ["GPU-aaaa-0000", "GPU-bbbb-1111"] * 2
    assert [t.gpu.index for t in targets] == [0, 1, 0, 1]
    assert "copy 3 -> GPU 1 of 2" in targets[3].reason


def test_chosen_indexes_the_driver_does_not_list_still_pin_by_index(caplog):
    """How CI tests pinning: no GPU, --gpus 0,1 --model_copies 2."""
    targets = [target_for_copy(copy, (0, 1), NONE) for copy in range(2)]
    assert [(t.gpu, t.visible) for t in targets] == [(None, "0"), (None, "1")]
    assert "lists no GPU 0,1" in caplog.text


def test_one_chosen_gpu_takes_every_copy():
    assert {target_for_copy(copy, (1,), TWO).visible for copy in range(3)} == {"GPU-bbbb-1111"}


def test_none_hides_every_gpu_and_auto_without_gpus_changes_nothing():
    assert target_for_copy(0, "none", TWO) == Target(None, "", "--gpus none: CPU")
    cpu = target_for_copy(0, "auto", NONE)
    assert cpu.gpu is None and cpu.visible is None


def test_auto_keeps_to_what_cuda_visible_devices_already_allows(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb")
    assert visible_to_this_process(TWO) == (TWO.gpus[1],)
    assert target_for_copy(0, "auto", TWO).visible == "GPU-bbbb-1111"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    assert [g.index for g in visible_to_this_process(TWO)] == [1, 0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_to_this_process(TWO) == ()


def _claim(folder: str, pid: int, position: int) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"pid-{pid}"), "w") as handle:
        json.dump({"pid": pid, "position": position}, handle)


def test_a_process_takes_the_gpu_with_the_fewest_live_processes(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    folder = str(tmp_path / "claims")
    _claim(folder, os.getppid(), 0)  # a live process on GPU 0
    _claim(folder, 1, 0)  # init: alive
    _claim(folder, 2 ** 22 + 12345, 1)  # no such process: its claim is dropped
    target = target_for_process("auto", TWO, ProcessClaims(folder))
    assert target.gpu.index == 1 and target.visible == "GPU-bbbb-1111"
    assert not os.path.exists(os.path.join(folder, f"pid-{2 ** 22 + 12345}"))
    with open(os.path.join(folder, f"pid-{os.getpid()}")) as handle:
        assert json.load(handle) == {"pid": os.getpid(), "position": 1}


def test_processes_of_one_job_spread_over_the_gpus(tmp_path):
    """Four real processes claim in turn, each staying alive: two per GPU."""
    folder = str(tmp_path / "claims")
    code = ("import sys; from models.gpus import Gpu, GpuListing; "
            "from models.placement import ProcessClaims, target_for_process; "
            "listing = GpuListing((Gpu(0, 'T4', 'GPU-a'), Gpu(1, 'T4', 'GPU-b')), 'test'); "
            f"print(target_for_process('auto', listing, ProcessClaims({folder!r})).visible, flush=True); "
            "sys.stdin.read()")
    processes, seen = [], []
    try:
        for _ in range(4):
            process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
            processes.append(process)
            seen.append(process.stdout.readline().strip())  # waits for this claim before the next
    finally:
        for process in processes:
            process.communicate("")
    assert sorted(seen) == ["GPU-a", "GPU-a", "GPU-b", "GPU-b"]


def test_pin_sets_the_variables_before_tensorflow_loads_and_never_after():
    code = ("import os; from models.placement import Target, pin; "
            "ok = pin(Target(None, '1', 'test')); "
            "print(ok, os.environ['CUDA_VISIBLE_DEVICES'], os.environ['CUDA_DEVICE_ORDER']); "
            "import tensorflow as tf; tf.config.list_physical_devices('GPU'); "
            "print(pin(Target(None, '0', 'test')), os.environ['CUDA_VISIBLE_DEVICES'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.stdout.split("\n")[:2] == ["True 1 PCI_BUS_ID", "False 1"]
