"""Solo passes: a forward pass that starts while it is the only request in the process may use every core.

Concurrent requests are served best by one thread per forward pass (runtime.intra_op_threads, derived
from the cores: edge_mm/device.py ``cpu_threads``): the passes run side by side and the HTTP threads
keep the cycles they need. A lone request leaves the other cores idle, so an image classifier or a
text embedding model on ONNX Runtime also keeps a second session on every core (``runtime.solo_threads``;
runtime/onnx_session.py), its pool spinning between ops, and a pass uses it when nothing else is
running or waiting. EfficientNet-Lite0's int8 pass takes 5.2 ms instead of 6.6 on 2 cores, for 9 MB
more resident memory; at 1 client the server answered 119 req/s against 100 without it, side by
side, and the same at 4 clients (docs/numbers.md, Images). MiniLM's batch-1 pass (row-wise int8,
32 tokens) takes about 1.3 ms instead of 1.9 on the AMD EPYC (Zen 5) and p50 at 1 client fell from
5.2 to 4.6 ms side by side, for about 30 MB more (on the Intel AMX machine before it, the same pass
measured no faster on two threads, and text was left off). Text classifiers keep one session: a
fine-tuned NER's second session cost about 70 MB (runtime/text_model.py ``SOLO_TASKS``). A pass that starts while another runs, or
while the server holds another request, takes the one-thread session, so under load nothing
changes. Measured and left off: the SSD detector (36 -> 23 ms, but its second session costs 180
MB; sharing the initializers between the two sessions cost more, not less).

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
