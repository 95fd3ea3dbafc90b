"""Webhooks against real HTTP receivers on 127.0.0.1: one that fails twice then accepts (delivered
once, signature verifies), one that hangs (cut at the timeout, retried) beside one that answers
(never held up by it)."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from edge_mm.streams.webhooks import SIGNATURE_HEADER, WebhookOutput
from tests.streams.conftest import wait_for

SECRET = "s3cret"


class Receiver:
    """Records each POST (body, headers); answers 500 to the first ``fail`` of them; sleeps ``hang`` s first."""

    def __init__(self, fail: int = 0, hang: float = 0.0) -> None:
        self.fail = fail
        self.hang = hang
        self.posts: list[tuple[bytes, dict[str, str], int]] = []
        self.release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.hang:
                    receiver.release.wait(receiver.hang)
                status = 500 if len(receiver.posts) < receiver.fail else 200
                receiver.posts.append((body, {k.lower(): v for k, v in self.headers.items()}, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted(self) -> list[bytes]:
        return [b for b, _, s in self.posts if s == 200]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def receiver(**kw: float) -> Iterator[Receiver]:
    r = Receiver(**kw)  # type: ignore[arg-type]
    try:
        yield r
    finally:
        r.close()


EVENT = {"type": "start", "id": "cam-1-1", "stream": "cam", "label": "face", "score": 0.99}


def test_fails_twice_then_accepts_delivered_once_and_signed():
    with receiver(fail=2) as r:
        out = WebhookOutput(r.url, SECRET, timeout_s=5, retries=5, backoff_first_s=0.05)
        out.start()
        out.event(EVENT, None)
        wait_for(lambda: r.accepted(), 20, "the third attempt to be accepted")
        out.stop(2)
        assert [s for _, _, s in r.posts] == [500, 500, 200]
        (body,) = r.accepted()
        assert json.loads(body) == EVENT
        headers = r.posts[-1][1]
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers[SIGNATURE_HEADER.lower()], expected)
        assert headers["content-type"] == "application/json"
        assert (out.sent, out.failed, out.dropped) == (1, 0, 0)


def test_a_wrong_secret_does_not_verify():
    with receiver() as r:
        out = WebhookOutput(r.url, SECRET, backoff_first_s=0.05)
        out.start()
        out.event(EVENT, None)
        wait_for(lambda: r.accepted(), 20, "the delivery")
        out.stop(2)
        body, headers, _ = r.posts[0]
        forged = "sha256=" + hmac.new(b"other", body, hashlib.sha256).hexdigest()
        assert headers[SIGNATURE_HEADER.lower()] != forged


def test_a_hanging_receiver_times_out_and_never_blocks_another_output():
    with receiver(hang=30) as stuck, receiver() as good:
        slow = WebhookOutput(stuck.url, SECRET, timeout_s=0.3, retries=1, backoff_first_s=0.05)
        fast = WebhookOutput(good.url, SECRET, timeout_s=5, retries=1, backoff_first_s=0.05)
        for out in (slow, fast):
            out.start()
        events = [{**EVENT, "id": f"cam-1-{i}"} for i in range(3)]
        for e in events:
            slow.event(e, None)
            fast.event(e, None)
        wait_for(lambda: len(good.accepted()) == 3, 20, "the answering receiver to get every event")
        assert [json.loads(b)["id"] for b in good.accepted()] == [e["id"] for e in events]
        wait_for(lambda: slow.failed >= 1, 20, "the hanging receiver's event to be given up after its retries")
        assert slow.last_error is not None
        assert "timed out" in slow.last_error.lower()
        stuck.release.set()
        for out in (slow, fast):
            out.stop(1)


def test_full_queue_drops_the_oldest():
    out = WebhookOutput("http://127.0.0.1:9/never", SECRET, queue_size=2)  # not started: nothing is sent
    for i in range(5):
        out.event({**EVENT, "id": str(i)}, None)
    assert out.dropped == 3
    assert [json.loads(b)["id"] for b in out.queue] == ["3", "4"]
