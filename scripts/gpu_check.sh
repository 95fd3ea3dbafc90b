#!/usr/bin/env bash
# GPU proof, for a machine with an NVIDIA GPU (not run yet: no GPU was available when written).
#   1. builds the artifacts again on the GPU (`edge-mm build --force`: CPU int8 + CUDA variants)
#      into build/work/gpu-artifacts, and the CUDA bundle from them into build/work/gpu-dist;
#   2. serves the bundle with device = cuda and auto and checks /info against the device policy
#      (edge_mm/device.py): each model with a CUDA variant in the manifest serves on cuda, every other
#      one on cpu with a reason, and the top-level device is cuda;
#   3. serves it again with device = cpu and compares the two: embedding cosine and image top-1;
#   4. prints time to ready, per-request latency on each device, and `edge-mm check` on cuda.
# The servers run in their own process group; on exit (pass, fail or signal) none survives
# (scripts/contain.sh).
#
#   scripts/gpu_check.sh            (from the repo root, with the default .venv: torch 2.14.1 CUDA build)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/contain.sh
trap 'rc=$?; trap - EXIT INT TERM; contain_stop; exit $rc' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
PY=${PY:-.venv/bin/python}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
# the tests that need a GPU (skipped elsewhere: needs_cuda) and the device policy's, on this GPU
"$PY" -m pytest -q $(grep -rlE "needs_cuda|mark\.cuda" tests --include='*.py') tests/test_device.py tests/runtime/test_device_policy.py
export EDGE_MM_RUNTIME_ARTIFACTS_DIR=$PWD/build/work/gpu-artifacts
time "$PY" -m edge_mm --config settings.toml build --force
time "$PY" -m edge_mm --config settings.toml package --dist build/work/gpu-dist
unset EDGE_MM_RUNTIME_ARTIFACTS_DIR
BUNDLE=build/work/gpu-dist/edge-mm
"$BUNDLE/edge-mm" check
contain -- "$PY" - "$BUNDLE" <<'PY'
import base64, json, math, os, statistics, subprocess, sys, time
from pathlib import Path
from tests.serving import request, running_server

bundle = Path(sys.argv[1]).resolve()
coffee = base64.b64encode(Path("edge_mm/build/data/sample_coffee.jpg").read_bytes()).decode()
texts = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today."]

def run(device):
    t0 = time.monotonic()
    with running_server(bundle / "settings.toml", ("EDGE_MM_RUNTIME_DEVICE", device), cmd=[str(bundle / "edge-mm")]) as base:
        ready = time.monotonic() - t0
        _, _, info = request(base + "/info")
        out, lat = {}, {}
        for name, route, body in (("emb", "embeddings", {"inputs": texts}), ("img", "image-classification", {"image": coffee})):
            times = []
            for _ in range(20):
                t = time.perf_counter(); status, headers, out[name] = request(f"{base}/v1/{route}", body); times.append(time.perf_counter() - t)
                # MiniLM and EfficientNet-Lite have CUDA variants: auto and cuda serve them there
                assert status == 200 and headers["X-Edge-Device"] == ("cpu" if device == "cpu" else "cuda"), (status, headers)
            lat[name] = statistics.median(times) * 1000
        return info, ready, out, lat

manifest = json.loads((bundle / "artifacts" / "manifest.json").read_text())["models"]

def check_policy(info, device):
    """Models with a CUDA variant serve on cuda, the others on cpu with a reason (edge_mm/device.py)."""
    assert info["device"] == "cuda", (device, info["device"])
    for name, model in info["models"].items():
        want = "cuda" if "cuda" in manifest[name]["variants"] else "cpu"
        assert model["device"] == want, (device, name, model["device"], model["reason"])
        assert model["reason"], (device, name)
        print(f"  {device}: {name} -> {model['device']} ({model['reason']}){' ' + model['provider'] if 'provider' in model else ''}")

ci, cr, co, cl = run("cuda")
check_policy(ci, "cuda")
auto_info = run("auto")[0]
check_policy(auto_info, "auto")
pi, pr, po, pl = run("cpu")
cos = lambda a, b: sum(x*y for x, y in zip(a, b)) / math.sqrt(sum(x*x for x in a) * sum(y*y for y in b))
emb = [cos(c["embedding"], p["embedding"]) for c, p in zip(co["emb"]["data"], po["emb"]["data"])]
top_c, top_p = co["img"]["results"][0][0]["label"], po["img"]["results"][0][0]["label"]
print(f"auto -> {auto_info['device']} ({auto_info['cuda_device']}); ready: cuda {cr:.1f} s, cpu {pr:.1f} s")
print(f"embeddings cuda vs cpu(int8) cosine: min {min(emb):.4f} (tolerance >= 0.98)")
print(f"image top-1: cuda {top_c!r}, cpu {top_p!r}")
print(f"median latency ms: embeddings(3) cuda {cl['emb']:.1f} / cpu {pl['emb']:.1f}; image cuda {cl['img']:.1f} / cpu {pl['img']:.1f}")
assert min(emb) >= 0.98 and top_c == top_p
print("gpu check passed")
PY
