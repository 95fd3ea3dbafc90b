"""The worker pool wakes the thread that went idle last (edge_mm/serving/dispatcher.py)."""

from __future__ import annotations

import threading
import time

from waitress.task import ThreadedTaskDispatcher

from edge_mm.serving.dispatcher import LastIdleFirst, LastIdleFirstDispatcher


class _Task:
    def __init__(self) -> None:
        self.thread: str | None = None
        self.done = threading.Event()

    def service(self) -> None:
        self.thread = threading.current_thread().name
        self.done.set()

    def cancel(self) -> None:
        self.done.set()


def _all_idle(pool: ThreadedTaskDispatcher, threads: int) -> None:
    end = time.monotonic() + 5
    while time.monotonic() < end:
        with pool.lock:
            if pool.active_count == 0 and len(pool.threads) == threads:
                return
        time.sleep(0.001)
    raise AssertionError("the pool's threads did not all go idle")


def _threads_serving(pool: ThreadedTaskDispatcher, threads: int, tasks: int) -> list[str]:
    """The thread names serving ``tasks`` tasks handed over one at a time, each once the pool is idle again."""
    pool.set_thread_count(threads)
    names = []
    try:
        for _ in range(tasks):
            _all_idle(pool, threads)
            task = _Task()
            pool.add_task(task)
            assert task.done.wait(5)
            names.append(task.thread)
    finally:
        pool.shutdown(timeout=5)
    return names


def test_one_request_at_a_time_stays_on_one_thread() -> None:
    names = _threads_serving(LastIdleFirstDispatcher(), threads=8, tasks=24)
    assert len(set(names)) == 1, names


def test_waitress_own_pool_takes_turns_which_is_what_this_replaces() -> None:
    names = _threads_serving(ThreadedTaskDispatcher(), threads=8, tasks=24)
    assert len(set(names)) == 8, names


def test_concurrent_tasks_still_use_every_thread_and_shutdown_stops_them() -> None:
    pool = LastIdleFirstDispatcher()
    pool.set_thread_count(4)
    _all_idle(pool, 4)
    release = threading.Event()
    seen: set[str] = set()
    started = threading.Barrier(5)

    class Blocking(_Task):
        def service(self) -> None:
            seen.add(threading.current_thread().name)
            started.wait(5)
            release.wait(5)
            self.done.set()

    tasks = [Blocking() for _ in range(4)]
    for task in tasks:
        pool.add_task(task)
    started.wait(5)  # all four run at once: each on its own thread
    release.set()
    assert all(t.done.wait(5) for t in tasks)
    assert len(seen) == 4
    assert pool.shutdown(timeout=5)
    assert not pool.threads


def test_a_wait_that_times_out_leaves_no_stale_waiter() -> None:
    lock = threading.Lock()
    cv = LastIdleFirst(lock)
    with lock:
        assert cv.wait(0.01) is False
        cv.notify()  # nobody waits: nothing to wake, no error
    woke = threading.Event()

    def waiter() -> None:
        with lock:
            cv.wait(5)
        woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.05)
    with lock:
        cv.notify_all()
    assert woke.wait(5)
    thread.join()
