"""Face recognition against a store of registered faces: register, recognize, list, delete.

Faces are found by the face-detection (MTCNN) model the recognition model names in ``detector``,
then aligned and described by dlib (runtime/face_recognizer.py); the 128-d descriptors are kept
in SQLite (runtime/face_store.py, the ``runtime.faces_db`` setting), never the photos. A face
is a registered user's when its nearest descriptor is within ``threshold`` (Euclidean, 0.6 by
default); its confidence is ``1 - distance``, clipped to [0, 1]; else it is ``"unknown"``.

Two dialects over the same work: the native ``/v1/faces/*`` (JSON or multipart) and DeepStack's
``/v1/vision/face/{register,recognize,list,delete}`` with its answer shapes.
A registration is answered only once it is committed to disk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from edge_mm.errors import BadInput, NotFound, RequestTooLarge, Unprocessable
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.face_store import MAX_USERID_CHARS
from edge_mm.runtime.model_calls import Models
from edge_mm.runtime.registry import Served
from edge_mm.tasks import face_detection
from edge_mm.tasks.payload import Images, Limits, Payload, images_from
from edge_mm.tasks.schemas import ImageInput, ModelOptions, Options, Strict, validate
from edge_mm.tasks.task import Task

if TYPE_CHECKING:
    from edge_mm.runtime.face_recognizer import FaceRecognizer
    from edge_mm.runtime.face_store import FaceStore
    from edge_mm.runtime.mtcnn import Face

KINDS = ("face-recognition",)
NATIVE = "/v1/faces"
DEEPSTACK = "/v1/vision/face"


class ServeOptions(ModelOptions):
    """A face-recognition model's serve-time options (settings)."""

    detector: str = Field("mtcnn", min_length=1, description="the face-detection model that finds the faces")
    threshold: float = Field(0.6, gt=0, le=2, description="largest Euclidean distance to a registered face")


class Body(Options, ImageInput):
    model_config = Strict.model_config
    userid: str | None = Field(None, description="register, delete: the user's id")
    min_confidence: float | None = Field(None, ge=0, le=1, description="recognize: faces below are 'unknown'")
    api_key: str | None = Field(None, description="DeepStack's form field for the API key")


class Answer(BaseModel):
    model: str


class DeepStackAnswer(BaseModel):
    success: Literal[True]


@dataclass(frozen=True)
class Request:
    op: str  # register, recognize, list, delete
    model: Served
    images: Images | None
    userid: str | None
    min_confidence: float


def _userid(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):  # a form field "42" arrives as a number
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise Unprocessable("'userid' is required: a non-empty string")
    if len(value) > MAX_USERID_CHARS:
        raise RequestTooLarge(f"'userid' is {len(value)} characters; the limit is {MAX_USERID_CHARS}")
    return value


def _images(payload: Payload, limits: Limits) -> Images:
    """Uploads in fields ``image``, ``images`` or DeepStack's ``image1``, ``image2``...; else base64 JSON."""
    uploads = tuple(
        dataclasses.replace(u, field="image") if u.field.startswith("image") else u for u in payload.uploads
    )
    return images_from(dataclasses.replace(payload, uploads=uploads), limits)


def parser(op: str, route: str) -> Callable[[Payload, Limits, Models], Request]:
    def parse(payload: Payload, limits: Limits, models: Models) -> Request:
        fields = {k: v for k, v in payload.fields.items() if k != "userid"}
        body = validate(Body, fields)
        served = models.get(KINDS, route, payload.model_name())
        userid = _userid(payload.fields.get("userid")) if op in ("register", "delete") else None
        images = _images(payload, limits) if op in ("register", "recognize") else None
        return Request(op, served, images, userid, body.min_confidence or 0.0)

    return parse


def store_of(served: Served) -> FaceStore:
    store = served.runner.store
    if store is None:  # a runner loaded outside load_registry
        raise NotFound(f"model {served.name!r} has no face store open")
    return store


def faces_and_descriptors(
    models: Models, request: Request, route: str, deadline: Deadline
) -> list[tuple[tuple[int, int], list[Face], list[np.ndarray]]]:
    """Per image: (width, height), its faces (MTCNN), each face's descriptor (dlib)."""
    recognizer: FaceRecognizer = request.model.runner
    detector = models.get(face_detection.KINDS, route, recognizer.detector)
    options = face_detection.parse_options({}, detector.options)
    images = request.images
    assert images is not None

    def find(model: Any) -> list[tuple[np.ndarray, list[Face]]]:
        return [(np.asarray(im), face_detection.detect(model, im, options, deadline)) for im in images.decode()]

    found = models.call(detector, deadline, find)

    def describe(model: FaceRecognizer) -> list[list[np.ndarray]]:
        return [model.descriptors(rgb, [f.box for f in faces]) for rgb, faces in found]

    descs = models.call(request.model, deadline, describe)
    return [((rgb.shape[1], rgb.shape[0]), faces, d) for (rgb, faces), d in zip(found, descs, strict=True)]


def _area(face: Face) -> float:
    return (face.box[2] - face.box[0]) * (face.box[3] - face.box[1])


def register(models: Models, request: Request, route: str, deadline: Deadline) -> tuple[int, list[str]]:
    """Registers the largest face of each image; (descriptors stored, notes). 400 when an image has no face."""
    assert request.userid is not None
    chosen, notes = [], []
    for i, (_, faces, descs) in enumerate(faces_and_descriptors(models, request, route, deadline)):
        if not faces:
            raise BadInput(f"image {i + 1}: no face found; nothing was registered")
        k = max(range(len(faces)), key=lambda j: _area(faces[j]))
        if len(faces) > 1:
            notes.append(f"image {i + 1}: {len(faces)} faces found; the largest was registered")
        chosen.append(descs[k])
    store_of(request.model).add(request.userid, chosen)
    return len(chosen), notes


def recognize(models: Models, request: Request, route: str, deadline: Deadline) -> list[dict[str, Any]]:
    store = store_of(request.model)
    threshold = float(request.model.options.get("threshold", 0.6))
    results = []
    for (width, height), faces, descs in faces_and_descriptors(models, request, route, deadline):
        found = []
        for face, d in zip(faces, descs, strict=True):
            match = store.nearest(d)
            confidence = 0.0 if match is None else float(np.clip(1.0 - match.distance, 0.0, 1.0))
            known = match is not None and match.distance <= threshold and confidence >= request.min_confidence
            found.append(
                {
                    "userid": match.userid if known and match is not None else "unknown",
                    "confidence": round(confidence, 6) if known else 0.0,
                    "distance": None if match is None else round(match.distance, 6),
                    "box": [round(v, 1) for v in face.box],
                }
            )
        results.append({"width": width, "height": height, "faces": found})
    return results


def _not_registered(request: Request) -> NotFound:
    return NotFound(f"userid {request.userid!r} is not registered")


def run_native(models: Models, request: Request, deadline: Deadline) -> dict[str, Any]:
    route = f"{NATIVE}/{request.op}"
    answer: dict[str, Any] = {"model": request.model.name}
    if request.op == "register":
        n, notes = register(models, request, route, deadline)
        return {**answer, "userid": request.userid, "registered": n, "notes": notes}
    if request.op == "recognize":
        return {**answer, "results": recognize(models, request, route, deadline)}
    store = store_of(request.model)
    if request.op == "list":
        return {**answer, "users": [{"userid": u, "descriptors": n} for u, n in store.users().items()]}
    assert request.userid is not None
    n = store.delete(request.userid)
    if not n:
        raise _not_registered(request)
    return {**answer, "userid": request.userid, "deleted": n}


def run_deepstack(models: Models, request: Request, deadline: Deadline) -> dict[str, Any]:
    route = f"{DEEPSTACK}/{request.op}"
    if request.op == "register":
        _, notes = register(models, request, route, deadline)
        return {"success": True, "message": "face added", **({"notes": notes} if notes else {})}
    if request.op == "recognize":
        (image,) = recognize(models, request, route, deadline)
        preds = [
            {
                "userid": f["userid"],
                "confidence": f["confidence"],
                "x_min": int(round(f["box"][0])),
                "y_min": int(round(f["box"][1])),
                "x_max": int(round(f["box"][2])),
                "y_max": int(round(f["box"][3])),
            }
            for f in image["faces"]
        ]
        return {"success": True, "predictions": preds}
    store = store_of(request.model)
    if request.op == "list":
        return {"success": True, "faces": list(store.users())}
    assert request.userid is not None
    if not store.delete(request.userid):
        raise _not_registered(request)
    return {"success": True}


def _deepstack_parser(op: str) -> Callable[[Payload, Limits, Models], Request]:
    parse = parser(op, f"{DEEPSTACK}/{op}")

    def parse_one(payload: Payload, limits: Limits, models: Models) -> Request:
        request = parse(payload, limits, models)
        if op == "recognize" and request.images is not None and len(request.images) != 1:
            raise BadInput("send exactly one image")
        return request

    return parse_one


_SUMMARY = {
    "register": "Register a user's face (the largest face of each image); answered once stored on disk.",
    "recognize": "Each face's registered user (nearest descriptor within the threshold) or 'unknown'.",
    "list": "The registered users.",
    "delete": "Forget a user's faces.",
}
_MEDIA = {"register": ("image",), "recognize": ("image",), "list": (), "delete": ()}

TASKS = tuple(
    Task(
        f"faces-{op}",
        (f"{NATIVE}/{op}",),
        KINDS,
        parser(op, f"{NATIVE}/{op}"),
        run_native,
        _SUMMARY[op],
        media=_MEDIA[op],
        body=Body,
        answer=Answer,
    )
    for op in _SUMMARY
) + tuple(
    Task(
        f"deepstack-face-{op}",
        (f"{DEEPSTACK}/{op}",),
        KINDS,
        _deepstack_parser(op),
        run_deepstack,
        f"DeepStack: {_SUMMARY[op][0].lower()}{_SUMMARY[op][1:]}",
        media=_MEDIA[op],
        dialect="deepstack",
        body=Body,
        answer=DeepStackAnswer,
    )
    for op in _SUMMARY
)
