#!/usr/bin/env bash
# Runs the test suite in .venv (created and installed on first use). Extra args go to pytest.
# --fast: the unit tier only (-m "not slow"; see docs/testing.md). CI runs everything.
# Tests run on every core (pytest-xdist, at most 4 workers, one test at a time; tests that
# share a module fixture stay on one worker). TEST_WORKERS=0: all in this process; =N: N workers.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
workers="${TEST_WORKERS:-auto}"
spread=(-n "$workers")
if [ "$workers" = "auto" ]; then spread+=(--maxprocesses=4); fi
if [ "$workers" != "0" ]; then spread+=(--dist=loadscope); fi  # tests/conftest.py picks the scheduler
if [ "${1:-}" = "--fast" ]; then
  shift
  exec python -m pytest tests -m "not slow" "${spread[@]}" "$@"
fi
exec python -m pytest tests "${spread[@]}" "$@"
