"""One deadline per request: admission and the batcher share it, and every model call goes through its own slot."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from edge_mm.errors import DeadlineExceeded
from edge_mm.manifest import ModelEntry
from edge_mm.runtime.admission import Admission
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.model_calls import Models
from edge_mm.runtime.registry import Registry, Served
from edge_mm.runtime.runner import BatchedRunner


@dataclass
class SlowRunner(BatchedRunner):
    """Each item takes ``seconds``; outputs are the items doubled."""

    seconds: float = 0.0

    def forward_now(self, items):
        time.sleep(self.seconds)
        return [2 * x for x in items]

    def warm_up(self):
        self.forward([1])


def served(name: str, seconds: float, *, batching: bool = True, timeout_s: float = 30) -> Served:
    entry = ModelEntry.__new__(ModelEntry)
    runner = SlowRunner(name, entry, "cpu", 4, seconds=seconds)
    if batching:
        runner.enable_batching(0, workers=1)
    return Served(name, "embeddings", runner, Admission(1, 4, timeout_s), "cpu", "cpu", entry)


def test_a_request_fails_at_its_one_deadline_not_after_waiting_twice():
    """Queued 0.8 s behind another request, then stuck in a 5 s forward: a 1 s budget ends at about 1 s.

    Before, the batcher started its own full timeout after admission, so this took about 1.8 s."""
    model = served("m", seconds=5.0)
    registry = Registry(models={"m": model})
    registry.mark_ready()
    held = threading.Event()

    def hold_slot():
        with model.admission.slot(Deadline.after(5)):
            held.set()
            time.sleep(0.8)

    threading.Thread(target=hold_slot, daemon=True).start()
    held.wait(5)
    deadline = Deadline.after(1.0)
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        Models(registry).call(model, deadline, lambda r: r.forward([1, 2], deadline))
    elapsed = time.monotonic() - t0
    assert elapsed < 1.5, f"{elapsed:.2f} s: the deadline was applied twice"
    assert model.admission.stats()["timed_out"] == 1


def test_expired_jobs_are_not_run():
    calls = []
    model = served("m", seconds=0.0)
    model.runner.forward_now = lambda items: calls.append(items) or items  # type: ignore[method-assign]
    model.runner.enable_batching(0, workers=1)
    with pytest.raises(DeadlineExceeded):
        model.runner.forward([1], Deadline(time.monotonic() - 1, 1.0))
    time.sleep(0.1)
    assert calls == []


def test_calls_record_each_model_used():
    a, b = served("a", 0.0, batching=False), served("b", 0.0, batching=False)
    registry = Registry(models={"a": a, "b": b})
    registry.mark_ready()
    models = Models(registry)
    deadline = Deadline.after(5)
    assert models.call(a, deadline, lambda r: r.forward([1], deadline)) == [2]
    assert models.call(b, deadline, lambda r: r.forward([3], deadline)) == [6]
    assert [u.model for u in models.used] == ["a", "b"]
