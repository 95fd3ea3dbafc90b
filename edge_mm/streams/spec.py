"""What a stream is: its source URL and what to run on it (``[[streams]]`` in settings, ``/v1/streams``).

The URL may hold credentials (``rtsp://user:pass@cam/...``): :func:`redact_url` and :func:`scrub`
keep them out of every answer, status and log line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge_mm.errors import EdgeError, Unprocessable

TASKS = ("face-detection", "face-recognition", "object-detection", "image-classification", "ocr")
SOURCES = ("auto", "rtsp", "mjpeg", "snapshot", "file")
MAX_URL_CHARS = 2048
SECRET_PARAMS = re.compile(r"pass|pwd|token|key|secret|auth|sig|user", re.IGNORECASE)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


class StreamConflict(EdgeError):
    status = 409
    code = "conflict"


class Zone(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    points: list[tuple[float, float]] = Field(min_length=3, max_length=64, description="[x, y] px, in order")


class StreamSpec(BaseModel):
    """One stream. ``tasks`` None: face detection, plus object detection when a detector is served."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="used in URLs and MQTT topics")
    url: str = Field(min_length=1, max_length=MAX_URL_CHARS, description="rtsp://, http(s):// or a video file path")
    source: Literal["auto", "rtsp", "mjpeg", "snapshot", "file"] = "auto"
    tasks: (
        list[Literal["face-detection", "face-recognition", "object-detection", "image-classification", "ocr"]] | None
    ) = Field(None, min_length=1)
    fps: float = Field(2.0, gt=0, le=30, description="frames analysed per second")
    min_confidence: float = Field(0.5, ge=0, le=1)
    labels: list[str] = Field(default_factory=list, max_length=100, description="empty: every label")
    zones: list[Zone] = Field(default_factory=list, max_length=32)
    min_area: float = Field(0.0, ge=0, description="px^2; smaller boxes are ignored")
    min_frames: int = Field(2, ge=1, le=100, description="frames an object is seen before its event starts")
    end_after_s: float = Field(3.0, gt=0, le=3600, description="s an object is gone before its event ends")
    interval_s: float = Field(1.0, ge=0.05, le=3600, description="s between polls of a snapshot URL")
    transport: Literal["tcp", "udp"] = "tcp"
    loop: bool = Field(True, description="a file source starts again at its end")
    face_model: str | None = None
    recognition_model: str | None = None
    object_model: str | None = None
    classification_model: str | None = None
    ocr_model: str | None = None
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = urlsplit(value).scheme.lower()
        if scheme not in ("rtsp", "rtsps", "http", "https", "file", ""):
            raise ValueError("use rtsp://, rtsps://, http://, https://, file:// or a file path")
        return value

    def kind(self) -> str:
        """The reader: rtsp, http (MJPEG or snapshot, told apart by the answer's type) or file."""
        if self.source != "auto":
            return "http" if self.source in ("mjpeg", "snapshot") else self.source
        scheme = urlsplit(self.url).scheme.lower()
        if scheme in ("rtsp", "rtsps"):
            return "rtsp"
        return "http" if scheme in ("http", "https") else "file"

    def public(self) -> dict[str, Any]:
        """The spec as answers show it: the URL without credentials."""
        return {**self.model_dump(), "url": redact_url(self.url)}


def parse_spec(fields: Mapping[str, Any]) -> StreamSpec:
    """422 naming the field; the message never holds the URL's credentials."""
    if not isinstance(fields, Mapping):
        raise Unprocessable("a stream is a JSON object")
    try:
        return StreamSpec.model_validate(dict(fields))
    except ValidationError as exc:
        parts = []
        for err in exc.errors(include_url=False)[:3]:
            where = ".".join(str(p) for p in err["loc"])
            parts.append(f"'{where}': {err['msg']}" if where else err["msg"])
        raise Unprocessable(scrub("; ".join(parts))) from None


def redact_url(url: str) -> str:
    """``url`` with its user and password, and query values that look secret, replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if SECRET_PARAMS.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str, url: str | None = None) -> str:
    """``text`` (an error message, a log line) with ``url`` redacted and any ``scheme://user:pass@`` removed."""
    if url:
        text = text.replace(url, redact_url(url))
    return _USERINFO.sub(r"\g<scheme>***@", text)
