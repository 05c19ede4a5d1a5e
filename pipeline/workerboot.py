"""How a local worker process starts (pipeline/local.py's CtrlCSafeRunner runs
``python -m pipeline.workerboot apache_beam.runners.worker.sdk_worker_main``, with SIGINT
ignored by the shell that execs it): first, the kernel is asked to SIGKILL this process
when its launcher dies (``PR_SET_PDEATHSIG``; Linux), so a launcher killed while its
workers are still importing Beam leaves no orphan (transforms/lifeline.py covers the same
once ``transforms`` is imported, and on other systems); then Beam's scan of DoFns is
remembered (pipeline/dofn_specs.py) and Beam's SDK worker runs as ``python -m`` would run it."""

from __future__ import annotations

import ctypes
import os
import runpy
import shlex
import signal
import sys

PR_SET_PDEATHSIG = 1
LAUNCHER_PID_VARIABLE = "RESNET50_EMBEDDINGS_LAUNCHER_PID"  # transforms/lifeline.py's


def boot_command(module: str) -> str:
    """The shell command that starts a local worker process running ``module``: SIGINT
    ignored by the shell, so the Python that replaces it starts with it ignored and never
    installs its KeyboardInterrupt handler; then main() below."""
    return f"trap '' INT; exec {shlex.quote(sys.executable)} -m pipeline.workerboot {module}"


def die_with_launcher() -> None:
    """SIGKILL this process when its parent (the launcher, the shell having exec'd) dies;
    exit at once when it is already gone."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl here: transforms/lifeline.py still applies
        return
    launcher = os.environ.get(LAUNCHER_PID_VARIABLE, "")
    if launcher.isdigit() and os.getppid() != int(launcher):
        os._exit(1)  # the launcher died before the request was made


def main() -> None:
    die_with_launcher()
    from pipeline.dofn_specs import remember_dofn_specs  # after the launcher check: it imports Beam

    remember_dofn_specs()
    module = sys.argv[1]
    sys.argv = [sys.argv[0]] + sys.argv[2:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
