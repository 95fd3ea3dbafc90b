#!/usr/bin/env bash
# The arm64 bundle's proof under emulation: copy it into an arm64 Debian minbase root filesystem
# that has no Python (cached by scripts/arm64_lib.sh), run it there with chroot under qemu-user
# (binfmt_misc) in a network namespace with loopback only, and call every route from outside
# (tests/arm64_probe.py: answers, memory; strace records every connect/sendto/sendmsg). One JSON
# line on stdout. The probe and the server run in their own PID and mount namespaces
# (scripts/contain.sh): on exit nothing of them survives, and their mounts go with them.
#
#   scripts/arm64_check.sh [dist/arm64/edge-mm] [python]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/contain.sh
. scripts/arm64_lib.sh
BUNDLE=$(realpath "${1:-dist/arm64/edge-mm}")
PY=${2:-.venv/bin/python}
command -v strace >/dev/null || { echo "arm64_check: strace is missing (apt-get install strace)" >&2; exit 2; }
arm64_binfmt
ROOTFS=$(arm64_minbase)
exec 9>"$ROOTFS.lock"
flock 9  # one proof at a time in this tree; scripts/image.sh --arch arm64 imports it under the same lock
if chroot "$ROOTFS" sh -c 'command -v python3 || command -v python || ls /usr/bin/python* /usr/lib/python3*' 2>/dev/null; then
  echo "arm64_check: the root filesystem has Python; it must not" >&2; exit 1
fi
echo "arm64_check: $ROOTFS ($(du -sh "$ROOTFS" | cut -f1), $(chroot "$ROOTFS" sh -c '. /etc/os-release; echo "$PRETTY_NAME, $(uname -m)"')) has no python" >&2

# Emulation is 10 to 50 times slower than a board: the per-request deadline (30 s by default) is
# raised so that slow answers are still answers; nothing else in the bundle's settings changes.
export EDGE_MM_RUNTIME_REQUEST_TIMEOUT_S=${EDGE_MM_RUNTIME_REQUEST_TIMEOUT_S:-600}
LOG=$(mktemp --suffix=.strace)
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  contain_stop  # the server first: it holds files in the tree
  rm -rf "$ROOTFS/opt/edge-mm" "$ROOTFS/root/.cache" "$LOG"  # .cache: ONNX Runtime's own files
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
rm -rf "$ROOTFS/opt/edge-mm" && mkdir -p "$ROOTFS/opt" && cp -a "$BUNDLE" "$ROOTFS/opt/edge-mm"
arm64_cpuinfo "$ROOTFS/.cpuinfo"
mkdir -p "$ROOTFS/proc" "$ROOTFS/sys"
contain --net --mount-proc -- bash -c "$(declare -f arm64_mounts)"'
  root=$1; shift
  ip link set lo up
  echo "arm64_check: interfaces in the namespace: $(ip -o link show | cut -d: -f2 | tr -d " " | paste -sd,)" >&2
  arm64_mounts "$root" || exit
  exec "$@"' bash "$ROOTFS" "$PY" -m tests.arm64_probe /opt/edge-mm/edge-mm --chroot "$ROOTFS" --strace "$LOG"
