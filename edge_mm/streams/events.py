"""Events as they go out: one JSON object per start, update and end of a tracked object."""

from __future__ import annotations

from typing import Any

from edge_mm.streams.tracker import Track


def event_id(stream: str, track: Track) -> str:
    """Stable across the start, updates and end of one track: ``<stream>-<start ms>-<track id>``."""
    return f"{stream}-{int(track.first_seen * 1000)}-{track.id}"


def make_event(kind: str, stream: str, track: Track, frame_time: float, snapshot: str | None) -> dict[str, Any]:
    """``kind``: start | update | end. Times are Unix seconds; ``frame_time`` is when the frame that made
    the event was read from the source; ``end_time`` is the last time it was seen (end events)."""
    x1, y1, x2, y2 = (round(v, 1) for v in track.box)
    return {
        "type": kind,
        "id": event_id(stream, track),
        "stream": stream,
        "label": track.label,
        "track_id": track.id,
        "score": round(track.score, 4),
        "best_score": round(track.best_score, 4),
        "box": {"x_min": x1, "y_min": y1, "x_max": x2, "y_max": y2},
        "zone": track.zone,
        "userid": track.userid,  # a recognised face's registered user (face-recognition), else null
        "text": track.text,  # an OCR line's text (label "text"), else null
        "start_time": round(track.first_seen, 3),
        "end_time": round(track.ended_at, 3) if track.ended_at is not None else None,
        "frame_time": round(frame_time, 3),
        "snapshot": snapshot,
    }
