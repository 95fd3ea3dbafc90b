"""The int8 path of the CPU this process runs on, as ONNX Runtime's and torch's kernels see it.

Int8 answers depend on the kernel a CPU gets. On x86 without VNNI (AVX2, AVX-512 without
VNNI) ONNX Runtime's u8 x s8 kernels multiply with ``vpmaddubsw``, which adds pairs of products in
16 bits and saturates when both weights of a pair are large; VNNI (``vpdpbusd``) and AMX
accumulate in 32 bits and never do; SSE4.1's kernel and Arm's NEON kernels widen before they add. So the same
int8 graph can miss its fidelity gate on one machine and hold it on another: the build
records the path it measured on (manifest), the server the path it serves on (``/info``),
and the start-up fidelity check (runtime/fidelity_gate.py) re-measures on the serving CPU.

Features are read from the instruction the kernels read (``cpuid`` and ``xgetbv`` on x86,
``getauxval`` on Arm), not from ``/proc/cpuinfo``: under qemu-user (``-cpu Haswell``, how
the tests emulate an AVX2-only machine) ``/proc/cpuinfo`` is the host's, ``cpuid`` is the
emulated CPU's, and under scripts/cpumask.sh (cpuid trapped, features hidden) the masked CPU's.
``EDGE_MM_CPU_PATH`` overrides the detected path (tests; a user who knows better).
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

# int8 paths, most capable first. "saturating": its u8 x s8 kernel can saturate with 8-bit weights.
PATHS = {
    "amx": "x86 AMX int8 tiles (32-bit accumulation)",
    "avx512-vnni": "x86 AVX-512 VNNI (vpdpbusd, 32-bit accumulation)",
    "avx-vnni": "x86 AVX-VNNI (vpdpbusd on 256-bit registers)",
    "avx512": "x86 AVX-512BW without VNNI (vpmaddubsw: 16-bit pair sums saturate)",
    "avx2": "x86 AVX2 without VNNI (vpmaddubsw: 16-bit pair sums saturate)",
    "sse4": "x86 SSE4.1 (widens to 16 bits, then pmaddwd: 32-bit sums, no saturation)",
    "neon-i8mm": "Arm NEON with the int8 matrix multiply (smmla/ummla)",
    "neon-dot": "Arm NEON with the dot product (sdot/udot)",
    "neon": "Arm NEON without the dot product (widening multiplies)",
    "unknown": "no int8 feature could be read",
}
SATURATING = frozenset({"avx512", "avx2"})  # tests/runtime/test_cpumask.py shows which kernels saturate
ENV_OVERRIDE = "EDGE_MM_CPU_PATH"


@dataclass(frozen=True)
class CpuInfo:
    """What a figure was measured on: machine, CPU model, int8 path and the flags that decide it."""

    machine: str  # platform.machine(): x86_64, aarch64, ...
    model: str
    path: str  # a key of PATHS
    flags: list[str] = field(default_factory=list)  # the int8-relevant features present
    source: str = "cpuid"  # cpuid | auxv | override

    @property
    def saturating(self) -> bool:
        """True when this path's u8 x s8 kernel can saturate with full 8-bit weights."""
        return self.path in SATURATING

    def describe(self) -> dict[str, Any]:
        return {**asdict(self), "path_notes": PATHS.get(self.path, ""), "saturating_u8s8": self.saturating}


@functools.cache
def detect() -> CpuInfo:
    """This process's CPU (cached: features do not change while it runs)."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        info = _x86()
    elif machine in ("aarch64", "arm64"):
        info = _arm()
    else:
        info = CpuInfo(machine, _proc_model(), "unknown", [], "none")
    forced = os.environ.get(ENV_OVERRIDE, "").strip()
    if forced:
        if forced not in PATHS:
            raise ValueError(f"{ENV_OVERRIDE}={forced!r} is not one of {', '.join(PATHS)}")
        info = CpuInfo(info.machine, info.model, forced, info.flags, "override")
    return info


# --- x86: cpuid and xgetbv, run from a small executable page ---------------------------------

# void cpuid(uint32 leaf, uint32 subleaf, uint32 out[4]) (System V: edi, esi, rdx)
_CPUID = bytes.fromhex("5389f889f14989d00fa241890041895804418948084189500c5bc3")
# uint64 xgetbv(0)
_XGETBV = bytes.fromhex("31c90f01d048c1e2204809d0c3")


class _X86Code:
    def __init__(self) -> None:
        self._page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self._page.write(_CPUID + b"\x90" * (32 - len(_CPUID)) + _XGETBV)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._page))
        proto = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32))
        self._cpuid = proto(base)
        self._xgetbv = ctypes.CFUNCTYPE(ctypes.c_uint64)(base + 32)

    def cpuid(self, leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
        out = (ctypes.c_uint32 * 4)()
        self._cpuid(leaf, subleaf, out)
        return out[0], out[1], out[2], out[3]

    def xgetbv(self) -> int:
        return int(self._xgetbv())


def _bit(value: int, n: int) -> bool:
    return bool(value >> n & 1)


def _x86() -> CpuInfo:
    try:
        code = _X86Code()
    except (OSError, ValueError):  # a kernel that refuses writable+executable pages
        return _x86_from_proc()
    top = code.cpuid(0)[0]
    _, _, ecx1, _ = code.cpuid(1)
    osxsave = _bit(ecx1, 27)
    xcr0 = code.xgetbv() if osxsave else 0
    ymm = osxsave and xcr0 & 0b110 == 0b110  # the OS saves SSE and AVX state
    zmm = ymm and xcr0 & 0b11100000 == 0b11100000  # ... and AVX-512's opmask and zmm state
    tiles = xcr0 & (3 << 17) == 3 << 17  # ... and AMX tile state
    ebx7, ecx7, edx7 = code.cpuid(7, 0)[1:] if top >= 7 else (0, 0, 0)
    eax7_1 = code.cpuid(7, 1)[0] if top >= 7 else 0
    features = {
        "sse4_1": _bit(ecx1, 19),
        "avx": ymm and _bit(ecx1, 28),
        "avx2": ymm and _bit(ebx7, 5),
        "avx_vnni": ymm and _bit(eax7_1, 4),
        "avx512f": zmm and _bit(ebx7, 16),
        "avx512bw": zmm and _bit(ebx7, 30),
        "avx512_vnni": zmm and _bit(ecx7, 11),
        "amx_tile": tiles and _bit(edx7, 24),
        "amx_int8": tiles and _bit(edx7, 25),
    }
    flags = [name for name, present in features.items() if present]
    return CpuInfo("x86_64", _x86_brand(code) or _proc_model(), _x86_path(set(flags)), flags, "cpuid")


def _x86_path(flags: set[str]) -> str:
    if {"amx_tile", "amx_int8"} <= flags:
        return "amx"
    if "avx512_vnni" in flags:
        return "avx512-vnni"
    if "avx_vnni" in flags:
        return "avx-vnni"
    if "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "sse4" if "sse4_1" in flags else "unknown"


def _x86_brand(code: _X86Code) -> str:
    if code.cpuid(0x80000000)[0] < 0x80000004:
        return ""
    regs = [r for leaf in (0x80000002, 0x80000003, 0x80000004) for r in code.cpuid(leaf)]
    raw = b"".join(r.to_bytes(4, "little") for r in regs)
    return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()


def _x86_from_proc() -> CpuInfo:
    names = {"sse4_1", "avx", "avx2", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni", "amx_tile", "amx_int8"}
    flags = sorted(names & set(_proc_field("flags").split()))
    return CpuInfo("x86_64", _proc_model(), _x86_path(set(flags)), flags, "/proc/cpuinfo")


# --- Arm: the kernel's hardware capability bits ---------------------------------------------

_AT_HWCAP, _AT_HWCAP2 = 16, 26
_HWCAP = {"asimd": 1, "asimddp": 20, "sve": 22}  # bit numbers (linux arch/arm64 uapi hwcap.h)
_HWCAP2 = {"i8mm": 13, "sve2": 1}


def _arm() -> CpuInfo:
    try:
        getauxval = ctypes.CDLL(None).getauxval
        getauxval.restype, getauxval.argtypes = ctypes.c_ulong, [ctypes.c_ulong]
        hw, hw2 = int(getauxval(_AT_HWCAP)), int(getauxval(_AT_HWCAP2))
    except (OSError, AttributeError):
        hw = hw2 = 0
    flags = [n for n, b in _HWCAP.items() if _bit(hw, b)] + [n for n, b in _HWCAP2.items() if _bit(hw2, b)]
    path = "neon-i8mm" if "i8mm" in flags else "neon-dot" if "asimddp" in flags else "neon"
    return CpuInfo("aarch64", _proc_model() or "Arm", path, flags, "auxv")


@functools.cache
def _proc_cpuinfo_text() -> str:
    """/proc/cpuinfo, read once per process ("" where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def proc_cpuinfo(text: str | None = None) -> dict[str, str]:
    """/proc/cpuinfo (or ``text`` in its format) as {lower-case key: value}, each key's first line: the
    first processor's block, and lines after the blocks (Arm's ``Hardware``); {} where it cannot be read."""
    fields: dict[str, str] = {}
    for line in (_proc_cpuinfo_text() if text is None else text).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def x86_family_model(text: str | None = None) -> str:
    """ "family F model M" from /proc/cpuinfo (x86; a virtual machine's brand string may say only "AMD
    EPYC", which covers Zen 3 to Zen 5), "" where it has none (Arm, other systems)."""
    fields = proc_cpuinfo(text)
    family, model = fields.get("cpu family", ""), fields.get("model", "")
    return f"family {family} model {model}" if family and model else ""


def _proc_field(name: str) -> str:
    return proc_cpuinfo().get(name, "")


def _proc_model() -> str:
    return _proc_field("model name") or _proc_field("hardware") or platform.processor()
