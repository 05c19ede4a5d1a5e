"""Run a snippet in a fresh Python, for tests of what a process sets for its whole life
(the collector's frozen objects, malloc's thresholds): nothing leaks into the test process."""

import os
import subprocess
import sys
import textwrap


def fresh_python(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    """``code`` (dedented) run with ``args`` in a new interpreter, with ``env`` as its whole
    environment (default: this one's); its standard output, stripped. Fails the test when
    it exits non-zero."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True,
                          text=True, timeout=300, check=False, env=os.environ.copy() if env is None else env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
