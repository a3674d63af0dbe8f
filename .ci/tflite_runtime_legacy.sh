#!/usr/bin/env bash
# Create a separate virtual environment with the last tflite-runtime release (2.14.0, what
# Raspberry Pi OS bookworm users get from pip) and numpy<2, nothing else. The slow test
# tests/test_tflite_legacy.py runs exported models in it (path: $RNNEDGE_TFLITE214_PY,
# default <repo>/.venv-tflite214/bin/python).
#
#   .ci/tflite_runtime_legacy.sh            # creates <repo>/.venv-tflite214
#   VENV=/tmp/v214 .ci/tflite_runtime_legacy.sh
#
# Needs python3.11 (tflite-runtime 2.14 has wheels for CPython 3.7-3.11 only) and PyPI access.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO/.venv-tflite214}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && \
       "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] <= (3, 11) and sys.version_info[:2] >= (3, 7) else 1)'; then
      PY="$cand"; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "error: tflite-runtime 2.14.0 needs CPython 3.7-3.11; install python3.11 or set PYTHON=" >&2
  exit 1
fi

echo "creating $VENV with $("$PY" --version 2>&1)"
"$PY" -m venv --clear "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q --only-binary=:all: "numpy<2" "tflite-runtime==2.14.0"
"$VENV/bin/python" - <<'PY'
import numpy, tflite_runtime
from tflite_runtime.interpreter import Interpreter  # noqa: F401
print(f"ok: tflite-runtime {tflite_runtime.__version__}, numpy {numpy.__version__}")
PY
