"""Loaders for the image, face, audio and zero-shot tasks, and the routes each task serves
(runtime/registry.py picks both up)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_mm.errors import ConfigError
from edge_mm.manifest import ModelEntry
from edge_mm.runtime.image_models import ClipModel, ImageClassifier, ObjectDetector
from edge_mm.runtime.pipeline_models import ConseModel, FaceDetector, VadRunner


def load_zero_shot_image(name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> Any:
    method = entry.options.get("method")
    if method == "clip":
        return ClipModel.load(name, entry, root, device, variant, max_batch)
    if method == "conse":
        return ConseModel.load(name, entry, root, device, variant, max_batch)
    raise ConfigError(f"model {name!r}: unknown zero-shot-image method {method!r}; rebuild")


VISION_LOADERS = {
    "image-classification": ImageClassifier.load,
    "face-detection": FaceDetector.load,
    "voice-activity": VadRunner.load,
    "zero-shot-image": load_zero_shot_image,
    "object-detection": ObjectDetector.load,
}

# API route name -> the model tasks that serve it.
VISION_ROUTES: dict[str, tuple[str, ...]] = {
    "image-classification": ("image-classification",),
    "image-embeddings": ("image-classification",),
    "face-detection": ("face-detection",),
    "zero-shot-image-classification": ("zero-shot-image",),
    "voice-activity": ("voice-activity",),
    "object-detection": ("object-detection",),
    "vision/face": ("face-detection",),
    "vision/scene": ("image-classification",),
    "vision/detection": ("object-detection",),
}
