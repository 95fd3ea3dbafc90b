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


def test_the_deadline_starts_when_the_server_accepted_the_request(client):
    from edge_mm.runtime.door import ACCEPTED_AT

    # waited 31 s for a worker thread: past the 30 s deadline before the app saw it, so it is not computed
    late = client.post(
        "/v1/text-classification", json={"inputs": "a"}, environ_base={ACCEPTED_AT: time.monotonic() - 31}
    )
    assert late.status_code == 504
    assert "waited past its 30 s deadline for a worker thread" in late.get_json()["error"]["message"]
    fresh = client.post(
        "/v1/text-classification", json={"inputs": "a"}, environ_base={ACCEPTED_AT: time.monotonic() - 1}
    )
    assert fresh.status_code == 200


def test_a_request_whose_client_left_frees_its_model_slot_unrun(client, tiny_registry):
    from edge_mm.runtime.door import CLIENT_GONE

    served = tiny_registry.models["tiny-sentiment"]
    gone = client.post("/v1/text-classification", json={"inputs": "a"}, environ_base={CLIENT_GONE: lambda: True})
    assert gone.status_code == 499
    assert gone.get_json()["error"]["code"] == "client_gone"
    assert served.admission.stats()["running"] == 0
