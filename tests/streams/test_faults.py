"""Faults: a camera that goes away and comes back (reconnect with backoff, status and last error,
credentials kept out of the error), a source that never connects (100 reconnects, no thread left
behind), and REST requests served while four streams keep the model busy (streams yield)."""

from __future__ import annotations

import base64
import io
import threading
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from edge_mm.streams import reader
from edge_mm.streams.manager import StreamManager
from tests.streams.conftest import CLIP, CameraServer, clip_stream, free_port, stream_settings, wait_for


def test_a_camera_that_goes_away_is_reconnected_when_it_returns(tmp_path, mtcnn_registry, camera, monkeypatch):
    monkeypatch.setattr(reader, "BACKOFF_FIRST_S", 0.05)
    monkeypatch.setattr(reader, "BACKOFF_MAX_S", 0.2)
    manager = StreamManager(stream_settings(tmp_path), mtcnn_registry)
    manager.start()
    try:
        manager.add({"id": "door", "url": camera.url("/mjpeg"), "fps": 2})
        status = lambda: manager.describe("door")["status"]  # noqa: E731
        wait_for(lambda: status()["state"] == "streaming", 20, "the stream to start")
        port = camera.port
        camera.close()
        wait_for(lambda: status()["reconnects"] >= 2, 30, "reconnect attempts while the camera is away")
        assert status()["state"] == "reconnecting"
        assert status()["last_error"]
        assert "pa55word" not in status()["last_error"]
        again = CameraServer(port=port)
        try:
            read = status()["frames_read"]
            wait_for(lambda: status()["state"] == "streaming" and status()["frames_read"] > read, 30, "frames again")
        finally:
            again.close()
    finally:
        manager.stop(5)


def test_a_source_that_never_connects_leaks_no_thread(tmp_path, mtcnn_registry, monkeypatch):
    monkeypatch.setattr(reader, "BACKOFF_FIRST_S", 0.001)
    monkeypatch.setattr(reader, "BACKOFF_MAX_S", 0.002)
    dead = f"rtsp://viewer:hunter2@127.0.0.1:{free_port()}/live"
    manager = StreamManager(stream_settings(tmp_path), mtcnn_registry)
    manager.start()
    before = threading.active_count()
    try:
        manager.add({"id": "dead", "url": dead})
        wait_for(lambda: manager.describe("dead")["status"]["reconnects"] >= 100, 60, "100 reconnects")
        status = manager.describe("dead")
        assert "hunter2" not in str(status)
        assert status["url"].startswith("rtsp://***@127.0.0.1:")
        assert threading.active_count() == before + 2  # its reader and its analyser, nothing more
        manager.remove("dead")
        wait_for(lambda: threading.active_count() == before, 10, "its threads to end")
    finally:
        manager.stop(5)


def _jpeg_b64() -> str:
    import av

    with av.open(str(CLIP)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i == 50:  # the face in the middle of the frame
                buf = io.BytesIO()
                frame.to_image().save(buf, "JPEG")
                return base64.b64encode(buf.getvalue()).decode()
    raise AssertionError("clip too short")


def test_rest_requests_are_served_while_four_streams_keep_the_model_busy(tmp_path, mtcnn_registry):
    from edge_mm.api import create_app

    settings = stream_settings(tmp_path)
    manager = StreamManager(settings, mtcnn_registry)
    app = create_app(settings, mtcnn_registry, stream_manager=manager)
    client = app.test_client()
    manager.start()
    try:
        for i in range(4):
            manager.add(clip_stream(f"cam{i}", fps=10))
        wait_for(
            lambda: all(manager.describe(f"cam{i}")["status"]["frames_analysed"] > 2 for i in range(4)),
            30,
            "the streams to be analysed",
        )
        image = _jpeg_b64()

        def one(_: int) -> tuple[int, int]:
            r = client.post("/v1/face-detection", json={"image": image})
            return r.status_code, len(r.get_json()["results"][0]["faces"]) if r.status_code == 200 else -1

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(one, range(24)))
        assert answers == [(200, 1)] * 24
        assert mtcnn_registry.models["mtcnn"].admission.stats()["timed_out"] == 0
    finally:
        manager.stop(5)
    Image.open(io.BytesIO(base64.b64decode(image))).verify()
