#!/usr/bin/env bash
# No-Python proof: copy a bundle into a Debian minbase root filesystem that has no Python, enter it
# with chroot, and call health plus one inference per served route from outside (tests/bundle_probe.py).
# The mirror and suite are read at run time from this machine's apt configuration. Needs root and
# debootstrap (apt-get install debootstrap); the root filesystem is cached in build/work/minbase.
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
command -v debootstrap >/dev/null || { echo "nopython_check: debootstrap is missing (apt-get install debootstrap)" >&2; exit 2; }

# The first Debian archive entry of apt's configuration (deb822 .sources or one-line .list), not security.
read -r MIRROR SUITE < <(
  { for f in /etc/apt/sources.list.d/*.sources; do [ -f "$f" ] && awk 'BEGIN{RS="";FS="\n"}
      { u=""; s=""; t=""; for(i=1;i<=NF;i++){ if($i~/^URIs:/){sub(/^URIs:[ \t]*/,"",$i); split($i,a," "); u=a[1]}
        if($i~/^Suites:/){sub(/^Suites:[ \t]*/,"",$i); split($i,b," "); s=b[1]} if($i~/^Types:/){t=$i} }
        if(u!="" && s!="" && t~/deb( |$)/ && u!~/security/) print u, s }' "$f"; done
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1=="deb" && $0!~/security/ {
      for(i=2;i<=NF;i++) if($i!~/^\[/ && $i!~/\]$/){print $i, $(i+1); exit} }'
  } | head -n1)
[ -n "${MIRROR:-}" ] || { echo "nopython_check: no Debian mirror found in /etc/apt" >&2; exit 2; }
if [ ! -x "$ROOTFS/bin/sh" ]; then
  echo "nopython_check: debootstrap --variant=minbase $SUITE from the mirror in apt's configuration" >&2
  rm -rf "$ROOTFS"
  debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || { tail -20 "$ROOTFS.log"; exit 1; }
fi
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
