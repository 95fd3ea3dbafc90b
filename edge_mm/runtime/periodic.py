"""A daemon thread that runs one pass of work every ``interval_s`` seconds until stopped.

The model-version poll (runtime/swap.py ``Poller``) and the LAN update poll (runtime/update_poll.py
``UpdatePoller``) are passes of this kind: a pass that raises is logged and the next one still runs.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("edge_mm.periodic")


class Periodic:
    """Subclasses define :meth:`poll_once` (one pass; what it returns is theirs) and call ``__init__``."""

    def __init__(self, interval_s: float, name: str) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> Periodic:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def poll_once(self) -> object:
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll_once()
            except Exception:  # the thread must outlive one bad pass
                log.exception("%s: a pass failed", self.thread.name)
