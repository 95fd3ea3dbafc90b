#!/usr/bin/env bash
# The lite bundle for linux/arm64 (`make bundle-arm64`): PyInstaller runs inside an arm64 Debian
# root filesystem under qemu-user (binfmt_misc), where its `ldd` and `strip` read aarch64 objects;
# on the x86 host they cannot. The artifacts are data: built on x86 (`edge-mm --config
# settings.lite.toml build`) and read through the checkout, bind-mounted at /src.
#
#   scripts/bundle_arm64.sh [DIST (default dist/arm64)]     -> DIST/edge-mm/
#
# The build root (Debian bookworm arm64 minbase + python3.11 + /opt/venv-arm64 with the aarch64
# wheels of requirements/lite.txt) is made once and cached in ~/.cache/edge-mm/arm64-root-<key>,
# <key> a hash of the requirement files and the recipe below, so a fresh clone reuses it. The
# wheels are downloaded by the host's pip (--platform ...aarch64) and installed offline in the root.
# Needs root, debootstrap and qemu-user-static (scripts/system_deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/arm64_lib.sh
DIST=$(realpath -m "${1:-dist/arm64}")
CONFIG=${LITE_CONFIG:-settings.lite.toml}
HOSTPY=${HOSTPY:-.venv/bin/python}
[ -x "$HOSTPY" ] || HOSTPY=python3
REQS=(requirements/lite.txt requirements/package.txt)
# Requirements with no linux/aarch64 wheel, left out of the arm64 build (none today: dlib-bin has one).
LEAVE_OUT=()
DEBS=python3.11,python3.11-venv,python3-distutils,libpython3.11,binutils  # binutils: PyInstaller's objdump, finish_bundle's strip
RECIPE="bookworm $DEBS venv-arm64 wheels:manylinux_2_17..2_28_aarch64 cp311 leave-out:${LEAVE_OUT[*]} v1"
case $DIST in "$PWD"/*) ;; *) echo "bundle_arm64: DIST must be inside the checkout (it is /src in the root)" >&2; exit 2 ;; esac
SECONDS=0
took() { echo "bundle_arm64: $1 ($SECONDS s so far)" >&2; }

arm64_binfmt
# The venv's wheels, resolved for linux/aarch64 cp311 by this host's pip, installed with no index.
install_venv() {
  local tree=$1
  mkdir -p "$tree/opt/requirements" "$tree/opt/wheels"
  cp "${REQS[@]}" "$tree/opt/requirements/"
  for req in "${LEAVE_OUT[@]}"; do sed -i "/^$req\b/d" "$tree/opt/requirements/lite.txt"; done
  "$HOSTPY" -m pip download -q --dest "$tree/opt/wheels" --only-binary :all: \
    --python-version 3.11 --implementation cp --platform manylinux2014_aarch64 \
    --platform manylinux_2_17_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64 \
    -r "$tree/opt/requirements/lite.txt" 2>&1 | grep -v "^WARNING: Location" >&2 || true
  arm64_chroot "$tree" sh -ec '
    python3.11 -m venv /opt/venv-arm64
    /opt/venv-arm64/bin/pip install -q --no-index --find-links /opt/wheels -r /opt/requirements/lite.txt
    /opt/venv-arm64/bin/pip freeze >/opt/venv-arm64/freeze.txt'
  rm -rf "$tree/opt/wheels" "$tree/var/cache/apt/archives"/*.deb
}
ROOT=$ARM64_CACHE/arm64-root-$(arm64_key "${REQS[@]}" "$RECIPE")
export MINBASE_INCLUDE=$DEBS
arm64_make_root "$ROOT" install_venv
unset MINBASE_INCLUDE
took "build root $ROOT ($(du -sh "$ROOT" | cut -f1))"

# The lite artifacts must be built (on x86) first: `edge-mm package` in the root cannot build them.
"$HOSTPY" - "$CONFIG" <<'EOF'
import sys
from edge_mm.build.bundle_artifacts import artifacts_ready
from edge_mm.config import load_settings
why = artifacts_ready(load_settings(sys.argv[1]))
sys.exit(f"bundle_arm64: {why}; build them first: .venv/bin/edge-mm --config {sys.argv[1]} build" if why else 0)
EOF

rel=${DIST#"$PWD"/}
arm64_chroot "$ROOT" --src . sh -ec "
  cd /src
  PYTHONPATH=/src PYTHONDONTWRITEBYTECODE=1 /opt/venv-arm64/bin/python -m edge_mm --config $CONFIG \
    package --flavour lite --python /opt/venv-arm64/bin/python --dist $rel" >&2
took "PyInstaller under emulation"
exe=$DIST/edge-mm/edge-mm
file -L "$exe" | grep -q 'ARM aarch64' || { echo "bundle_arm64: $exe is not an aarch64 executable: $(file -L "$exe")" >&2; exit 1; }
echo "bundle_arm64: $DIST/edge-mm ($(du -sh "$DIST/edge-mm" | cut -f1)): $(file -bL "$exe" | cut -d, -f1-2)" >&2
echo "$DIST/edge-mm"
