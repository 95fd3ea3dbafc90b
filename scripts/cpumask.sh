#!/usr/bin/env bash
# Run a command on this x86-64 machine as a smaller CPU would: scripts/cpumask.sh avx2 make test
#   avx2    no AVX-512, VNNI or AMX (an AVX2-only machine: the int8 kernels that saturate)
#   avx512  AVX-512 without VNNI or AMX (Skylake-SP)
#   sse4    no AVX
# Native speed (cpuid is trapped and answered with the smaller CPU's features: scripts/cpumask.c);
# needs a CPU and kernel with cpuid faulting ("cpuid_fault" in /proc/cpuinfo) and gcc.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mask="${1:?usage: cpumask.sh avx2|avx512|sse4 COMMAND...}"
shift
lib="$here/../build/cpumask/libcpumask.so"
if [ ! -f "$lib" ] || [ "$here/cpumask.c" -nt "$lib" ]; then
    mkdir -p "$(dirname "$lib")"
    gcc -O2 -Wall -shared -fPIC -o "$lib.tmp" "$here/cpumask.c" -ldl
    mv "$lib.tmp" "$lib"
fi
grep -qw cpuid_fault /proc/cpuinfo || { echo "cpumask: this CPU cannot trap cpuid (no cpuid_fault flag)" >&2; exit 2; }
# glibc picked its string routines before the library loads: have it pick the smaller CPU's too.
case "$mask" in
    avx2) tunables="glibc.cpu.hwcaps=-AVX512F,-AVX512DQ,-AVX512CD,-AVX512BW,-AVX512VL" ;;
    avx512) tunables="" ;;
    sse4) tunables="glibc.cpu.hwcaps=-AVX512F,-AVX512DQ,-AVX512CD,-AVX512BW,-AVX512VL,-AVX2,-AVX,-FMA" ;;
    *) echo "cpumask: $mask is not one of avx2, avx512, sse4" >&2; exit 2 ;;
esac
export CPUMASK="$mask"
export LD_PRELOAD="$(realpath "$lib")${LD_PRELOAD:+ $LD_PRELOAD}"
[ -n "$tunables" ] && export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}$tunables"
exec "$@"
