"""Source readers: each yields frames as fast as its source gives them, until it ends, fails or is stopped.

RTSP and files decode with PyAV (files paced at their own frame rate, like a camera); HTTP answers
are told apart by their type: ``multipart/x-mixed-replace`` is an MJPEG stream (JPEGs kept encoded),
an image is a snapshot URL polled every ``interval_s``.
"""

from __future__ import annotations

import base64
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from edge_mm.streams.spec import StreamSpec

OPEN_TIMEOUT_S = 10.0  # connecting, and the longest a source may stay silent before it counts as dropped
MAX_JPEG_BYTES = 16 * 1024 * 1024  # an MJPEG part or snapshot larger than this is a broken source
CHUNK = 64 * 1024


class SourceEnded(Exception):
    """The source closed (an RTSP server's clip ended, an HTTP answer ran out)."""


def frames(spec: StreamSpec, base_dir: Path, stop: threading.Event) -> Iterator[Any]:
    """The source's frames (PyAV ``VideoFrame`` or JPEG bytes) until ``stop``; raises when it fails or ends."""
    kind = spec.kind()
    if kind == "rtsp":
        options: dict[str, str] = {"rtsp_transport": spec.transport}
        yield from _av_frames(spec.url, options, stop, pace=False)
        raise SourceEnded("the RTSP stream ended")
    if kind == "file":
        path = file_path(spec.url, base_dir)
        if not path.is_file():
            raise FileNotFoundError(f"no video file at {path}")
        while not stop.is_set():
            yield from _av_frames(str(path), {}, stop, pace=True)
            if not spec.loop:
                raise SourceEnded("the video file ended")
        return
    yield from _http_frames(spec, stop)


def file_path(url: str, base_dir: Path) -> Path:
    parts = urlsplit(url)
    p = Path(unquote(parts.path) if parts.scheme == "file" else url)
    return p if p.is_absolute() else (base_dir / p).resolve()


def _av_frames(url: str, options: dict[str, str], stop: threading.Event, *, pace: bool) -> Iterator[Any]:
    import av

    with av.open(url, options=options, timeout=(OPEN_TIMEOUT_S, OPEN_TIMEOUT_S)) as container:
        if not container.streams.video:
            raise ValueError("the source has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        t0 = time.monotonic()
        for frame in container.decode(stream):
            if stop.is_set():
                return
            if pace and frame.time is not None:  # a file plays at its own rate, as a camera would
                ahead = t0 + float(frame.time) - time.monotonic()
                if ahead > 0 and stop.wait(ahead):
                    return
            yield frame


def _request(url: str) -> urllib.request.Request:
    """A request for ``url`` with its ``user:pass@`` moved into a Basic Authorization header."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return urllib.request.Request(url)
    userinfo, host = parts.netloc.rsplit("@", 1)
    req = urllib.request.Request(urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)))
    req.add_header("Authorization", "Basic " + base64.b64encode(unquote(userinfo).encode()).decode())
    return req


def _http_frames(spec: StreamSpec, stop: threading.Event) -> Iterator[bytes]:
    while not stop.is_set():
        with urllib.request.urlopen(_request(spec.url), timeout=OPEN_TIMEOUT_S) as answer:
            ctype = answer.headers.get("Content-Type", "")
            if ctype.startswith("multipart/") or spec.source == "mjpeg":
                yield from _mjpeg_parts(answer, stop)
                raise SourceEnded("the MJPEG stream ended")
            body = answer.read(MAX_JPEG_BYTES + 1)
        if len(body) > MAX_JPEG_BYTES:
            raise ValueError(f"the snapshot is larger than {MAX_JPEG_BYTES} bytes")
        yield body
        if stop.wait(spec.interval_s):
            return


def _mjpeg_parts(answer: Any, stop: threading.Event) -> Iterator[bytes]:
    """The JPEGs of a multipart stream, found by their start (FFD8) and end (FFD9) markers."""
    buf = b""
    while not stop.is_set():
        chunk = answer.read1(CHUNK) if hasattr(answer, "read1") else answer.read(CHUNK)
        if not chunk:
            return
        buf += chunk
        while True:
            start = buf.find(b"\xff\xd8")
            if start < 0:
                buf = buf[-1:]
                break
            end = buf.find(b"\xff\xd9", start + 2)
            if end < 0:
                buf = buf[start:]
                if len(buf) > MAX_JPEG_BYTES:
                    raise ValueError(f"an MJPEG part is larger than {MAX_JPEG_BYTES} bytes")
                break
            yield buf[start : end + 2]
            buf = buf[end + 2 :]
