"""Micro-batching: requests queued for one model are run together in one forward pass.

At most ``workers`` forward passes run at once (one slot each). A caller that finds the
model idle (no pass running, nobody queued) runs its own items at once, in its own thread:
a lone request pays no hand-off to another thread (bench/results/request_profile.md). Under
load callers queue, so they batch: letting them run alone whenever one slot was free made
two thirds of the passes at 8 clients batch-1 passes (mean batch 1.75). It does
so only when its deadline leaves ``INLINE_MARGIN`` times the time such a pass has been
taking, since a caller running its own pass cannot give up at its deadline the way a
queued caller does.
Otherwise it queues; a worker takes the oldest waiting job, waits for a free slot,
then takes everything else already waiting (and, with ``max_wait_ms`` > 0, what
arrives within that time) up to ``max_batch`` items and runs them as one pass. With
``max_wait_ms`` = 0 nothing waits on purpose: batches form only from requests that
queued while every slot was busy.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from edge_mm.errors import DeadlineExceeded
from edge_mm.runtime.deadline import Deadline

log = logging.getLogger("edge_mm.batcher")

INLINE_MARGIN = 10.0  # a lone caller runs its own pass when its deadline leaves this many times its expected time


@dataclass
class _Job:
    items: Sequence[Any]
    deadline: Deadline | None = None
    future: Future = field(default_factory=Future)


@dataclass
class ForwardTime:
    """Seconds inside forward passes (failed ones too). ``wall_s`` / elapsed time is how many passes ran
    at once on average; ``cpu_s`` is the CPU time of the threads that called them: the whole pass with
    one intra-op thread (the default under load), not the pool threads of a pass run on more."""

    wall_s: float = 0.0
    cpu_s: float = 0.0


class Batcher:
    """``run(items) -> outputs`` for one list of items; ``submit`` groups concurrent callers."""

    def __init__(
        self, run: Callable[[list[Any]], list[Any]], *, max_batch: int, max_wait_ms: float, workers: int, name: str
    ) -> None:
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()  # None: a worker stops
        self.batches = 0
        self.items = 0
        self._sizes: Counter[int] = Counter()  # items per forward call -> calls (the metrics' batch-size histogram)
        self._time = ForwardTime()
        self._stats = threading.Lock()  # several workers count
        self._slots = threading.BoundedSemaphore(workers)  # forward passes running at once
        self._item_s = float("inf")  # recent seconds per item of a forward pass; unknown until one ran
        self._running = 0  # forward passes running now
        self._threads = [
            threading.Thread(target=self._loop, name=f"batcher-{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, items: Sequence[Any], deadline: Deadline | None = None) -> list[Any]:
        """Run ``items`` (possibly together with other callers' items); blocks for the result,
        at most until ``deadline`` (the request's own, not a second one)."""
        if self._may_run_inline(len(items), deadline) and self._slots.acquire(blocking=False):
            try:  # an idle model: run here, no hand-off (a caller cannot be left behind in the queue)
                if deadline is not None:
                    deadline.check("inference")
                outputs = self._run_counted(list(items))
            finally:
                self._slots.release()
            if deadline is not None:
                deadline.check("inference")  # as a queued caller would have given up
            return outputs
        job = _Job(items, deadline)
        self._queue.put(job)
        try:
            return job.future.result(timeout=None if deadline is None else deadline.remaining())
        except (TimeoutError, CancelledError):
            job.future.cancel()
            raise DeadlineExceeded("inference did not finish before the request deadline") from None

    def close(self, timeout_s: float = 30) -> bool:
        """Stop the workers once the queue ahead of them is done (an unloaded model version's batcher);
        True when they all stopped within ``timeout_s``."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout_s)
        return not any(t.is_alive() for t in self._threads)

    @property
    def running(self) -> bool:
        """Whether any worker still runs (False once :meth:`close` is done)."""
        return any(t.is_alive() for t in self._threads)

    def batch_sizes(self) -> dict[int, int]:
        """Items per forward call -> how many calls ran that many, since start."""
        with self._stats:
            return dict(self._sizes)

    def forward_time(self) -> ForwardTime:
        """Seconds spent in forward passes since start, wall and the calling threads' CPU (a copy)."""
        with self._stats:
            return ForwardTime(self._time.wall_s, self._time.cpu_s)

    def _may_run_inline(self, n: int, deadline: Deadline | None) -> bool:
        if self._running or not self._queue.empty():
            return False  # a pass is running or others are waiting: queue, and batch with them
        return deadline is None or deadline.remaining() > INLINE_MARGIN * self._item_s * max(1, n)

    def _run_counted(self, flat: list[Any]) -> list[Any]:
        with self._stats:
            self._running += 1
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            outputs = self._run(flat)
        finally:
            wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
            with self._stats:
                self._running -= 1
                self._time.wall_s += wall
                self._time.cpu_s += cpu
        per_item = wall / max(1, len(flat))
        with self._stats:
            self._item_s = per_item if self._item_s == float("inf") else 0.8 * self._item_s + 0.2 * per_item
            self.batches += 1
            self.items += len(flat)
            self._sizes[len(flat)] += 1
        return outputs

    def _collect(self) -> list[_Job] | None:
        """The oldest job, then (holding a slot) what else is waiting; the caller releases the slot.
        None (holding no slot) when :meth:`close` asked the worker to stop."""
        first = self._queue.get()
        if first is None:
            return None
        self._slots.acquire()
        jobs, count = [first], len(first.items)
        deadline = time.monotonic() + self.max_wait_s
        while count < self.max_batch:
            try:
                remaining = deadline - time.monotonic()
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:  # close(): hand the stop on to a worker after this batch
                self._queue.put(job)
                break
            jobs.append(job)
            count += len(job.items)
        return jobs

    @staticmethod
    def _still_wanted(job: _Job) -> bool:
        """False for a job its caller gave up on, or whose deadline passed while it queued."""
        if job.deadline is not None and job.deadline.expired():
            job.future.cancel()
        return job.future.set_running_or_notify_cancel()

    def _loop(self) -> None:
        while True:
            jobs = self._collect()  # holds a slot
            if jobs is None:
                return
            try:
                self._run_jobs(jobs)
            except BaseException as exc:  # whatever it was, every caller hears of it and the worker lives on
                self._fail(jobs, exc)
            finally:
                self._slots.release()

    def _run_jobs(self, jobs: list[_Job]) -> None:
        wanted = [j for j in jobs if self._still_wanted(j)]
        if not wanted:
            return
        flat = [item for j in wanted for item in j.items]
        outputs = self._run_counted(flat)
        if len(outputs) != len(flat):
            raise RuntimeError(f"the forward pass returned {len(outputs)} outputs for {len(flat)} items")
        start = 0
        for j in wanted:
            j.future.set_result(outputs[start : start + len(j.items)])
            start += len(j.items)

    @staticmethod
    def _fail(jobs: list[_Job], exc: BaseException) -> None:
        """Resolve every job not yet answered with ``exc`` (a BaseException that is no Exception, e.g.
        KeyboardInterrupt, wrapped in a RuntimeError: it is meant for the worker, not the callers)."""
        if not isinstance(exc, Exception):
            wrapped = RuntimeError(f"the forward pass was interrupted by {type(exc).__name__}")
            wrapped.__cause__ = exc
            exc = wrapped
        for j in jobs:
            with contextlib.suppress(InvalidStateError):  # answered, or given up on meanwhile
                j.future.set_exception(exc)
