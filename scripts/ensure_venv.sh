#!/usr/bin/env bash
# Source me: creates .venv when missing and (re)installs the package with its test extra
# whenever setup.py has changed since the last install. Needs python3 >= 3.10 and pip access.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo_root/.venv"
python_bin="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating $venv with $($python_bin --version 2>&1)" >&2
  "$python_bin" -m venv "$venv"
fi
stamp="$venv/.installed-$(sha256sum "$repo_root/setup.py" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "[setup] installing the package and its dependencies (a few minutes the first time)" >&2
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$repo_root[test]"
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
