"""/v1/streams on a real HTTP server: add, list, change, remove, persisted in SQLite across a restart
of the app; credentials never echoed; Server-Sent Events read by a real HTTP client; the latest
annotated frame; /metrics. The source is a fake IP camera (MJPEG behind Basic auth) on 127.0.0.1."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.streams.conftest import AppServer, stream_settings, wait_for

KEY = "stream-key"
SECRET = "pa55word"


def call(base: str, method: str, path: str, body: Any = None, key: str | None = KEY) -> tuple[int, Any, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("X-API-Key", key)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read().decode()
            return r.status, json.loads(raw), raw
    except urllib.error.HTTPError as e:
        raw = e.read().decode()
        return e.code, json.loads(raw), raw


def sse_events(base: str, stream_id: str, timeout: float = 60) -> list[tuple[str, dict[str, Any]]]:
    """Read ``/v1/streams/<id>/events`` until an event that started while listening has ended."""
    req = urllib.request.Request(f"{base}/v1/streams/{stream_id}/events", headers={"X-API-Key": KEY})
    got: list[tuple[str, dict[str, Any]]] = []
    end = time.monotonic() + timeout
    with urllib.request.urlopen(req, timeout=timeout) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        kind = None
        while time.monotonic() < end and not _started_and_ended(got):
            line = r.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind:
                got.append((kind, json.loads(line[6:])))
    return got


def _started_and_ended(got: list[tuple[str, dict[str, Any]]]) -> bool:
    started = {e["id"] for k, e in got if k == "start"}
    return any(k == "end" and e["id"] in started for k, e in got)


@pytest.fixture
def settings(tmp_path):
    return stream_settings(tmp_path).replace(server__api_keys=[KEY])


def test_streams_added_at_run_time_survive_a_restart_without_echoing_credentials(settings, mtcnn_registry, camera):
    spec = {"id": "door", "url": camera.url("/mjpeg"), "fps": 5, "min_frames": 2, "end_after_s": 1.0}
    app = AppServer(settings, mtcnn_registry)
    try:
        assert call(app.base, "GET", "/v1/streams", key=None)[0] == 401
        status, body, raw = call(app.base, "POST", "/v1/streams", spec)
        assert status == 201, raw
        assert SECRET not in raw
        assert "admin" not in raw
        assert body["url"] == f"http://***@127.0.0.1:{camera.port}/mjpeg"
        assert call(app.base, "POST", "/v1/streams", spec)[0] == 409
        status, _, raw = call(app.base, "POST", "/v1/streams", {**spec, "id": "bad", "fps": 0})
        assert status == 422
        assert SECRET not in raw
        assert "fps" in raw
        assert call(app.base, "POST", "/v1/streams", {**spec, "id": "x", "tasks": ["object-detection"]})[0] == 422

        events = sse_events(app.base, "door")
        start = next(e for k, e in events if k == "start")
        assert [k for k, e in events if e["id"] == start["id"]][-1] == "end"
        assert start["label"] == "face"
        assert start["stream"] == "door"

        with urllib.request.urlopen(
            urllib.request.Request(f"{app.base}/v1/streams/door/snapshot.jpg", headers={"X-API-Key": KEY}), timeout=10
        ) as r:
            assert r.headers["Content-Type"] == "image/jpeg"
            assert r.read()[:2] == b"\xff\xd8"
        with urllib.request.urlopen(
            urllib.request.Request(f"{app.base}/metrics", headers={"X-API-Key": KEY}), timeout=10
        ) as r:
            metrics = r.read().decode()
        assert 'edge_mm_stream_frames_read_total{stream="door"}' in metrics
        assert 'edge_mm_stream_up{stream="door"} 1.0' in metrics
        _, listed, raw = call(app.base, "GET", "/v1/streams")
        assert SECRET not in raw
        (door,) = listed["streams"]
        assert door["status"]["frames_analysed"] > 0
        assert door["origin"] == "api"
    finally:
        app.close()

    app = AppServer(settings, mtcnn_registry)  # a restart: the stream comes back from SQLite, credentials and all
    try:
        _, listed, raw = call(app.base, "GET", "/v1/streams")
        assert [s["id"] for s in listed["streams"]] == ["door"]
        assert SECRET not in raw
        wait_for(lambda: app.manager.describe("door")["status"]["state"] == "streaming", 20, "the stream to read again")
        status, changed, raw = call(app.base, "PATCH", "/v1/streams/door", {"fps": 1, "labels": ["face"]})
        assert status == 200, raw
        assert (changed["fps"], changed["labels"], changed["url"]) == (1.0, ["face"], door["url"])
        assert call(app.base, "DELETE", "/v1/streams/door")[0] == 200
        assert call(app.base, "GET", "/v1/streams/door")[0] == 404
        assert call(app.base, "GET", "/v1/streams")[1] == {"streams": []}
    finally:
        app.close()

    app = AppServer(settings, mtcnn_registry)
    try:
        assert call(app.base, "GET", "/v1/streams")[1] == {"streams": []}
    finally:
        app.close()


def test_streams_declared_in_settings_cannot_be_changed_at_run_time(tmp_path, mtcnn_registry, camera):
    extra = f'\n[[streams]]\nid = "gate"\nurl = "{camera.url("/snapshot.jpg")}"\ninterval_s = 0.2\n'
    settings = stream_settings(tmp_path, extra).replace(server__api_keys=[KEY])
    app = AppServer(settings, mtcnn_registry)
    try:
        _, listed, raw = call(app.base, "GET", "/v1/streams")
        assert SECRET not in raw
        assert listed["streams"][0]["origin"] == "settings"
        assert call(app.base, "DELETE", "/v1/streams/gate")[0] == 409
        assert call(app.base, "PUT", "/v1/streams/gate", {"fps": 1})[0] == 409
        # the snapshot URL is polled: frames keep coming, one GET each
        wait_for(lambda: app.manager.describe("gate")["status"]["frames_read"] >= 3, 20, "three polls")
        assert camera.requests >= 3
    finally:
        app.close()


def test_a_bad_stream_in_settings_stops_start_up(tmp_path, mtcnn_registry):
    from edge_mm.errors import ConfigError
    from edge_mm.streams.manager import StreamManager

    with pytest.raises(ConfigError, match=r"streams\[0\]: unknown key\(s\) \['colour'\]"):
        stream_settings(tmp_path, '\n[[streams]]\nid = "a"\nurl = "x.mp4"\ncolour = "red"\n')
    with pytest.raises(ConfigError, match=r"streams\[0\].url is required"):
        stream_settings(tmp_path, '\n[[streams]]\nid = "a"\n')
    bad_fps = stream_settings(tmp_path, '\n[[streams]]\nid = "a"\nurl = "rtsp://u:pw9@h/x"\nfps = -1\n')
    with pytest.raises(ConfigError, match=r"streams\[0\]: 'fps'") as err:
        StreamManager(bad_fps, mtcnn_registry)
    assert "pw9" not in str(err.value)
    no_detector = stream_settings(tmp_path, '\n[[streams]]\nid = "a"\nurl = "x.mp4"\ntasks = ["object-detection"]\n')
    with pytest.raises(ConfigError, match="no object-detection model"):
        StreamManager(no_detector, mtcnn_registry)


def test_mjpeg_view_and_the_listener_bound(tmp_path, mtcnn_registry, camera):
    extra = f'\n[[streams]]\nid = "door"\nurl = "{camera.url("/mjpeg")}"\nfps = 5\n'
    settings = stream_settings(tmp_path, extra).replace(server__api_keys=[KEY], events__max_listeners=1)
    app = AppServer(settings, mtcnn_registry)
    try:
        wait_for(lambda: app.manager.latest_jpeg("door") is not None, 20, "a first analysed frame")
        req = urllib.request.Request(f"{app.base}/v1/streams/door/mjpeg", headers={"X-API-Key": KEY})
        with urllib.request.urlopen(req, timeout=20) as view:
            assert view.headers["Content-Type"].startswith("multipart/x-mixed-replace; boundary=")
            assert view.readline().strip() == b"--edge-mm-frame"
            headers = {}
            while (line := view.readline().strip()) != b"":
                name, value = line.decode().split(": ", 1)
                headers[name] = value
            assert headers["Content-Type"] == "image/jpeg"
            assert view.read(int(headers["Content-Length"]))[:2] == b"\xff\xd8"
            status, body, _ = call(app.base, "GET", "/v1/streams/door/events")  # the one listener is taken
            assert status == 503
            assert "max_listeners" in body["error"]["message"]
        wait_for(lambda: app.manager.hub.count() == 0, 20, "the view's listener to be released")
        assert call(app.base, "GET", "/v1/streams/nowhere/events")[0] == 404
    finally:
        app.close()
