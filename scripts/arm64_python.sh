#!/usr/bin/env bash
# Prepare an emulated linux/arm64 Python 3.11 that runs ONNX Runtime under qemu-user, for the
# emulated Arm fidelity checks (bench/cpu_paths.py --cpus aarch64), and print the command prefix
# that runs it. No binfmt needed: the prefix calls `qemu-aarch64 -L ROOT` itself. qemu's default
# -cpu is `max` (NEON + dotprod + i8mm + SVE2); insert e.g. `-cpu cortex-a53` (plain NEON) or
# `-cpu neoverse-n1` (dotprod) after qemu-aarch64 for the other int8 paths.
#
#   scripts/arm64_python.sh [ROOT]     # ROOT defaults to build/arm64/root
#
# ROOT gets Debian bookworm's arm64 python3.11 and its shared libraries (apt-get download + dpkg -x);
# build/arm64/site gets the aarch64 wheels, unpacked, at the versions of .venv (the native side of
# the comparison) where it has them; enough for `import onnxruntime, numpy, tokenizers, PIL` and for
# bench.cpu_paths' child (edge_mm, pydantic) with the repository on PYTHONPATH. Idempotent: each
# step is skipped while its stamp matches its inputs. Adding the arm64 architecture to apt (dpkg --add-architecture) needs root, once.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(realpath -m "${1:-build/arm64/root}")
SITE=$(realpath -m build/arm64/site)
DL=build/arm64/download
HOSTPY=${HOSTPY:-.venv/bin/python}
[ -x "$HOSTPY" ] || HOSTPY=python3
debs=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libexpat1 zlib1g libffi8
  libssl3 libstdc++6 libgcc-s1 libbz2-1.0 liblzma5 libsqlite3-0 libuuid1 libncursesw6 libtinfo6
  libreadline8 libdb5.3 libgdbm6 libcrypt1 libnsl2 libtirpc3 libgssapi-krb5-2
  libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1)
wheels=(onnxruntime==1.32.0 numpy tokenizers pillow flatbuffers protobuf packaging
  pydantic pydantic-core annotated-types typing-extensions typing-inspection)
t_all=$SECONDS
took() { echo "arm64_python: $1 took $((SECONDS - $2))s" >&2; }

# 1. Debian's arm64 python3.11 and libraries, unpacked into ROOT.
t=$SECONDS
if [ "$(cat "$ROOT/.stamp" 2>/dev/null)" != "${debs[*]}" ]; then
  if ! apt-cache show python3.11-minimal:arm64 >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { echo "as root, once: dpkg --add-architecture arm64 && apt-get update" >&2; exit 1; }
    dpkg --add-architecture arm64
    apt-get update -q
  fi
  rm -rf "$ROOT" "$DL/debs" && mkdir -p "$ROOT" "$DL/debs"
  (cd "$DL/debs" && apt-get download -q -o APT::Sandbox::User=root "${debs[@]/%/:arm64}" >&2)
  for deb in "$DL"/debs/*.deb; do dpkg -x "$deb" "$ROOT"; done
  rm -rf "$DL"
  echo "${debs[*]}" >"$ROOT/.stamp"
fi
# qemu-user passes the host's (x86) /proc/cpuinfo through, and ONNX Runtime's cpuinfo crashes
# (SIGSEGV at import) on it; -L serves ROOT/proc/cpuinfo instead, so give it Arm cores
# (Neoverse-N1 ids). The ISA features ORT uses come from AT_HWCAP, i.e. qemu's -cpu, not this file.
mkdir -p "$ROOT/proc"
for ((i = 0; i < $(getconf _NPROCESSORS_CONF); i++)); do
  printf 'processor\t: %d\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd aes pmull sha1 sha2 crc32 atomics cpuid\n' "$i"
  printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n'
done >"$ROOT/proc/cpuinfo"
took "debian arm64 root" "$t"

# 2. aarch64 wheels (pinned to .venv's versions where it has them), unzipped into SITE.
t=$SECONDS
mapfile -t specs < <("$HOSTPY" - "${wheels[@]}" <<'EOF'
import importlib.metadata as md, sys
for spec in sys.argv[1:]:
    try:
        print(spec if "==" in spec else f"{spec}=={md.version(spec)}")
    except md.PackageNotFoundError:
        print(spec)
EOF
)
if [ "$(cat "$SITE/.stamp" 2>/dev/null)" != "${specs[*]}" ]; then
  rm -rf "$SITE" "$DL/wheels" && mkdir -p "$SITE" "$DL/wheels"
  "$HOSTPY" -m pip download -q --dest "$DL/wheels" --only-binary :all: --no-deps \
    --python-version 3.11 --implementation cp --platform manylinux2014_aarch64 \
    --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64 "${specs[@]}"
  for whl in "$DL"/wheels/*.whl; do "$HOSTPY" -m zipfile -e "$whl" "$SITE"; done
  rm -rf "$DL"
  echo "${specs[*]}" >"$SITE/.stamp"
fi
took "aarch64 wheels" "$t"

# 3. Prove it: import, then a tiny MatMul inference (model built with the host's onnx, if any).
t=$SECONDS
run=(env PYTHONPATH="$SITE" qemu-aarch64 -L "$ROOT" "$ROOT/usr/bin/python3.11")
"${run[@]}" -c "import platform, numpy, onnxruntime, tokenizers, PIL; print(platform.machine(), onnxruntime.__version__)"
model=$(realpath -m build/arm64/matmul.onnx)
if "$HOSTPY" -c "import onnx" 2>/dev/null; then
  "$HOSTPY" - "$model" <<'EOF'
import sys
from onnx import TensorProto, helper, save
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 2])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])
graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul", [x, w], [y])
save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), sys.argv[1])
EOF
  "${run[@]}" - "$model" <<'EOF'
import sys, numpy as np, onnxruntime as ort
x, w = np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((3, 2), np.float32)
(y,) = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"]).run(None, {"x": x, "w": w})
assert np.array_equal(y, x @ w), y
print("matmul ok:", y.tolist())
EOF
else
  echo "arm64_python: no onnx in $HOSTPY; skipped the inference check" >&2
fi
took "checks" "$t"
took "all" "$t_all"
# build/arm64/python: that python as one command (EDGE_MM_ARM64_CPU picks qemu's -cpu, e.g. cortex-a72)
cat >build/arm64/python <<WRAPPER
#!/bin/sh
exec env PYTHONPATH="$SITE\${PYTHONPATH:+:\$PYTHONPATH}" qemu-aarch64 \${EDGE_MM_ARM64_CPU:+-cpu \$EDGE_MM_ARM64_CPU} -L "$ROOT" "$ROOT/usr/bin/python3.11" "\$@"
WRAPPER
chmod +x build/arm64/python
echo "PYTHONPATH=$SITE qemu-aarch64 -L $ROOT $ROOT/usr/bin/python3.11"
