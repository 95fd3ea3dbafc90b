"""The periodic thread behind the version poll and the update poll (runtime/periodic.py)."""

from __future__ import annotations

import threading

from edge_mm.runtime.periodic import Periodic


class Flaky(Periodic):
    """Fails its first pass, then counts passes until the third."""

    def __init__(self) -> None:
        super().__init__(0.01, "flaky-poll")
        self.passes = 0
        self.third = threading.Event()

    def poll_once(self) -> int:
        self.passes += 1
        if self.passes == 1:
            raise RuntimeError("a bad pass")
        if self.passes == 3:
            self.third.set()
        return self.passes


def test_a_failed_pass_is_logged_and_the_next_one_runs(caplog):
    poll = Flaky().start()
    assert poll.thread.daemon
    assert poll.third.wait(10)
    poll.stop()
    poll.thread.join(10)
    assert not poll.thread.is_alive()
    assert "flaky-poll: a pass failed" in caplog.text
