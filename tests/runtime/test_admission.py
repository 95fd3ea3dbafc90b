"""Admission control: bounded in-flight + bounded queue -> fast 503; waiting past the deadline -> 504."""

from __future__ import annotations

import threading
import time

import pytest

from edge_mm.errors import DeadlineExceeded, Overloaded
from edge_mm.runtime.admission import Admission


def hold(adm: Admission, release: threading.Event, entered: threading.Event) -> None:
    with adm.slot():
        entered.set()
        release.wait(5)


def test_full_queue_is_rejected_at_once_with_retry_after():
    adm = Admission(max_in_flight=1, max_queue=0, timeout_s=5)
    release, entered = threading.Event(), threading.Event()
    t = threading.Thread(target=hold, args=(adm, release, entered))
    t.start()
    entered.wait(5)
    t0 = time.monotonic()
    with pytest.raises(Overloaded) as info, adm.slot():
        pass
    assert time.monotonic() - t0 < 0.1
    assert info.value.headers["Retry-After"] == "1"
    assert adm.stats()["rejected"] == 1
    release.set()
    t.join()
    with adm.slot():  # free again
        pass


def test_queued_request_runs_when_a_slot_frees():
    adm = Admission(max_in_flight=1, max_queue=1, timeout_s=5)
    release, entered = threading.Event(), threading.Event()
    t = threading.Thread(target=hold, args=(adm, release, entered))
    t.start()
    entered.wait(5)
    threading.Timer(0.1, release.set).start()
    with adm.slot():
        assert adm.stats()["running"] == 1
    t.join()


def test_waiting_past_deadline_is_504():
    adm = Admission(max_in_flight=1, max_queue=4, timeout_s=0.1)
    release, entered = threading.Event(), threading.Event()
    t = threading.Thread(target=hold, args=(adm, release, entered))
    t.start()
    entered.wait(5)
    with pytest.raises(DeadlineExceeded), adm.slot():
        pass
    assert adm.stats()["timed_out"] == 1
    release.set()
    t.join()
