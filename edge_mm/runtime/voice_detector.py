"""A loaded silero VAD artifact behind the per-clip lock; the pipeline is runtime/silero_vad.py.

Always on CPU: the model is a small stateful RNN run one 32 ms window at a time. The
ONNX Runtime variant (the shipped silero_vad.onnx) is served with numpy alone, so a
server whose other models also run on ONNX Runtime never imports torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_mm.manifest import ModelEntry
from edge_mm.runtime.artifacts import load_module
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.probes import probe_audio
from edge_mm.runtime.silero_vad import SegmentRules, SileroOnnx, VadModel, VadResult, speech_segments


@dataclass
class VoiceDetector:
    name: str
    entry: ModelEntry
    vad: VadModel
    device: str = "cpu"

    @classmethod
    def load(cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> VoiceDetector:
        chosen = entry.variants[variant]
        path = chosen.files["model"].resolve(root)
        module = SileroOnnx.load(path) if chosen.backend == "onnxruntime" else load_module(path, "cpu")
        return cls(name, entry, VadModel(module))

    def segments(self, samples_16k: np.ndarray, rules: SegmentRules, deadline: Deadline | None = None) -> VadResult:
        return speech_segments(samples_16k, self.vad, rules, deadline=deadline)

    def check_outputs(self, inputs: list[dict[str, float]]) -> list[np.ndarray]:
        return [self.vad.speech_probabilities(probe_audio(float(i["probe_audio_seconds"]))) for i in inputs]

    def warm(self) -> float:
        t0 = time.perf_counter()
        self.vad.speech_probabilities(probe_audio(0.5))
        return (time.perf_counter() - t0) * 1000
