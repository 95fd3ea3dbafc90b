#!/usr/bin/env bash
# Create or update .venv-cpu: the CPU-only bundle's environment (torch 2.13.0 CPU build, the
# runtime dependencies and PyInstaller; no torchvision, no transformers). Idempotent: does
# nothing when .venv-cpu/.deps is newer than the requirement files.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV_CPU:-.venv-cpu}
PY=${PY:-python3.11}
reqs=(requirements/cpu.txt requirements/runtime.txt requirements/package.txt)
if [ -f "$VENV/.deps" ] && [ -z "$(find "${reqs[@]}" -newer "$VENV/.deps")" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV" || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -r requirements/cpu.txt
"$VENV/bin/python" -c "import torch, onnxruntime; assert torch.version.cuda is None, torch.__version__; print('.venv-cpu: torch', torch.__version__, 'onnxruntime', onnxruntime.__version__)"
touch "$VENV/.deps"
