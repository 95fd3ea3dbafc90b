"""The server's memory allocator: glibc tuned for many threads, or jemalloc preloaded.

Cap glibc's malloc arenas for a server with many threads.

glibc gives threads up to 8 arenas per core; waitress and batcher threads each grab one
and fragment it. Under 32 clients (bench/soak.py) a cap of 2 kept resident memory about
200 MB lower (1.2 GB instead of 1.4 GB) at no measured throughput cost.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

from edge_mm.config import ALLOCATORS
from edge_mm.errors import ConfigError

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
M_ARENA_MAX = -8


def _glibc_call(function: str, *args: int) -> bool:
    """libc's ``function(*args)`` as a bool; False where libc cannot be found or lacks it (not glibc)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        return bool(getattr(ctypes.CDLL(name), function)(*args))
    except (OSError, AttributeError):
        return False


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Set M_ARENA_MAX before the server starts its threads; False where libc is not glibc."""
    return _glibc_call("mallopt", M_ARENA_MAX, arenas)


def fix_mmap_threshold(nbytes: int = 128 * 1024) -> bool:
    """Serve allocations of ``nbytes`` and more from their own mappings, always; False where not glibc.

    glibc raises this threshold to the size of each large block freed (up to 32 MB): once the first model's
    weights are freed (a hot swap), later weights and ONNX Runtime's arena chunks land in the heaps instead,
    where freed ones stay resident (malloc_trim cannot shrink a thread arena's top). Fixed at glibc's own
    starting value, they are unmapped when freed: 20 swaps of MiniLM under wrk left RSS +26 MB without,
    +9 to +13 MB with it, bounded over 60 swaps (bench/results/hot_swap.md).
    """
    return _glibc_call("mallopt", M_MMAP_THRESHOLD, nbytes)


def trim_heap() -> bool:
    """Hand freed heap pages back to the OS (glibc's malloc_trim); False where libc is not glibc.

    Loading an ONNX graph parses the whole file into memory before the session copies its
    weights out; after warm-up the freed parse buffers still count as resident until trimmed
    (MiniLM + EfficientNet-Lite0 on ONNX Runtime: about 12-25 MB).
    """
    return _glibc_call("malloc_trim", 0)


# jemalloc: what a hot swap leaves behind --------------------------------------------------------------------------
#
# glibc keeps the holes that retiring a model version leaves between the new version's small blocks (about 4% of
# RSS after 20 swaps, bench/results/hot_swap.md); jemalloc hands back partly used pages on a timer. It can only
# replace malloc from process start (LD_PRELOAD), so `edge-mm serve` re-executes itself once with it preloaded.

# A background thread returns pages freed for 1 s (dirty) straight to the OS. jemalloc's own arena count (4 per
# core): capped at 2 like glibc's above, p99 during 20 swaps reached 4-10x that without in 3 of 8 runs; uncapped
# 1.39-1.52x in 3 of 3 (bench/hot_swap.py NOTES).
JEMALLOC_CONF = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
JEMALLOC_SO = "libjemalloc.so.2"
REEXEC_MARK = "EDGE_MM_ALLOCATOR_REEXEC"  # set in the re-executed process: never twice
PAGE = 4096  # the page size Debian's x86-64 jemalloc is built for; a larger page would abort it at start


def jemalloc_library() -> Path | None:
    """The jemalloc to preload: the bundle's (``_internal/jemalloc/``), else the checkout's (scripts/jemalloc.sh
    puts it in ``build/jemalloc/<machine>/``), else the system's; None where there is none."""
    machine = platform.machine()
    if getattr(sys, "frozen", False):
        candidates = [Path(getattr(sys, "_MEIPASS", "")) / "jemalloc" / JEMALLOC_SO]
    else:
        candidates = [Path(__file__).resolve().parents[2] / "build" / "jemalloc" / machine / JEMALLOC_SO]
    candidates += [Path(d) / JEMALLOC_SO for d in (f"/usr/lib/{machine}-linux-gnu", "/usr/lib64", "/usr/local/lib")]
    return next((p for p in candidates if p.is_file()), None)


def allocator_in_use(maps: Path = Path("/proc/self/maps")) -> str:
    """``jemalloc`` when it is mapped into this process, else ``glibc`` (or ``system`` where libc is not glibc)."""
    try:
        if "libjemalloc" in maps.read_text():
            return "jemalloc"
    except OSError:
        pass
    return "glibc" if platform.libc_ver()[0] == "glibc" else "system"


def preload_env(
    choice: str, env: Mapping[str, str], library: Path | None, *, page_size: int, frozen_onefile: bool = False
) -> tuple[dict[str, str] | None, str]:
    """(the environment to re-execute with jemalloc preloaded, or None to stay as is; why), for
    ``runtime.allocator`` = ``choice``. ``jemalloc`` where it cannot be had raises ConfigError."""
    if choice not in ALLOCATORS:
        raise ConfigError(f"runtime.allocator = {choice!r}: one of {', '.join(ALLOCATORS)}")
    if choice == "glibc":
        return None, "runtime.allocator = glibc"
    if REEXEC_MARK in env:  # and yet not loaded (use_jemalloc checks first): the loader ignored LD_PRELOAD
        if choice == "jemalloc":
            raise ConfigError(f"runtime.allocator = jemalloc: LD_PRELOAD={env.get('LD_PRELOAD')} did not load it")
        return None, "already re-executed once"
    problem = _cannot_preload(library, page_size, frozen_onefile)
    if problem:
        if choice == "jemalloc":
            raise ConfigError(f"runtime.allocator = jemalloc: {problem}")
        return None, problem
    preload = " ".join(p for p in (str(library), env.get("LD_PRELOAD", "")) if p)
    new = {**env, "LD_PRELOAD": preload, REEXEC_MARK: "1", "MALLOC_CONF": env.get("MALLOC_CONF", JEMALLOC_CONF)}
    if getattr(sys, "frozen", False):
        new["PYINSTALLER_RESET_ENVIRONMENT"] = "1"  # a new instance of the executable, not a child of this one
    return new, f"preloading {library}"


def _cannot_preload(library: Path | None, page_size: int, frozen_onefile: bool) -> str | None:
    """Why jemalloc cannot be preloaded here, or None when it can."""
    if library is None:
        return "no libjemalloc.so.2 (the bundle carries one; a checkout: scripts/jemalloc.sh)"
    if page_size != PAGE:
        return f"the page size is {page_size} bytes, jemalloc here is built for {PAGE}"
    if frozen_onefile:
        return "a onefile bundle would unpack itself twice"
    return None


def use_jemalloc(choice: str) -> str:
    """Re-execute this process (same PID, same arguments) with jemalloc preloaded when ``choice`` and the machine
    allow it; returns why not otherwise. Call before any thread starts: exec replaces the process."""
    if allocator_in_use() == "jemalloc":
        return "jemalloc is loaded"
    frozen = getattr(sys, "frozen", False)
    onefile = frozen and Path(getattr(sys, "_MEIPASS", "")).parent != Path(sys.executable).resolve().parent
    env, why = preload_env(
        choice, os.environ, jemalloc_library(), page_size=os.sysconf("SC_PAGE_SIZE"), frozen_onefile=onefile
    )
    if env is None:
        return why
    argv = [sys.executable, *(sys.argv[1:] if frozen else sys.orig_argv[1:])]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
    raise AssertionError("unreachable")  # pragma: no cover
