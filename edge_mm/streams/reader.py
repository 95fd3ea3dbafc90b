"""One reader thread per stream: decodes continuously into the latest-frame slot; reconnects with
exponential backoff and jitter when the source fails or ends."""

from __future__ import annotations

import logging
import random
from pathlib import Path

from edge_mm.streams import sources
from edge_mm.streams.slot import LatestFrame
from edge_mm.streams.spec import StreamSpec, scrub
from edge_mm.streams.stats import StreamStats
from edge_mm.streams.worker import Worker

log = logging.getLogger("edge_mm.streams")

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0


def backoff_s(attempt: int, first: float = BACKOFF_FIRST_S, most: float = BACKOFF_MAX_S) -> float:
    """The wait before reconnect ``attempt`` (0-based): doubling from ``first`` up to ``most``, times a
    random 0.5-1 (full-jitter-like, so cameras that dropped together do not reconnect together)."""
    return min(most, first * 2 ** min(attempt, 30)) * random.uniform(0.5, 1.0)


class Reader(Worker):
    def __init__(self, spec: StreamSpec, base_dir: Path, slot: LatestFrame, stats: StreamStats) -> None:
        self.spec = spec
        self.base_dir = base_dir
        self.slot = slot
        self.stats = stats
        super().__init__(f"stream-reader-{spec.id}")

    def _run(self) -> None:
        attempt = 0
        while not self.stop_event.is_set():
            self.stats.set(state="connecting" if attempt == 0 else "reconnecting")
            try:
                for data in sources.frames(self.spec, self.base_dir, self.stop_event):
                    if attempt or self.stats.state != "streaming":
                        self.stats.set(state="streaming")
                        attempt = 0
                    self.slot.put(data)
                    self.stats.add(frames_read=1)
                    del data  # the slot holds the only reference: one frame per stream
                if self.stop_event.is_set():
                    break
                error = "the source ended"
            except Exception as exc:
                error = scrub(f"{type(exc).__name__}: {exc}", self.spec.url)[:500]
            if self.stop_event.is_set():
                break
            wait = backoff_s(attempt, BACKOFF_FIRST_S, BACKOFF_MAX_S)  # read at call time (tests shorten them)
            self.stats.set(last_error=error, state="reconnecting")
            self.stats.add(reconnects=1)
            log.warning("stream %s: %s; reconnecting in %.1f s", self.spec.id, error, wait)
            attempt += 1
            self.stop_event.wait(wait)
        self.slot.clear()
        self.stats.set(state="stopped")
