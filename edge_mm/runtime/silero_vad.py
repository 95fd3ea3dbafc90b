"""Voice activity: silero VAD speech probabilities -> speech segments.

Two forms of the same network serve. The silero TorchScript module is stateful: it
keeps an RNN state and the last 64 samples of the previous window as context between
calls, and ``reset_states()`` clears both. One clip must therefore run start to
finish on one module with no other clip interleaved. :class:`VadModel` owns the
module and a lock that makes each clip exclusive; callers that pass a bare module
must serialize clips themselves (a lock, or one module per thread).

The shipped ``silero_vad.onnx`` (:class:`SileroOnnx`) takes the state and the
context as inputs and returns the new state, so the clip's state lives in local
variables: clips may run at once, and this path is numpy only (it never imports
torch). It is driven as silero's own ``OnnxWrapper`` drives it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_mm.errors import Unprocessable
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.onnx_session import OnnxSession

__all__ = [
    "SegmentRules",
    "SileroOnnx",
    "VadModel",
    "VadResult",
    "segments_from_probs",
    "speech_probabilities",
    "speech_segments",
]

SAMPLE_RATE = 16_000  # Hz; the only rate this pipeline feeds the model
CONTEXT = 64  # samples of the previous window silero prepends at 16 kHz
_CHECK_EVERY = 256  # windows (about 8 s of audio) between deadline checks


@dataclass(frozen=True)
class VadResult:
    """Speech found in one clip.

    ``segments``: ``(start_s, end_s)`` pairs in seconds, in order, not overlapping;
    ``speech_ratio``: seconds inside segments / ``duration_s`` (0 for an empty clip);
    ``duration_s``: clip length in seconds.
    """

    segments: list[tuple[float, float]]
    speech_ratio: float
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "segments": [{"start_s": s, "end_s": e} for s, e in self.segments],
            "speech_ratio": self.speech_ratio,
            "duration_s": self.duration_s,
        }


@dataclass(frozen=True)
class SegmentRules:
    """How window probabilities become speech segments.

    Speech starts at the first window with ``p >= threshold`` and ends at the first
    window with ``p < neg_threshold`` (default ``max(threshold - 0.15, 0.01)``) that
    is followed by ``min_silence_ms`` without a return to ``p >= threshold``.
    Segments no longer than ``min_speech_ms`` are dropped; the rest grow by
    ``speech_pad_ms`` on each side (gaps shorter than two pads are split evenly),
    clipped to the clip. Bad values raise ``Unprocessable`` (422).
    """

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_ms: float = 250
    min_silence_ms: float = 100
    speech_pad_ms: float = 30

    def __post_init__(self) -> None:
        _check_options(self.threshold, self.neg_threshold, self.min_speech_ms, self.min_silence_ms, self.speech_pad_ms)

    @property
    def stop_threshold(self) -> float:
        return self.neg_threshold if self.neg_threshold is not None else max(self.threshold - 0.15, 0.01)


class SileroOnnx:
    """silero_vad.onnx as a stateless per-clip scorer: ``(input (1, 64 + window), state (2, 1, 128),
    sr ()) -> (probability (1, 1), new state)``, the context being the last 64 samples fed.

    Stateless between calls, so one instance serves concurrent clips.
    """

    def __init__(self, session: OnnxSession) -> None:
        self.session = session

    @classmethod
    def load(cls, path: Path) -> SileroOnnx:
        """One intra-op thread: the network is tiny and runs one 32 ms window at a time."""
        return cls(OnnxSession(path, 1))

    def probabilities(self, chunks: np.ndarray, deadline: Deadline | None = None) -> np.ndarray:
        """(n, window) consecutive windows of one clip -> (n,) float32 speech probabilities."""
        probs = np.empty(len(chunks), dtype=np.float32)
        state = np.zeros((2, 1, 128), dtype=np.float32)
        x = np.zeros((1, CONTEXT + chunks.shape[1]), dtype=np.float32)  # the first context is silence
        sr = np.array(SAMPLE_RATE, dtype=np.int64)
        for i, chunk in enumerate(chunks):
            if deadline is not None and i % _CHECK_EVERY == 0:
                deadline.check("voice activity detection")
            x[0, :CONTEXT] = x[0, -CONTEXT:]
            x[0, CONTEXT:] = chunk
            out, state = self.session(input=x, state=state, sr=sr)
            probs[i] = out[0, 0]
        return probs


class VadModel:
    """A silero VAD model plus the lock that makes each clip exclusive on the stateful TorchScript module
    (:class:`SileroOnnx` keeps no state between calls and needs none)."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.lock: AbstractContextManager[Any] = nullcontext() if isinstance(module, SileroOnnx) else threading.Lock()

    @property
    def backend(self) -> str:
        return "onnxruntime" if isinstance(self.module, SileroOnnx) else "torchscript"

    def speech_probabilities(
        self, samples_16k: np.ndarray, window: int = 512, deadline: Deadline | None = None
    ) -> np.ndarray:
        """Like :func:`speech_probabilities`, holding the lock for the whole clip."""
        with self.lock:
            return speech_probabilities(samples_16k, self.module, window, deadline)


def speech_probabilities(
    samples_16k: np.ndarray, module: Any, window: int = 512, deadline: Deadline | None = None
) -> np.ndarray:
    """Per-window speech probability, (ceil(n / window),) float32 in [0, 1].

    ``samples_16k``: (n,) float32 mono at 16 kHz, cut into consecutive ``window``-sample
    windows (the last one zero-padded). ``module``: a :class:`SileroOnnx` (stateless,
    numpy), or the TorchScript module, whose state this resets before feeding it each
    window as ``module(x: (1, window), 16000)``; the module prepends its own context of
    previous samples, as silero's ``get_speech_timestamps`` relies on. The TorchScript
    path is NOT thread-safe: that module is stateful (see :class:`VadModel`).
    ``deadline`` is checked every few hundred windows.
    """
    x = _check_samples(samples_16k)
    n_windows = -(-len(x) // window)
    padded = np.zeros(n_windows * window, dtype=np.float32)
    padded[: len(x)] = x
    if isinstance(module, SileroOnnx):
        return module.probabilities(padded.reshape(n_windows, window), deadline)
    import torch  # the TorchScript path only

    chunks = torch.from_numpy(padded).reshape(n_windows, 1, window)
    probs = np.empty(n_windows, dtype=np.float32)
    with torch.inference_mode():
        module.reset_states()
        for i in range(n_windows):
            if deadline is not None and i % _CHECK_EVERY == 0:
                deadline.check("voice activity detection")
            probs[i] = float(module(chunks[i], SAMPLE_RATE))
    return probs


def speech_segments(
    samples_16k: np.ndarray,
    model: VadModel | Any,
    rules: SegmentRules | None = None,
    *,
    window: int = 512,
    deadline: Deadline | None = None,
) -> VadResult:
    """Find speech in ``samples_16k``: (n,) float32 mono at 16 kHz.

    ``model`` is a :class:`VadModel` (locked per clip), a :class:`SileroOnnx`, or a bare
    TorchScript silero module (caller serializes). ``rules``: see :class:`SegmentRules` (default: its defaults).
    """
    rules = rules or SegmentRules()
    x = _check_samples(samples_16k)
    if len(x) == 0:
        return VadResult(segments=[], speech_ratio=0.0, duration_s=0.0)
    if isinstance(model, VadModel):
        probs = model.speech_probabilities(x, window, deadline)
    else:
        probs = speech_probabilities(x, model, window, deadline)
    bounds = segments_from_probs(probs, len(x), rules, window=window)
    segments = [(round(s / SAMPLE_RATE, 3), round(e / SAMPLE_RATE, 3)) for s, e in bounds]
    speech = sum(e - s for s, e in bounds)
    return VadResult(segments=segments, speech_ratio=speech / len(x), duration_s=len(x) / SAMPLE_RATE)


def segments_from_probs(
    probs: Sequence[float] | np.ndarray, n_samples: int, rules: SegmentRules | None = None, *, window: int = 512
) -> list[tuple[int, int]]:
    """Hysteresis over window probabilities -> ``(start, end)`` samples at 16 kHz (see :class:`SegmentRules`).

    Same rules as silero's ``get_speech_timestamps`` without its maximum-length splitting.
    """
    rules = rules or SegmentRules()
    per_ms = SAMPLE_RATE / 1000
    raw = _speech_runs(
        probs,
        n_samples,
        rules.threshold,
        rules.stop_threshold,
        rules.min_speech_ms * per_ms,
        rules.min_silence_ms * per_ms,
        window,
    )
    return _padded(raw, n_samples, int(rules.speech_pad_ms * per_ms))


def _speech_runs(
    probs: Sequence[float] | np.ndarray,
    n_samples: int,
    threshold: float,
    neg_threshold: float,
    min_speech: float,
    min_silence: float,
    window: int,
) -> list[list[int]]:
    """The hysteresis pass: ``[start, end]`` samples of each run longer than ``min_speech`` samples."""
    raw: list[list[int]] = []
    start: int | None = None
    silence_from = 0  # first sample of the current candidate silence; 0 = none
    for i, p in enumerate(probs):
        here = i * window
        if p >= threshold:
            silence_from = 0
            if start is None:
                start = here
            continue
        if start is None or p >= neg_threshold:
            continue
        if not silence_from:
            silence_from = here
        if here - silence_from < min_silence:
            continue
        if silence_from - start > min_speech:
            raw.append([start, silence_from])
        start, silence_from = None, 0
    if start is not None and n_samples - start > min_speech:
        raw.append([start, n_samples])
    return raw


def _padded(raw: list[list[int]], n_samples: int, pad: int) -> list[tuple[int, int]]:
    """Each run grown by ``pad`` samples on each side; a gap under two pads is split evenly."""
    for k, seg in enumerate(raw):
        if k == 0:
            seg[0] = max(0, seg[0] - pad)
        if k + 1 < len(raw):
            gap = raw[k + 1][0] - seg[1]
            grow = gap // 2 if gap < 2 * pad else pad
            seg[1] = min(n_samples, seg[1] + grow)
            raw[k + 1][0] = max(0, raw[k + 1][0] - grow)
        else:
            seg[1] = min(n_samples, seg[1] + pad)
    return [(s, e) for s, e in raw]


def _check_samples(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"samples must be 1-D mono, got shape {x.shape}")
    return x


def _check_options(
    threshold: float,
    neg_threshold: float | None,
    min_speech_ms: float,
    min_silence_ms: float,
    speech_pad_ms: float,
) -> None:
    if not 0.0 < threshold < 1.0:
        raise Unprocessable(f"threshold must be in (0, 1), not {threshold}")
    if neg_threshold is not None and not 0.0 < neg_threshold <= threshold:
        raise Unprocessable(f"neg_threshold must be in (0, threshold], not {neg_threshold}")
    for name, value in (
        ("min_speech_ms", min_speech_ms),
        ("min_silence_ms", min_silence_ms),
        ("speech_pad_ms", speech_pad_ms),
    ):
        if not value >= 0:
            raise Unprocessable(f"{name} must be >= 0, not {value}")
