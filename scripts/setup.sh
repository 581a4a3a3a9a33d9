#!/usr/bin/env bash
# Create or update .venv with the pinned dependency tree. Idempotent: a stamp of the
# dependency files skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  echo "setup: Python 3.11 is required (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PY" --version)"
  "$PY" -m venv .venv
fi

stamp=.venv/.zelo-install-stamp
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ] && .venv/bin/python -c 'import zelo_ray' 2>/dev/null; then
  exit 0
fi

log=.venv/setup.log
echo "setup: installing pinned dependencies into .venv (first run takes a few minutes; pip's output: $log)"
: > "$log"
pip_install() {
  if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt "$@" >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "setup: pip install $* failed; the whole output is in $log" >&2
    exit 1
  fi
}
# torch first and exactly pinned: an unpinned resolve would pull a multi-GB CUDA build.
pip_install torch==2.13.0
pip_install -e ".[dev]"
echo "$want" > "$stamp"
echo "setup: done"
