"""Prometheus metrics: scraped with prometheus-client's own parser after known traffic, the counts
match what was sent; one registry per app; behind the API key when keys are set."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_mm.runtime.admission import Admission
from edge_mm.runtime.deadline import Deadline
from tests.conftest import test_client


def scrape(client, **kwargs) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} from GET /metrics."""
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counts_match_the_requests_sent(client):
    for _ in range(3):
        assert client.post("/v1/embeddings", json={"inputs": "a guitar"}).status_code == 200
    for _ in range(2):
        assert client.post("/v1/embeddings", json={"inputs": ""}).status_code == 422
    assert client.post("/v1/text-classification", json={"inputs": "good", "model": "nope"}).status_code == 404
    assert client.get("/nope").status_code == 404
    assert client.get("/health/live").status_code == 200

    m = scrape(client)
    req = "edge_mm_requests_total"
    assert value(m, req, route="/v1/embeddings", method="POST", status="200") == 3
    assert value(m, req, route="/v1/embeddings", method="POST", status="422") == 2
    assert value(m, req, route="/v1/text-classification", method="POST", status="404") == 1
    assert value(m, req, route="unmatched", method="GET", status="404") == 1
    assert value(m, req, route="/health/live", method="GET", status="200") == 1
    assert sum(v for (name, _), v in m.items() if name == req) == 8  # the scrape itself is counted after it
    assert value(m, "edge_mm_request_duration_seconds_count", route="/v1/embeddings") == 5
    assert value(m, "edge_mm_request_duration_seconds_bucket", route="/v1/embeddings", le="+Inf") == 5
    # only the three answered requests ran the model; the 422s and 404 stopped in parse
    assert value(m, "edge_mm_inference_seconds_count", model="tiny-embed", version="1") == 3
    assert value(m, "edge_mm_inference_seconds_sum", model="tiny-embed", version="1") > 0
    assert value(m, "edge_mm_inference_seconds_count", model="tiny-sentiment", version="1") == 0
    assert value(m, "edge_mm_http_requests_in_flight") == 1  # the scrape
    assert value(m, req, route="/metrics", method="GET", status="200") == 0
    assert value(scrape(client), req, route="/metrics", method="GET", status="200") == 1


def test_model_state_queue_and_process(client, tiny_registry):
    m = scrape(client)
    assert value(m, "edge_mm_ready") == 1
    assert (
        value(
            m,
            "edge_mm_model_ready",
            model="tiny-embed",
            version="1",
            task="embeddings",
            device="cpu",
            dtype="int8-rowwise",
        )
        == 1
    )
    assert value(m, "edge_mm_queue_depth", model="tiny-embed", version="1") == 0
    assert value(m, "edge_mm_in_flight", model="tiny-embed", version="1") == 0
    stats = tiny_registry.models["tiny-embed"].admission.stats()
    assert value(m, "edge_mm_slots", model="tiny-embed", version="1") == stats["max_in_flight"]
    assert value(m, "edge_mm_queue_capacity", model="tiny-embed", version="1") == stats["max_queue"]
    assert value(m, "edge_mm_model_warmup_seconds", model="tiny-embed", version="1") > 0
    assert value(m, "process_resident_memory_bytes") > 10_000_000


def test_batch_sizes_match_the_batcher(client, tiny_registry):
    batcher = tiny_registry.models["tiny-embed"].runner.batcher
    if batcher is None:
        pytest.skip("micro-batching is off in these settings")
    client.post("/v1/embeddings", json={"inputs": ["a", "b", "c"]})
    m = scrape(client)
    sizes = batcher.batch_sizes()
    assert (
        value(m, "edge_mm_batch_size_count", model="tiny-embed", version="1") == sum(sizes.values()) == batcher.batches
    )
    assert value(m, "edge_mm_batch_size_sum", model="tiny-embed", version="1") == batcher.items
    assert value(m, "edge_mm_batch_size_bucket", model="tiny-embed", version="1", le="1") == sizes.get(1, 0)
    assert value(m, "edge_mm_batch_size_bucket", model="tiny-embed", version="1", le="+Inf") == batcher.batches


def test_forward_time_matches_the_batcher(client, tiny_registry):
    batcher = tiny_registry.models["tiny-embed"].runner.batcher
    if batcher is None:
        pytest.skip("micro-batching is off in these settings")
    client.post("/v1/embeddings", json={"inputs": ["a", "b", "c"]})
    m = scrape(client)
    spent = batcher.forward_time()
    assert spent.wall_s > 0
    assert value(m, "edge_mm_forward_seconds_total", model="tiny-embed", version="1") == spent.wall_s
    assert value(m, "edge_mm_forward_cpu_seconds_total", model="tiny-embed", version="1") == spent.cpu_s
    client.post("/v1/embeddings", json={"inputs": ["d"]})
    assert value(scrape(client), "edge_mm_forward_seconds_total", model="tiny-embed", version="1") > spent.wall_s


def test_rejected_and_timed_out_are_counted(client, tiny_registry, monkeypatch):
    served = tiny_registry.models["tiny-sentiment"]
    monkeypatch.setattr(served, "admission", Admission(max_in_flight=1, max_queue=0, timeout_s=5))
    gate = threading.Event()
    real = served.runner.forward
    monkeypatch.setattr(served.runner, "forward", lambda enc, deadline=None: (gate.wait(5), real(enc, deadline))[1])
    first = threading.Thread(target=lambda: client.post("/v1/text-classification", json={"inputs": "a"}))
    first.start()
    while served.admission.stats()["running"] == 0:
        time.sleep(0.01)
    during = scrape(client)
    assert value(during, "edge_mm_in_flight", model="tiny-sentiment", version="1") == 1
    assert value(during, "edge_mm_http_requests_in_flight") == 2  # the held request and the scrape
    for _ in range(2):
        assert client.post("/v1/text-classification", json={"inputs": "b"}).status_code == 503
    gate.set()
    first.join()
    m = scrape(client)
    assert value(m, "edge_mm_rejected_total", model="tiny-sentiment", version="1") == 2
    assert value(m, "edge_mm_requests_total", route="/v1/text-classification", method="POST", status="503") == 2
    assert value(m, "edge_mm_timed_out_total", model="tiny-sentiment", version="1") == 0
    assert value(m, "edge_mm_in_flight", model="tiny-sentiment", version="1") == 0

    monkeypatch.setattr(served, "admission", Admission(max_in_flight=1, max_queue=4, timeout_s=5))
    gate.clear()
    first = threading.Thread(target=lambda: client.post("/v1/text-classification", json={"inputs": "a"}))
    first.start()
    while served.admission.stats()["running"] == 0:
        time.sleep(0.01)
    short = Deadline.after
    monkeypatch.setattr(Deadline, "after", staticmethod(lambda _s, **kw: short(0.5, **kw)))  # the next requests' budget
    answers = []
    waiter = threading.Thread(
        target=lambda: answers.append(client.post("/v1/text-classification", json={"inputs": "c"}).status_code)
    )
    waiter.start()
    while served.admission.stats()["waiting"] == 0:
        time.sleep(0.01)
    assert value(scrape(client), "edge_mm_queue_depth", model="tiny-sentiment", version="1") == 1
    waiter.join()
    gate.set()
    first.join()
    m = scrape(client)
    assert answers == [504]
    assert value(m, "edge_mm_timed_out_total", model="tiny-sentiment", version="1") == 1
    assert value(m, "edge_mm_requests_total", route="/v1/text-classification", method="POST", status="504") == 1
    assert value(m, "edge_mm_queue_depth", model="tiny-sentiment", version="1") == 0


def test_concurrent_requests_are_all_counted(client):
    n_threads, per_thread = 4, 5

    def send() -> None:
        for _ in range(per_thread):
            client.get("/health/live")

    threads = [threading.Thread(target=send) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m = scrape(client)
    assert (
        value(m, "edge_mm_requests_total", route="/health/live", method="GET", status="200") == n_threads * per_thread
    )


def test_each_app_has_its_own_registry(tiny_settings, tiny_registry):
    one, two = test_client(tiny_settings, tiny_registry), test_client(tiny_settings, tiny_registry)
    one.get("/health/live")
    assert value(scrape(one), "edge_mm_requests_total", route="/health/live", method="GET", status="200") == 1
    assert value(scrape(two), "edge_mm_requests_total", route="/health/live", method="GET", status="200") == 0


def test_openmetrics_when_asked(client):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.mimetype == "application/openmetrics-text"
    assert response.get_data(as_text=True).rstrip().endswith("# EOF")


def test_metrics_need_the_key_when_keys_are_set(tiny_config, tiny_registry):
    from edge_mm.config import load_settings

    keyed = test_client(load_settings(tiny_config, env={"EDGE_MM_SERVER_API_KEYS": "k"}), tiny_registry)
    assert keyed.get("/metrics").status_code == 401
    m = scrape(keyed, headers={"Authorization": "Bearer k"})
    assert value(m, "edge_mm_requests_total", route="/metrics", method="GET", status="401") == 1


def test_metrics_can_be_opened_by_a_setting(tiny_config, tiny_registry):
    from edge_mm.config import load_settings

    env = {"EDGE_MM_SERVER_API_KEYS": "k", "EDGE_MM_SERVER_METRICS_REQUIRES_KEY": "false"}
    opened = test_client(load_settings(tiny_config, env=env), tiny_registry)
    assert opened.get("/metrics").status_code == 200
    assert opened.post("/v1/embeddings", json={"inputs": "x"}).status_code == 401
