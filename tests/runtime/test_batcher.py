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


def test_a_lone_caller_runs_in_its_own_thread():
    threads: list[threading.Thread] = []

    def run(items):
        threads.append(threading.current_thread())
        return items

    b = Batcher(run, max_batch=4, max_wait_ms=0, workers=2, name="t")
    assert b.submit([1], deadline=Deadline.after(5)) == [1]  # first pass: its time is unknown, a worker runs it
    assert b.submit([2], deadline=Deadline.after(5)) == [2]
    assert threads[0] is not threading.current_thread()
    assert threads[1] is threading.current_thread()  # no hand-off to a worker
    assert b.batch_sizes() == {1: 2}


def test_a_caller_whose_deadline_is_tight_for_its_pass_queues_and_gives_up_at_it():
    started = threading.Event()
    threads: list[threading.Thread] = []

    def run(items):
        threads.append(threading.current_thread())
        started.set()
        time.sleep(0.2)
        return items

    b = Batcher(run, max_batch=4, max_wait_ms=0, workers=1, name="t")
    assert b.submit([1], deadline=Deadline.after(5)) == [1]  # passes take about 0.2 s
    with pytest.raises(DeadlineExceeded):
        b.submit([2], deadline=Deadline.after(0.05))  # 0.05 s < 10 x 0.2 s: not run by the caller itself
    assert started.wait(5)
    assert threading.current_thread() not in threads


def test_callers_and_workers_never_run_more_passes_than_workers():
    running, most = [0], [0]
    lock = threading.Lock()

    def run(items):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return [x * 2 for x in items]

    b = Batcher(run, max_batch=8, max_wait_ms=0, workers=2, name="t")
    results: dict[int, list[int]] = {}

    def caller(i):
        for k in range(5):
            results[i * 10 + k] = b.submit([i * 10 + k], deadline=Deadline.after(10))

    callers = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert len(results) == 40
    assert results == {k: [k * 2] for k in results}
    assert most[0] <= 2
    assert b.items == 40
    assert b.batches < 40  # callers that found both passes busy were batched together


class Interrupt(BaseException):
    """Not an Exception: what `except Exception` lets through (KeyboardInterrupt, SystemExit, ...)."""


def test_a_base_exception_in_a_forward_pass_reaches_every_queued_caller_and_the_worker_lives_on():
    """Issue 18: a BaseException killed the worker and left queued callers (no deadline) waiting forever."""
    gate = threading.Event()

    def run(items):
        gate.wait(5)  # hold the first pass so the others queue behind it
        if "ok" in items:
            return items
        raise Interrupt("stop")

    b = Batcher(run, max_batch=2, max_wait_ms=0, workers=1, name="t")
    errors: dict[int, BaseException] = {}

    def caller(i):
        try:
            b.submit([i], deadline=Deadline.after(30) if i == 0 else None)  # the first goes to the worker
        except BaseException as exc:
            errors[i] = exc

    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(5)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    gate.set()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads), "a caller is still waiting"
    assert sorted(errors) == list(range(5))
    assert all("Interrupt" in repr(e) or isinstance(e.__cause__, Interrupt) for e in errors.values()), errors
    done: list[list[str]] = []
    later = threading.Thread(target=lambda: done.append(b.submit(["ok"])), daemon=True)
    later.start()
    later.join(5)
    assert done == [["ok"]]  # the worker still serves


def test_forward_time_counts_wall_and_the_calling_threads_cpu_of_every_pass():
    threads: list[threading.Thread] = []

    def run(items):
        threads.append(threading.current_thread())
        if items[0] == "sleep":
            time.sleep(0.05)  # wall time, next to no CPU
        else:
            c0 = time.thread_time()
            while time.thread_time() - c0 < 0.05:  # CPU time on this thread
                pass
        if items[-1] == "fail":
            raise ValueError("a failed pass took its time too")
        return items

    b = Batcher(run, max_batch=4, max_wait_ms=0, workers=1, name="t")
    assert b.forward_time().wall_s == b.forward_time().cpu_s == 0.0
    b.submit(["burn"], deadline=Deadline.after(5))  # the first pass's time is unknown: a worker runs it
    burnt = b.forward_time()
    assert burnt.cpu_s >= 0.05
    assert burnt.wall_s >= 0.05
    b.submit(["sleep"])  # a lone caller with no deadline: its own thread runs it
    slept = b.forward_time()
    assert slept.wall_s - burnt.wall_s >= 0.05
    assert slept.cpu_s - burnt.cpu_s < 0.025
    with pytest.raises(ValueError, match="took its time"):
        b.submit(["burn", "fail"])
    assert b.forward_time().cpu_s - slept.cpu_s >= 0.05
    assert threads[0] is not threading.current_thread()  # counted in a worker thread and in the caller's
    assert threads[1] is threads[2] is threading.current_thread()
