"""models/handover.py: batches through shared memory, and the socket when there is no room."""

from __future__ import annotations

import errno
import os
import pathlib

import numpy as np
import pytest

from models import handover
from models.handler import ResNet50Handler
from models.handover import BatchSlot, SlotReader
from models.serving import SharedModel
from schemas import ExtractionConfig

SHM = pathlib.Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="POSIX shared memory under /dev/shm")
CONFIG = ExtractionConfig(layers=("res2",), image_size=32, weights="random", batch_size=4)


class EchoModel:
    """res2 row i holds image i's first 256 pixel values: every byte handed over shows."""

    def __init__(self, config):
        pass

    def __call__(self, pixels):
        return {"res2": pixels.reshape(len(pixels), -1)[:, :256].astype(np.float32)}


def _pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_a_written_batch_reads_back_the_same_bytes():
    slot = BatchSlot.create(4 * 32 * 32 * 3)
    try:
        reader = SlotReader()
        for seed, n in [(1, 4), (2, 3)]:
            pixels = _pixels(n, seed)
            assert slot.holds(pixels)
            assert np.array_equal(reader.read(*slot.write(pixels)), pixels)
        assert not slot.holds(_pixels(5))
        assert (SHM / slot.name).exists()
    finally:
        slot.close()
    assert not (SHM / slot.name).exists()


def test_no_room_in_shared_memory_falls_back_and_leaves_nothing(monkeypatch, caplog):
    before = set(os.listdir(SHM))

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    assert BatchSlot.create(1 << 20) is None
    assert set(os.listdir(SHM)) == before
    assert "through the socket" in caplog.text


def test_the_reader_keeps_its_newest_mappings():
    slots = [BatchSlot.create(64) for _ in range(3)]
    try:
        reader = SlotReader(limit=2)
        for slot in slots:
            reader.read(*slot.write(np.zeros((1, 4, 4, 4), np.uint8)))
        assert list(reader._maps) == [slots[1].name, slots[2].name]  # pylint: disable=protected-access
    finally:
        for slot in slots:
            slot.close()


@pytest.mark.parametrize("room", [True, False])
def test_a_shared_model_gives_the_same_numbers_with_or_without_shared_memory(room, monkeypatch):
    if not room:
        monkeypatch.setattr(handover.BatchSlot, "create", classmethod(lambda cls, nbytes: None))
    model = SharedModel(ResNet50Handler(CONFIG, model_copies=1, model_factory=EchoModel))
    try:
        assert (model._slot is not None) == room  # pylint: disable=protected-access
        for n in (4, 2, 6):  # 6 is over the batch size: the socket, even with a block
            pixels = _pixels(n, n)
            np.testing.assert_array_equal(model(pixels)["res2"], EchoModel(CONFIG)(pixels)["res2"])
    finally:
        model.close()


def test_a_block_the_model_process_cannot_map_sends_batches_through_the_socket(caplog):
    model = SharedModel(ResNet50Handler(CONFIG, model_copies=1, model_factory=EchoModel))
    try:
        model._slot._memory.unlink()  # pylint: disable=protected-access  # gone for the model process
        pixels = _pixels(3, 7)
        np.testing.assert_array_equal(model(pixels)["res2"], EchoModel(CONFIG)(pixels)["res2"])
        assert model._slot is None and "batches go through the socket" in caplog.text  # pylint: disable=protected-access
    finally:
        model.close()
