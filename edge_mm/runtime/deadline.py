"""One deadline per request, from admission down to the forward pass.

The API starts it when a request arrives (``runtime.request_timeout_s``); admission
waits no longer than it, the batcher waits no longer than it, and long work checks it
between steps (batches, frames, pyramid levels, VAD windows) so a worker is never held
past it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_mm.errors import ClientGone, DeadlineExceeded


@dataclass(frozen=True)
class Deadline:
    """``at``: ``time.monotonic()`` value past which the request has failed; ``budget_s``: its length (s);
    ``client_gone``: asks whether the client has left (then the work is not worth finishing)."""

    at: float
    budget_s: float
    client_gone: Callable[[], bool] | None = field(default=None, compare=False)

    @classmethod
    def after(
        cls, seconds: float, *, start: float | None = None, client_gone: Callable[[], bool] | None = None
    ) -> Deadline:
        """``seconds`` from ``start`` (a ``time.monotonic()`` value; default now)."""
        return cls((time.monotonic() if start is None else start) + seconds, seconds, client_gone)

    def remaining(self) -> float:
        """Seconds left (>= 0)."""
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def check(self, doing: str = "the request") -> None:
        """Raise 504 when the deadline has passed, 499 when the client has gone; call between steps of long work."""
        if self.expired():
            raise DeadlineExceeded(f"{doing} did not finish within the {self.budget_s:g} s request deadline")
        self.check_client()

    def check_client(self) -> None:
        if self.client_gone is not None and self.client_gone():
            raise ClientGone("the client closed its connection; the request was not finished")
