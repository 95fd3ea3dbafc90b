#!/usr/bin/env bash
# A Debian minbase root filesystem with no Python, made once with debootstrap and cached (default
# build/work/minbase); prints its path. Used by the no-Python proof (scripts/nopython_check.sh) and
# the container image (scripts/image.sh). The mirror and suite are read at run time from this
# machine's apt configuration. Needs root and debootstrap (scripts/system_deps.sh installs it).
# A lock file keeps two callers from making it at the same time.
# MINBASE_ARCH (e.g. arm64) makes a foreign root filesystem: its packages' scripts then run under
# qemu-user through binfmt_misc (scripts/arm64_lib.sh registers it); MINBASE_INCLUDE adds packages
# (comma-separated). Both are the caller's to fold into ROOTFS's name: a cached tree is not re-checked.
#
#   scripts/minbase.sh [ROOTFS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOTFS=$(realpath -m "${1:-${ROOTFS:-build/work/minbase}}")
mkdir -p "$(dirname "$ROOTFS")"
exec 9>"$ROOTFS.lock"
flock 9
[ -x "$ROOTFS/bin/sh" ] && { echo "$ROOTFS"; exit 0; }
command -v debootstrap >/dev/null || { echo "minbase: debootstrap is missing (apt-get install debootstrap)" >&2; exit 2; }

# The first Debian archive entry of apt's configuration (deb822 .sources or one-line .list), not security.
read -r MIRROR SUITE < <(
  { for f in /etc/apt/sources.list.d/*.sources; do [ -f "$f" ] && awk 'BEGIN{RS="";FS="\n"}
      { u=""; s=""; t=""; for(i=1;i<=NF;i++){ if($i~/^URIs:/){sub(/^URIs:[ \t]*/,"",$i); split($i,a," "); u=a[1]}
        if($i~/^Suites:/){sub(/^Suites:[ \t]*/,"",$i); split($i,b," "); s=b[1]} if($i~/^Types:/){t=$i} }
        if(u!="" && s!="" && t~/deb( |$)/ && u!~/security/) print u, s }' "$f"; done
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1=="deb" && $0!~/security/ {
      for(i=2;i<=NF;i++) if($i!~/^\[/ && $i!~/\]$/){print $i, $(i+1); exit} }'
  } | head -n1)
[ -n "${MIRROR:-}" ] || { echo "minbase: no Debian mirror found in /etc/apt" >&2; exit 2; }
ARCH=${MINBASE_ARCH:-} INCLUDE=${MINBASE_INCLUDE:-}
echo "minbase: debootstrap --variant=minbase${ARCH:+ --arch $ARCH}${INCLUDE:+ --include $INCLUDE} $SUITE from the mirror in apt's configuration" >&2
rm -rf "$ROOTFS"
debootstrap --variant=minbase ${ARCH:+--arch "$ARCH"} ${INCLUDE:+--include "$INCLUDE"} "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || { tail -20 "$ROOTFS.log" >&2; exit 1; }
echo "$ROOTFS"
