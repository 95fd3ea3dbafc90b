"""Solo passes: a forward pass that starts while it is the only request in the process may use every core.

Concurrent requests are served best by one thread per forward pass (runtime.intra_op_threads, derived
from the cores: edge_mm/device.py ``cpu_threads``): the passes run side by side and the HTTP threads
keep the cycles they need. A lone request leaves the other cores idle. Convolutions split well over
threads, so an image classifier on ONNX Runtime also keeps a second session on every core
(``runtime.solo_threads``; runtime/onnx_session.py) and a pass uses it when nothing else is running or
waiting: EfficientNet-Lite0's int8 pass takes 5.2 ms instead of 6.6 on 2 cores, for 9 MB more
resident memory; at 1 client the server answered 119 req/s against 100 without it, side by side,
and the same at 4 clients (docs/numbers.md, Images). A pass that starts while another runs, or
while the server holds another request, takes the one-thread session, so under load nothing
changes. Measured and left off: the SSD detector (36 -> 23 ms, but its second session costs 180 MB;
sharing the initializers between the two sessions cost more, not less) and text models (MiniLM's
batch-1 pass is no faster on two threads: its int8 GEMMs are too small to split).

The HTTP server tells :data:`SOLO` how many requests it holds (:meth:`Solo.count_requests`); without
one (a test client, Ray Serve) only the passes running are counted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Solo:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._passes = 0  # forward passes running now, every model together
        self._requests: Callable[[], int] | None = None

    def count_requests(self, requests: Callable[[], int] | None) -> None:
        """``requests() -> int``: the requests the server holds now (queued or being served); None: forget it."""
        self._requests = requests

    @contextmanager
    def forward_pass(self) -> Iterator[bool]:
        """Around one forward pass; yields True when it may use every core (it is alone)."""
        requests = self._requests
        with self._lock:
            self._passes += 1
            alone = self._passes == 1
        try:
            yield alone and (requests is None or requests() <= 1)
        finally:
            with self._lock:
                self._passes -= 1


SOLO = Solo()
