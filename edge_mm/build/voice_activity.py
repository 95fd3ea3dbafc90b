"""Build silero voice activity: the shipped TorchScript module and the shipped silero_vad.onnx, verified
against each other, timed side by side, one chosen to serve (``artifact_backend``).

Both files come in the silero-vad package and hold the same network. ``silero_vad.onnx`` is
the one silero's own ``load_silero_vad(onnx=True)`` loads: inputs ``input`` (1, 64 + 512),
``state`` (2, 1, 128) and ``sr``; outputs the probability and the new state. Its driver
(runtime/silero_vad.py ``SileroOnnx``) keeps state and context as silero's ``OnnxWrapper``
does. Nothing is exported or quantized: the graph is copied as shipped and must reproduce
the TorchScript probabilities (:data:`PROB_TOLERANCE`) and segments on the sample audio.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_mm.build import onnx_backend
from edge_mm.build.errors import BuildError
from edge_mm.build.manifest_entry import built_entry, file_ref, write_reference
from edge_mm.build.progress import Progress
from edge_mm.config import ModelSpec
from edge_mm.errors import ConfigError
from edge_mm.manifest import NO_CUDA_KEY, ORT_VARIANT, ModelEntry, Variant
from edge_mm.runtime.artifacts import load_module
from edge_mm.runtime.probes import probe_audio
from edge_mm.runtime.silero_vad import SileroOnnx, speech_probabilities, speech_segments

VAD_RATE = 16_000
VAD_WINDOW = 512
ONNX_NAME = "silero_vad.onnx"  # beside silero_vad.jit in the package's data folder
PROB_TOLERANCE = 1e-4  # max |p_onnx - p_torchscript| per window (measured 8e-7 on speech.wav)
LATENCY_ROUNDS = {"sample_audio": 5}  # timed passes over the sample clip, the backends alternating
CRITERION = "median time to score the sample audio (ms per second of audio), as served; a tie serves TorchScript"


def sample_audio() -> np.ndarray:
    """The build's clip (7 s at 16 kHz): silence, the gliding tone of `edge-mm check`, white noise, silence."""
    noise = (np.random.default_rng(0).standard_normal(VAD_RATE) * 0.1).astype(np.float32)
    silence = np.zeros(VAD_RATE, np.float32)
    return np.concatenate([silence, probe_audio(4.0), noise, silence])


def build_voice_activity(spec: ModelSpec, source: Path, out: Path, progress: Progress) -> ModelEntry:
    t0 = time.perf_counter()
    jit = source / "silero_vad.jit" if source.is_dir() else source
    if not jit.is_file():
        raise ConfigError(f"model {spec.name}: {jit} not found; point source at silero_vad/data/silero_vad.jit")
    target = out / "silero_vad.jit"
    shutil.copyfile(jit, target)
    module = load_module(target, "cpu")
    rng = np.random.default_rng(0)
    silence = np.zeros(VAD_RATE * 2, np.float32)
    noise = (rng.standard_normal(VAD_RATE * 2) * 0.1).astype(np.float32)
    figures: dict[str, Any] = {
        "silence_max_prob": round(float(speech_probabilities(silence, module, VAD_WINDOW).max()), 4),
        "white_noise_max_prob": round(float(speech_probabilities(noise, module, VAD_WINDOW).max()), 4),
        NO_CUDA_KEY: "silero VAD serves on CPU only: stateful 32 ms windows, one clip at a time",
    }
    if figures["silence_max_prob"] >= 0.5:
        raise BuildError(f"model {spec.name}: silence scores {figures['silence_max_prob']} >= 0.5: not a VAD model?")
    progress(
        f"silero VAD copied (silence max p {figures['silence_max_prob']}, noise max p {figures['white_noise_max_prob']})"
    )
    notes = ["shipped TorchScript, unchanged", "CPU only: stateful 32 ms windows, one clip at a time"]
    variants = {"cpu": Variant(files={"model": file_ref(target, out)}, dtype="float32", notes=notes)}
    candidates = {"torchscript": onnx_backend.Candidate("cpu", True)}
    runs: dict[str, Any] = {"torchscript": module}
    if spec.artifact_backend != "torchscript":
        candidate, onnx = _onnx_candidate(spec, jit.parent / ONNX_NAME, out, module, figures)
        candidates["onnxruntime"] = candidate
        if onnx is not None:
            variants[ORT_VARIANT] = Variant(
                files={"model": file_ref(out / ONNX_NAME, out)},
                dtype="float32",
                notes=["shipped silero_vad.onnx, unchanged (opset 16)", "numpy driver: state passed per window"],
                backend="onnxruntime",
            )
            runs["onnxruntime"] = onnx
        refused = f" refused: {'; '.join(candidate.misses)}" if candidate.misses else ""
        progress(f"onnxruntime {candidate.fidelity}{refused}")
    backends = _decide(spec, candidates, runs, figures)
    progress(f"serves {backends['serves']}: {backends['reason']}")
    serving = runs[backends["serves"]]
    probe = speech_probabilities(probe_audio(1.0), serving, VAD_WINDOW)
    reference = write_reference(out / "reference.json", [{"probe_audio_seconds": 1.0}], [probe.tolist()])
    return built_entry(
        spec,
        t0,
        figures,
        variants=variants,
        inputs=[{"name": "audio", "dtype": "float32", "shape": [1, VAD_WINDOW], "sample_rate": VAD_RATE}],
        outputs=[{"name": "speech_probability", "dtype": "float32", "shape": [1, 1]}],
        preprocessing={"sample_rate": VAD_RATE, "window": VAD_WINDOW, "mono": True},
        files={"reference": reference},
        options=dict(spec.options),
        backends=backends,
    )


def _onnx_candidate(
    spec: ModelSpec, shipped: Path, out: Path, module: Any, figures: dict[str, Any]
) -> tuple[onnx_backend.Candidate, SileroOnnx | None]:
    """The shipped ONNX graph, copied and checked against the TorchScript module on the sample audio.

    A miss is a refusal under ``auto`` and a BuildError under ``artifact_backend = onnxruntime``.
    """
    strict = spec.artifact_backend == "onnxruntime"
    if not shipped.is_file():
        why = f"no {ONNX_NAME} beside {shipped.parent / 'silero_vad.jit'}"
        if strict:
            raise BuildError(f"model {spec.name}: artifact_backend = onnxruntime, but {why}")
        return onnx_backend.Candidate(ORT_VARIANT, False, [why]), None
    target = out / ONNX_NAME
    shutil.copyfile(shipped, target)
    onnx = SileroOnnx.load(target)
    clip = sample_audio()
    want, got = speech_probabilities(clip, module, VAD_WINDOW), speech_probabilities(clip, onnx, VAD_WINDOW)
    segments = speech_segments(clip, onnx).segments
    fidelity = {
        "prob_max_abs": float(np.abs(got - want).max()),
        "segments_equal": float(segments == speech_segments(clip, module).segments),
        "windows": float(len(want)),
    }
    figures["onnxruntime"] = {
        **_versions(target),
        "vs_torchscript": fidelity,
        "tolerance": PROB_TOLERANCE,
        "sample_segments_s": [list(s) for s in segments],  # the tone at 1-5 s scores as speech for about 0.5 s
    }
    misses = []
    if fidelity["prob_max_abs"] > PROB_TOLERANCE:
        misses.append(f"speech probabilities differ by {fidelity['prob_max_abs']:.2e} > {PROB_TOLERANCE:.0e}")
    if not fidelity["segments_equal"]:
        misses.append("speech segments differ from TorchScript's on the sample audio")
    figures["onnxruntime"]["misses"] = misses
    if misses:
        target.unlink()
        if strict:
            raise BuildError(f"model {spec.name}: artifact_backend = onnxruntime, but {'; '.join(misses)}")
        return onnx_backend.Candidate(ORT_VARIANT, False, misses, fidelity), None
    return onnx_backend.Candidate(ORT_VARIANT, True, [], fidelity), onnx


def _versions(onnx_path: Path) -> dict[str, str]:
    """ONNX Runtime's version and the shipped graph's opset (it is not exported here)."""
    import onnx

    opset = max(
        o.version
        for o in onnx.load(str(onnx_path), load_external_data=False).opset_import
        if o.domain in ("", "ai.onnx")
    )
    return {"onnxruntime_version": onnx_backend.versions()["onnxruntime_version"], "opset": str(opset)}


def _decide(
    spec: ModelSpec, candidates: dict[str, onnx_backend.Candidate], runs: dict[str, Any], figures: dict[str, Any]
) -> dict[str, Any]:
    """Time every passing backend on the sample clip as it is served (TorchScript at the build's threads,
    ONNX Runtime at one), alternating, and return the ``backends`` record."""
    clip = sample_audio()
    timed = {
        name: (lambda c, m=module: speech_probabilities(c, m, VAD_WINDOW), {"sample_audio": (clip,)})
        for name, module in runs.items()
        if candidates[name].passes
    }
    threads = onnx_backend.build_threads()
    seconds = len(clip) / VAD_RATE
    for name, latency in onnx_backend.measure_latency(timed, threads, LATENCY_ROUNDS).items():
        candidates[name].latency_ms = {"per_audio_second": round(latency["sample_audio"] / seconds, 3)}
    versions = {k: figures["onnxruntime"][k] for k in ("onnxruntime_version", "opset")} if "onnxruntime" in runs else {}
    extra = {"criterion": CRITERION, **versions}
    try:
        return onnx_backend.backends_record(spec.artifact_backend, candidates, threads, extra)
    except ValueError as exc:
        raise BuildError(f"model {spec.name}: {exc}") from None
