# Sourced by the linux/arm64 scripts (bundle_arm64.sh, arm64_check.sh, image.sh --arch arm64): arm64
# programs run on this x86-64 host through binfmt_misc and qemu-user-static, and the arm64 root
# filesystems they run in are cached under ~/.cache/edge-mm (EDGE_MM_CACHE), keyed by their inputs.
# Needs root, debootstrap and qemu-user-static (scripts/system_deps.sh installs them).
#
#   arm64_binfmt                       register qemu-aarch64 with binfmt_misc (once per boot)
#   arm64_minbase                      print the cached arm64 minbase root (no Python), making it once
#   arm64_chroot ROOT [--src DIR] CMD  run CMD in ROOT (own mount namespace: /proc, Arm cpuinfo, DIR at /src)

ARM64_CACHE=${EDGE_MM_CACHE:-$HOME/.cache/edge-mm}
# Bump when what goes into the minbase root changes (it is the cache key with the package list).
ARM64_MINBASE_RECIPE="debootstrap minbase arm64 + /etc/hosts v2"
# The emulated CPU (qemu-user reads QEMU_CPU): a Neoverse-N1 (Armv8.2-A + dotprod: Graviton2, Ampere
# Altra; the Cortex-A76 of a Raspberry Pi 5 has the same int8 instructions), matching the cpuinfo
# below. qemu's default, max, adds SVE2 and i8mm, whose emulation makes int8 inference 5-9x slower.
export QEMU_CPU=${ARM64_QEMU_CPU:-neoverse-n1}

arm64_binfmt() {
  local entry=/proc/sys/fs/binfmt_misc/qemu-aarch64 conf=/usr/lib/binfmt.d/qemu-aarch64.conf
  if [ -e "$entry" ]; then
    # F: the kernel opens the (static) emulator at registration, so it runs inside any chroot
    grep -q '^flags:.*F' "$entry" && return 0
    echo "arm64: $entry is registered without the F flag (qemu-user-binfmt?); chroots cannot run it" >&2
    return 2
  fi
  [ "$(id -u)" = 0 ] || { echo "arm64: registering binfmt_misc needs root" >&2; return 2; }
  [ -f "$conf" ] || { echo "arm64: $conf is missing (apt-get install qemu-user-static)" >&2; return 2; }
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  cat "$conf" >/proc/sys/fs/binfmt_misc/register
}

arm64_key() {  # a short hash of its arguments' text (files read, other words as they are)
  local arg
  for arg in "$@"; do if [ -f "$arg" ]; then cat "$arg"; else printf '%s\n' "$arg"; fi; done | sha256sum | cut -c1-12
}

# Make ROOT once (under a lock; a half-made tree is redone): minbase.sh into ROOT.tmp, then
# "$@" (a command given the tree's path), then renamed into place.
arm64_make_root() {
  local root=$1
  shift
  # made already (.complete is written before the rename): no lock, which arm64_check.sh holds while it runs
  [ -f "$root/.complete" ] && return 0
  mkdir -p "$(dirname "$root")"
  exec 8>"$root.lock"
  flock 8
  if [ ! -f "$root/.complete" ]; then
    rm -rf "$root" "$root.tmp"
    MINBASE_ARCH=arm64 bash scripts/minbase.sh "$root.tmp" >/dev/null
    "$@" "$root.tmp"
    touch "$root.tmp/.complete"
    mv "$root.tmp" "$root"
    mv -f "$root.tmp.log" "$root.log" 2>/dev/null || true
    rm -f "$root.tmp.lock"
  fi
  flock -u 8
  exec 8>&-
}

# Every installed Debian has an /etc/hosts (the installer writes it; debootstrap does not): without
# one, waitress's reverse lookup of 127.0.0.1 goes to the DNS server, an outbound attempt.
arm64_hosts() {
  printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$1/etc/hosts"
}

arm64_minbase() {
  local root
  root=$ARM64_CACHE/arm64-minbase-$(arm64_key "$ARM64_MINBASE_RECIPE")
  arm64_make_root "$root" arm64_hosts
  echo "$root"
}

# qemu-user 7.2 passes the host's x86 /proc/cpuinfo through, and ONNX Runtime's cpuinfo crashes
# (SIGSEGV at import) on it: arm64_chroot mounts this Arm one (Neoverse-N1 ids) over it. The ISA
# features ONNX Runtime uses come from AT_HWCAP, i.e. qemu's default -cpu max.
arm64_cpuinfo() {
  local i
  for ((i = 0; i < $(getconf _NPROCESSORS_CONF); i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd aes pmull sha1 sha2 crc32 atomics cpuid\n' "$i"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n'
  done >"$1"
}

# /proc with the Arm cpuinfo over it, and /sys (ONNX Runtime's cpuinfo reads the CPU lists there);
# for a private mount namespace (arm64_chroot, arm64_check.sh).
arm64_mounts() {
  mount -t proc proc "$1/proc" && mount --bind "$1/.cpuinfo" "$1/proc/cpuinfo" && mount -t sysfs sysfs "$1/sys"
}

arm64_chroot() {
  local root=$1 src=
  shift
  if [ "${1:-}" = --src ]; then src=$(realpath "$2"); shift 2; fi
  arm64_cpuinfo "$root/.cpuinfo"
  mkdir -p "$root/proc" "$root/sys" "$root/src"
  # a private mount namespace: the mounts go when the command ends, however it ends
  unshare --mount --propagation private -- bash -c "$(declare -f arm64_mounts)"'
    root=$1 src=$2; shift 2
    arm64_mounts "$root" || exit
    [ -z "$src" ] || mount --bind "$src" "$root/src" || exit
    exec chroot "$root" "$@"' bash "$root" "$src" "$@"
}
