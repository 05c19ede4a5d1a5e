"""SlowDecodes: log, once, the URI of a decode that runs longer than --decode_warn_seconds,
so that an operator can find the file behind a stuck worker."""

from __future__ import annotations

import logging
import threading
import time

_log = logging.getLogger(__name__)


class SlowDecodes:
    """One per process and threshold. ``begin(uri)`` before a decode returns a token that
    ``end(token)`` takes after it; a daemon thread looks at the decodes in progress a few
    times per threshold and logs each one that is over it, once. Cost on the hot path: a
    dict insert and a pop."""

    _instances: dict[float, "SlowDecodes"] = {}
    _instances_lock = threading.Lock()

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._running: dict[int, tuple[str, float]] = {}
        self._logged: set[int] = set()
        self._lock = threading.Lock()
        self._next = 0
        thread = threading.Thread(target=self._watch, name="slow-decode-watch", daemon=True)
        thread.start()

    @classmethod
    def for_threshold(cls, seconds: float) -> "SlowDecodes":
        with cls._instances_lock:
            if seconds not in cls._instances:
                cls._instances[seconds] = cls(seconds)
            return cls._instances[seconds]

    def begin(self, uri: str) -> int:
        with self._lock:
            self._next += 1
            token = self._next
            self._running[token] = (uri, time.monotonic())
        return token

    def end(self, token: int) -> None:
        with self._lock:
            self._running.pop(token, None)
            self._logged.discard(token)

    def over(self, now: float | None = None) -> list[tuple[int, str, float]]:
        """(token, uri, seconds so far) of each decode over the threshold not logged yet."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return [(token, uri, now - started) for token, (uri, started) in self._running.items()
                    if now - started > self.seconds and token not in self._logged]

    def _watch(self) -> None:
        while True:
            time.sleep(min(1.0, self.seconds / 4))
            for token, uri, seconds in self.over():
                _log.warning("decoding %s has taken %.0f s so far (over --decode_warn_seconds %s); "
                             "if this worker seems stuck, this file is why", uri, seconds, self.seconds)
                with self._lock:
                    if token in self._running:
                        self._logged.add(token)
