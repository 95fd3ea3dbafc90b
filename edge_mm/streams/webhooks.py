"""Webhooks out: each event POSTed as JSON to each URL, signed with HMAC-SHA256 over the body
(``X-Edge-MM-Signature: sha256=<hex>``); retried with exponential backoff and jitter; one thread and
one bounded queue per URL (the oldest dropped and counted), so a receiver that hangs (cut at
``timeout_s``) delays only its own deliveries."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from typing import Any

from edge_mm.streams.reader import backoff_s
from edge_mm.streams.spec import redact_url, scrub

log = logging.getLogger("edge_mm.streams")

SIGNATURE_HEADER = "X-Edge-MM-Signature"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookOutput:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout_s: float = 5.0,
        retries: int = 5,
        backoff_first_s: float = 0.5,
        queue_size: int = 1000,
    ) -> None:
        self.url = url
        self.name = f"webhook {redact_url(url)}"
        self.secret = secret
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_first_s = backoff_first_s
        self.queue: deque[bytes] = deque()
        self.queue_size = queue_size
        self.dropped = 0  # pushed out of a full queue
        self.failed = 0  # given up after every retry
        self.sent = 0
        self.last_error: str | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self._deadline = float("inf")
        self.thread = threading.Thread(target=self._loop, name="webhook-out", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def event(self, event: dict[str, Any], snapshot: bytes | None) -> None:
        body = json.dumps(event).encode()
        with self._cond:
            if len(self.queue) >= self.queue_size:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append(body)
            self._cond.notify_all()

    def counts(self, stream: str, counts: dict[str, int]) -> None:
        """Counts go to MQTT only."""

    def depth(self) -> int:
        with self._cond:
            return len(self.queue)

    def _post(self, body: bytes) -> None:
        req = urllib.request.Request(self.url, data=body, method="POST")
        req.add_header("Content-Type", "application/json")
        if self.secret:
            req.add_header(SIGNATURE_HEADER, signature(self.secret, body))
        timeout = max(0.1, min(self.timeout_s, self._deadline - time.monotonic()))
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            answer.read(65536)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or bool(self.queue), 1.0)
                if not self.queue:
                    if self._stopping:
                        return
                    continue
                body = self.queue[0]
            for attempt in range(self.retries + 1):
                try:
                    self._post(body)
                    self.sent += 1
                    break
                except (urllib.error.URLError, OSError, ValueError) as exc:  # HTTPError is a URLError
                    self.last_error = scrub(f"{type(exc).__name__}: {exc}", self.url)[:300]
                    log.warning("%s: attempt %d failed: %s", self.name, attempt + 1, self.last_error)
                if attempt == self.retries or self._past_deadline():
                    self.failed += 1
                    break
                with self._cond:
                    self._cond.wait_for(self._past_deadline, backoff_s(attempt, self.backoff_first_s, 60.0))
            with self._cond:
                if self.queue and self.queue[0] is body:
                    self.queue.popleft()
                if self._past_deadline():
                    return

    def _past_deadline(self) -> bool:
        return time.monotonic() >= self._deadline

    def stop(self, timeout_s: float) -> None:
        """Deliver what is queued until ``timeout_s`` has passed; what is left then is dropped."""
        with self._cond:
            self._stopping = True
            self._deadline = time.monotonic() + timeout_s
            self._cond.notify_all()
        self.thread.join(timeout_s + 0.5)
