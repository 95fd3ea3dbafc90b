"""The streams of one server: declared in settings (``[[streams]]``) or added at run time (``/v1/streams``,
kept in SQLite), each a reader and an analyser; and the outputs their events go to (MQTT, webhooks,
the Server-Sent Events hub). Started after the app is built, stopped within the drain."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from edge_mm.config import Settings
from edge_mm.errors import ConfigError, EdgeError, NotFound, RequestTooLarge
from edge_mm.runtime.registry import Registry
from edge_mm.streams.analyser import Analyser
from edge_mm.streams.detect import StreamGate, models_for
from edge_mm.streams.hub import Hub
from edge_mm.streams.reader import Reader
from edge_mm.streams.slot import LatestFrame
from edge_mm.streams.snapshots import SnapshotStore
from edge_mm.streams.spec import StreamConflict, StreamSpec, parse_spec, redact_url
from edge_mm.streams.stats import StreamStats
from edge_mm.streams.store import StreamStore

log = logging.getLogger("edge_mm.streams")
MiB = 1024 * 1024


class Output(Protocol):
    name: str
    dropped: int
    sent: int

    def start(self) -> None: ...
    def event(self, event: dict[str, Any], snapshot: bytes | None) -> None: ...
    def counts(self, stream: str, counts: dict[str, int]) -> None: ...
    def depth(self) -> int: ...
    def stop(self, timeout_s: float) -> None: ...


@dataclass
class Running:
    spec: StreamSpec
    origin: str  # "settings" or "api"
    stats: StreamStats
    reader: Reader | None = None
    analyser: Analyser | None = None


def outputs_from(settings: Settings) -> list[Output]:
    from edge_mm.streams.mqtt import MqttOutput
    from edge_mm.streams.webhooks import WebhookOutput

    outs: list[Output] = []
    if settings["mqtt.host"]:
        outs.append(
            MqttOutput(
                settings["mqtt.host"],
                settings["mqtt.port"],
                settings["mqtt.topic_prefix"],
                username=settings["mqtt.username"],
                password=settings["mqtt.password"],
                tls=settings["mqtt.tls"],
                ca_file=settings["mqtt.ca_file"],
                client_id=settings["mqtt.client_id"],
                queue_size=settings["events.queue_size"],
                discovery_prefix=settings["mqtt.discovery_prefix"],
            )
        )
    for url in settings["webhooks.urls"]:
        outs.append(
            WebhookOutput(
                url,
                settings["webhooks.secret"],
                timeout_s=settings["webhooks.timeout_s"],
                retries=settings["webhooks.retries"],
                backoff_first_s=settings["webhooks.backoff_s"],
                queue_size=settings["events.queue_size"],
            )
        )
    return outs


class StreamManager:
    def __init__(self, settings: Settings, registry: Registry, outputs: list[Output] | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.gate = StreamGate(registry.info.get("threads", {}).get("concurrent_inferences"))
        self.hub = Hub(settings["events.max_listeners"])
        self.outputs = outputs_from(settings) if outputs is None else outputs
        self.snapshots = SnapshotStore(
            settings.path("events.snapshot_dir"), int(settings["events.snapshot_budget_mb"] * MiB)
        )
        self.max_streams = settings["events.max_streams"]
        self._lock = threading.RLock()
        self.streams: dict[str, Running] = {}
        self.started = False
        self.stopped = False
        self._done = threading.Event()
        for i, raw in enumerate(settings.streams):
            try:
                spec = parse_spec(raw)
                models_for(registry, spec)
            except EdgeError as exc:
                raise ConfigError(f"streams[{i}]: {exc}") from None
            if spec.id in self.streams:
                raise ConfigError(f"streams[{i}]: duplicate id {spec.id!r}")
            self.streams[spec.id] = Running(spec, "settings", StreamStats())
        self.store = StreamStore(settings.path("runtime.faces_db"))
        for raw in self.store.all():
            try:
                spec = parse_spec(raw)
            except EdgeError as exc:
                log.error(
                    "a stream stored in %s is no longer valid (%s); skipped", settings.path("runtime.faces_db"), exc
                )
                continue
            if spec.id in self.streams:
                log.warning("stream %s is declared in settings and was added at run time; settings win", spec.id)
                continue
            self.streams[spec.id] = Running(spec, "api", StreamStats())

    # life cycle
    def start(self) -> None:
        with self._lock:
            if self.started:
                return
            self.started = True
            for out in self.outputs:
                out.start()
            for run in self.streams.values():
                self._start(run)
        log.info(
            "streams: %d running, outputs: %s", len(self.streams), ", ".join(o.name for o in self.outputs) or "none"
        )

    def _start(self, run: Running) -> None:
        if not run.spec.enabled or not self.started or self.stopped:
            return
        spec = run.spec
        try:
            models = models_for(self.registry, spec)
        except EdgeError as exc:
            run.stats.set(state="failed", last_error=str(exc))
            return
        for out in self.outputs:
            announce = getattr(out, "announce", None)  # Home Assistant discovery of the wanted labels
            if announce is not None and spec.labels:
                announce(spec.id, spec.labels)
        slot = LatestFrame()
        run.reader = Reader(spec, self.settings.base_dir, slot, run.stats)
        run.analyser = Analyser(
            spec, self.registry, models, self.gate, slot, run.stats, self.snapshots,
            self.publish, self.publish_counts, self.settings["runtime.request_timeout_s"],
        )  # fmt: skip
        run.reader.start()
        run.analyser.start()

    def _stop(self, run: Running, timeout_s: float) -> None:
        parts = [p for p in (run.reader, run.analyser) if p is not None]
        for p in parts:
            p.stop()
        end = time.monotonic() + timeout_s
        for p in parts:
            if not p.join(max(0.0, end - time.monotonic())):
                log.warning("stream %s: %s did not stop in time", run.spec.id, p.thread.name)
        run.reader = run.analyser = None
        run.stats.set(state="stopped")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop every reader and analyser (their open events end), close the SSE listeners, then flush
        the outputs; all within ``timeout_s``."""
        end = time.monotonic() + timeout_s
        with self._lock:
            if self.stopped:
                self._done.wait(timeout_s)  # another thread is stopping them: wait for it
                return
            self.stopped = True
            runs = list(self.streams.values())
        for run in runs:
            for p in (run.reader, run.analyser):
                if p is not None:
                    p.stop()
        for run in runs:
            self._stop(run, max(0.0, (end - time.monotonic()) / 2))
        self.hub.close()
        for out in self.outputs:
            out.stop(max(0.1, end - time.monotonic()))
        self.store.close()
        self._done.set()

    # events
    def publish(self, event: dict[str, Any], snapshot: bytes | None) -> None:
        self.hub.publish(event)
        for out in self.outputs:
            out.event(event, snapshot)

    def publish_counts(self, stream: str, counts: dict[str, int]) -> None:
        for out in self.outputs:
            out.counts(stream, counts)

    # run-time management (the /v1/streams routes)
    def describe(self, stream_id: str) -> dict[str, Any]:
        run = self._get(stream_id)
        return {**run.spec.public(), "origin": run.origin, "status": run.stats.snapshot()}

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            ids = list(self.streams)
        out = []
        for i in ids:
            try:
                out.append(self.describe(i))
            except NotFound:  # removed meanwhile
                continue
        return out

    def add(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        spec = parse_spec(fields)
        models_for(self.registry, spec)
        with self._lock:
            if spec.id in self.streams:
                raise StreamConflict(f"stream {spec.id!r} exists; PUT /v1/streams/{spec.id} changes it")
            if len(self.streams) >= self.max_streams:
                raise RequestTooLarge(f"{self.max_streams} streams are running (events.max_streams)")
            self.store.put(spec.id, spec.model_dump())
            run = self.streams[spec.id] = Running(spec, "api", StreamStats())
            self._start(run)
        log.info("stream %s added: %s", spec.id, redact_url(spec.url))
        return self.describe(spec.id)

    def update(self, stream_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Fields given replace the stream's (``url`` kept when not given: answers never show it)."""
        with self._lock:
            run = self._get(stream_id)
            if run.origin == "settings":
                raise StreamConflict(f"stream {stream_id!r} is declared in settings; change it there")
            if "id" in fields and fields["id"] != stream_id:
                raise StreamConflict("a stream's id cannot change; remove it and add a new one")
            spec = parse_spec({**run.spec.model_dump(), **fields})
            models_for(self.registry, spec)
            self._stop(run, 5.0)
            self.store.put(spec.id, spec.model_dump())
            run.spec = spec
            run.stats = StreamStats()
            self._start(run)
        return self.describe(stream_id)

    def remove(self, stream_id: str) -> None:
        with self._lock:
            run = self._get(stream_id)
            if run.origin == "settings":
                raise StreamConflict(f"stream {stream_id!r} is declared in settings; remove it there")
            self._stop(run, 5.0)
            self.store.delete(stream_id)
            del self.streams[stream_id]
        log.info("stream %s removed", stream_id)

    def latest_jpeg(self, stream_id: str) -> bytes | None:
        run = self._get(stream_id)
        return run.analyser.latest_jpeg if run.analyser is not None else None

    def _get(self, stream_id: str) -> Running:
        with self._lock:
            run = self.streams.get(stream_id)
        if run is None:
            raise NotFound(f"no stream {stream_id!r}; GET /v1/streams lists them")
        return run
