"""Voice activity: a WAV clip (any rate, mono or stereo) -> speech segments (s) and speech ratio."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from edge_mm.media.audio import decode_wav, resample
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.model_calls import Models
from edge_mm.tasks.payload import Limits, Payload, file_from
from edge_mm.tasks.schemas import AudioInput, ModelOptions, Options, Strict, validate
from edge_mm.tasks.task import ModelRequest, Task, one_model_run

if TYPE_CHECKING:  # the runner needs torch: imported when such a model loads, not with the task table
    from edge_mm.runtime.silero_vad import SegmentRules
    from edge_mm.runtime.voice_detector import VoiceDetector

ROUTE = "/v1/voice-activity"
KINDS = ("voice-activity",)


class ServeOptions(ModelOptions):
    """A voice-activity model's serve-time options (settings); a request may override each."""

    threshold: float = Field(0.5, ge=0.01, le=0.99, description="speech probability cut-off")
    min_speech_ms: float = Field(250, ge=0, le=60000, description="speech no longer than this is dropped")
    min_silence_ms: float = Field(100, ge=0, le=60000, description="silence that ends a speech segment")
    speech_pad_ms: float = Field(30, ge=0, le=10000, description="added to each side of a segment")


class Body(ServeOptions, Options, AudioInput):
    model_config = Strict.model_config  # a request: unknown fields ignored, unlike settings


class Segment(BaseModel):
    start_s: float
    end_s: float


class Speech(BaseModel):
    duration_s: float
    speech_ratio: float
    segments: list[Segment]


class Answer(Speech):
    model: str
    sample_rate: int


def parse_options(fields: Mapping[str, Any], defaults: Mapping[str, Any]) -> SegmentRules:
    """``threshold``, ``min_speech_ms``, ``min_silence_ms``, ``speech_pad_ms`` over the model's defaults."""
    from edge_mm.runtime.silero_vad import SegmentRules

    body = validate(Body, fields, defaults)
    return SegmentRules(
        threshold=body.threshold,
        min_speech_ms=body.min_speech_ms,
        min_silence_ms=body.min_silence_ms,
        speech_pad_ms=body.speech_pad_ms,
    )


@dataclass(frozen=True)
class Wav:
    """An uploaded WAV file and its limits; :meth:`decode` runs inside the model's slot."""

    data: bytes
    max_bytes: int
    max_seconds: float

    def decode(self) -> tuple[np.ndarray, int]:
        """(mono float32 samples, rate in Hz)."""
        return decode_wav(self.data, max_bytes=self.max_bytes, max_seconds=self.max_seconds)


Request = ModelRequest[Wav, "SegmentRules"]


def parse(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.get(KINDS, ROUTE, payload.model_name())
    rules = parse_options(payload.fields, served.options)
    wav = Wav(file_from(payload, limits, "audio"), limits.max_upload_bytes, limits.max_audio_seconds)
    return Request(served, wav, rules)


def segments(
    model: VoiceDetector, samples_16k: np.ndarray, rules: SegmentRules, deadline: Deadline | None = None
) -> dict[str, Any]:
    result = model.segments(samples_16k, rules, deadline)
    return {
        "duration_s": round(result.duration_s, 3),
        "speech_ratio": round(result.speech_ratio, 4),
        "segments": [{"start_s": s, "end_s": e} for s, e in result.segments],
    }


def detect(model: VoiceDetector, wav: Wav, rules: SegmentRules, deadline: Deadline | None = None) -> dict[str, Any]:
    """Decode (inside the model's slot), resample to 16 kHz, find the speech."""
    samples, rate = wav.decode()
    from edge_mm.runtime.silero_vad import SAMPLE_RATE

    samples_16k = resample(samples, rate, SAMPLE_RATE)
    return {"model": model.name, "sample_rate": rate, **segments(model, samples_16k, rules, deadline)}


TASK = Task(
    "voice-activity",
    (ROUTE,),
    KINDS,
    parse,
    one_model_run(detect),
    "Speech segments in a WAV clip (silero VAD).",
    media=("audio",),
    body=Body,
    answer=Answer,
)
