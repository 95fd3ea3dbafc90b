#!/usr/bin/env bash
# jemalloc for `edge-mm serve` and the bundles (edge_mm/runtime/malloc.py): Debian's libjemalloc2,
# fetched with `apt-get download` (no root) and unpacked into build/jemalloc/<machine>/. Idempotent.
# Where apt-get is missing or cannot fetch it, says so and exits 0: the server then uses glibc's
# malloc (runtime.allocator = auto), which only keeps more memory after model hot swaps.
#
#   scripts/jemalloc.sh            -> prints the library's path, or nothing
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=build/jemalloc/$(uname -m)
if [ -f "$DEST/libjemalloc.so.2" ]; then
  echo "$DEST/libjemalloc.so.2"; exit 0
fi
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
  || { echo "jemalloc: no apt-get here; the server will use glibc's malloc" >&2; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && apt-get download -q libjemalloc2 >/dev/null 2>"$tmp/err"); then
  echo "jemalloc: apt-get download libjemalloc2 failed ($(tail -n1 "$tmp/err")); the server will use glibc's malloc" >&2
  exit 0
fi
dpkg-deb -x "$tmp"/libjemalloc2_*.deb "$tmp/root"
mkdir -p "$DEST"
cp "$(find "$tmp/root" -name libjemalloc.so.2 | head -n1)" "$DEST/libjemalloc.so.2.part"
cp "$tmp/root/usr/share/doc/libjemalloc2/copyright" "$DEST/copyright"  # travels with it into the bundles
mv "$DEST/libjemalloc.so.2.part" "$DEST/libjemalloc.so.2"
echo "$DEST/libjemalloc.so.2"
