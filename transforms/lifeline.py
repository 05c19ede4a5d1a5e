"""A local worker process ends itself when the launcher that started it is gone.

Beam's local runner starts worker processes that outlive a launcher killed with SIGKILL
(observed: 5 to 30 s, while still writing). The launcher of a local run names itself in
LAUNCHER_PID_VARIABLE; the workers inherit the environment, and on first import of
``transforms`` each starts one daemon thread that exits the process within about a second
of the launcher's end. Such a worker also ignores SIGINT: a terminal's Ctrl-C reaches the
whole process group, and the launcher alone handles it (pipeline/interrupt.py), ending
the workers itself. The launcher names this module in --beam_plugins, which Beam's worker
imports in its main thread as it starts, before it connects: from then on (about a second
after the process starts) a Ctrl-C never reaches the worker. (Beam's own
``terminate_sdk_harness`` ends a broken harness with SIGINT, then SIGKILL after 60 s: in
a local run the second ends it.) Remote workers (Dataflow) never see the variable."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import threading
import time

LAUNCHER_PID_VARIABLE = "RESNET50_EMBEDDINGS_LAUNCHER_PID"
#: Named in --beam_plugins of local runs: each worker imports it in its main thread at start.
LIFELINE_PLUGIN = "transforms.lifeline"
CHECK_SECONDS = 0.5
_started = False


def launcher_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _watch(pid: int) -> None:
    while launcher_alive(pid):
        time.sleep(CHECK_SECONDS)
    os._exit(1)  # no cleanup to run: the run is incomplete and has no manifest


def ignore_interrupts() -> None:
    """SIGINT ignored by the whole process, from any thread: ``signal.signal`` only works in
    the main thread, and a worker imports ``transforms`` in one of Beam's threads."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.signal.restype = ctypes.c_void_p
        libc.signal(int(signal.SIGINT), ctypes.c_void_p(int(signal.SIG_IGN)))
    except (OSError, AttributeError, TypeError):  # no libc to call: Ctrl-C stays noisy
        pass


def start() -> bool:
    """Start the watch in a worker process of a local run; True when started."""
    global _started
    value = os.environ.get(LAUNCHER_PID_VARIABLE, "")
    if _started or not value.isdigit() or int(value) == os.getpid():
        return False
    _started = True
    ignore_interrupts()
    threading.Thread(target=_watch, args=(int(value),), name="launcher-lifeline", daemon=True).start()
    return True
