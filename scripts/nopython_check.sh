#!/usr/bin/env bash
# No-Python proof: copy a bundle into a Debian minbase root filesystem that has no Python, enter it
# with chroot, and call health plus one inference per served route from outside (tests/bundle_probe.py).
# Needs root and debootstrap (scripts/system_deps.sh); the root filesystem is made and cached in
# build/work/minbase by scripts/minbase.sh (shared with the container image, scripts/image.sh).
# The probe and the served executable run in their own PID namespace and process group; on exit
# (pass, fail or signal) nothing of them survives (scripts/contain.sh), then /proc is unmounted.
#
#   scripts/nopython_check.sh [dist/edge-mm] [python]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/contain.sh
BUNDLE=$(realpath "${1:-dist/edge-mm}")
PY=${2:-.venv/bin/python}
ROOTFS=${ROOTFS:-$PWD/build/work/minbase}
ROOTFS=$(bash scripts/minbase.sh "$ROOTFS")  # made once with debootstrap, cached
if chroot "$ROOTFS" sh -c 'command -v python3 || command -v python || ls /usr/bin/python* /usr/lib/python3*' 2>/dev/null; then
  echo "nopython_check: the root filesystem has Python; it must not" >&2; exit 1
fi
echo "nopython_check: $ROOTFS ($(du -sh "$ROOTFS" | cut -f1), $(chroot "$ROOTFS" sh -c '. /etc/os-release; echo $PRETTY_NAME')) has no python" >&2

rm -rf "$ROOTFS/opt/edge-mm" && mkdir -p "$ROOTFS/opt" && cp -a "$BUNDLE" "$ROOTFS/opt/edge-mm"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  contain_stop  # first: a process still running in the root filesystem would keep /proc busy
  umount "$ROOTFS/proc" 2>/dev/null || true
  rm -rf "$ROOTFS/opt/edge-mm"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mountpoint -q "$ROOTFS/proc" || mount -t proc proc "$ROOTFS/proc"
contain --mount-proc -- "$PY" -m tests.bundle_probe /opt/edge-mm/edge-mm --chroot "$ROOTFS"
