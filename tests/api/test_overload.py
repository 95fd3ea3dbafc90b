"""Overload over HTTP: a full model answers 503 with Retry-After at once, and recovers."""

from __future__ import annotations

import threading
import time

from edge_mm.runtime.admission import Admission


def test_overloaded_model_answers_503_fast(client, tiny_registry, monkeypatch):
    served = tiny_registry.models["tiny-sentiment"]
    monkeypatch.setattr(served, "admission", Admission(max_in_flight=1, max_queue=0, timeout_s=5))
    gate = threading.Event()
    runner = served.runner
    real = runner.forward

    def slow(encodings, timeout_s=None):
        gate.wait(5)
        return real(encodings, timeout_s)

    monkeypatch.setattr(runner, "forward", slow)
    results = {}
    t = threading.Thread(
        target=lambda: results.setdefault("first", client.post("/v1/text-classification", json={"inputs": "a"}))
    )
    t.start()
    while served.admission.stats()["running"] == 0:
        time.sleep(0.01)
    t0 = time.monotonic()
    busy = client.post("/v1/text-classification", json={"inputs": "b"})
    elapsed = time.monotonic() - t0
    assert busy.status_code == 503
    assert busy.headers["Retry-After"] == "1"
    assert busy.get_json()["error"]["code"] == "overloaded"
    assert elapsed < 0.5
    # other models are not affected
    assert client.post("/v1/embeddings", json={"inputs": "c"}).status_code == 200
    gate.set()
    t.join()
    assert results["first"].status_code == 200  # the accepted request was answered
    assert client.post("/v1/text-classification", json={"inputs": "d"}).status_code == 200
