"""The start-up fidelity gate: a model's int8 form re-measured on the CPU that serves it.

The build measures each int8 form against fp32 on the build machine and stores a small
sample of it with the artifacts (``fidelity.json``: inputs, fp32 outputs, the gates). Int8
kernels differ between CPUs (runtime/cpu_features.py), so before a model is served the
registry runs that sample through the variant it picked, here, against the same gates. On a
miss it takes the next variant of :func:`fallback_chain` (down to fp32 compute), logs why,
and ``/info`` and ``edge-mm check`` show every variant tried with its figures.

Pure numpy: the lite bundle (no torch) runs it too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_mm.manifest import ORT_7BIT_VARIANT, ORT_FP32_VARIANT, ORT_VARIANT, ModelEntry
from edge_mm.runtime.cpu_features import CpuInfo

FILE_KEY = "fidelity"  # the manifest's file key for the samples
# The order variants are tried in when the one picked misses: int8 forms first, fp32 compute last.
PREFERENCE = (ORT_VARIANT, ORT_7BIT_VARIANT, "cpu", ORT_FP32_VARIANT)


@dataclass
class Samples:
    """What ``fidelity.json`` holds: inputs as ``check_outputs`` takes them, fp32 outputs, the gates."""

    inputs: list[Any]
    fp32: list[Any]
    metric: str  # "cosine" (embeddings) or "classifier" (logits: top-1 agreement, max prob diff)
    gates: dict[str, float]
    labels: int | None = None  # classifier outputs carry features after the logits: the first ``labels`` are logits

    @classmethod
    def read(cls, path: Path) -> Samples:
        raw = json.loads(path.read_text())
        return cls(raw["inputs"], raw["fp32"], raw["metric"], raw["gates"], raw.get("labels"))

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), separators=(",", ":")))
        return path


@dataclass
class Verdict:
    """One variant measured on this CPU."""

    variant: str
    passes: bool
    figures: dict[str, float] = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)
    error: str | None = None


def figures(samples: Samples, outputs: Sequence[Any]) -> dict[str, float]:
    """The gate's figures for ``outputs`` (one per sample input) against the stored fp32 outputs."""
    if len(outputs) != len(samples.fp32):
        raise ValueError(f"{len(outputs)} outputs for {len(samples.fp32)} fidelity samples")
    if samples.metric == "cosine":
        ref = np.asarray(samples.fp32, dtype=np.float64)
        got = np.stack([np.asarray(o, dtype=np.float64) for o in outputs])
        cos = (ref * got).sum(-1) / np.maximum(np.linalg.norm(ref, axis=-1) * np.linalg.norm(got, axis=-1), 1e-12)
        return {"mean_cosine": round(float(cos.mean()), 6), "min_cosine": round(float(cos.min()), 6)}
    if samples.metric == "classifier":
        ref = np.concatenate([_logit_rows(r, samples.labels) for r in samples.fp32])
        got = np.concatenate([_logit_rows(o, samples.labels) for o in outputs])
        pr, pg = _softmax(ref), _softmax(got)
        return {
            "top1_agreement": round(float((pr.argmax(-1) == pg.argmax(-1)).mean()), 6),
            "max_prob_diff": round(float(np.abs(pr - pg).max()), 6),
        }
    raise ValueError(f"unknown fidelity metric {samples.metric!r}")


def _logit_rows(output: Any, labels: int | None) -> np.ndarray:
    """(rows, labels): one row for a sequence or image output (logits, then features), one per token for token logits."""
    x = np.asarray(output, dtype=np.float64)
    rows = x[None, :] if x.ndim == 1 else x.reshape(-1, x.shape[-1])
    return rows[:, :labels] if labels else rows


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def misses(samples: Samples, figs: dict[str, float]) -> list[str]:
    """The gates ``figs`` miss, as readable lines (empty: it passes)."""
    checks = {
        "min_mean_cosine": ("mean_cosine", ">="),
        "min_min_cosine": ("min_cosine", ">="),
        "min_top1_agreement": ("top1_agreement", ">="),
        "max_prob_diff": ("max_prob_diff", "<="),
    }
    out = []
    for gate, target in samples.gates.items():
        name, op = checks[gate]
        value = figs[name]
        if (value < target) if op == ">=" else (value > target):
            out.append(f"{name} {value} (needs {op} {target})")
    return out


def measure(samples: Samples, variant: str, check_outputs: Callable[[list[Any]], Sequence[Any]]) -> Verdict:
    """Run the samples through one loaded variant (``runner.check_outputs``) and judge it."""
    figs = figures(samples, check_outputs(samples.inputs))
    missed = misses(samples, figs)
    return Verdict(variant, not missed, figs, missed)


def path_variant(entry: ModelEntry, picked: str, cpu: CpuInfo) -> str:
    """The int8 form made for this CPU's kernels: the 7-bit one where 8-bit weights saturate (x86 without VNNI)."""
    if picked == ORT_VARIANT and cpu.saturating and ORT_7BIT_VARIANT in entry.variants:
        return ORT_7BIT_VARIANT
    return picked


def fallback_chain(entry: ModelEntry, picked: str, setting: str) -> list[str]:
    """The CPU variants to try: ``picked`` first, then the others of its backend, then the rest (by :data:`PREFERENCE`).

    Same backend first: a server whose models all run on ONNX Runtime keeps torch out of memory
    when one of them falls back. ``artifact_backend = onnxruntime`` never tries TorchScript
    (a torch-free bundle has no torch).
    """
    backend = entry.variants[picked].backend
    rest = [v for v in PREFERENCE if v != picked and v in entry.variants]
    rest.sort(key=lambda v: entry.variants[v].backend != backend)  # stable: PREFERENCE within each group
    if setting == "onnxruntime":
        rest = [v for v in rest if entry.variants[v].backend == "onnxruntime"]
    return [picked, *rest]
