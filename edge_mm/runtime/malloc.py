"""Cap glibc's malloc arenas for a server with many threads.

glibc gives threads up to 8 arenas per core; waitress and batcher threads each grab one
and fragment it. Under 32 clients (bench/soak.py) a cap of 2 kept resident memory about
200 MB lower (1.2 GB instead of 1.4 GB) at no measured throughput cost.
"""

from __future__ import annotations

import ctypes
import ctypes.util

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
