"""Fixtures for the stream tests: the MTCNN model alone (built once, shared with the other vision
tests' artifact folder), a real mosquitto broker on a free loopback port, an MQTT subscriber, and
the committed clip (tests/media/stream_clip.mp4: a face from about 2.5 s to 7.5 s of 10 s)."""

from __future__ import annotations

import getpass
import io
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PACKAGES, ROOT, TEST_ARTIFACTS, need, only_models, repo_settings_text

CLIP = ROOT / "tests" / "media" / "stream_clip.mp4"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def wait_for(condition: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stream_events(settings: Any, registry: Any, spec: dict[str, Any], frames: int = 4, timeout_s: float = 60) -> list:
    """The events one stream (``spec``, added at run time) publishes until ``frames`` frames were analysed."""
    from edge_mm.streams.manager import StreamManager

    manager = StreamManager(settings, registry)
    manager.start()
    listener = manager.hub.listen(spec["id"])
    assert listener is not None
    try:
        manager.add({"fps": 5, "min_frames": 2, "end_after_s": 1.0, **spec})
        wait_for(
            lambda: manager.describe(spec["id"])["status"]["frames_analysed"] >= frames,
            timeout_s,
            f"{frames} analysed frames",
        )
    finally:
        manager.stop(5)
    out = []
    while not listener.queue.empty():
        event = listener.queue.get_nowait()
        if event is not None:
            out.append(event)
    return out


def own_artifacts(text: str, name: str) -> str:
    """Settings text whose artifacts live in build/work/test-artifacts-<name> (kept between runs): a fixture
    that builds only some models writes a manifest of those alone (build_all), which must not replace the
    shared cache's under other tests."""
    return text.replace(f'artifacts_dir = "{TEST_ARTIFACTS}"', f'artifacts_dir = "{TEST_ARTIFACTS}-{name}"')


def mtcnn_settings_text(folder: Path, extra: str = "", artifacts: str = "mtcnn") -> str:
    """The repo's settings with only the MTCNN model (built in its own artifacts folder, see own_artifacts),
    its faces_db and snapshots in ``folder``."""
    text = own_artifacts(only_models(repo_settings_text(), {"mtcnn"}), artifacts)
    text = text.replace("[runtime]\n", f'[runtime]\nfaces_db = "{folder / "faces.db"}"\n', 1)
    return text + f'\n[events]\nsnapshot_dir = "{folder / "snapshots"}"\n' + extra


@pytest.fixture(scope="session")
def mtcnn_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need((PACKAGES / "facenet_pytorch").is_dir(), "model package facenet_pytorch not installed: run `make models`")
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings

    folder = tmp_path_factory.mktemp("mtcnn")
    path = folder / "settings.toml"
    path.write_text(mtcnn_settings_text(folder))
    build_all(load_settings(path, env={}), out=io.StringIO())
    return path


@pytest.fixture(scope="session")
def mtcnn_registry(mtcnn_config: Path):  # type: ignore[no-untyped-def]
    from edge_mm.config import load_settings
    from tests.conftest import warm_registry

    return warm_registry(load_settings(mtcnn_config, env={}))


def stream_settings(tmp_path: Path, extra: str = ""):  # type: ignore[no-untyped-def]
    """Settings (MTCNN only) whose faces_db and snapshots are in ``tmp_path``; ``extra`` TOML appended."""
    from edge_mm.config import load_settings

    path = tmp_path / "settings.toml"
    path.write_text(mtcnn_settings_text(tmp_path, extra))
    return load_settings(path, env={})


def clip_stream(stream_id: str = "cam", **over: Any) -> dict[str, Any]:
    """The committed clip as a stream: 5 fps, events start after 2 frames and end 1 s after the face leaves."""
    return {"id": stream_id, "url": str(CLIP), "fps": 5, "min_frames": 2, "end_after_s": 1.0, **over}


class Mosquitto:
    """A real broker on a free loopback port, persistent (its sessions survive a restart)."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\nautosave_interval 1\nlog_dest stderr\n"
            f"user {getpass.getuser()}\n"  # as root it would switch to 'mosquitto', who cannot write here
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: it saves its sessions and queued messages first
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    need(
        shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists(),
        "mosquitto not installed: run scripts/system_deps.sh",
    )
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


class Subscriber:
    """A paho-mqtt client that records every message under ``topic`` (QoS 1, a persistent session)."""

    def __init__(self, port: int, topic: str = "#", client_id: str = "test-subscriber") -> None:
        import paho.mqtt.client as paho

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = lambda c, u, f, rc, p: (c.subscribe(topic, qos=1), self.connected.set())
        self.client.on_disconnect = lambda c, u, f, rc, p: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        wait_for(self.subscribed.is_set, 10, "the subscriber to subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def events(self, stream: str = "cam", prefix: str = "edge-mm") -> list[dict[str, Any]]:
        import json

        return [json.loads(p) for p in self.on(f"{prefix}/{stream}/events")]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def clip_jpegs(fps_step: int = 1) -> list[bytes]:
    """The committed clip's frames as JPEGs (for the HTTP sources)."""
    import av

    out = []
    with av.open(str(CLIP)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % fps_step == 0:
                buf = io.BytesIO()
                frame.to_image().save(buf, "JPEG", quality=85)
                out.append(buf.getvalue())
    return out


class CameraServer:
    """A fake IP camera on 127.0.0.1 serving the clip (10 fps, looped) behind Basic auth ``user``/``password``:
    ``/mjpeg`` (multipart/x-mixed-replace) and ``/snapshot.jpg`` (the frame of the moment)."""

    def __init__(self, user: str = "admin", password: str = "pa55word", port: int = 0) -> None:
        import base64
        import http.server

        self.frames = clip_jpegs()
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.t0 = time.monotonic()
        self.requests = 0
        self.stop = threading.Event()
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                camera.requests += 1
                if self.headers.get("Authorization") != camera.expected:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path == "/snapshot.jpg":
                    jpeg = camera.now()
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(jpeg)))
                    self.end_headers()
                    self.wfile.write(jpeg)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not camera.stop.is_set():
                        jpeg = camera.now()
                        head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                        self.wfile.write(head.encode() + jpeg + b"\r\n")
                        time.sleep(0.1)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def now(self) -> bytes:
        i = int((time.monotonic() - self.t0) * 10) % len(self.frames)
        return self.frames[i]

    def url(self, path: str, user: str = "admin", password: str = "pa55word") -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def camera() -> Iterator[CameraServer]:
    cam = CameraServer()
    yield cam
    cam.close()


class AppServer:
    """``create_app`` with a stream manager, on a real HTTP server (werkzeug's) on 127.0.0.1."""

    def __init__(self, settings: Any, registry: Any, api_key: str = "") -> None:
        from werkzeug.serving import make_server

        from edge_mm.api import create_app
        from edge_mm.streams.manager import StreamManager

        self.manager = StreamManager(settings, registry)
        self.app = create_app(settings, registry, stream_manager=self.manager)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.manager.start()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.manager.stop(5)
        self.server.shutdown()
        self.server.server_close()


class RtspServer:
    """tests/streams/rtsp_server.py (GStreamer) in a process of the system Python, on a free loopback port."""

    SYSTEM_PYTHON = "/usr/bin/python3"

    def __init__(self, clip: Path, user: str, password: str, port: int = 0) -> None:
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [
                self.SYSTEM_PYTHON,
                str(Path(__file__).with_name("rtsp_server.py")),
                str(self.port),
                str(clip),
                user,
                password,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.close()
            raise RuntimeError(f"the RTSP server did not start: {line}{self.proc.stdout.read()}")

    def url(self, user: str, password: str) -> str:
        return f"rtsp://{user}:{password}@127.0.0.1:{self.port}/clip"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def rtsp_available() -> bool:
    if not Path(RtspServer.SYSTEM_PYTHON).exists():
        return False
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return subprocess.run([RtspServer.SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0


@pytest.fixture
def rtsp_server() -> Iterator[RtspServer]:
    need(rtsp_available(), "GStreamer's RTSP server for the system Python is missing: run scripts/system_deps.sh")
    server = RtspServer(CLIP, "admin", "s3cret")
    yield server
    server.close()
