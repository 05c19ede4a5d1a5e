"""Where a ResNet50Handler's model runs for ExtractLayers: in this process, or in model
processes shared by every SDK process of the machine (Beam's multi_process_shared)."""

from __future__ import annotations

import functools
import logging
import os
import time

import numpy as np
from apache_beam.utils.multi_process_shared import MultiProcessShared

from models import nodelay
from models.handler import LayerModel, ResNet50Handler
from models.handover import BatchSlot, SlotReader, SlotUnavailable
from models.placement import STATE_DIR

nodelay.enable()  # before this process connects to, or accepts, a model process's socket

_log = logging.getLogger(__name__)

#: How a call fails when the model process at the other end is gone (killed, crashed, OOM):
#: BrokenPipe, ConnectionReset and ConnectionRefused are ConnectionErrors; a socket closed
#: mid-reply is an EOFError.
PROCESS_LOST = (ConnectionError, EOFError)


class ModelProcessLost(RuntimeError):
    """The model process could not be reached, or not started again, after retries."""


class ServedModel:
    """What a model process holds: the handler's model, the callers' shared-memory blocks,
    and the pid of the SDK process that started it (``MultiProcessShared`` ties the model
    process's life to it)."""

    def __init__(self, model: LayerModel):
        self._model = model
        self._slots = SlotReader()
        self._parent = os.getppid()

    def __call__(self, pixels: np.ndarray) -> dict:
        return self._model(pixels)

    def from_slot(self, name: str, shape: tuple[int, ...]) -> dict:
        """The model on a batch its caller wrote into the shared memory ``name``."""
        return self._model(self._slots.read(name, shape))

    def started_by(self) -> int:
        return self._parent

    def pid(self) -> int:
        return os.getpid()

    def describe(self) -> dict:
        """Where and how this copy computes (PlacedModel.describe)."""
        return self._model.describe() if hasattr(self._model, "describe") else {"pid": os.getpid()}


class _BeamServerChatter(logging.Filter):
    """Drops the INFO lines Beam's model-process server logs to the root logger ("Proxy
    serving <tag> at (host, port)", "Server process exiting"), which reach the console raw;
    its warnings and errors pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.module != "multi_process_shared"


def _serve(handler: ResNet50Handler, copy: int) -> ServedModel:
    """Runs in model process ``copy``: the one place its model is built (handler.load_copy,
    which pins the process to its GPU before TensorFlow loads)."""
    logging.getLogger().addFilter(_BeamServerChatter())
    return ServedModel(handler.load_copy(copy))


class SharedModel:
    """Callable: pixels (n, H, W, 3) uint8 -> {layer: array}, from the handler's model.

    Without ``model_copies`` the model lives in this process, one per process for every
    DoFn instance (``shared.Shared``), as RunInference loads it by default. With
    ``model_copies`` N, copy i lives in a model process of its own, one per machine for the
    job (tag ``<handler.model_tag>-<i>``), started by the first SDK process that asks and
    reached by all of them through ``MultiProcessShared(spawn_process=True)``; batches are
    spread over the copies in turn. Only that process touches the GPU, and the SDK
    processes keep every core for reading and decoding. Batches travel through a block of
    shared memory of ``batch_size`` images owned by this object (models/handover.py), or
    pickled through the socket when there is no room for one.

    A model process that is lost mid-call (killed, crashed) is started again by whichever
    process notices first and the batch is sent again, up to ``reloads`` times in a row;
    then ModelProcessLost is raised (the bundle fails, and Beam retries it or fails the
    job: no image is lost or written twice). A model that cannot be loaded raises
    ModelProcessLost with the load's traceback."""

    def __init__(self, handler: ResNet50Handler, *, reloads: int = 2):
        self._handler = handler
        self._reloads = reloads
        self.reloaded = 0
        self._copies: list = []
        #: The copies that embedded a batch for this process (their records go to the manifest).
        self.used: set[int] = set()
        self._local = None
        self._slot = None
        if not handler.share_model_across_processes():
            self._local = handler.per_process.acquire(handler.load_model, tag=handler.model_tag)
            return
        self._copies = [self._acquire(index) for index in range(handler.model_copies())]
        self._turn = os.getpid() % len(self._copies)
        config = handler.config
        self._slot = BatchSlot.create(config.batch_size * int(np.prod(config.input_shape)))

    def _tag(self, index: int) -> str:
        return f"{self._handler.model_tag}-{index}"

    def _acquire(self, index: int):
        """A proxy to copy ``index``, starting its model process when there is none. A model
        process that dies while this process joins it is joined or started once more, up to
        ``reloads`` times; one that fails to load the model is not (its error is final)."""
        os.makedirs(STATE_DIR, exist_ok=True)
        losses = 0
        while True:
            try:
                return MultiProcessShared(functools.partial(_serve, self._handler, index), tag=self._tag(index),
                                          path=STATE_DIR, always_proxy=True, spawn_process=True).acquire()
            except PROCESS_LOST as exc:
                losses += 1
                if losses > self._reloads:
                    raise ModelProcessLost(f"the model process {self._tag(index)} could not be joined "
                                           f"{losses} times in a row ({type(exc).__name__}: {exc})") from exc
            except RuntimeError as exc:  # MultiProcessShared: the model process failed to start
                raise ModelProcessLost(
                    f"the model process {self._tag(index)} could not be started: {_last_line(exc)}\n{exc}") from exc

    def __call__(self, pixels: np.ndarray) -> dict:
        if self._local is not None:
            return self._local(pixels)
        index = self._turn
        self._turn = (self._turn + 1) % len(self._copies)
        losses = 0
        while True:
            try:
                outputs = self._send(self._copies[index], pixels)
                self.used.add(index)
                return outputs
            except PROCESS_LOST as exc:
                losses += 1
                if losses > self._reloads:
                    raise ModelProcessLost(
                        f"the model process {self._tag(index)} was lost {losses} times in a row "
                        f"({type(exc).__name__}: {exc}); the batch of {len(pixels)} is not embedded "
                        "here and goes back to the runner") from exc
                _log.warning("model process %s lost (%s: %s); starting or joining another and "
                             "sending the batch of %d again", self._tag(index), type(exc).__name__, exc,
                             len(pixels))
                self._copies[index] = self._acquire(index)
                self.reloaded += 1

    def _send(self, model, pixels: np.ndarray) -> dict:
        if self._slot is not None and self._slot.holds(pixels):
            try:
                return model.from_slot(*self._slot.write(pixels))
            except SlotUnavailable as exc:
                _log.warning("%s; batches go through the socket", exc)
                self._slot.close()
                self._slot = None
        return model(pixels)

    def describe(self, copies: set[int] | None = None) -> list[dict]:
        """Where each model this process uses computes: its own model, or the model
        processes ``copies`` (default: all) as they describe themselves."""
        if self._local is not None:
            return [self._local.describe()] if hasattr(self._local, "describe") else []
        records = []
        for index, proxy in enumerate(self._copies):
            if copies is not None and index not in copies:
                continue
            try:
                records.append(proxy.describe())
            except PROCESS_LOST:
                pass  # gone: it described itself before, or a new one will
        return records

    def close(self) -> None:
        """End the model processes this process started (the others end with theirs), and
        release the shared memory."""
        if self._slot is not None:
            self._slot.close()
            self._slot = None
        ended = []
        for index, proxy in enumerate(self._copies):
            try:
                if proxy.started_by() == os.getpid():
                    _remove(os.path.join(STATE_DIR, self._tag(index) + ".lock"))
                    ended.append((self._tag(index), proxy.pid()))
                    proxy.singletonProxy_unsafe_hard_delete()  # the model process exits
            except PROCESS_LOST:
                pass  # the model process is already gone, or ended while answering
            except Exception as exc:  # pylint: disable=broad-except  # teardown must not fail the job
                _log.info("model process %s not ended: %s", self._tag(index), exc)
        self._copies = []
        for tag, pid in ended:  # its memory (and a GPU's) is free when close returns
            if not _wait_gone(pid, PROCESS_END_SECONDS):
                _log.info("model process %s (pid %d) still exiting after %d s", tag, pid, PROCESS_END_SECONDS)


#: How long close() waits for a model process it ended to be gone (tearing down a process
#: that holds TensorFlow takes from milliseconds to seconds on a busy machine).
PROCESS_END_SECONDS = 30


def _wait_gone(pid: int, seconds: float) -> bool:
    """True once ``pid`` has exited (gone, or a zombie its parent has not yet reaped). Reads
    /proc: where there is none, it does not wait."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            state = open(f"/proc/{pid}/stat", encoding="ascii").read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
