#!/usr/bin/env bash
# GPU proof, for a machine with an NVIDIA GPU.
#   1. the tests that need a GPU (needs_cuda) and the device policy's, on this GPU;
#   2. builds the default models again on the GPU (`edge-mm build --force`: CPU variants + CUDA fp16
#      variants, each verified against fp32) into build/work/gpu-artifacts;
#   3. packages the CUDA bundle from them (build/work/gpu-dist) when PyInstaller is installed; with
#      GPU_CHECK_FROM_SOURCE=1, or without PyInstaller, serves from the source tree instead (said in
#      the output);
#   4. `edge-mm check` on cuda: every variant against the reference made from that same variant;
#   5. serves with device = cuda and auto and checks /info against the device policy (edge_mm/device.py),
#      serves with device = cpu, and compares answers and latency (scripts/gpu_probe.py).
# Each server runs in its own process group; on exit (pass, fail or signal) none survives
# (scripts/contain.sh).
#
#   scripts/gpu_check.sh            (from the repo root, with the default .venv: torch 2.14.1 CUDA build)
#   PY=python3 GPU_CHECK_FROM_SOURCE=1 scripts/gpu_check.sh     (any Python with torch + CUDA)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/contain.sh
trap 'rc=$?; trap - EXIT INT TERM; contain_stop; exit $rc' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
PY=${PY:-.venv/bin/python}
stage() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
# GPU time is scarce: a stage that fails is reported and the later ones still run where they can;
# the exit status is non-zero when any failed, and the last line names them.
FAILED=()
step() { local name=$1; shift; "$@" || { echo "!! $name failed (exit $?)"; FAILED+=("$name"); }; }
finish() { if [ ${#FAILED[@]} -gt 0 ]; then echo "gpu check FAILED: ${FAILED[*]}"; exit 1; fi; echo "gpu check: every stage passed"; }

stage "device"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch, onnxruntime as ort; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name(0), '| onnxruntime', ort.__version__, ort.get_available_providers())"
lscpu | sed -n 's/^Model name: *//p'

stage "tests on this GPU"
# -W: this Python's torch/transformers may warn where the pinned ones do not (pyproject turns warnings into errors)
step tests "$PY" -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning -W ignore::FutureWarning -W ignore::UserWarning \
  $(grep -rlE "needs_cuda|mark\.cuda" tests --include='*.py') tests/test_device.py tests/runtime/test_device_policy.py

stage "build on the GPU"
ARTIFACTS=$PWD/build/work/gpu-artifacts
build() { time EDGE_MM_RUNTIME_ARTIFACTS_DIR=$ARTIFACTS "$PY" -m edge_mm --config settings.toml build --force; }
step build build
[ -f "$ARTIFACTS/manifest.json" ] || finish

if [ "${GPU_CHECK_FROM_SOURCE:-0}" != 1 ] && "$PY" -c "import PyInstaller" 2>/dev/null; then
  stage "CUDA bundle"
  EDGE_MM_RUNTIME_ARTIFACTS_DIR=$ARTIFACTS "$PY" -m edge_mm --config settings.toml package --dist build/work/gpu-dist
  BUNDLE=$PWD/build/work/gpu-dist/edge-mm
  SERVE=("$BUNDLE/edge-mm")
  CONFIG=$BUNDLE/settings.toml
  MANIFEST=$BUNDLE/artifacts/manifest.json
else
  stage "no bundle: serving the source tree (GPU_CHECK_FROM_SOURCE=1 or no PyInstaller)"
  export EDGE_MM_RUNTIME_ARTIFACTS_DIR=$ARTIFACTS
  SERVE=("$PY" -m edge_mm)
  CONFIG=$PWD/settings.toml
  MANIFEST=$ARTIFACTS/manifest.json
fi

stage "edge-mm check on cuda"
step check env EDGE_MM_RUNTIME_DEVICE=cuda "${SERVE[@]}" --config "$CONFIG" check

stage "serve: device policy, cuda vs cpu"
step serve contain -- "$PY" scripts/gpu_probe.py "$CONFIG" "$MANIFEST" "${SERVE[@]}"
finish
