#!/usr/bin/env bash
# Runs the test suite in .venv (created and installed on first use). Extra args go to pytest.
# --fast: the unit tier only (-m "not slow"; see docs/testing.md). CI runs everything.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
if [ "${1:-}" = "--fast" ]; then
  shift
  exec python -m pytest tests -m "not slow" "$@"
fi
exec python -m pytest tests "$@"
