"""Prometheus metrics at ``GET /metrics`` (prometheus-client; one collector registry per app).

Counted as requests pass (Flask hooks): requests by route template, method and status,
request latency, and each model call's time inside its slot (from the same record that
fills ``X-Inference-Time-Ms``). Read from the runtime at scrape time (a collector): per
model queue depth, in-flight, slots, rejected (503) and timed-out (504) counts, micro-batch
sizes, load state and device; process RSS, CPU and file descriptors come from
prometheus-client's own process collector. prometheus-client's metrics are thread-safe,
and the runtime's counters are read under their own locks, so waitress threads may share it.

With ``server.api_keys`` set, ``/metrics`` needs a key like any route (Prometheus sends one
with ``authorization`` in its scrape config), unless ``server.metrics_requires_key`` is false.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from edge_mm.runtime.door import Door
from edge_mm.runtime.registry import Registry

PATH = "/metrics"
EXTENSION = "edge_mm_metrics"
UNMATCHED = "unmatched"  # the route label of a request no route matched (bounded label values)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class RuntimeCollector(Collector):
    """Per-model state read from the registry at scrape time: nothing to keep in step."""

    def __init__(self, registry: Registry, door: Door | None = None) -> None:
        self.registry = registry
        self.door = door

    def collect(self) -> Iterator[Metric]:
        yield from self.collect_models()
        if self.door is not None:
            yield from door_metrics(self.door)

    def collect_models(self) -> Iterator[Metric]:
        reg = self.registry
        ready = GaugeMetricFamily("edge_mm_ready", "1 when every model is loaded and warm (GET /health/ready is 200).")
        ready.add_metric([], 1.0 if reg.ready else 0.0)
        yield ready
        loaded = GaugeMetricFamily(
            "edge_mm_model_ready",
            "1 when the model is loaded and warm, 0 while loading or after a failed warm-up; labels say its device.",
            labels=["model", "version", "task", "device", "dtype"],
        )
        per_model = ["model", "version"]  # every version served (runtime/versions.py), the default and name@N ones
        warm = GaugeMetricFamily("edge_mm_model_warmup_seconds", "Time the model's warm-up took.", labels=per_model)
        queue = GaugeMetricFamily("edge_mm_queue_depth", "Requests waiting for a model slot.", labels=per_model)
        running = GaugeMetricFamily("edge_mm_in_flight", "Requests holding a model slot now.", labels=per_model)
        slots = GaugeMetricFamily("edge_mm_slots", "Model slots (most requests in flight per model).", labels=per_model)
        queue_cap = GaugeMetricFamily("edge_mm_queue_capacity", "Most requests waiting per model.", labels=per_model)
        rejected = CounterMetricFamily(
            "edge_mm_rejected", "Requests answered 503: the model's queue was full.", labels=per_model
        )
        timed_out = CounterMetricFamily(
            "edge_mm_timed_out", "Requests answered 504: past their deadline waiting or running.", labels=per_model
        )
        batches = HistogramMetricFamily(
            "edge_mm_batch_size", "Items per forward call of a micro-batched model.", labels=per_model
        )
        forward = CounterMetricFamily(
            "edge_mm_forward_seconds",
            "Wall time inside a micro-batched model's forward passes; its rate is the passes running at once.",
            labels=per_model,
        )
        forward_cpu = CounterMetricFamily(
            "edge_mm_forward_cpu_seconds",
            "CPU time of the threads that ran a micro-batched model's forward passes (with one intra-op thread, the "
            "default under load, the whole pass); against process_cpu_seconds_total, the share the model takes.",
            labels=per_model,
        )
        for served in reg.every_version():
            key = [served.name, str(served.version)]
            dtype = served.entry.variants[served.variant].dtype
            loaded.add_metric([*key, served.kind, served.device, dtype], 1.0 if reg.ready else 0.0)
            warm.add_metric(key, served.warm_ms / 1000)
            stats = served.admission.stats()
            queue.add_metric(key, stats["waiting"])
            running.add_metric(key, stats["running"])
            slots.add_metric(key, stats["max_in_flight"])
            queue_cap.add_metric(key, stats["max_queue"])
            rejected.add_metric(key, stats["rejected"])
            timed_out.add_metric(key, stats["timed_out"])
            batcher = getattr(served.runner, "batcher", None)
            if batcher is not None:
                sizes = batcher.batch_sizes()
                batches.add_metric(
                    key, _buckets(sizes, batcher.max_batch), sum_value=sum(n * c for n, c in sizes.items())
                )
                spent = batcher.forward_time()
                forward.add_metric(key, spent.wall_s)
                forward_cpu.add_metric(key, spent.cpu_s)
        yield from (loaded, warm, queue, running, slots, queue_cap, rejected, timed_out, batches, forward, forward_cpu)


def door_metrics(door: Door) -> Iterator[Metric]:
    """The HTTP door (edge_mm/runtime/door.py): the queue for worker threads and what it turned away."""
    stats = door.stats()
    waiting = GaugeMetricFamily("edge_mm_door_waiting", "Inference requests waiting for a worker thread.")
    waiting.add_metric([], stats["waiting"])
    shed = CounterMetricFamily(
        "edge_mm_door_shed", "Requests answered 503 at the door: the queue was full or too slow."
    )
    shed.add_metric([], stats["shed"])
    gone = CounterMetricFamily(
        "edge_mm_door_client_gone", "Requests not computed: their client left while they waited."
    )
    gone.add_metric([], stats["client_gone"])
    expected = GaugeMetricFamily(
        "edge_mm_door_expected_seconds", "Time a request arriving now would take to answer (estimate)."
    )
    expected.add_metric([], stats["expected_s"])
    yield from (waiting, shed, gone, expected)


def _buckets(sizes: dict[int, int], max_batch: int) -> list[tuple[str, float]]:
    """Cumulative counts at 1, 2, 4, ... up to ``max_batch``, then +Inf (a request larger than
    ``max_batch`` runs as one call of its own size)."""
    bounds = sorted({*(2**i for i in range(max_batch.bit_length()) if 2**i <= max_batch), max_batch})
    out = [(str(b), float(sum(c for n, c in sizes.items() if n <= b))) for b in bounds]
    return [*out, ("+Inf", float(sum(sizes.values())))]


class Metrics:
    """One app's registry and the metrics its request hooks update."""

    def __init__(self, registry: Registry, door: Door | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "edge_mm_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "edge_mm_request_duration_seconds",
            "HTTP request time, from routing to the response.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            "edge_mm_inference_seconds",
            "Time inside a model's slot per call (decode, pre, forward, post).",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "edge_mm_http_requests_in_flight", "HTTP requests being handled now.", registry=self.registry
        )
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, CPU, fds
        self.registry.register(RuntimeCollector(registry, door))

    def started(self) -> None:
        g.metrics_t0 = time.perf_counter()
        self.in_flight.inc()

    def answered(self, response: Response) -> Response:
        t0 = g.get("metrics_t0")
        if t0 is None:  # a hook registered before ours answered
            return response
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        self.requests.labels(route, request.method, str(response.status_code)).inc()
        self.latency.labels(route).observe(time.perf_counter() - t0)
        for use in g.get("model_uses") or ():
            self.inference.labels(use.model, str(use.version)).observe(use.ms / 1000)
        return response

    def finished(self, _exc: BaseException | None) -> None:
        if g.pop("metrics_t0", None) is not None:
            self.in_flight.dec()


bp = Blueprint("metrics", __name__)


@bp.get(PATH)
def scrape() -> Response:
    """The metrics in Prometheus text format (OpenMetrics when the scraper asks for it)."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(current_app.extensions[EXTENSION].registry), content_type=content_type)


def install(app: Flask, registry: Registry, door: Door | None = None) -> Metrics:
    """Create the app's metrics, hook them into every request, and serve ``/metrics``.

    Call before other ``before_request`` hooks so that requests they answer (401) are counted.
    """
    metrics = Metrics(registry, door)
    app.extensions[EXTENSION] = metrics
    app.before_request(metrics.started)
    app.after_request(metrics.answered)
    app.teardown_request(metrics.finished)
    app.register_blueprint(bp)
    return metrics
