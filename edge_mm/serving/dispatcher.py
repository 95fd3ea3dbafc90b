"""waitress's thread pool, waking the thread that went idle last instead of the one idle longest.

waitress hands a request to its worker threads through one ``threading.Condition``, which wakes
waiters in the order they began to wait: with one client at a time every request lands on the
thread that has been idle longest, so sixteen threads take turns and each forward pass starts on
a thread (and often a core) whose caches hold nothing of the last one. A lone request runs its
forward pass on the thread that serves it (runtime/batcher.py), so the turns cost time: MiniLM's int8
pass, timed in the server, took 3.0 ms with waitress's order and 2.8 ms with this one, the round
trip 4.1 against 3.8 ms (``python -m bench.profile_request --rev 32ee544``, committed in 6dd30dd;
wrk at 1 client: p50 3.9 -> 3.5 ms).
Waking the most recently idle thread keeps light load on one warm thread; under heavy load every
thread is busy and the order does not matter.
"""

from __future__ import annotations

import threading

from waitress.task import ThreadedTaskDispatcher


class LastIdleFirst:
    """The part of ``threading.Condition`` that waitress's dispatcher uses (``wait``, ``notify``,
    ``notify_all``, called holding ``lock``), waking the latest waiter first."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._idle: list[threading.Condition] = []  # one per waiting thread; the latest to wait is last
        self._own = threading.local()

    def wait(self, timeout: float | None = None) -> bool:
        cv = getattr(self._own, "cv", None)
        if cv is None:
            cv = self._own.cv = threading.Condition(self._lock)
        self._idle.append(cv)
        try:
            return cv.wait(timeout)
        finally:
            if cv in self._idle:  # timed out: nobody popped it
                self._idle.remove(cv)

    def notify(self, n: int = 1) -> None:
        for _ in range(min(n, len(self._idle))):
            self._idle.pop().notify()

    def notify_all(self) -> None:
        self.notify(len(self._idle))


class LastIdleFirstDispatcher(ThreadedTaskDispatcher):
    """waitress's ``ThreadedTaskDispatcher``, unchanged but for the order it wakes idle threads in."""

    def __init__(self) -> None:
        super().__init__()
        self.queue_cv = LastIdleFirst(self.lock)
