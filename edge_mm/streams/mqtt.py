"""MQTT out (paho-mqtt): ``<prefix>/<stream>/events`` (JSON start/update/end, QoS 1),
``<prefix>/<stream>/<label>`` (objects in view, retained), ``<prefix>/<stream>/<label>/snapshot``
(the event's JPEG), ``<prefix>/availability`` (``online``, retained; ``offline`` as the last will and
at shutdown). With ``discovery_prefix`` set, each ``<stream>/<label>`` count is announced to Home
Assistant (MQTT discovery: ``<discovery_prefix>/sensor/<node>/<stream>_<label>/config``, retained)
the first time it is published or when a stream's ``labels`` name it.

While the broker is down, events wait in a bounded queue (the oldest dropped and counted) and go out
when it returns; counts and snapshots keep only their latest value per topic.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections import deque
from typing import Any

log = logging.getLogger("edge_mm.streams")


class MqttOutput:
    name = "mqtt"

    def __init__(
        self,
        host: str,
        port: int,
        prefix: str,
        *,
        username: str = "",
        password: str = "",
        tls: bool = False,
        ca_file: str = "",
        client_id: str = "",
        queue_size: int = 1000,
        discovery_prefix: str = "",
    ) -> None:
        import paho.mqtt.client as paho

        self.prefix = prefix.rstrip("/")
        self.host, self.port = host, port
        self.queue: deque[tuple[str, bytes]] = deque()
        self.queue_size = queue_size
        self.latest: dict[str, tuple[bytes, bool]] = {}  # topic -> (payload, retain): counts, snapshots
        self.dropped = 0
        self.sent = 0
        self.discovery_prefix = discovery_prefix.rstrip("/")
        self._announced: set[tuple[str, str]] = set()
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._stopping = False
        self._pending: deque[Any] = deque(maxlen=queue_size)  # handed to paho, not yet acknowledged
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or "", clean_session=True)
        if username:
            self.client.username_pw_set(username, password or None)
        if tls:
            self.client.tls_set(ca_certs=ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        self.client.will_set(self.availability, "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.thread = threading.Thread(target=self._send_loop, name="mqtt-out", daemon=True)

    @property
    def availability(self) -> str:
        return f"{self.prefix}/availability"

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        self.thread.start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker %s:%s refused the connection: %s", self.host, self.port, reason)
            return
        client.publish(self.availability, "online", qos=1, retain=True)
        log.info("MQTT connected to %s:%s", self.host, self.port)
        with self._cond:
            self._connected.set()
            self._cond.notify_all()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connected.clear()
        if not self._stopping:
            log.warning("MQTT broker %s:%s disconnected (%s); events are queued", self.host, self.port, reason)

    # what the manager calls (never blocks)
    def event(self, event: dict[str, Any], snapshot: bytes | None) -> None:
        stream = event["stream"]
        with self._cond:
            if len(self.queue) >= self.queue_size:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append((f"{self.prefix}/{stream}/events", json.dumps(event).encode()))
            if snapshot is not None and event["type"] != "end":
                self.latest[f"{self.prefix}/{stream}/{event['label']}/snapshot"] = (snapshot, True)
            self._cond.notify_all()

    def counts(self, stream: str, counts: dict[str, int]) -> None:
        self.announce(stream, list(counts))
        with self._cond:
            for label, n in counts.items():
                self.latest[f"{self.prefix}/{stream}/{label}"] = (str(n).encode(), True)
            self._cond.notify_all()

    def announce(self, stream: str, labels: list[str]) -> None:
        """Home Assistant discovery for each ``<stream>/<label>`` count not announced yet (when enabled)."""
        if not self.discovery_prefix:
            return
        node = "".join(c if c.isalnum() or c in "_-" else "_" for c in self.prefix)
        with self._cond:
            for label in labels:
                if (stream, label) in self._announced:
                    continue
                self._announced.add((stream, label))
                key = "".join(c if c.isalnum() or c in "_-" else "_" for c in f"{stream}_{label}")
                config = {
                    "name": f"{stream} {label}",
                    "unique_id": f"{node}_{key}",
                    "state_topic": f"{self.prefix}/{stream}/{label}",
                    "availability_topic": self.availability,
                    "state_class": "measurement",
                    "icon": "mdi:cctv",
                    "device": {"identifiers": [node], "name": node, "manufacturer": "edge-mm"},
                }
                topic = f"{self.discovery_prefix}/sensor/{node}/{key}/config"
                self.latest[topic] = (json.dumps(config).encode(), True)
            self._cond.notify_all()

    def depth(self) -> int:
        with self._cond:
            return len(self.queue) + len(self.latest)

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._stopping or (self._connected.is_set() and (self.queue or self.latest)), 1.0
                )
                if not self._connected.is_set():
                    if self._stopping:
                        return
                    continue
                batch: list[tuple[str, bytes, bool]] = [(t, p, False) for t, p in self.queue]
                self.queue.clear()
                batch += [(t, p, r) for t, (p, r) in self.latest.items()]
                self.latest.clear()
                if not batch and self._stopping:
                    return
            for i, (topic, payload, retain) in enumerate(batch):
                info = self.client.publish(topic, payload, qos=1, retain=retain)
                if info.rc != 0 and not self._connected.is_set():  # lost meanwhile: back to the queue
                    with self._cond:
                        for t, p, r in reversed(batch[i:]):
                            if r:
                                self.latest.setdefault(t, (p, r))
                            else:
                                self.queue.appendleft((t, p))
                    break
                self._pending.append(info)
                self.sent += 1

    def stop(self, timeout_s: float) -> None:
        """Send what is queued (while connected) and wait for the broker's acknowledgements, up to
        ``timeout_s``; then ``offline`` and disconnect."""
        end = time.monotonic() + timeout_s
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.thread.join(max(0.0, end - time.monotonic()))
        while self._connected.is_set() and time.monotonic() < end and not all(i.is_published() for i in self._pending):
            time.sleep(0.02)
        if self._connected.is_set():
            info = self.client.publish(self.availability, "offline", qos=1, retain=True)
            while not info.is_published() and time.monotonic() < end:
                time.sleep(0.02)
        self.client.disconnect()
        self.client.loop_stop()
