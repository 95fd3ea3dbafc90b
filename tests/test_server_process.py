"""The real server process: waitress on 127.0.0.1, readiness, headers, start-up refusals, `edge-mm info`."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
from contextlib import contextmanager

import pytest

from edge_mm.server import warn_if_open
from edge_mm.serving.listening import PREFIX as LISTENING
from tests.serving import ROOT, request, running_server


def test_serves_over_http(tiny_config):
    with running_server(tiny_config) as base:
        status, headers, body = request(base + "/v1/embeddings", {"inputs": ["hello there", "john smith"]})
        assert status == 200
        assert headers["X-Edge-Device"] == "cpu"
        assert float(headers["X-Inference-Time-Ms"]) > 0
        assert len(body["data"]) == 2
        status, _, body = request(base + "/v1/embeddings", {"inputs": ""})
        assert status == 422
        assert body["error"]["code"] == "unprocessable"
        status, _, body = request(base + "/v1/token-classification", {"inputs": "john smith works at acme"})
        assert status == 200
        status, _, info = request(base + "/info")
        assert info["ready"] is True
        assert info["device"] == "cpu"


def test_refuses_to_start_on_tampered_artifact(tiny_config, tmp_path):
    text = tiny_config.read_text()
    root = tiny_config.parent / "artifacts"
    shutil.copytree(root, tmp_path / "artifacts")
    (tmp_path / "settings.toml").write_text(text.replace(str(root), str(tmp_path / "artifacts")))
    f = tmp_path / "artifacts" / "tiny-embed" / "tokenizer.json"
    f.write_text(f.read_text() + " ")  # still valid JSON, different bytes
    out = subprocess.run(
        [sys.executable, "-m", "edge_mm", "--config", str(tmp_path / "settings.toml"), "serve", "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "tokenizer.json has sha256" in out.stderr


def test_cuda_setting_without_cuda_refuses_to_start(tiny_config):
    out = subprocess.run(
        [sys.executable, "-m", "edge_mm", "--config", str(tiny_config), "serve", "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"EDGE_MM_RUNTIME_DEVICE": "cuda", "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert out.returncode == 2
    assert "no CUDA device" in out.stderr


def test_info_command_prints_manifest(tiny_config):
    out = subprocess.run(
        [sys.executable, "-m", "edge_mm", "--config", str(tiny_config), "info"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    manifest = json.loads(out.stdout)
    assert set(manifest["models"]) == {
        "tiny-embed",
        "tiny-sentiment",
        "tiny-ner",
        "tiny-sentiment-distil",
        "tiny-ner-bert",
    }


def test_open_bind_without_keys_warns(caplog):
    with caplog.at_level(logging.WARNING):
        assert warn_if_open("0.0.0.0", []) is True
    assert "without api_keys" in caplog.text
    assert warn_if_open("0.0.0.0", ["k"]) is False
    assert warn_if_open("127.0.0.1", []) is False
    assert warn_if_open("::1", []) is False


def test_check_command_passes(tiny_config, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "edge_mm", "--config", str(tiny_config), "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(": ok on cpu") == 5


@contextmanager
def server_process(config, *extra_env: tuple[str, str], cmd: list[str] | None = None):  # type: ignore[no-untyped-def]
    """(port, process) once /health/ready answers 200; killed afterwards if still running.
    ``cmd``: the executable (default: this Python's ``-m edge_mm``)."""
    env = dict(os.environ, EDGE_MM_SERVER_HOST="127.0.0.1", EDGE_MM_SERVER_PORT="0", PYTHONUNBUFFERED="1")
    env.update(dict(extra_env))
    proc = subprocess.Popen(
        [*(cmd or [sys.executable, "-m", "edge_mm"]), "--config", str(config), "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = ""
        while not line.startswith(LISTENING):
            line = proc.stdout.readline()
            assert line, "server exited before listening"
        base = line.split()[-1]
        deadline = time.monotonic() + 300
        while request(base + "/health/ready", timeout=5)[0] != 200:
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.2)
        yield int(base.rsplit(":", 1)[1]), proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def partial_request(port: int, head: bytes) -> socket.socket:
    """A connection that has sent ``head`` and waits for the caller to send the rest."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(head)
    return s


def read_answer(s: socket.socket) -> tuple[str, dict]:  # type: ignore[type-arg]
    """(status line and headers, JSON body), read until the server closes."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, body = data.decode().split("\r\n\r\n", 1)
    return head, json.loads(body)


EMBED = json.dumps({"inputs": ["hello there", "john smith"]}).encode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_in_flight_requests_then_exits_0(tiny_config, sig):
    with server_process(tiny_config) as (port, proc):
        # in flight at the signal: an upload half sent, a readiness probe half sent, and steady load
        upload = partial_request(
            port,
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(EMBED), EMBED[:9]),
        )
        probe = partial_request(port, b"GET /health/ready HTTP/1.1\r\nHost: x\r\n")
        outcomes: list[str] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                try:
                    status, _, _ = request(f"http://127.0.0.1:{port}/v1/embeddings", {"inputs": ["a b c"] * 8})
                    outcomes.append(str(status))
                except urllib.error.URLError as e:
                    outcomes.append(type(e.reason).__name__)
                    if isinstance(e.reason, ConnectionRefusedError):
                        return

        threads = [threading.Thread(target=load) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        proc.send_signal(sig)
        time.sleep(1.0)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        probe.sendall(b"\r\n")
        head, body = read_answer(probe)
        assert head.startswith("HTTP/1.1 503 ")
        assert body["status"] == "draining"
        upload.sendall(EMBED[9:])
        head, body = read_answer(upload)
        assert head.startswith("HTTP/1.1 200 ")
        assert len(body["data"]) == 2
        upload.close()
        probe.close()
        assert proc.wait(timeout=30) == 0
        stop.set()
        for t in threads:
            t.join(30)
        out = proc.stdout.read()
        proc.stdout.close()
    assert f"{sig.name}: not accepting connections" in out
    assert "drained in" in out
    assert outcomes.count("200") > 0
    # No 5xx. A connection whose handshake completes in the instant the listener closes is reset by
    # the kernel before the server ever sees it (at most once per load thread: the next connect is refused).
    assert set(outcomes) <= {"200", "ConnectionRefusedError", "ConnectionResetError"}, outcomes
    assert outcomes.count("ConnectionResetError") <= 6, outcomes


def test_drain_timeout_bounds_the_wait_and_a_cut_request_exits_1(tiny_config):
    """Issue 18: a drain that cut a request exited 0."""
    with server_process(tiny_config, ("EDGE_MM_SERVER_DRAIN_TIMEOUT_S", "1")) as (port, proc):
        stuck = partial_request(port, b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 1
        assert time.monotonic() - t0 < 10
        stuck.close()
        out = proc.stdout.read()
        proc.stdout.close()
    assert "drain ended after" in out
    assert "shutdown cut 1 request(s) short" in out


def test_the_listening_line_is_written_in_one_piece(monkeypatch):
    """A log record from the warm-up thread cannot land between the URL and the newline (CI once read the
    URL as 'ms', the end of a record written into the line)."""
    from edge_mm.serving.listening import announce

    writes: list[str] = []

    class Out:
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stdout", Out())
    announce("http://127.0.0.1:8080")
    announce("http://127.0.0.1:8000", " (Ray Serve)")
    assert writes == [
        "edge-mm listening on http://127.0.0.1:8080\n",
        "edge-mm listening on http://127.0.0.1:8000 (Ray Serve)\n",
    ]
