"""Voice activity: exact hysteresis rules; the shipped silero model, TorchScript and ONNX (numpy driver),
on espeak-ng speech (tests/media/speech.wav)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edge_mm.errors import Unprocessable
from edge_mm.media.audio import decode_wav, resample
from edge_mm.runtime.silero_vad import (
    SegmentRules,
    SileroOnnx,
    VadModel,
    VadResult,
    segments_from_probs,
    speech_probabilities,
    speech_segments,
)
from tests.conftest import SPEECH_WAV, missing, need

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning")

W = 512  # samples per window at 16 kHz
PAD = 480  # 30 ms


def models_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "build" / "models"


# --- hysteresis with exact answers --------------------------------------------


def windows(*runs: tuple[float, int]) -> list[float]:
    """Probabilities from (value, number of windows) runs."""
    return [p for value, count in runs for p in [value] * count]


def test_one_segment_with_padding() -> None:
    probs = windows((0.0, 10), (0.9, 20), (0.0, 20))
    # Speech 10*512 .. 30*512 (silence confirmed 100 ms later), padded 30 ms each side.
    assert segments_from_probs(probs, 50 * W) == [(10 * W - PAD, 30 * W + PAD)]


def test_min_speech_drops_short_bursts() -> None:
    # min_speech 250 ms = 4000 samples: 7 windows (3584) are dropped, 8 (4096) kept.
    assert segments_from_probs(windows((0.0, 5), (0.9, 7), (0.0, 10)), 22 * W) == []
    assert segments_from_probs(windows((0.0, 5), (0.9, 8), (0.0, 10)), 23 * W) == [(5 * W - PAD, 13 * W + PAD)]


def test_hysteresis_between_thresholds_continues_speech() -> None:
    # 0.4 is under threshold 0.5 but over neg_threshold 0.35: still speech.
    probs = windows((0.9, 10), (0.4, 10), (0.9, 10), (0.0, 10))
    assert segments_from_probs(probs, 40 * W) == [(0, 30 * W + PAD)]
    # With neg_threshold 0.45 the 0.4 stretch (5120 samples > 100 ms) ends segment 1.
    assert segments_from_probs(probs, 40 * W, SegmentRules(neg_threshold=0.45)) == [
        (0, 10 * W + PAD),
        (20 * W - PAD, 30 * W + PAD),
    ]


def test_short_silence_does_not_split() -> None:
    # 3 windows (1536 samples) < min_silence 1600: one segment.
    probs = windows((0.9, 10), (0.0, 3), (0.9, 10), (0.0, 10))
    assert segments_from_probs(probs, 33 * W) == [(0, 23 * W + PAD)]


def test_close_segments_split_the_gap() -> None:
    # A one-window gap (512 < 2 pads) is shared evenly instead of padded.
    probs = windows((0.0, 2), (0.9, 10), (0.0, 1), (0.9, 10), (0.0, 5))
    got = segments_from_probs(probs, 28 * W, SegmentRules(min_silence_ms=0))
    assert got == [(2 * W - PAD, 12 * W + W // 2), (13 * W - W // 2, 23 * W + PAD)]


def test_speech_running_to_the_end_is_clipped() -> None:
    n = 25 * W - 100
    assert segments_from_probs(windows((0.0, 5), (0.9, 20)), n) == [(5 * W - PAD, n)]


def test_rejects_bad_options() -> None:
    for options in (
        {"threshold": 1.0},
        {"threshold": 0.5, "neg_threshold": 0.6},
        {"min_speech_ms": -1},
    ):
        with pytest.raises(Unprocessable) as err:
            speech_segments(np.zeros(W, np.float32), object(), SegmentRules(**options))
        assert err.value.status == 422


def test_empty_clip_needs_no_model() -> None:
    assert speech_segments(np.zeros(0, np.float32), object()) == VadResult([], 0.0, 0.0)


# --- the shipped silero model -------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # silero is tiny; extra threads only add overhead
    yield
    torch.set_num_threads(before)


def shipped(name: str) -> Path:
    path = models_dir() / "silero_vad" / "data" / name
    need(path.is_file(), f"silero VAD weights not at {path} (pip install --no-deps silero-vad)")
    return path


@pytest.fixture(scope="module")
def ts_vad() -> VadModel:
    return VadModel(torch.jit.load(str(shipped("silero_vad.jit")), map_location="cpu"))


@pytest.fixture(scope="module")
def onnx_vad() -> VadModel:
    return VadModel(SileroOnnx.load(shipped("silero_vad.onnx")))


@pytest.fixture(params=["torchscript", "onnxruntime"])
def vad(request: pytest.FixtureRequest) -> VadModel:
    """Each behaviour test runs on both forms of the shipped model."""
    model: VadModel = request.getfixturevalue("ts_vad" if request.param == "torchscript" else "onnx_vad")
    assert model.backend == request.param
    return model


@pytest.fixture(scope="module")
def spoken() -> tuple[np.ndarray, float, float]:
    """The committed espeak-ng sentence at 16 kHz, 1.5 s silence each side -> (clip, onset, offset)."""
    samples, rate = decode_wav(SPEECH_WAV.read_bytes(), max_bytes=50_000_000, max_seconds=60)
    audible = np.flatnonzero(np.abs(samples) > 0.01)
    onset, offset = audible[0] / rate + 1.5, (audible[-1] + 1) / rate + 1.5
    silence = np.zeros(24_000, np.float32)
    return np.concatenate([silence, resample(samples, rate), silence]), onset, offset


def test_segments_cover_the_spoken_part(vad: VadModel, spoken: tuple[np.ndarray, float, float]) -> None:
    clip, onset, offset = spoken
    result = speech_segments(clip, vad)
    assert result.duration_s == pytest.approx(len(clip) / 16_000)
    assert result.segments, "no speech found"
    assert abs(result.segments[0][0] - onset) < 0.3
    assert abs(result.segments[-1][1] - offset) < 0.3
    spoken_ratio = (offset - onset) / result.duration_s
    assert spoken_ratio - 0.2 < result.speech_ratio <= spoken_ratio + 0.1
    assert all(s < e for s, e in result.segments)
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(result.segments, result.segments[1:], strict=False))


def test_state_is_reset_per_clip(vad: VadModel, spoken: tuple[np.ndarray, float, float]) -> None:
    clip = spoken[0]
    first = vad.speech_probabilities(clip)
    vad.speech_probabilities(np.random.default_rng(1).standard_normal(8_000).astype(np.float32))
    np.testing.assert_array_equal(vad.speech_probabilities(clip), first)


def test_threads_share_one_model(vad: VadModel, spoken: tuple[np.ndarray, float, float]) -> None:
    # Without VadModel's lock, interleaved windows corrupt the state (measured).
    clip = spoken[0][: 16_000 * 4]
    want = vad.speech_probabilities(clip)
    results: list[np.ndarray] = []

    def work() -> None:
        results.append(vad.speech_probabilities(clip))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    for got in results:
        np.testing.assert_array_equal(got, want)


def test_silence_and_noise_have_no_speech(vad: VadModel) -> None:
    silence = np.zeros(16_000 * 3, np.float32)
    noise = (np.random.default_rng(0).standard_normal(16_000 * 3) * 0.1).astype(np.float32)
    for clip in (silence, noise):
        result = speech_segments(clip, vad)
        assert result.segments == []
        assert result.speech_ratio == 0.0


def _silero_get_speech_timestamps() -> Any:
    """silero's own utils_vad.get_speech_timestamps, without its package __init__."""
    path = models_dir() / "silero_vad" / "utils_vad.py"
    spec = importlib.util.spec_from_file_location("_silero_utils_vad", path)
    need(path.is_file(), f"silero-vad source not installed at {path}")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (ImportError, OSError, RuntimeError) as exc:
        missing(f"silero's utils_vad does not import: {exc!r}")
    return module.get_speech_timestamps


def test_agrees_with_silero_get_speech_timestamps(vad: VadModel, spoken: tuple[np.ndarray, float, float]) -> None:
    reference = _silero_get_speech_timestamps()
    clip = spoken[0]
    with torch.inference_mode():
        want = reference(torch.from_numpy(clip), torch.jit.load(str(shipped("silero_vad.jit"))))  # sample indices
    got = speech_segments(clip, vad).segments
    assert len(got) == len(want)
    for (start, end), ref in zip(got, want, strict=True):
        assert start == pytest.approx(ref["start"] / 16_000, abs=1e-3)
        assert end == pytest.approx(ref["end"] / 16_000, abs=1e-3)


# --- the ONNX form against the TorchScript form ---------------------------------

ONNX_PROB_TOLERANCE = 1e-4  # per window; measured 8e-7 on the spoken clip (build/voice_activity.py)


def test_onnx_probabilities_match_torchscript(
    ts_vad: VadModel, onnx_vad: VadModel, spoken: tuple[np.ndarray, float, float]
) -> None:
    noise = (np.random.default_rng(2).standard_normal(16_000 * 2) * 0.1).astype(np.float32)
    for clip in (spoken[0], noise, spoken[0][1000:37_123]):  # the last: an offset, a partial last window
        want, got = ts_vad.speech_probabilities(clip), onnx_vad.speech_probabilities(clip)
        assert got.shape == want.shape
        assert float(np.abs(got - want).max()) < ONNX_PROB_TOLERANCE
    assert ts_vad.speech_probabilities(spoken[0]).max() > 0.9  # the comparison covers speech, not just silence


def test_onnx_segments_equal_torchscript_segments(
    ts_vad: VadModel, onnx_vad: VadModel, spoken: tuple[np.ndarray, float, float]
) -> None:
    clip = spoken[0]
    for rules in (SegmentRules(), SegmentRules(threshold=0.3, min_silence_ms=20, speech_pad_ms=0)):
        want = speech_segments(clip, ts_vad, rules)
        assert want.segments
        assert speech_segments(clip, onnx_vad, rules) == want


def test_onnx_context_carries_across_windows(onnx_vad: VadModel, spoken: tuple[np.ndarray, float, float]) -> None:
    """Each window is scored with the 64 samples before it: cutting the clip into windows by hand, with
    no context, gives other probabilities (the driver does not drop the context)."""
    clip = spoken[0][: 512 * 100]
    session = onnx_vad.module.session
    sr, state = np.array(16_000, np.int64), np.zeros((2, 1, 128), np.float32)
    no_context = []
    for i in range(100):
        out, state = session(input=clip[None, i * 512 : (i + 1) * 512], state=state, sr=sr)
        no_context.append(float(out[0, 0]))
    assert float(np.abs(onnx_vad.speech_probabilities(clip) - np.array(no_context)).max()) > 1e-3


def test_onnx_clips_run_at_once_without_a_lock(onnx_vad: VadModel, spoken: tuple[np.ndarray, float, float]) -> None:
    """The ONNX driver keeps the state per call, so concurrent clips on one session do not interfere."""
    clips = [spoken[0][: 16_000 * 4], np.zeros(16_000 * 3, np.float32), spoken[0][8_000:]]
    want = [speech_probabilities(c, onnx_vad.module) for c in clips]
    results: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        results[k] = speech_probabilities(clips[k % 3], onnx_vad.module)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6
    for k, got in results.items():
        np.testing.assert_array_equal(got, want[k % 3])


def test_onnx_path_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "from edge_mm.runtime.silero_vad import SileroOnnx, speech_segments\n"
        "import edge_mm.runtime.voice_detector\n"
        f"m = SileroOnnx.load(Path({str(shipped('silero_vad.onnx'))!r}))\n"
        "speech_segments(np.zeros(16_000, np.float32), m)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
