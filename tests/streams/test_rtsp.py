"""RTSP sources against GStreamer's RTSP server: over UDP as well as TCP, a wrong password reported
without the password, and the server killed and restarted (the reader reconnects)."""

from __future__ import annotations

from edge_mm.streams import reader
from edge_mm.streams.manager import StreamManager
from tests.streams.conftest import CLIP, RtspServer, stream_settings, wait_for


def test_udp_transport_wrong_password_and_a_restarted_server(tmp_path, mtcnn_registry, rtsp_server, monkeypatch):
    monkeypatch.setattr(reader, "BACKOFF_FIRST_S", 0.05)
    monkeypatch.setattr(reader, "BACKOFF_MAX_S", 0.5)
    manager = StreamManager(stream_settings(tmp_path), mtcnn_registry)
    manager.start()
    try:
        manager.add({"id": "udp", "url": rtsp_server.url("admin", "s3cret"), "transport": "udp", "fps": 2})
        manager.add({"id": "wrong", "url": rtsp_server.url("admin", "guess-9"), "fps": 2})
        status = lambda name: manager.describe(name)["status"]  # noqa: E731
        wait_for(lambda: status("udp")["frames_read"] > 5, 30, "frames over RTP/UDP")
        wait_for(lambda: status("wrong")["reconnects"] >= 1, 30, "the refused login")
        assert "401" in status("wrong")["last_error"]
        assert "guess-9" not in status("wrong")["last_error"]
        assert status("wrong")["frames_read"] == 0

        manager.remove("wrong")
        manager.add({"id": "tcp", "url": rtsp_server.url("admin", "s3cret"), "fps": 2})
        wait_for(lambda: status("tcp")["state"] == "streaming", 30, "the TCP stream")
        port = rtsp_server.port
        rtsp_server.close()
        wait_for(lambda: status("tcp")["state"] == "reconnecting", 30, "the reader to notice the server gone")
        again = RtspServer(CLIP, "admin", "s3cret", port=port)
        try:
            read = status("tcp")["frames_read"]
            wait_for(lambda: status("tcp")["frames_read"] > read + 5, 40, "frames from the restarted server")
        finally:
            again.close()
    finally:
        manager.stop(5)
