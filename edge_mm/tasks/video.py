"""Video: sampled frames -> per-frame classification and/or faces, an aggregate over the clip,
and voice activity on the audio track when there is one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge_mm.errors import Unprocessable
from edge_mm.media.video import Clip, Sampling
from edge_mm.tasks.fields import float_field, int_field

TASKS = ("classification", "faces", "voice")


@dataclass(frozen=True)
class VideoRequest:
    sampling: Sampling
    tasks: tuple[str, ...]
    top_k: int


def parse(payload: Mapping[str, Any], max_frames_cap: int, available: tuple[str, ...]) -> VideoRequest:
    """``every_seconds`` or ``every_frames`` (not both; default every 1 s), ``max_frames`` (capped by
    the server setting), ``tasks`` (subset of classification, faces, voice; default all served), ``top_k``."""
    if "every_seconds" in payload and "every_frames" in payload:
        raise Unprocessable("send 'every_seconds' or 'every_frames', not both")
    every_frames = int_field(payload, "every_frames", None, 1, 100000)
    every_seconds = None if every_frames else float_field(payload, "every_seconds", 1.0, 0.04, 3600)
    max_frames = int_field(payload, "max_frames", min(16, max_frames_cap), 1, max_frames_cap) or 1
    tasks = payload.get("tasks", list(available))
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    if not isinstance(tasks, list) or not tasks or not all(t in TASKS for t in tasks):
        raise Unprocessable(f"'tasks' must be a non-empty list drawn from {list(TASKS)}")
    missing = [t for t in tasks if t not in available]
    if missing:
        raise Unprocessable(f"'tasks' asks for {missing}, but no model for it is served here")
    top_k = int_field(payload, "top_k", 3, 1, 20) or 3
    return VideoRequest(Sampling(every_seconds, every_frames, max_frames), tuple(dict.fromkeys(tasks)), top_k)


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
