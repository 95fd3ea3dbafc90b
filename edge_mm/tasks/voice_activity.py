"""Voice activity: a WAV clip (any rate, mono or stereo) -> speech segments (s) and speech ratio."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_mm.media.audio import decode_wav, resample
from edge_mm.runtime.pipeline_models import VadRunner
from edge_mm.tasks.fields import float_field
from edge_mm.tasks.vad_pipeline import SAMPLE_RATE, speech_segments


@dataclass(frozen=True)
class VadRequest:
    threshold: float
    min_speech_ms: float
    min_silence_ms: float
    speech_pad_ms: float


def parse(payload: Mapping[str, Any], defaults: Mapping[str, Any]) -> VadRequest:
    merged = {**defaults, **payload}
    return VadRequest(
        threshold=float_field(merged, "threshold", 0.5, 0.01, 0.99),
        min_speech_ms=float_field(merged, "min_speech_ms", 250, 0, 60000),
        min_silence_ms=float_field(merged, "min_silence_ms", 100, 0, 60000),
        speech_pad_ms=float_field(merged, "speech_pad_ms", 30, 0, 10000),
    )


def detect(model: VadRunner, samples_16k: np.ndarray, req: VadRequest) -> dict[str, Any]:
    result = speech_segments(
        samples_16k,
        model.vad,
        threshold=req.threshold,
        min_speech_ms=req.min_speech_ms,
        min_silence_ms=req.min_silence_ms,
        speech_pad_ms=req.speech_pad_ms,
    )
    return {
        "duration_s": round(result.duration_s, 3),
        "speech_ratio": round(result.speech_ratio, 4),
        "segments": [{"start_s": s, "end_s": e} for s, e in result.segments],
    }


def run(model: VadRunner, wav: bytes, req: VadRequest, *, max_bytes: int, max_seconds: float) -> dict[str, Any]:
    samples, rate = decode_wav(wav, max_bytes=max_bytes, max_seconds=max_seconds)
    return {"model": model.name, "sample_rate": rate, **detect(model, resample(samples, rate, SAMPLE_RATE), req)}
