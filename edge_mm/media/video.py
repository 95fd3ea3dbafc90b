"""Untrusted video bytes (MP4 / MOV / WebM / MKV) -> sampled RGB frames + 16 kHz mono audio, with PyAV.

Limits, checked as early as possible: bytes (before opening), duration (from the
container header, and again while decoding for streams without one), frame pixels
(from the stream header), and the number of sampled frames. Errors carry their
status: 413 over a limit, 415 for another container, 400 for corrupt or truncated data.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from edge_mm.errors import BadInput, RequestTooLarge, UnsupportedMediaType

if TYPE_CHECKING:  # av is imported where it is used: importing this module stays cheap
    from av import AudioFrame, AudioStream, VideoFrame, VideoStream
    from av.container import InputContainer

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
    data: bytes,
    *,
    sampling: Sampling,
    max_bytes: int,
    max_seconds: float,
    max_pixels: int,
    max_total_pixels: int | None = None,
    audio: bool = True,
    check: Callable[[], None] | None = None,
) -> Clip:
    """Decode ``data`` once, keeping the sampled frames (RGB) and, if asked, the audio at 16 kHz mono.

    When the header gives the duration (or frame count) and sampling as asked would exceed
    ``max_frames``, the step widens so the samples spread over the whole clip.
    ``max_pixels`` bounds one frame, ``max_total_pixels`` the frames kept (``max_frames`` x
    width x height, from the header: 413 before decoding). ``check`` is called after each
    decoded frame (a deadline's check: it raises to stop).
    """
    import av

    kind = _check_bytes(data, max_bytes)
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except av.error.FFmpegError as exc:
        raise BadInput(f"video looks like {kind} but is corrupt or truncated: {exc}") from None
    with container:
        vstream, duration = _video_stream(container, max_seconds, max_pixels)
        _check_kept_pixels(vstream, sampling.max_frames, max_total_pixels)
        fps = float(vstream.average_rate) if vstream.average_rate else 0.0
        every_s, every_n, step = _plan(sampling, duration, vstream.frames or None)
        astream = container.streams.audio[0] if audio and container.streams.audio else None
        codec = vstream.codec_context
        clip = Clip(
            duration_s=duration or 0.0, fps=fps, width=codec.width, height=codec.height, frames_decoded=0, step=step
        )
        frames = _FrameSampler(clip, every_s, every_n, sampling.max_frames, max_seconds)
        sound = _AudioCollector(astream) if astream is not None else None
        _demux(container, vstream, frames, sound, check)
    if not clip.frames:
        raise BadInput("no video frame could be decoded")
    if not clip.duration_s:
        clip.duration_s = round(frames.last_t + (1 / fps if fps else 0), 3)
    if sound is not None:
        clip.audio_16k = sound.samples()
    return clip


def _check_bytes(data: bytes, max_bytes: int) -> str:
    """The container kind sniffed from ``data``, after the checks that need no decoding."""
    if not data:
        raise BadInput("video is empty")
    if len(data) > max_bytes:
        raise RequestTooLarge(f"video is {len(data)} bytes; the limit is {max_bytes}")
    kind = sniff_container(data)
    if kind is None:
        raise UnsupportedMediaType(f"not a supported video container; send {SUPPORTED_TEXT}")
    return kind


def _check_kept_pixels(vstream: VideoStream, max_frames: int, max_total_pixels: int | None) -> None:
    """413 when ``max_frames`` frames of this size would hold more than ``max_total_pixels``."""
    frame = vstream.codec_context.width * vstream.codec_context.height
    if max_total_pixels is None or max_frames * frame <= max_total_pixels:
        return
    fit = max_total_pixels // max(1, frame)
    hint = f"; ask for max_frames <= {fit}" if fit else ""
    raise RequestTooLarge(
        f"{max_frames} frames of {frame} pixels are over the limit of {max_total_pixels} pixels per request{hint}"
    )


def _video_stream(container: InputContainer, max_seconds: float, max_pixels: int) -> tuple[VideoStream, float | None]:
    """(first video stream, duration in s from the header or None), after the header checks."""
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
    return vstream, duration


def _demux(
    container: InputContainer,
    vstream: VideoStream,
    frames: _FrameSampler,
    sound: _AudioCollector | None,
    check: Callable[[], None] | None = None,
) -> None:
    """One pass over the packets: video frames to ``frames``, audio frames to ``sound``."""
    from av import AudioFrame, VideoFrame
    from av.error import FFmpegError

    streams: list[VideoStream | AudioStream] = [vstream] if sound is None else [vstream, sound.stream]
    try:
        for packet in container.demux(*streams):
            for frame in packet.decode():
                if isinstance(frame, AudioFrame) and sound is not None:
                    sound.add(frame)
                elif isinstance(frame, VideoFrame):
                    frames.add(frame)
                    if check is not None:
                        check()
        if sound is not None:
            sound.add(None)  # flush the resampler
    except FFmpegError as exc:
        raise BadInput(f"video data is corrupt: {exc}") from None


@dataclass
class _FrameSampler:
    """Counts decoded frames into ``clip`` and keeps the ones the sampling plan asks for."""

    clip: Clip
    every_s: float | None
    every_n: int | None
    max_frames: int
    max_seconds: float
    next_t: float = 0.0  # s; the next frame at or after this time is kept (when sampling by time)
    last_t: float = 0.0  # s; the latest frame time seen

    def add(self, frame: VideoFrame) -> None:
        clip = self.clip
        t = float(frame.time) if frame.time is not None else clip.frames_decoded / (clip.fps or 25.0)
        if t > self.max_seconds:
            raise RequestTooLarge(f"video runs past {self.max_seconds:g} s, the limit")
        i = clip.frames_decoded
        clip.frames_decoded += 1
        self.last_t = max(self.last_t, t)
        if len(clip.frames) >= self.max_frames or not self._due(i, t):
            return
        clip.frames.append(Frame(i, round(t, 3), frame.to_image()))
        if self.every_s:
            self.next_t = t + self.every_s

    def _due(self, i: int, t: float) -> bool:
        return i % self.every_n == 0 if self.every_n else t + 1e-6 >= self.next_t


class _AudioCollector:
    """An audio stream's frames resampled to 16 kHz mono float32."""

    def __init__(self, stream: AudioStream) -> None:
        import av

        self.stream = stream
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        self._chunks: list[np.ndarray] = []

    def add(self, frame: AudioFrame | None) -> None:
        """Resample ``frame``; None flushes what the resampler still holds."""
        self._chunks += [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]

    def samples(self) -> np.ndarray:
        """(n,) float32 at 16 kHz; empty when the track had no decodable audio."""
        return np.concatenate(self._chunks).astype(np.float32) if self._chunks else np.zeros(0, np.float32)


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
