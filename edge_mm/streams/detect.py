"""A stream's inference: the served models, through their admission, after REST requests.

Object and face detection give boxes; image classification gives its top label as one object covering the
whole frame (zones do not apply to it); OCR gives each text line as a ``text`` object whose box is its
polygon's bounding box, the text read carried along.

Streams together hold at most ``max_in_flight - 1`` of a model's slots (one always stays free for
REST); a stream waits for another stream's turn at most ``wait_s`` (its frame interval), then takes a
model slot only when one is free now and no request is queued for it (``Admission.try_slot``): it never
waits behind REST. Otherwise the frame is skipped and counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from edge_mm.errors import Unprocessable
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.registry import Registry, Served
from edge_mm.tasks import face_detection, face_recognition, image_classification, object_detection, ocr

FACE = "face"  # the label of a face-detection box
TEXT = "text"  # the label of an OCR line
MAX_OBJECTS = 100


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max px
    userid: str | None = None  # a face a face-recognition model recognised
    text: str | None = None  # an OCR line's text
    whole_frame: bool = False  # an image classification: the box is the frame, zones do not apply

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])

    @property
    def bottom_centre(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, self.box[3])


class StreamGate:
    """Per model, how many slots streams may hold together: one less than its concurrent inferences (at
    least 1). ``concurrent``: the server's concurrent inferences per model (a micro-batched model admits
    more requests than that to fill batches; streams do not count on those)."""

    def __init__(self, concurrent: int | None = None) -> None:
        self.concurrent = concurrent
        self._lock = threading.Lock()
        self._gates: dict[str, threading.Semaphore] = {}

    def semaphore(self, served: Served) -> threading.Semaphore:
        with self._lock:
            gate = self._gates.get(served.name)
            if gate is None:
                slots = served.admission.max_in_flight
                if self.concurrent:
                    slots = min(slots, self.concurrent)
                gate = self._gates[served.name] = threading.Semaphore(max(1, slots - 1))
            return gate


def pick_models(
    registry: Registry,
    tasks: Sequence[str] | None,
    face_model: str | None,
    object_model: str | None,
    recognition_model: str | None = None,
    classification_model: str | None = None,
    ocr_model: str | None = None,
) -> list[Served]:
    """The served models a stream runs, in order (face detection before recognition); 422 when a task
    or named model is not served."""
    wanted = list(tasks) if tasks is not None else None
    if wanted is None:
        wanted = ["face-detection"]
        if object_model or any(s.kind in object_detection.KINDS for s in registry.models.values()):
            wanted.append("object-detection")
    if "face-recognition" in wanted:  # recognition describes the faces detection found
        wanted = ["face-detection", *(t for t in wanted if t != "face-detection")]
    out = []
    for task in dict.fromkeys(wanted):
        kinds, name = {
            "face-detection": (face_detection.KINDS, face_model),
            "face-recognition": (face_recognition.KINDS, recognition_model),
            "image-classification": (image_classification.KINDS, classification_model),
            "ocr": (ocr.KINDS, ocr_model),
        }.get(task, (object_detection.KINDS, object_model))
        found = [s for s in registry.models.values() if s.kind in kinds and (name is None or s.name == name)]
        if not found:
            raise Unprocessable(
                f"no {task} model{f' named {name!r}' if name else ''} is served here; GET /v1/models lists them"
            )
        out.append(found[0])
    return out


def models_for(registry: Registry, spec: Any) -> list[Served]:
    """:func:`pick_models` for a :class:`~edge_mm.streams.spec.StreamSpec`."""
    return pick_models(
        registry,
        spec.tasks,
        spec.face_model,
        spec.object_model,
        spec.recognition_model,
        spec.classification_model,
        spec.ocr_model,
    )


def _recognise(served: Served, image: Image.Image, faces: list[Detection]) -> list[Detection]:
    """``faces`` with the userid of each one within the model's ``threshold`` of a registered face."""
    import numpy as np

    store = served.runner.store
    if store is None or not faces:
        return faces
    threshold = float(served.options.get("threshold", 0.6))
    descriptors = served.runner.descriptors(np.asarray(image), [f.box for f in faces])
    out = []
    for f, d in zip(faces, descriptors, strict=True):
        match = store.nearest(d)
        known = match is not None and match.distance <= threshold
        out.append(Detection(f.label, f.score, f.box, match.userid if known and match is not None else None))
    return out


def _run(
    served: Served, image: Image.Image, min_confidence: float, deadline: Deadline, found: list[Detection]
) -> list[Detection]:
    """``served``'s detections; a face-recognition model returns ``found`` with the faces' userids."""
    if served.kind in face_recognition.KINDS:
        faces = [d for d in found if d.label == FACE]
        return [d for d in found if d.label != FACE] + _recognise(served, image, faces)
    if served.kind in face_detection.KINDS:
        options = face_detection.parse_options({"min_confidence": min_confidence}, served.options)
        return [
            Detection(FACE, float(f.confidence), _box(f.box))
            for f in face_detection.detect(served.runner, image, options, deadline)
        ]
    if served.kind in image_classification.KINDS:
        ((logits, _),) = served.runner.classify([image], deadline)
        (top,) = image_classification.top_labels(logits, served.runner.labels, 1)
        if top["score"] < min_confidence:
            return []
        box = (0.0, 0.0, float(image.width), float(image.height))
        return [Detection(str(top["label"]), float(top["score"]), box, whole_frame=True)]
    if served.kind in ocr.KINDS:
        lines = ocr.read(served.runner, image, ocr.parse_options({}, served.options), deadline)
        out = []
        for line in lines:
            if line.score < min_confidence:
                continue
            xs, ys = [x for x, _ in line.box], [y for _, y in line.box]
            out.append(Detection(TEXT, float(line.score), (min(xs), min(ys), max(xs), max(ys)), text=line.text))
        return out[:MAX_OBJECTS]
    (objects,) = object_detection.detect(served.runner, [image], min_confidence, MAX_OBJECTS, deadline, served.options)
    return [
        Detection(str(d["label"]), float(d["confidence"]), (d["x_min"], d["y_min"], d["x_max"], d["y_max"]))
        for d in objects
    ]


def detect(
    models: list[Served],
    gate: StreamGate,
    image: Image.Image,
    min_confidence: float,
    budget_s: float,
    wait_s: float = 0.0,
) -> tuple[list[Detection], float] | None:
    """Every model's detections on ``image`` and the ms spent in their slots, or None (skipped) when any
    model had no slot to spare (``wait_s``: how long to wait for other streams' turns, s)."""
    out: list[Detection] = []
    ms = 0.0
    for served in models:
        sem = gate.semaphore(served)
        turn = sem.acquire(timeout=wait_s) if wait_s > 0 else sem.acquire(blocking=False)
        if not turn:
            return None
        try:
            with served.admission.try_slot() as got:
                if not got:
                    return None
                t0 = time.perf_counter()
                found = _run(served, image, min_confidence, Deadline.after(budget_s), out)
                out = found if served.kind in face_recognition.KINDS else out + found
                ms += (time.perf_counter() - t0) * 1000
        finally:
            sem.release()
    return out, ms


def _box(box: Any) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return x1, y1, x2, y2
