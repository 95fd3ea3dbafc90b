"""The committed clip, read as a looped file, through MTCNN, to a real mosquitto broker: a face enters
(start), leaves (end); counts and availability topics; the broker killed and restarted (events kept
and delivered after); a full queue drops its oldest events and counts them."""

from __future__ import annotations

import json
import time

from edge_mm.streams.manager import StreamManager
from edge_mm.streams.mqtt import MqttOutput
from tests.streams.conftest import Subscriber, clip_stream, stream_settings, wait_for


def _settings(tmp_path, port, streams=""):
    return stream_settings(tmp_path, f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n' + streams)


def _first_start_end(events):
    starts = [e for e in events if e["type"] == "start"]
    if not starts:
        return None, None
    ends = [e for e in events if e["type"] == "end" and e["id"] == starts[0]["id"]]
    return starts[0], ends[0] if ends else None


def test_face_enters_and_leaves_the_clip(tmp_path, mosquitto, mtcnn_registry):
    sub = Subscriber(mosquitto.port)
    settings = _settings(tmp_path, mosquitto.port).replace(mqtt__discovery_prefix="homeassistant")
    manager = StreamManager(settings, mtcnn_registry)
    try:
        manager.start()
        manager.add(clip_stream())
        wait_for(lambda: _first_start_end(sub.events())[1] is not None, 40, "a start and an end event over MQTT")
        start, end = _first_start_end(sub.events())
        assert start["label"] == end["label"] == "face"
        assert start["stream"] == "cam"
        assert start["score"] > 0.9
        assert end["end_time"] >= start["start_time"]
        box = start["box"]
        assert 0 <= box["x_min"] < box["x_max"] <= 320
        assert 0 <= box["y_min"] < box["y_max"] <= 240
        assert start["snapshot"] is not None
        assert (settings.path("events.snapshot_dir") / start["snapshot"]).read_bytes()[:2] == b"\xff\xd8"
        # the face is seen from about 2.5 s of the clip: the event cannot end before 3.5 s of play
        assert end["end_time"] - start["start_time"] > 1.0
        assert sub.on("edge-mm/cam/face")[:2] == [b"1", b"0"]
        assert sub.on("edge-mm/cam/face/snapshot")[0][:2] == b"\xff\xd8"
        assert sub.on("edge-mm/availability")[-1] == b"online"
        (config,) = [json.loads(p) for p in sub.on("homeassistant/sensor/edge-mm/cam_face/config")]
        assert config["state_topic"] == "edge-mm/cam/face"
        assert config["availability_topic"] == "edge-mm/availability"
        status = manager.describe("cam")["status"]
        assert status["frames_read"] > status["frames_analysed"] > 0
    finally:
        manager.stop(5)
    wait_for(lambda: sub.on("edge-mm/availability")[-1:] == [b"offline"], 10, "availability offline")
    sub.close()


def test_broker_down_events_kept_and_delivered_after(tmp_path, mosquitto, mtcnn_registry):
    sub = Subscriber(mosquitto.port, client_id="kept-subscriber")
    settings = _settings(tmp_path, mosquitto.port)
    manager = StreamManager(settings, mtcnn_registry)
    out = manager.outputs[0]
    assert isinstance(out, MqttOutput)
    try:
        manager.start()
        wait_for(lambda: sub.on("edge-mm/availability")[-1:] == [b"online"], 10, "edge-mm to connect")
        mosquitto.stop()
        wait_for(lambda: not out._connected.is_set(), 40, "edge-mm to see the broker gone")
        listener = manager.hub.listen("cam")
        manager.add(clip_stream())
        seen: list[dict] = []
        wait_for(
            lambda: (seen.extend(_drain(listener)) or True) and _first_start_end(seen)[1] is not None,
            40,
            "a start and an end event while the broker is down",
        )
        assert out.depth() >= 2  # held while the broker is down
        mosquitto.start()  # same port, its saved sessions: the subscriber's queue survives
        wait_for(lambda: _first_start_end(sub.events())[1] is not None, 40, "the held events after the restart")
        start, end = _first_start_end(sub.events())
        assert start["id"] == _first_start_end(seen)[0]["id"]
        assert out.dropped == 0
    finally:
        manager.stop(5)
        sub.close()


def _drain(listener):
    out = []
    while not listener.queue.empty():
        out.append(listener.queue.get_nowait())
    return out


def test_full_queue_drops_the_oldest_and_counts_them(mosquitto):
    """What the broker receives after an outage is the newest ``queue_size`` events, in order."""
    port = mosquitto.port
    sub = Subscriber(port, topic="edge-mm/cam/events", client_id="order-subscriber")
    sub.client.disconnect()  # its session stays on the broker (clean_session false) and collects QoS 1 messages
    sub.client.loop_stop()
    mosquitto.stop()
    out = MqttOutput("127.0.0.1", port, "edge-mm", queue_size=3)
    out.start()
    try:
        for i in range(6):
            out.event({"type": "start", "id": str(i), "stream": "cam", "label": "face"}, None)
        assert out.dropped == 3
        mosquitto.start()
        wait_for(lambda: out.depth() == 0, 40, "the queue to be delivered")
        time.sleep(0.5)  # let the broker acknowledge
        again = Subscriber(port, topic="edge-mm/cam/events", client_id="order-subscriber")
        wait_for(lambda: len(again.on("edge-mm/cam/events")) >= 3, 20, "the queued messages")
        ids = [json.loads(p)["id"] for p in again.on("edge-mm/cam/events")]
        assert ids == ["3", "4", "5"]
        again.close()
    finally:
        out.stop(2)
