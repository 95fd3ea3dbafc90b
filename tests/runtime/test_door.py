"""The door's arithmetic: a hard bound on waiting requests, and a bound on the expected answer time."""

from __future__ import annotations

import pytest

from edge_mm.runtime.door import Door, DoorSizes


def test_derived_sizes_follow_threads_and_the_deadline():
    sizes = DoorSizes.derive(threads=16, max_waiting=0, max_expected_s=0, request_timeout_s=30)
    assert (sizes.max_waiting, sizes.max_expected_s) == (64, 15.0)
    assert DoorSizes.derive(4, 10, 2.5, 30) == DoorSizes(4, 10, 2.5)


def test_max_waiting_bounds_the_queue_before_any_request_is_timed():
    door = Door(DoorSizes(threads=2, max_waiting=3, max_expected_s=100))
    assert [door.admit() for _ in range(3)] == [None, None, None]
    why = door.admit()
    assert why is not None
    assert "3 requests already wait" in why
    door.started()  # a thread takes one: room for one more
    assert door.admit() is None
    assert door.stats()["shed"] == 1
    assert door.stats()["waiting"] == 3


def test_measured_pace_sheds_what_could_not_be_answered_in_time():
    door = Door(DoorSizes(threads=2, max_waiting=1000, max_expected_s=10))
    door.admit()
    door.started()
    door.finished(2.0)  # 2 s per request on 2 threads: 1 answer per second
    admitted = 0
    while door.admit() is None:
        admitted += 1
    # a thread frees every second: behind n others a request starts after (n + 1) s and takes 2 s,
    # so 8 fit under 10 s
    assert admitted == 8
    assert door.expected_s() > 10
    why = door.admit()
    assert why is not None
    assert "would take about" in why
    assert "2000 ms per request" in why


def test_pace_is_a_moving_average_and_client_gone_is_counted_not_timed():
    door = Door(DoorSizes(threads=1, max_waiting=10, max_expected_s=100))
    for took in (1.0, None, 1.0):
        door.admit()
        door.started()
        door.finished(took)
    stats = door.stats()
    assert stats["client_gone"] == 1
    assert stats["mean_service_ms"] == pytest.approx(1000.0)
    assert stats["running"] == 0
    assert stats["waiting"] == 0
    door.admit()
    door.started()
    door.finished(11.0)
    assert door.stats()["mean_service_ms"] == pytest.approx(2000.0)  # 1 + 0.1 x (11 - 1)
