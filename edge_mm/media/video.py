"""Untrusted video bytes (MP4 / MOV / WebM / MKV) -> sampled RGB frames + 16 kHz mono audio, with PyAV.

Limits, checked as early as possible: bytes (before opening), duration (from the
container header, and again while decoding for streams without one), frame pixels
(from the stream header), and the number of sampled frames. Errors carry their
status: 413 over a limit, 415 for another container, 400 for corrupt or truncated data.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from edge_mm.errors import BadInput, RequestTooLarge, UnsupportedMediaType

ALLOWED_FORMATS = ("mov", "mp4", "matroska", "webm")
SUPPORTED_TEXT = "MP4, MOV or WebM"
AUDIO_RATE = 16_000


def sniff_container(data: bytes) -> str | None:
    """'mp4' (ISO base media / QuickTime) or 'webm' (Matroska/EBML) from the first bytes, else None."""
    if data[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    return None


@dataclass
class Frame:
    index: int  # position in the decoded stream, 0-based
    time_s: float
    image: Image.Image


@dataclass
class Clip:
    duration_s: float
    fps: float
    width: int
    height: int
    frames_decoded: int
    step: str  # how frames were sampled, e.g. "every 1.0 s"
    frames: list[Frame] = field(default_factory=list)
    audio_16k: np.ndarray | None = None  # (n,) float32 mono, None when there is no audio track


@dataclass(frozen=True)
class Sampling:
    """Every ``every_seconds`` s, or every ``every_frames`` frames; at most ``max_frames`` samples."""

    every_seconds: float | None = 1.0
    every_frames: int | None = None
    max_frames: int = 16


def decode_video(
    data: bytes, *, sampling: Sampling, max_bytes: int, max_seconds: float, max_pixels: int, audio: bool = True
) -> Clip:
    """Decode ``data`` once, keeping the sampled frames (RGB) and, if asked, the audio at 16 kHz mono.

    When the header gives the duration (or frame count) and sampling as asked would exceed
    ``max_frames``, the step widens so the samples spread over the whole clip.
    """
    import av

    if not data:
        raise BadInput("video is empty")
    if len(data) > max_bytes:
        raise RequestTooLarge(f"video is {len(data)} bytes; the limit is {max_bytes}")
    kind = sniff_container(data)
    if kind is None:
        raise UnsupportedMediaType(f"not a supported video container; send {SUPPORTED_TEXT}")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except av.error.FFmpegError as exc:
        raise BadInput(f"video looks like {kind} but is corrupt or truncated: {exc}") from None
    with container:
        if not any(name in ALLOWED_FORMATS for name in container.format.name.split(",")):
            raise UnsupportedMediaType(f"container {container.format.name!r} is not supported; send {SUPPORTED_TEXT}")
        if not container.streams.video:
            raise BadInput("the file has no video stream")
        vstream = container.streams.video[0]
        vstream.thread_type = "AUTO"
        width, height = vstream.codec_context.width, vstream.codec_context.height
        if width * height > max_pixels:
            raise RequestTooLarge(f"video frames are {width}x{height} pixels; the limit is {max_pixels}")
        duration = container.duration / 1_000_000 if container.duration else None
        if duration is not None and duration > max_seconds:
            raise RequestTooLarge(f"video is {duration:.1f} s long; the limit is {max_seconds:g} s")
        fps = float(vstream.average_rate) if vstream.average_rate else 0.0
        every_s, every_n, step = _plan(sampling, duration, vstream.frames or None)
        astream = container.streams.audio[0] if audio and container.streams.audio else None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE) if astream else None
        clip = Clip(duration_s=duration or 0.0, fps=fps, width=width, height=height, frames_decoded=0, step=step)
        chunks: list[np.ndarray] = []
        next_t, last_t = 0.0, 0.0
        streams = [s for s in (vstream, astream) if s is not None]
        try:
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if packet.stream.type == "audio":
                        assert resampler is not None
                        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
                        continue
                    t = float(frame.time) if frame.time is not None else clip.frames_decoded / (fps or 25.0)
                    if t > max_seconds:
                        raise RequestTooLarge(f"video runs past {max_seconds:g} s, the limit")
                    i = clip.frames_decoded
                    clip.frames_decoded += 1
                    last_t = max(last_t, t)
                    if len(clip.frames) >= sampling.max_frames:
                        continue
                    take = (i % every_n == 0) if every_n else t + 1e-6 >= next_t
                    if take:
                        clip.frames.append(Frame(i, round(t, 3), frame.to_image()))
                        if every_s:
                            next_t = t + every_s
            if resampler is not None:
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        except av.error.FFmpegError as exc:
            raise BadInput(f"video data is corrupt: {exc}") from None
    if not clip.frames:
        raise BadInput("no video frame could be decoded")
    if not clip.duration_s:
        clip.duration_s = round(last_t + (1 / fps if fps else 0), 3)
    if astream is not None:
        clip.audio_16k = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return clip


def _plan(sampling: Sampling, duration: float | None, frames: int | None) -> tuple[float | None, int | None, str]:
    """(every seconds, every N frames, description) after widening to respect ``max_frames``."""
    cap = sampling.max_frames
    if sampling.every_frames:
        n = sampling.every_frames
        if frames and -(-frames // n) > cap:
            n = -(-frames // cap)
        return None, n, f"every {n} frames"
    s = sampling.every_seconds or 1.0
    if duration and duration / s > cap:
        s = duration / cap
    return s, None, f"every {round(s, 3)} s"
