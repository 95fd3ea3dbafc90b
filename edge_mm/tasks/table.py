"""The task table: every route, every model kind, and what loads and builds each kind.

Adding a task touches this table and the task's own module, nothing else: the API
registers routes from :data:`TASKS`, the registry loads runners with :data:`LOADERS`
and serves each model's options from settings as :data:`OPTIONS` declares them, the build
finds builders through :data:`MODEL_KINDS` (and what it fingerprints), and settings are
checked against it by :func:`check_models`.

Loaders are named ``"module:Class.method"`` under ``edge_mm.runtime`` and imported when a
model of that kind loads: the task table itself imports no model code, so a server whose
every model runs on ONNX Runtime never imports torch (the lite bundle has none).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edge_mm.config import Settings, settings_markdown
from edge_mm.errors import ConfigError
from edge_mm.runtime.options import KindOptions, serve_time
from edge_mm.tasks import (
    custom_detection,
    deepstack,
    detection,
    embeddings,
    face_detection,
    face_recognition,
    image_classification,
    image_embeddings,
    object_detection,
    ocr,
    text_classification,
    token_classification,
    video,
    vision_ocr,
    voice_activity,
    zero_shot_image,
    zero_shot_text,
)
from edge_mm.tasks.task import ModelKind, Task


@dataclass(frozen=True)
class RuntimeLoader:
    """A runner's loader named ``"module:Class.method"`` under ``edge_mm.runtime``, imported on first call."""

    target: str

    def resolve(self) -> Any:
        module, _, attr = self.target.partition(":")
        found: Any = importlib.import_module(f"edge_mm.runtime.{module}")
        for part in attr.split("."):
            found = getattr(found, part)
        return found

    def __call__(self, name: str, entry: Any, root: Any, device: str, variant: str, max_batch: int) -> Any:
        return self.resolve()(name, entry, root, device, variant, max_batch)


_TEXT_BUILDER = "text:build_text_model"
_TEXT_LOADER = RuntimeLoader("text_model:TextModel.load")

# ``build_options``: what each builder reads from ``options`` (None: the builder derives it, e.g.
# pooling from the checkpoint's 1_Pooling config, labels from the checkpoint or ImageNet's).
MODEL_KINDS: dict[str, ModelKind] = {
    "embeddings": ModelKind(
        _TEXT_LOADER,
        _TEXT_BUILDER,
        "sentence embeddings (mean pooling + L2), also zero-shot text labels",
        options=zero_shot_text.ServeOptions,
        build_options={"pooling": None},
    ),
    "text-classification": ModelKind(
        _TEXT_LOADER, _TEXT_BUILDER, "a fine-tuned sequence classifier", options=text_classification.ServeOptions
    ),
    "token-classification": ModelKind(
        _TEXT_LOADER, _TEXT_BUILDER, "a fine-tuned token classifier (NER)", options=token_classification.ServeOptions
    ),
    "image-classification": ModelKind(
        RuntimeLoader("image_classifier:ImageClassifier.load"),
        "image_classifier:build_image_classifier",
        "ImageNet-style classifier and embeddings",
        options=image_classification.ServeOptions,
        build_options={
            "arch": None,
            "labels": None,
            "resize_short": 256,
            "crop": 224,
            "mean": None,
            "std": None,
            "interpolation": "bilinear",
        },
    ),
    "face-detection": ModelKind(
        RuntimeLoader("face_detector:FaceDetector.load"),
        "face_detector:build_face_detector",
        "MTCNN face detection",
        options=face_detection.ServeOptions,
    ),
    "face-recognition": ModelKind(
        RuntimeLoader("face_recognizer:FaceRecognizer.load"),
        "face_recognition:build_face_recognition",
        "dlib face descriptors (faces found by a face-detection model) and a store of registered faces",
        options=face_recognition.ServeOptions,
    ),
    "voice-activity": ModelKind(
        RuntimeLoader("voice_detector:VoiceDetector.load"),
        "voice_activity:build_voice_activity",
        "silero voice activity",
        options=voice_activity.ServeOptions,
    ),
    "zero-shot-image": ModelKind(
        zero_shot_image.load,
        "zero_shot_image:build_zero_shot_image",
        "ConSE or CLIP zero-shot image labels",
        options=zero_shot_image.ServeOptions,
        build_options={"classifier": None, "text_model": None, "class_names": None, "class_template": "{}"},
    ),
    "object-detection": ModelKind(
        RuntimeLoader("object_detector:ObjectDetector.load"),
        "detection:build_object_detector",
        "DETR/YOLOS object detection (DeepStack)",
        options=object_detection.ServeOptions,
        build_options={"image_size": 512},
    ),
    "ocr": ModelKind(
        RuntimeLoader("ocr:OcrReader.load"),
        "ocr:build_ocr",
        "PP-OCRv6 text detection + recognition (rapidocr's shipped ONNX graphs)",
        options=ocr.ServeOptions,
    ),
    "yolo-detection": ModelKind(
        RuntimeLoader("yolo_detector:YoloDetector.load"),
        "yolo:build_yolo_detector",
        "your own detector: an Ultralytics YOLOv5 or YOLOv8/11 ONNX export (CodeProject.AI custom, DeepStack)",
        options=custom_detection.ServeOptions,
        build_options={"labels": None, "image_size": 640},
    ),
    "ssd-detection": ModelKind(
        RuntimeLoader("ssd_detector:SsdDetector.load"),
        "ssd:build_ssd_detector",
        "COCO detection from a TF Object Detection API frozen graph (SSD MobileNet v2), converted to ONNX (DeepStack)",
        options=object_detection.SsdServeOptions,
    ),
}

ALL_TASKS: tuple[Task, ...] = (
    embeddings.TASK,
    zero_shot_text.TASK,
    text_classification.TASK,
    token_classification.TASK,
    image_classification.TASK,
    image_embeddings.TASK,
    face_detection.TASK,
    detection.TASK,
    ocr.TASK,
    vision_ocr.TASK,
    custom_detection.TASK,
    zero_shot_image.TASK,
    voice_activity.TASK,
    video.TASK,
    *deepstack.TASKS,
    *face_recognition.TASKS,
)


def decodable(task: Task) -> bool:
    """False for a task whose media decoder is not installed: video needs PyAV, which the lite bundle leaves out."""
    return "video" not in task.media or importlib.util.find_spec("av") is not None


TASKS: tuple[Task, ...] = tuple(t for t in ALL_TASKS if decodable(t))  # the routes this installation serves

LOADERS = {kind: k.load for kind, k in MODEL_KINDS.items()}
OPTIONS = {kind: KindOptions(k.options, k.build_options) for kind, k in MODEL_KINDS.items()}


def routes_for(kind: str, tasks: Iterable[Task] = TASKS) -> list[str]:
    """The routes a model of ``kind`` serves."""
    return [route for t in tasks if kind in t.model_kinds for route in t.routes]


def settings_doc() -> str:
    """docs/settings.md: the settings tables, the model kinds and each kind's options."""
    rows: list[tuple[str, str, str, Any, str]] = []
    for kind, k in MODEL_KINDS.items():
        for key, info in k.options.model_fields.items():
            rows.append((kind, key, "serve", info.default, info.description or ""))
        builder = k.builder.split(":")[0]
        rows += [(kind, key, "build", d, f"read by edge_mm/build/{builder}.py") for key, d in k.build_options.items()]
    return settings_markdown({kind: k.help for kind, k in MODEL_KINDS.items()}, rows)


def check_models(settings: Settings) -> None:
    """Every configured model's ``task`` is a known model kind and its ``options`` are that kind's, with
    valid serve-time values; ConfigError naming the entry otherwise (before a build or a serve)."""
    for i, spec in enumerate(settings.models):
        if spec.task not in MODEL_KINDS:
            raise ConfigError(f"models[{i}].task: {spec.task!r} is not allowed; use one of {', '.join(MODEL_KINDS)}")
        serve_time(spec.name, spec.task, spec.options, OPTIONS[spec.task])


def check_table() -> None:
    """The table is consistent: kinds exist, routes are unique, every kind is served by a route."""
    routes = [r for t in ALL_TASKS for r in t.routes]
    if len(routes) != len(set(routes)):
        raise AssertionError(f"a route is declared twice: {sorted(routes)}")
    for t in ALL_TASKS:
        unknown = set(t.model_kinds) - set(MODEL_KINDS)
        if unknown:
            raise AssertionError(f"task {t.name} accepts unknown model kinds {sorted(unknown)}")
    unserved = [k for k in MODEL_KINDS if not routes_for(k, ALL_TASKS)]
    if unserved:
        raise AssertionError(f"model kinds with no route: {unserved}")
    for kind in MODEL_KINDS.values():
        if isinstance(kind.load, RuntimeLoader):
            kind.load.resolve()  # a misspelt loader fails here, not when a model of that kind first loads
