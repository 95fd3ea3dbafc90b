"""Image, face, zero-shot image, voice-activity and video routes (plus the DeepStack blueprint).

Media come as multipart uploads (field ``image`` / ``audio`` / ``video``), as base64 in a
JSON body (same field names), or as the raw body with an image/audio/video Content-Type
(options then go in the query string).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from edge_mm.api.inference import json_body, limits, model_name, registry, run
from edge_mm.errors import NotFound, UnsupportedMediaType
from edge_mm.media.audio import decode_wav, resample
from edge_mm.media.video import decode_video
from edge_mm.runtime.registry import Served
from edge_mm.tasks import face_detection, image_classification, image_embeddings, video, voice_activity, zero_shot_image
from edge_mm.tasks.media_input import RAW, MediaLimits, Upload, bytes_from, form_options, images_from
from edge_mm.tasks.vad_pipeline import SAMPLE_RATE

bp = Blueprint("vision", __name__, url_prefix="/v1")
RAW_TYPES = ("image/", "audio/", "video/", "application/octet-stream")


def media_limits() -> MediaLimits:
    s = current_app.extensions["edge_mm"]["settings"]
    return MediaLimits(
        max_upload_bytes=s["server.max_upload_bytes"],
        max_image_pixels=s["server.max_image_pixels"],
        max_items=s["server.max_items"],
        max_audio_seconds=s["server.max_audio_seconds"],
        max_video_seconds=s["server.max_video_seconds"],
        max_video_frames=s["server.max_video_frames"],
    )


def media_request() -> tuple[dict[str, Any], list[Upload]]:
    """(options, uploads) from a JSON, multipart or raw-media request; 415 for anything else."""
    mimetype = request.mimetype
    if mimetype == "application/json":
        return json_body(), []
    if mimetype == "multipart/form-data":
        cap = media_limits().max_upload_bytes + 1  # read no more than needed to say 413
        uploads = [Upload(name, f.stream.read(cap), f.mimetype) for name, f in request.files.items(multi=True)]
        return form_options(request.form), uploads
    if mimetype.startswith(RAW_TYPES):
        return form_options(request.args), [Upload(RAW, request.get_data(), mimetype)]
    raise UnsupportedMediaType(
        f"send multipart/form-data, application/json (base64) or the file itself with its media type (got {mimetype or 'none'!r})"
    )


def _options(served: Served) -> dict[str, Any]:
    return dict(served.entry.options) if served.entry else {}


@bp.post("/image-classification")
def classify():  # type: ignore[no-untyped-def]
    payload, uploads = media_request()
    served = registry().get(model_name(payload), "image-classification")
    top_k = image_classification.parse_top_k(payload, len(served.runner.labels), int(_options(served).get("top_k", 5)))
    images = images_from(payload, uploads, media_limits())
    return jsonify(run(served, lambda: image_classification.run(served.runner, images, top_k)))


@bp.post("/image-embeddings")
def embed():  # type: ignore[no-untyped-def]
    payload, uploads = media_request()
    served = registry().get(model_name(payload), "image-embeddings")
    images = images_from(payload, uploads, media_limits())
    return jsonify(run(served, lambda: image_embeddings.run(served.runner, images)))


@bp.post("/face-detection")
def faces():  # type: ignore[no-untyped-def]
    payload, uploads = media_request()
    served = registry().get(model_name(payload), "face-detection")
    req = face_detection.parse(payload, _options(served))
    images = images_from(payload, uploads, media_limits())
    return jsonify(run(served, lambda: face_detection.run(served.runner, images, req)))


@bp.post("/zero-shot-image-classification")
def zero_shot():  # type: ignore[no-untyped-def]
    payload, uploads = media_request()
    reg = registry()
    served = reg.get(model_name(payload), "zero-shot-image-classification")
    req = zero_shot_image.parse(payload, limits(), _options(served))
    images = images_from(payload, uploads, media_limits())
    runner = served.runner
    if _options(served).get("method") == "clip":
        return jsonify(run(served, lambda: zero_shot_image.run_clip(runner, images, req)))
    classifier = reg.get(runner.classifier, "image-classification").runner
    text = reg.get(runner.text_model, "embeddings").runner
    return jsonify(run(served, lambda: zero_shot_image.run_conse(runner, classifier, text, images, req)))


@bp.post("/voice-activity")
def voice():  # type: ignore[no-untyped-def]
    payload, uploads = media_request()
    served = registry().get(model_name(payload), "voice-activity")
    req = voice_activity.parse(payload, _options(served))
    ml = media_limits()
    samples, rate = decode_wav(
        bytes_from(payload, uploads, ml, "audio"), max_bytes=ml.max_upload_bytes, max_seconds=ml.max_audio_seconds
    )
    samples_16k = resample(samples, rate, SAMPLE_RATE)
    result = run(served, lambda: voice_activity.detect(served.runner, samples_16k, req))
    return jsonify({"model": served.name, "sample_rate": rate, **result})


def _optional(name: Any, route: str) -> Served | None:
    """The model for ``route``: the one named, else the first configured, else None."""
    if name is not None:
        return registry().get(model_name({"model": name}), route)
    try:
        return registry().get(None, route)
    except NotFound:
        return None


@bp.post("/video")
def video_route():  # type: ignore[no-untyped-def]
    payload, uploads = media_request()
    clf = _optional(payload.get("classifier"), "image-classification")
    det = _optional(payload.get("face_model"), "face-detection")
    vad = _optional(payload.get("vad_model"), "voice-activity")
    available = tuple(t for t, s in (("classification", clf), ("faces", det), ("voice", vad)) if s is not None)
    ml = media_limits()
    req = video.parse(payload, ml.max_video_frames, available)
    data = bytes_from(payload, uploads, ml, "video")
    clip = decode_video(
        data,
        sampling=req.sampling,
        max_bytes=ml.max_upload_bytes,
        max_seconds=ml.max_video_seconds,
        max_pixels=ml.max_image_pixels,
        audio="voice" in req.tasks,
    )
    images = [f.image for f in clip.frames]
    frames: list[dict[str, Any]] = [{"index": f.index, "time_s": f.time_s} for f in clip.frames]
    body: dict[str, Any] = {"video": video.clip_info(clip), "tasks": list(req.tasks), "frames": frames, "aggregate": {}}
    total_ms, models = 0.0, []
    if clf is not None and "classification" in req.tasks:
        outs = run(clf, lambda: clf.runner.classify(images))
        per_frame = [image_classification.top_labels(lg, clf.runner.labels, req.top_k) for lg, _ in outs]
        for f, labels in zip(frames, per_frame, strict=True):
            f["labels"] = labels
        body["aggregate"]["labels"] = video.aggregate_labels(per_frame)
        total_ms, models = total_ms + g.inference_ms, [*models, clf.name]
    if det is not None and "faces" in req.tasks:
        freq = face_detection.parse({}, _options(det))
        found = run(det, lambda: [face_detection.detect(det.runner, im, freq) for im in images])
        for f, faces_in_frame in zip(frames, found, strict=True):
            f["faces"] = [face_detection.face_json(x) for x in faces_in_frame]
        body["aggregate"]["faces"] = video.aggregate_faces(found)
        total_ms, models = total_ms + g.inference_ms, [*models, det.name]
    if vad is not None and "voice" in req.tasks:
        audio = clip.audio_16k
        if audio is not None and len(audio):
            vreq = voice_activity.parse({}, _options(vad))
            body["voice_activity"] = run(vad, lambda: voice_activity.detect(vad.runner, audio, vreq))
            total_ms, models = total_ms + g.inference_ms, [*models, vad.name]
        else:
            body["voice_activity"] = None  # no audio track
    body["models"] = models
    if models:
        g.inference_ms, g.model = total_ms, ",".join(models)
    return jsonify(body)


def blueprints() -> list[Blueprint]:
    from edge_mm.api.deepstack import bp as deepstack_bp

    return [bp, deepstack_bp]
