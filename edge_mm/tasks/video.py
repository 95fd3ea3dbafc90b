"""Video: sampled frames -> per-frame classification and/or faces, an aggregate over the clip,
and voice activity on the audio track when there is one.

Each sub-task calls its own model through that model's admission; the clip is decoded
inside the first model's slot, so decoding is bounded by admission too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from edge_mm.errors import NotFound, Unprocessable
from edge_mm.media.video import Clip, Sampling, decode_video
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.model_calls import Models
from edge_mm.runtime.registry import Served
from edge_mm.tasks import face_detection, image_classification, voice_activity
from edge_mm.tasks.payload import Limits, Payload, file_from
from edge_mm.tasks.schemas import VideoInput, validate
from edge_mm.tasks.task import Task

ROUTE = "/v1/video"
# the sub-task -> (the request field naming its model, the model kinds it takes)
MODEL_FIELDS = {
    "classification": ("classifier", ("image-classification",)),
    "faces": ("face_model", ("face-detection",)),
    "voice": ("vad_model", ("voice-activity",)),
}


@dataclass(frozen=True)
class VideoRequest:
    sampling: Sampling
    tasks: tuple[str, ...]
    top_k: int


def _task_list(value: Any) -> Any:
    """``"faces, voice"`` (a form field) -> ``["faces", "voice"]``; empty -> None (every served one)."""
    if isinstance(value, str):
        value = [t.strip() for t in value.split(",") if t.strip()]
    return value or None


class Body(VideoInput):
    every_seconds: float | None = Field(None, ge=0.04, le=3600, description="sample a frame every so many s; default 1")
    every_frames: int | None = Field(None, ge=1, le=100000, description="or every so many frames (not both)")
    max_frames: int | None = Field(None, ge=1, description="at most the server's max_video_frames; default 16")
    tasks: Annotated[list[Literal["classification", "faces", "voice"]] | None, BeforeValidator(_task_list)] = Field(
        None, description="a list or a comma-separated string; default: every one with a model served"
    )
    top_k: int = Field(3, ge=1, le=20, description="labels per frame")
    classifier: str | None = Field(None, description="the image-classification model's name")
    face_model: str | None = Field(None, description="the face-detection model's name")
    vad_model: str | None = Field(None, description="the voice-activity model's name")


class Answer(BaseModel):
    video: dict[str, Any] = Field(description="duration_s, fps, width, height, frames_decoded, frames_sampled, ...")
    tasks: list[str]
    frames: list[dict[str, Any]] = Field(description="index, time_s, and labels / faces per sub-task")
    aggregate: dict[str, Any]
    voice_activity: dict[str, Any] | None = None  # null: the clip has no audio track
    models: list[str]


def parse_options(fields: Mapping[str, Any], max_frames_cap: int, available: tuple[str, ...]) -> VideoRequest:
    """``every_seconds`` or ``every_frames`` (not both; default every 1 s), ``max_frames`` (capped by
    the server setting), ``tasks`` (subset of classification, faces, voice; default all served), ``top_k``."""
    body = validate(Body, fields)
    if body.every_seconds is not None and body.every_frames is not None:
        raise Unprocessable("send 'every_seconds' or 'every_frames', not both")
    every_seconds = None if body.every_frames else (body.every_seconds or 1.0)
    if body.max_frames is not None and body.max_frames > max_frames_cap:
        raise Unprocessable(f"'max_frames' must be at most {max_frames_cap} (got {body.max_frames})")
    max_frames = body.max_frames or min(16, max_frames_cap)
    tasks: list[str] = list(body.tasks or available)
    missing = [t for t in tasks if t not in available]
    if missing:
        raise Unprocessable(f"'tasks' asks for {missing}, but no model for it is served here")
    sampling = Sampling(every_seconds, body.every_frames, max_frames)
    return VideoRequest(sampling, tuple(dict.fromkeys(tasks)), body.top_k)


@dataclass(frozen=True)
class Request:
    models: dict[str, Served]  # sub-task -> its model, only those asked for
    options: VideoRequest
    video: bytes
    limits: Limits


def parse(payload: Payload, limits: Limits, models: Models) -> Request:
    found = {
        task: models.find(kinds, ROUTE, payload.model_name(field)) for task, (field, kinds) in MODEL_FIELDS.items()
    }
    available = tuple(t for t, served in found.items() if served is not None)
    if not available:
        kinds = ", ".join(k for _, ks in MODEL_FIELDS.values() for k in ks)
        raise NotFound(f"no model serving {ROUTE} is configured: it needs a model of one of the kinds {kinds}")
    options = parse_options(payload.fields, limits.max_video_frames, available)
    chosen = {t: s for t, s in found.items() if s is not None and t in options.tasks}
    return Request(chosen, options, file_from(payload, limits, "video"), limits)


def decode(request: Request, deadline: Deadline | None = None) -> Clip:
    lim = request.limits
    return decode_video(
        request.video,
        sampling=request.options.sampling,
        max_bytes=lim.max_upload_bytes,
        max_seconds=lim.max_video_seconds,
        max_pixels=lim.max_image_pixels,
        max_total_pixels=lim.max_request_pixels,
        audio="voice" in request.options.tasks,
        check=None if deadline is None else lambda: deadline.check("video decoding"),
    )


def aggregate_labels(per_frame: list[list[dict[str, Any]]], limit: int = 5) -> list[dict[str, Any]]:
    """Labels ranked by mean score over all sampled frames (0 where a label is not in a frame's top k)."""
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for labels in per_frame:
        for item in labels:
            totals[item["label"]] = totals.get(item["label"], 0.0) + item["score"]
            counts[item["label"]] = counts.get(item["label"], 0) + 1
    n = max(len(per_frame), 1)
    ranked = sorted(totals, key=lambda k: totals[k], reverse=True)[:limit]
    return [{"label": k, "mean_score": round(totals[k] / n, 6), "frames": counts[k]} for k in ranked]


def aggregate_faces(per_frame: list[list[Any]]) -> dict[str, Any]:
    counts = [len(f) for f in per_frame]
    return {"max_faces_in_a_frame": max(counts, default=0), "frames_with_faces": sum(c > 0 for c in counts)}


def clip_info(clip: Clip) -> dict[str, Any]:
    return {
        "duration_s": round(clip.duration_s, 3),
        "fps": round(clip.fps, 3),
        "width": clip.width,
        "height": clip.height,
        "frames_decoded": clip.frames_decoded,
        "frames_sampled": len(clip.frames),
        "sampling": clip.step,
        "has_audio": clip.audio_16k is not None,
    }


def _classify_frames(models: Models, served: Served, clip: Clip, top_k: int, deadline: Deadline) -> list[Any]:
    images = [f.image for f in clip.frames]
    outs = models.call(served, deadline, lambda m: m.classify(images, deadline))
    return [image_classification.top_labels(lg, served.runner.labels, top_k) for lg, _ in outs]


def _faces_in_frames(models: Models, served: Served, clip: Clip, deadline: Deadline) -> list[Any]:
    options = face_detection.parse_options({}, served.options)

    def detect_all(model: Any) -> list[Any]:
        return [face_detection.detect(model, f.image, options, deadline) for f in clip.frames]

    return models.call(served, deadline, detect_all)


def run(models: Models, request: Request, deadline: Deadline) -> dict[str, Any]:
    first = next(iter(request.models.values()))
    clip = models.call(first, deadline, lambda _: decode(request, deadline))
    frames: list[dict[str, Any]] = [{"index": f.index, "time_s": f.time_s} for f in clip.frames]
    body: dict[str, Any] = {"video": clip_info(clip), "tasks": list(request.options.tasks), "frames": frames}
    body["aggregate"] = {}
    used: list[str] = []
    clf = request.models.get("classification")
    if clf is not None:
        per_frame = _classify_frames(models, clf, clip, request.options.top_k, deadline)
        for f, labels in zip(frames, per_frame, strict=True):
            f["labels"] = labels
        body["aggregate"]["labels"] = aggregate_labels(per_frame)
        used.append(clf.name)
    det = request.models.get("faces")
    if det is not None:
        found = _faces_in_frames(models, det, clip, deadline)
        for f, faces_in_frame in zip(frames, found, strict=True):
            f["faces"] = [face_detection.face_json(x) for x in faces_in_frame]
        body["aggregate"]["faces"] = aggregate_faces(found)
        used.append(det.name)
    vad = request.models.get("voice")
    if vad is not None:
        audio = clip.audio_16k
        if audio is not None and len(audio):
            vad_options = voice_activity.parse_options({}, vad.options)
            body["voice_activity"] = models.call(
                vad, deadline, lambda m: voice_activity.segments(m, audio, vad_options, deadline)
            )
            used.append(vad.name)
        else:
            body["voice_activity"] = None  # no audio track
    body["models"] = used
    return body


TASK = Task(
    "video",
    (ROUTE,),
    ("image-classification", "face-detection", "voice-activity"),
    parse,
    run,
    "Sampled frames -> labels and faces per frame, speech on the audio track.",
    media=("video",),
    body=Body,
    answer=Answer,
)
