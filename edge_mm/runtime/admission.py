"""Admission control: bounded in-flight inferences plus a bounded queue, per model.

The HTTP door (edge_mm/runtime/door.py) bounds the requests waiting for a worker thread;
this bounds, per model, those inside the app waiting for the model, so one busy model
answers 503 without holding every thread, and a request that waited too long gets a 504.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from edge_mm.errors import DeadlineExceeded, Overloaded
from edge_mm.runtime.deadline import Deadline


class Admission:
    def __init__(self, max_in_flight: int, max_queue: int, timeout_s: float) -> None:
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self._slots = threading.Semaphore(max_in_flight)
        self._lock = threading.Lock()
        self.waiting = 0
        self.running = 0
        self.rejected = 0
        self.timed_out = 0

    @contextmanager
    def slot(self, deadline: Deadline | None = None) -> Iterator[Deadline]:
        """Hold one inference slot, waiting at most until ``deadline`` (default: ``timeout_s`` from now).

        Yields the same deadline, for the work inside to pass down.
        """
        deadline = deadline or Deadline.after(self.timeout_s)
        if not self._slots.acquire(blocking=False):
            with self._lock:
                if self.waiting >= self.max_queue:
                    self.rejected += 1
                    raise Overloaded(
                        f"server busy: {self.max_in_flight} running and {self.waiting} queued; retry shortly",
                        headers={"Retry-After": "1"},
                    )
                self.waiting += 1
            try:
                acquired = self._slots.acquire(timeout=deadline.remaining())
            finally:
                with self._lock:
                    self.waiting -= 1
            if not acquired:
                with self._lock:
                    self.timed_out += 1
                raise DeadlineExceeded(
                    f"request waited past its {deadline.budget_s:g} s deadline for a free model slot"
                )
        with self._lock:
            self.running += 1
        try:
            deadline.check_client()  # a client that left while this request waited: free the slot at once
            yield deadline
        except DeadlineExceeded:  # the work ran past the deadline
            with self._lock:
                self.timed_out += 1
            raise
        finally:
            with self._lock:
                self.running -= 1
            self._slots.release()

    @contextmanager
    def try_slot(self) -> Iterator[bool]:
        """A slot for background work (camera streams, edge_mm/streams) only when one is free now and no
        request waits for one: yields True holding it, else False at once (the work is skipped, never queued)."""
        if self.waiting or not self._slots.acquire(blocking=False):
            yield False
            return
        with self._lock:
            self.running += 1
        try:
            yield True
        finally:
            with self._lock:
                self.running -= 1
            self._slots.release()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "running": self.running,
                "waiting": self.waiting,
                "rejected": self.rejected,
                "timed_out": self.timed_out,
                "max_in_flight": self.max_in_flight,
                "max_queue": self.max_queue,
            }
