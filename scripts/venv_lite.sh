#!/usr/bin/env bash
# Create or update .venv-lite: the lite bundle's environment (requirements/lite.txt: ONNX Runtime,
# tokenizers, numpy, Pillow, Flask, waitress and PyInstaller; no torch, no PyAV). Idempotent: does
# nothing when .venv-lite/.deps is newer than the requirement files.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV_LITE:-.venv-lite}
PY=${PY:-python3.11}
reqs=(requirements/lite.txt requirements/package.txt)
if [ -f "$VENV/.deps" ] && [ -z "$(find "${reqs[@]}" -newer "$VENV/.deps")" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV" || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -r requirements/lite.txt
"$VENV/bin/python" -c "
import importlib.util, onnxruntime
assert importlib.util.find_spec('torch') is None, 'torch is in .venv-lite'
print('.venv-lite: onnxruntime', onnxruntime.__version__, '(no torch)')"
touch "$VENV/.deps"
