"""One deadline per request, from admission down to the forward pass.

The API starts it when a request arrives (``runtime.request_timeout_s``); admission
waits no longer than it, the batcher waits no longer than it, and long work checks it
between steps (batches, frames, pyramid levels, VAD windows) so a worker is never held
past it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from edge_mm.errors import DeadlineExceeded


@dataclass(frozen=True)
class Deadline:
    """``at``: ``time.monotonic()`` value past which the request has failed; ``budget_s``: its length (s)."""

    at: float
    budget_s: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds, seconds)

    def remaining(self) -> float:
        """Seconds left (>= 0)."""
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def check(self, doing: str = "the request") -> None:
        """Raise 504 when the deadline has passed; call between steps of long work."""
        if self.expired():
            raise DeadlineExceeded(f"{doing} did not finish within the {self.budget_s:g} s request deadline")
