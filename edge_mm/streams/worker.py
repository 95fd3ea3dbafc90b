"""A stream's daemon thread: runs ``_run`` until ``stop`` sets ``stop_event`` (the reader and the analyser)."""

from __future__ import annotations

import threading


class Worker:
    def __init__(self, name: str) -> None:
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float) -> bool:
        """True when the thread ended within ``timeout`` seconds."""
        self.thread.join(timeout)
        return not self.thread.is_alive()
