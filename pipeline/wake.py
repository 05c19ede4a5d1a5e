"""Waking the launcher's main thread from another thread: KeyboardInterrupt raised there,
wherever it waits. pipeline/workers.py does it when a worker died; pipeline/interrupt.py's
SIGINT handler tells such a wake from a user's Ctrl-C by ``waking``. A module of its own so
that neither of those two imports the other."""

from __future__ import annotations

import os
import signal
import threading

#: Set: the next SIGINT is wake_main_thread's, not the user's.
waking = threading.Event()


def wake_main_thread() -> None:
    """Raise KeyboardInterrupt in the main thread wherever it waits (a lost worker)."""
    waking.set()
    os.kill(os.getpid(), signal.SIGINT)
