"""Loaded artifacts whose task is a pipeline around small nets: MTCNN faces, silero VAD, ConSE."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from edge_mm.errors import ConfigError
from edge_mm.manifest import ModelEntry, read_manifest
from edge_mm.runtime.artifacts import load_module
from edge_mm.runtime.probes import probe_audio, probe_pixels, probe_tensor
from edge_mm.tasks.face_pipeline import Face, detect_faces
from edge_mm.tasks.vad_pipeline import VadModel

NETS = ("pnet", "rnet", "onet")


def mtcnn_probe_outputs(nets: dict[str, Any], probes: list[dict[str, Any]], device: str = "cpu") -> list[torch.Tensor]:
    """Each probe ``{"net", "shape"}`` through its net -> all outputs flattened and concatenated (CPU float32)."""
    outs = []
    with torch.inference_mode():
        for p in probes:
            x = probe_tensor(*p["shape"]).to(device).contiguous(memory_format=torch.channels_last)
            outs.append(torch.cat([o.float().flatten().cpu() for o in nets[p["net"]](x)]))
    return outs


@dataclass
class FaceDetector:
    """MTCNN P/R/O-Net artifacts; :meth:`detect` is thread-safe (the nets keep no state)."""

    name: str
    entry: ModelEntry
    nets: dict[str, torch.jit.ScriptModule]
    device: str

    @classmethod
    def load(cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> FaceDetector:
        files = entry.variants[variant].files
        return cls(name, entry, {n: load_module(files[n].resolve(root), device) for n in NETS}, device)

    def detect(
        self, image: Image.Image, *, min_face_size: float, thresholds: tuple[float, float, float], max_side: int
    ) -> list[Face]:
        """Faces in pixels of ``image``; images longer than ``max_side`` px are searched at a smaller scale."""
        scale = min(1.0, max_side / max(image.size))
        if scale < 1.0:
            image = image.resize(
                (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR
            )
        pixels = np.asarray(image.convert("RGB"))
        faces = detect_faces(
            pixels,
            self.nets["pnet"],
            self.nets["rnet"],
            self.nets["onet"],
            min_face_size=max(1.0, min_face_size * scale),
            thresholds=thresholds,
            device=self.device,
        )
        if scale == 1.0:
            return faces
        return [
            Face(
                box=tuple(v / scale for v in f.box),
                confidence=f.confidence,  # type: ignore[arg-type]
                landmarks=tuple((x / scale, y / scale) for x, y in f.landmarks),
            )
            for f in faces
        ]

    def check_outputs(self, inputs: list[dict[str, Any]]) -> list[torch.Tensor]:
        return mtcnn_probe_outputs(self.nets, inputs, self.device)

    def warm(self) -> float:
        t0 = time.perf_counter()
        self.detect(
            Image.fromarray(probe_pixels(240, 320)), min_face_size=20, thresholds=(0.6, 0.7, 0.7), max_side=1280
        )
        return (time.perf_counter() - t0) * 1000


@dataclass
class VadRunner:
    """silero VAD behind :class:`VadModel`'s per-clip lock. Always on CPU (see the manifest note)."""

    name: str
    entry: ModelEntry
    vad: VadModel
    device: str = "cpu"

    @classmethod
    def load(cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> VadRunner:
        module = load_module(entry.variants[variant].files["model"].resolve(root), "cpu")
        return cls(name, entry, VadModel(module))

    def check_outputs(self, inputs: list[dict[str, float]]) -> list[torch.Tensor]:
        return [
            torch.from_numpy(self.vad.speech_probabilities(probe_audio(float(i["probe_audio_seconds"]))))
            for i in inputs
        ]

    def warm(self) -> float:
        t0 = time.perf_counter()
        self.vad.speech_probabilities(probe_audio(0.5))
        return (time.perf_counter() - t0) * 1000


@dataclass
class ConseModel:
    """ConSE: class-name embeddings (C, dim); the classifier and text model are served models named in options."""

    name: str
    entry: ModelEntry
    class_embeddings: torch.Tensor
    device: str = "cpu"

    @classmethod
    def load(cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> ConseModel:
        table = torch.from_numpy(np.load(entry.variants[variant].files["class_embeddings"].resolve(root)))
        _check_partners(name, entry, root, int(table.shape[0]))
        return cls(name, entry, table)

    @property
    def classifier(self) -> str:
        return str(self.entry.options["classifier"])

    @property
    def text_model(self) -> str:
        return str(self.entry.options["text_model"])

    def check_outputs(self, inputs: list[int]) -> list[torch.Tensor]:
        return [self.class_embeddings[i] for i in inputs]

    def warm(self) -> float:
        return 0.0


def _check_partners(name: str, entry: ModelEntry, root: Path, classes: int) -> None:
    """The classifier and text model ConSE relies on must be built, with matching class count."""
    models = read_manifest(root).models
    clf, txt = entry.options.get("classifier"), entry.options.get("text_model")
    c = models.get(str(clf))
    if c is None or c.task != "image-classification":
        raise ConfigError(
            f"model {name!r}: options.classifier {clf!r} is not an image-classification model in settings"
        )
    if len(c.labels or []) != classes:
        raise ConfigError(
            f"model {name!r}: classifier {clf!r} has {len(c.labels or [])} classes, the ConSE table {classes}; rebuild"
        )
    t = models.get(str(txt))
    if t is None or t.task != "embeddings":
        raise ConfigError(f"model {name!r}: options.text_model {txt!r} is not an embeddings model in settings")
    if t.source != entry.source:
        raise ConfigError(f"model {name!r}: source {entry.source!r} must be the text model's source {t.source!r}")
