"""DeepStack-compatible routes for NVRs and home-automation hubs: /v1/vision/face, /scene, /detection.

Multipart field ``image``, optional ``min_confidence`` (0-1) and ``api_key`` form fields.
Errors use DeepStack's ``{success: false, error}`` body (api/errors.py) with 400 for bad
input (including a missing image), 401 for a wrong key and 501 for detection without a model.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, jsonify

from edge_mm.api.inference import registry, run
from edge_mm.api.vision import media_limits, media_request
from edge_mm.errors import BadInput, NotFound, NotImplementedHere, Unprocessable
from edge_mm.tasks import deepstack, face_detection, image_classification, object_detection
from edge_mm.tasks.media_input import images_from

bp = Blueprint("deepstack", __name__, url_prefix="/v1/vision")


def deepstack_errors(view: Callable[[], Any]) -> Callable[[], Any]:
    """DeepStack clients know 400, not 422: semantic errors answer 400 here."""

    @wraps(view)
    def wrapper() -> Any:
        try:
            return view()
        except Unprocessable as exc:
            raise BadInput(exc.message) from None

    return wrapper


def _one_image(payload: dict[str, Any], uploads: list[Any]) -> Any:
    images = images_from(payload, uploads, media_limits())
    if len(images) != 1:
        raise BadInput("send exactly one image")
    return images[0]


@bp.post("/face")
@deepstack_errors
def face():  # type: ignore[no-untyped-def]
    payload, uploads = media_request()
    served = registry().get(None, "vision/face")
    threshold = deepstack.min_confidence(payload, 0.4)
    image = _one_image(payload, uploads)
    req = face_detection.parse({}, dict(served.entry.options) if served.entry else {})
    faces = run(served, lambda: face_detection.detect(served.runner, image, req))
    return jsonify(deepstack.success(deepstack.face_predictions(faces, threshold)))


@bp.post("/scene")
@deepstack_errors
def scene():  # type: ignore[no-untyped-def]
    payload, uploads = media_request()
    served = registry().get(None, "vision/scene")
    image = _one_image(payload, uploads)
    ((logits, _),) = run(served, lambda: served.runner.classify([image]))
    top = image_classification.top_labels(logits, served.runner.labels, 1)[0]
    return jsonify({"success": True, "label": top["label"], "confidence": top["score"]})


@bp.post("/detection")
@deepstack_errors
def detection():  # type: ignore[no-untyped-def]
    payload, uploads = media_request()
    try:
        served = registry().get(None, "vision/detection")
    except NotFound:
        raise NotImplementedHere(
            "object detection is not configured: add an object-detection model (an HF DETR or YOLOS checkpoint) "
            "to settings.toml and run 'edge-mm build'"
        ) from None
    threshold = deepstack.min_confidence(payload, 0.45)
    image = _one_image(payload, uploads)
    (preds,) = run(served, lambda: object_detection.run(served.runner, [image], threshold, deepstack.MAX_PREDICTIONS))
    return jsonify(deepstack.success(preds))
