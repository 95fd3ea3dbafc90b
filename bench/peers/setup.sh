#!/usr/bin/env bash
# What the bench harness's peers (python -m bench run embeddings / images) need besides the main venv:
#   wrk             the load generator (Debian package; apt-get as root; scripts/system_deps.sh too)
#   .venv-onnx:     the ONNX Runtime peers of bench/peers (MiniLM int8, EfficientNet-Lite0 fp32), Flask + waitress
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends wrk >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends wrk >/dev/null 2>&1; } \
      || echo "setup: apt-get could not install wrk; the bench falls back to its Python load generator" >&2
  else
    echo "setup: wrk missing (e.g. sudo apt-get install wrk); the bench falls back to its Python load generator" >&2
  fi
fi
if [ ! -x .venv-onnx/bin/python ] || ! .venv-onnx/bin/python -c "import onnxruntime, waitress, PIL" 2>/dev/null; then
  $PY -m venv .venv-onnx
  .venv-onnx/bin/pip install -q --upgrade pip
  .venv-onnx/bin/pip install -q onnxruntime onnx flask waitress tokenizers numpy pillow
fi
