#!/usr/bin/env bash
# What the peer benchmarks (bench/compare.py, bench/vision_throughput.py) need besides the main venv:
#   wrk             the load generator (Debian package; apt-get as root)
#   .venv-onnx:     ONNX Runtime peers (MiniLM int8, EfficientNet-Lite0 fp32) behind Flask + waitress
#   .venv-infinity: infinity-emb (a real embedding server), torch engine, CPU; only with INFINITY=1
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
if [ "${INFINITY:-0}" = 1 ] && [ ! -x .venv-infinity/bin/infinity_emb ]; then
  $PY -m venv .venv-infinity
  .venv-infinity/bin/pip install -q --upgrade pip
  .venv-infinity/bin/pip install -q torch==2.14.1 "infinity-emb[server,torch]"
fi
