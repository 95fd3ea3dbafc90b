"""The task table: every route, every model kind, and what loads and builds each kind.

Adding a task touches this table and the task's own module, nothing else: the API
registers routes from :data:`TASKS`, the registry loads runners with :data:`LOADERS`,
the build finds builders through :data:`MODEL_KINDS`, and settings are checked
against it by :func:`check_models`.
"""

from __future__ import annotations

from collections.abc import Iterable

from edge_mm.config import Settings
from edge_mm.errors import ConfigError
from edge_mm.runtime.face_detector import FaceDetector
from edge_mm.runtime.image_classifier import ImageClassifier
from edge_mm.runtime.object_detector import ObjectDetector
from edge_mm.runtime.text_model import TextModel
from edge_mm.runtime.voice_detector import VoiceDetector
from edge_mm.tasks import (
    deepstack,
    embeddings,
    face_detection,
    image_classification,
    image_embeddings,
    text_classification,
    token_classification,
    video,
    voice_activity,
    zero_shot_image,
    zero_shot_text,
)
from edge_mm.tasks.task import ModelKind, Task

_TEXT_BUILDER = "text:build_text_model"

MODEL_KINDS: dict[str, ModelKind] = {
    "embeddings": ModelKind(
        TextModel.load, _TEXT_BUILDER, "sentence embeddings (mean pooling + L2), also zero-shot text labels"
    ),
    "text-classification": ModelKind(TextModel.load, _TEXT_BUILDER, "a fine-tuned sequence classifier"),
    "token-classification": ModelKind(TextModel.load, _TEXT_BUILDER, "a fine-tuned token classifier (NER)"),
    "image-classification": ModelKind(
        ImageClassifier.load, "image_classifier:build_image_classifier", "ImageNet-style classifier and embeddings"
    ),
    "face-detection": ModelKind(FaceDetector.load, "face_vad:build_face_detector", "MTCNN face detection"),
    "voice-activity": ModelKind(VoiceDetector.load, "face_vad:build_voice_activity", "silero voice activity"),
    "zero-shot-image": ModelKind(
        zero_shot_image.load, "zero_shot_image:build_zero_shot_image", "ConSE or CLIP zero-shot image labels"
    ),
    "object-detection": ModelKind(
        ObjectDetector.load, "detection:build_object_detector", "DETR/YOLOS object detection (DeepStack)"
    ),
}

TASKS: tuple[Task, ...] = (
    embeddings.TASK,
    zero_shot_text.TASK,
    text_classification.TASK,
    token_classification.TASK,
    image_classification.TASK,
    image_embeddings.TASK,
    face_detection.TASK,
    zero_shot_image.TASK,
    voice_activity.TASK,
    video.TASK,
    *deepstack.TASKS,
)

LOADERS = {kind: k.load for kind, k in MODEL_KINDS.items()}


def routes_for(kind: str, tasks: Iterable[Task] = TASKS) -> list[str]:
    """The routes a model of ``kind`` serves."""
    return [route for t in tasks if kind in t.model_kinds for route in t.routes]


def check_models(settings: Settings) -> None:
    """Every configured model's ``task`` is a known model kind; ConfigError naming the entry otherwise."""
    for i, spec in enumerate(settings.models):
        if spec.task not in MODEL_KINDS:
            raise ConfigError(f"models[{i}].task: {spec.task!r} is not allowed; use one of {', '.join(MODEL_KINDS)}")


def check_table() -> None:
    """The table is consistent: kinds exist, routes are unique, every kind is served by a route."""
    routes = [r for t in TASKS for r in t.routes]
    if len(routes) != len(set(routes)):
        raise AssertionError(f"a route is declared twice: {sorted(routes)}")
    for t in TASKS:
        unknown = set(t.model_kinds) - set(MODEL_KINDS)
        if unknown:
            raise AssertionError(f"task {t.name} accepts unknown model kinds {sorted(unknown)}")
    unserved = [k for k in MODEL_KINDS if not routes_for(k)]
    if unserved:
        raise AssertionError(f"model kinds with no route: {unserved}")
