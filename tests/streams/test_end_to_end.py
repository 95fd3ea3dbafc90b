"""Done-when: a camera URL in settings (RTSP with credentials, GStreamer's RTSP server serving the
committed clip) makes `edge-mm serve` send MQTT events to a real mosquitto and signed webhooks for the
face that enters and leaves; the credentials appear in no answer and no log line; SIGTERM drains
the streams and the outputs (``offline`` on the availability topic) and exits 0."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from edge_mm.serving.listening import PREFIX as LISTENING
from tests.serving import request
from tests.streams.conftest import ROOT, Subscriber, mtcnn_settings_text, wait_for
from tests.streams.test_webhooks import Receiver

SECRET = "hook-secret"


def _serve(config, log_path):
    env = dict(os.environ, EDGE_MM_SERVER_HOST="127.0.0.1", EDGE_MM_SERVER_PORT="0", PYTHONUNBUFFERED="1")
    with open(log_path, "w") as log:  # the process holds its own copy
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_mm", "--config", str(config), "serve"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = None
    end = time.monotonic() + 120
    while base is None and time.monotonic() < end:
        assert proc.poll() is None, log_path.read_text()
        for line in log_path.read_text().splitlines():
            if line.startswith(LISTENING):
                base = line.split()[-1]
        time.sleep(0.1)
    assert base, log_path.read_text()
    wait_for(lambda: _ready(base), 120, "the server to be ready")
    return proc, base


def _read_sse(url: str, into: list[str], done: threading.Event) -> None:
    """Every ``event:`` line of the SSE stream at ``url``, until the server ends it."""
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            for line in r:
                if line.startswith(b"event: "):
                    into.append(line[7:].decode().strip())
    finally:
        done.set()


def _ready(base):
    try:
        return request(base + "/health/ready", timeout=5)[0] == 200
    except OSError:
        return False


def test_rtsp_camera_in_settings_to_mqtt_and_webhooks(tmp_path, mtcnn_config, mosquitto, rtsp_server):
    hook = Receiver()
    sub = Subscriber(mosquitto.port)
    extra = (
        f'[mqtt]\nhost = "127.0.0.1"\nport = {mosquitto.port}\ntopic_prefix = "site"\n'
        f'[webhooks]\nurls = ["{hook.url}"]\nsecret = "{SECRET}"\nbackoff_s = 0.05\n'
        f'[[streams]]\nid = "lobby"\nurl = "{rtsp_server.url("admin", "s3cret")}"\n'
        "fps = 5\nmin_frames = 2\nend_after_s = 1.0\n"
    )
    config = tmp_path / "settings.toml"
    config.write_text(mtcnn_settings_text(tmp_path, extra))
    log_path = tmp_path / "server.log"
    proc, base = _serve(config, log_path)
    sse: list[str] = []
    sse_ended = threading.Event()
    threading.Thread(target=_read_sse, args=(base + "/v1/streams/lobby/events", sse, sse_ended), daemon=True).start()
    try:
        wait_for(lambda: {"start", "end"} <= {e["type"] for e in sub.events("lobby", "site")}, 60, "MQTT start and end")
        events = sub.events("lobby", "site")
        start = next(e for e in events if e["type"] == "start")
        end = next(e for e in events if e["type"] == "end" and e["id"] == start["id"])
        assert start["label"] == end["label"] == "face"
        assert sub.on("site/availability")[-1] == b"online"
        wait_for(lambda: len(hook.accepted()) >= 2, 30, "the webhooks")
        posted = [json.loads(b) for b in hook.accepted()]
        assert [p["type"] for p in posted][:2] == ["start", "end"]
        for body, headers, _status in hook.posts:
            sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert headers["x-edge-mm-signature"] == sig
        status, _, listed = request(base + "/v1/streams")
        assert status == 200
        (lobby,) = listed["streams"]
        assert lobby["url"] == f"rtsp://***@127.0.0.1:{rtsp_server.port}/clip"
        assert lobby["origin"] == "settings"
        assert "s3cret" not in json.dumps(listed)
        # SSE through waitress: the clip ends, the reader reconnects, the face comes again
        wait_for(lambda: "start" in sse, 60, "a start event over Server-Sent Events")
        assert not sse_ended.is_set()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(60)
        hook.close()
    assert code == 0, log_path.read_text()
    assert sse_ended.wait(10)  # the drain ended the open SSE response
    wait_for(lambda: sub.on("site/availability")[-1:] == [b"offline"], 10, "availability offline at shutdown")
    sub.close()
    assert "s3cret" not in log_path.read_text()
