#!/usr/bin/env bash
# Virtual environments for the peer servers the benchmark compares against.
#   .venv-infinity: infinity-emb (a real embedding server), torch engine, CPU
#   .venv-onnx:     ONNX Runtime with a dynamically quantized int8 export of the same model
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
if [ ! -x .venv-infinity/bin/infinity_emb ]; then
  $PY -m venv .venv-infinity
  .venv-infinity/bin/pip install -q --upgrade pip
  .venv-infinity/bin/pip install -q torch==2.14.1 "infinity-emb[server,torch]"
fi
if [ ! -x .venv-onnx/bin/python ] || ! .venv-onnx/bin/python -c "import onnxruntime" 2>/dev/null; then
  $PY -m venv .venv-onnx
  .venv-onnx/bin/pip install -q --upgrade pip
  .venv-onnx/bin/pip install -q onnxruntime onnx flask tokenizers numpy
fi
