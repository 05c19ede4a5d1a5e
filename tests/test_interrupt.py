"""pipeline/interrupt.py: Beam's thread that reports a worker killed by a Ctrl-C prints
nothing (the launcher reports the Ctrl-C itself, whichever gets there first); any other
thread's failure goes to the hook there was before, which is put back afterwards."""

from __future__ import annotations

import threading

from pipeline.interrupt import WORKER_ENDED_BY_SIGINT, Interrupts


def _fail_in_a_thread(exc: BaseException) -> None:
    def fail():
        raise exc

    thread = threading.Thread(target=fail, name="run_worker")
    thread.start()
    thread.join()


def test_a_worker_ended_by_sigint_is_not_a_traceback_and_others_still_are(tmp_path, monkeypatch):
    seen = []
    hook = lambda args: seen.append((args.thread.name, type(args.exc_value).__name__))  # noqa: E731
    monkeypatch.setattr(threading, "excepthook", hook)  # as Python's own printer would be
    with Interrupts(str(tmp_path)):
        _fail_in_a_thread(RuntimeError(f"{WORKER_ENDED_BY_SIGINT} (seen in a Ctrl-C race)"))
        _fail_in_a_thread(ValueError("something else"))
    assert seen == [("run_worker", "ValueError")]
    assert threading.excepthook is hook
    _fail_in_a_thread(RuntimeError(WORKER_ENDED_BY_SIGINT))  # outside a run: as before
    assert seen[-1] == ("run_worker", "RuntimeError")
