"""``/v1/streams``: list, add, change and remove camera streams at run time; each stream's events as
Server-Sent Events, its latest annotated frame (JPEG) and an MJPEG live view. Behind the API key like
every route; URLs in answers never carry credentials. The streams' counters go to ``/metrics``."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge_mm.errors import BadInput, NotFound, Overloaded
from edge_mm.streams.hub import CLOSED
from edge_mm.streams.manager import StreamManager

EXTENSION = "edge_mm_streams"
KEEPALIVE_S = 15.0  # an SSE comment this often keeps proxies from closing an idle connection
MJPEG_BOUNDARY = "edge-mm-frame"

bp = Blueprint("streams", __name__)


def manager() -> StreamManager:
    found: StreamManager | None = current_app.extensions.get(EXTENSION)
    if found is None:
        raise NotFound("streams are not running in this server")
    return found


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadInput("send the stream as a JSON object (Content-Type: application/json)")
    return body


@bp.get("/v1/streams")
def list_streams() -> Response:
    return jsonify({"streams": manager().list()})


@bp.post("/v1/streams")
def add_stream() -> tuple[Response, int]:
    return jsonify(manager().add(_body())), 201


@bp.get("/v1/streams/<stream_id>")
def get_stream(stream_id: str) -> Response:
    return jsonify(manager().describe(stream_id))


@bp.route("/v1/streams/<stream_id>", methods=["PUT", "PATCH"])
def update_stream(stream_id: str) -> Response:
    return jsonify(manager().update(stream_id, _body()))


@bp.delete("/v1/streams/<stream_id>")
def remove_stream(stream_id: str) -> Response:
    manager().remove(stream_id)
    return jsonify({"removed": stream_id})


@bp.get("/v1/streams/<stream_id>/snapshot.jpg")
def snapshot(stream_id: str) -> Response:
    jpeg = manager().latest_jpeg(stream_id)
    if jpeg is None:
        raise NotFound(f"stream {stream_id!r} has no analysed frame yet")
    return Response(jpeg, mimetype="image/jpeg", headers={"Cache-Control": "no-store"})


@bp.get("/v1/streams/<stream_id>/events")
def events(stream_id: str) -> Response:
    """``text/event-stream``: one ``event: start|update|end`` with the event's JSON as ``data`` each."""
    hub = manager().hub
    manager().describe(stream_id)  # 404 for an unknown stream
    listener = hub.listen(stream_id)
    if listener is None:
        raise Overloaded(
            f"{hub.max_listeners} listeners are connected (events.max_listeners)", headers={"Retry-After": "5"}
        )

    def stream() -> Iterator[str]:
        try:
            yield "retry: 3000\n\n"
            while True:
                try:
                    event = listener.queue.get(timeout=KEEPALIVE_S)
                except queue.Empty:
                    yield ": keepalive\n\n"
                    continue
                if event is CLOSED:
                    return
                yield f"event: {event['type']}\nid: {event['id']}\ndata: {json.dumps(event)}\n\n"
        finally:
            hub.leave(listener)

    return Response(
        stream(), mimetype="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


@bp.get("/v1/streams/<stream_id>/mjpeg")
def mjpeg(stream_id: str) -> Response:
    """The latest annotated frames as ``multipart/x-mixed-replace`` (a browser's ``<img src>`` plays it)."""
    mgr = manager()
    mgr.describe(stream_id)
    listener = mgr.hub.listen("")  # counts against events.max_listeners; gets no events
    if listener is None:
        raise Overloaded(
            f"{mgr.hub.max_listeners} listeners are connected (events.max_listeners)", headers={"Retry-After": "5"}
        )

    def frames() -> Iterator[bytes]:
        last = None
        try:
            while not mgr.hub.closed:
                try:
                    jpeg = mgr.latest_jpeg(stream_id)
                except NotFound:
                    return
                if jpeg is not None and jpeg is not last:
                    last = jpeg
                    yield (
                        f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                        + jpeg
                        + b"\r\n"
                    )
                time.sleep(0.1)
        finally:
            mgr.hub.leave(listener)

    return Response(frames(), mimetype=f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}")


class StreamsCollector(Collector):
    """Per stream, read at scrape time: frames read, analysed and skipped, inference time, events,
    reconnects, whether it streams; per output: queue depth, delivered and dropped."""

    def __init__(self, streams: StreamManager) -> None:
        self.streams = streams

    def collect(self) -> Iterator[Metric]:
        counters = {
            "frames_read": ("edge_mm_stream_frames_read", "Frames decoded from the source."),
            "frames_analysed": ("edge_mm_stream_frames_analysed", "Frames the models ran on."),
            "frames_skipped": (
                "edge_mm_stream_frames_skipped",
                "Analysis ticks skipped: no model slot free (REST first) or analysis ran late.",
            ),
            "events": ("edge_mm_stream_events", "Events sent (start, update, end)."),
            "reconnects": ("edge_mm_stream_reconnects", "Times the source failed or ended and was reopened."),
        }
        families = {k: CounterMetricFamily(name, help, labels=["stream"]) for k, (name, help) in counters.items()}
        inference = CounterMetricFamily(
            "edge_mm_stream_inference_seconds", "Time in the models' slots for this stream's frames.", labels=["stream"]
        )
        up = GaugeMetricFamily("edge_mm_stream_up", "1 while the source delivers frames.", labels=["stream"])
        for item in self.streams.list():
            status = item["status"]
            for key, family in families.items():
                family.add_metric([item["id"]], status[key])
            inference.add_metric([item["id"]], status["inference_ms_sum"] / 1000)
            up.add_metric([item["id"]], 1.0 if status["state"] == "streaming" else 0.0)
        depth = GaugeMetricFamily("edge_mm_output_queue_depth", "Messages waiting per event output.", labels=["output"])
        dropped = CounterMetricFamily(
            "edge_mm_output_dropped", "Events dropped from a full output queue (oldest first).", labels=["output"]
        )
        sent = CounterMetricFamily("edge_mm_output_sent", "Messages handed to the output.", labels=["output"])
        for out in self.streams.outputs:
            depth.add_metric([out.name], out.depth())
            dropped.add_metric([out.name], out.dropped)
            sent.add_metric([out.name], out.sent)
        depth.add_metric(["sse"], self.streams.hub.depth())
        yield from (*families.values(), inference, up, depth, dropped, sent)


def install(app: Flask, streams: StreamManager | None) -> None:
    """The routes always (404 without a manager); the metrics when there is one."""
    app.register_blueprint(bp)
    if streams is None:
        return
    app.extensions[EXTENSION] = streams
    from edge_mm.api.metrics import EXTENSION as METRICS

    app.extensions[METRICS].registry.register(StreamsCollector(streams))


def openapi_routes(op: Callable[..., dict[str, Any]]) -> dict[tuple[str, str], Callable[[], dict[str, Any]]]:
    """This blueprint's operations for /openapi.json (edge_mm/api/openapi.py), built with its ``_op``."""
    body = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
    one = "/v1/streams/{stream_id}"
    return {
        ("/v1/streams", "get"): lambda: op("Camera streams: spec (URL without credentials), state, counters"),
        ("/v1/streams", "post"): lambda: op(
            "Add a stream (kept in SQLite across restarts)", None, (400, 401, 413, 422, 500), body=body
        ),
        (one, "get"): lambda: op("One stream", None, (401, 404, 500)),
        (one, "put"): lambda: op("Change a stream added at run time", None, (400, 401, 404, 422, 500), body=body),
        (one, "patch"): lambda: op(
            "Change some fields of a stream added at run time", None, (400, 401, 404, 422, 500), body=body
        ),
        (one, "delete"): lambda: op("Remove a stream added at run time", None, (401, 404, 500)),
        (one + "/events", "get"): lambda: op(
            "The stream's events as Server-Sent Events (start, update, end)",
            {"type": "string"},
            (401, 404, 503),
            ok_type="text/event-stream",
        ),
        (one + "/snapshot.jpg", "get"): lambda: op(
            "The latest analysed frame with boxes drawn", {"type": "string"}, (401, 404), ok_type="image/jpeg"
        ),
        (one + "/mjpeg", "get"): lambda: op(
            "Live view: annotated frames as multipart/x-mixed-replace",
            {"type": "string"},
            (401, 404, 503),
            ok_type="multipart/x-mixed-replace",
        ),
    }
