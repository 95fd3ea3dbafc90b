"""Voice activity: a WAV clip (any rate, mono or stereo) -> speech segments (s) and speech ratio."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edge_mm.media.audio import decode_wav, resample
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.models import Models
from edge_mm.runtime.silero_vad import SAMPLE_RATE
from edge_mm.runtime.voice_detector import VoiceDetector
from edge_mm.tasks.fields import float_field, with_defaults
from edge_mm.tasks.payload import Limits, Payload, file_from
from edge_mm.tasks.task import ModelRequest, Task

ROUTE = "/v1/voice-activity"
KINDS = ("voice-activity",)


@dataclass(frozen=True)
class VadOptions:
    threshold: float
    min_speech_ms: float
    min_silence_ms: float
    speech_pad_ms: float
    max_bytes: int = 20 * 1024 * 1024  # the WAV file's limits
    max_seconds: float = 600.0


def parse_options(fields: Mapping[str, Any], defaults: Mapping[str, Any]) -> VadOptions:
    merged = with_defaults(fields, defaults)
    return VadOptions(
        threshold=float_field(merged, "threshold", 0.5, 0.01, 0.99),
        min_speech_ms=float_field(merged, "min_speech_ms", 250, 0, 60000),
        min_silence_ms=float_field(merged, "min_silence_ms", 100, 0, 60000),
        speech_pad_ms=float_field(merged, "speech_pad_ms", 30, 0, 10000),
    )


Request = ModelRequest[bytes, VadOptions]  # inputs: the WAV file


def parse(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.get(KINDS, ROUTE, payload.model_name())
    options = replace(
        parse_options(payload.fields, served.options),
        max_bytes=limits.max_upload_bytes,
        max_seconds=limits.max_audio_seconds,
    )
    return Request(served, file_from(payload, limits, "audio"), options)


def segments(
    model: VoiceDetector, samples_16k: np.ndarray, options: VadOptions, deadline: Deadline | None = None
) -> dict[str, Any]:
    result = model.segments(
        samples_16k,
        threshold=options.threshold,
        min_speech_ms=options.min_speech_ms,
        min_silence_ms=options.min_silence_ms,
        speech_pad_ms=options.speech_pad_ms,
        deadline=deadline,
    )
    return {
        "duration_s": round(result.duration_s, 3),
        "speech_ratio": round(result.speech_ratio, 4),
        "segments": [{"start_s": s, "end_s": e} for s, e in result.segments],
    }


def detect(model: VoiceDetector, request: Request, deadline: Deadline | None = None) -> dict[str, Any]:
    opts = request.options
    samples, rate = decode_wav(request.inputs, max_bytes=opts.max_bytes, max_seconds=opts.max_seconds)
    samples_16k = resample(samples, rate, SAMPLE_RATE)
    return {"model": model.name, "sample_rate": rate, **segments(model, samples_16k, request.options, deadline)}


def run(models: Models, request: Request, deadline: Deadline) -> dict[str, Any]:
    return models.call(request.model, deadline, lambda m: detect(m, request, deadline))


TASK = Task(
    "voice-activity", (ROUTE,), KINDS, parse, run, "Speech segments in a WAV clip (silero VAD).", media=("audio",)
)
