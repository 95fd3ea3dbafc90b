"""The micro-batcher: groups concurrent callers, keeps order, passes errors, honours deadlines."""

from __future__ import annotations

import threading
import time

import pytest

from edge_mm.errors import DeadlineExceeded
from edge_mm.runtime.batcher import Batcher
from edge_mm.runtime.deadline import Deadline


def test_concurrent_callers_share_batches_and_get_their_own_results():
    calls: list[list[int]] = []
    gate = threading.Event()

    def run(items):
        gate.wait(5)  # hold the first batch so the rest queue up behind it
        calls.append(list(items))
        return [x * 10 for x in items]

    b = Batcher(run, max_batch=16, max_wait_ms=0, workers=1, name="t")
    results: dict[int, list[int]] = {}

    def caller(i):
        results[i] = b.submit([i, i + 100], deadline=Deadline.after(10))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    gate.set()
    for t in threads:
        t.join()
    assert results == {i: [i * 10, (i + 100) * 10] for i in range(6)}
    assert len(calls) < 6  # some callers were batched together
    assert sum(len(c) for c in calls) == 12
    assert max(len(c) for c in calls) <= 16


def test_error_reaches_the_caller_and_worker_survives():
    def run(items):
        if "bad" in items:
            raise ValueError("boom")
        return items

    b = Batcher(run, max_batch=4, max_wait_ms=0, workers=1, name="t")
    with pytest.raises(ValueError, match="boom"):
        b.submit(["bad"], deadline=Deadline.after(5))
    assert b.submit(["ok"], deadline=Deadline.after(5)) == ["ok"]


def test_deadline_gives_504_error():
    b = Batcher(lambda items: time.sleep(0.5) or items, max_batch=4, max_wait_ms=0, workers=1, name="t")
    with pytest.raises(DeadlineExceeded):
        b.submit([1], deadline=Deadline.after(0.05))
    assert b.submit([2], deadline=Deadline.after(5)) == [2]
