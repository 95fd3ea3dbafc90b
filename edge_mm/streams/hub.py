"""Server-Sent Events fan-out: each listener has a small bounded queue; a slow listener loses its
oldest events (counted), never slows the analyser or other listeners."""

from __future__ import annotations

import queue
import threading
from typing import Any

CLOSED = None  # put in every queue when the hub closes: the listener's stream ends


class Listener:
    def __init__(self, stream: str, size: int) -> None:
        self.stream = stream
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue(size)
        self.dropped = 0

    def offer(self, event: dict[str, Any] | None) -> None:
        while True:
            try:
                self.queue.put_nowait(event)
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass


class Hub:
    def __init__(self, max_listeners: int, queue_size: int = 64) -> None:
        self.max_listeners = max_listeners
        self.queue_size = queue_size
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self.closed = False

    def listen(self, stream: str) -> Listener | None:
        """A new listener, or None when ``max_listeners`` are connected (or the hub is closed)."""
        with self._lock:
            if self.closed or len(self._listeners) >= self.max_listeners:
                return None
            listener = Listener(stream, self.queue_size)
            self._listeners.append(listener)
            return listener

    def leave(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def publish(self, event: dict[str, Any]) -> None:
        with self._lock:
            listeners = [x for x in self._listeners if x.stream == event["stream"]]
        for x in listeners:
            x.offer(event)

    def depth(self) -> int:
        with self._lock:
            return sum(x.queue.qsize() for x in self._listeners)

    def count(self) -> int:
        with self._lock:
            return len(self._listeners)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            listeners = list(self._listeners)
        for x in listeners:
            x.offer(CLOSED)
