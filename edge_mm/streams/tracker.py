"""An IoU tracker: each detection joins the track of the same label it overlaps most (or, for a fast
mover whose boxes no longer overlap, whose centre is within a box width), else starts a new track.

An OCR line's text is part of what it is: a line read differently is another track.

A track's event starts once it has been seen ``min_frames`` times, updates when its best score rises
(by ``SCORE_STEP``) or its zone changes, and ends when it has been gone ``end_after_s``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from edge_mm.streams.detect import Detection

SCORE_STEP = 0.02  # a best score must rise this much to send an update


@dataclass
class Track:
    id: int
    label: str
    box: tuple[float, float, float, float]
    score: float
    best_score: float
    zone: str | None
    first_seen: float  # time.time()
    last_seen: float
    hits: int = 1
    started: bool = False
    userid: str | None = None  # once a recognition names the face, it stays named
    ended_at: float | None = None
    text: str | None = None  # an OCR line's text


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _near(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    dx = (a[0] + a[2]) / 2 - (b[0] + b[2]) / 2
    dy = (a[1] + a[3]) / 2 - (b[1] + b[3]) / 2
    width = max(a[2] - a[0], b[2] - b[0])
    return bool(dx * dx + dy * dy <= width * width)


class Tracker:
    def __init__(self, min_frames: int, end_after_s: float, iou_threshold: float = 0.2) -> None:
        self.min_frames = min_frames
        self.end_after_s = end_after_s
        self.iou_threshold = iou_threshold
        self.tracks: dict[int, Track] = {}
        self._ids = itertools.count(1)

    def update(
        self, detections: list[Detection], now: float, zone_of: Callable[[Detection], str | None]
    ) -> list[tuple[str, Track]]:
        """The events this frame makes: ``("start" | "update" | "end", track)``, in that order per track."""
        pairs = self._candidates(detections)
        pairs.sort(reverse=True)
        used_tracks: set[int] = set()
        used_dets: set[int] = set()
        changes: list[tuple[str, Track]] = []
        for _, tid, j in pairs:
            if tid in used_tracks or j in used_dets:
                continue
            used_tracks.add(tid)
            used_dets.add(j)
            changes += self._seen(self.tracks[tid], detections[j], now, zone_of(detections[j]))
        for j, det in enumerate(detections):
            if j not in used_dets:
                track = Track(next(self._ids), det.label, det.box, det.score, det.score, zone_of(det), now, now)
                track.userid = det.userid
                track.text = det.text
                self.tracks[track.id] = track
                if self.min_frames <= 1:
                    track.started = True
                    changes.append(("start", track))
        for tid in list(self.tracks):
            track = self.tracks[tid]
            if tid not in used_tracks and now - track.last_seen >= self.end_after_s:
                del self.tracks[tid]
                if track.started:
                    track.ended_at = track.last_seen
                    changes.append(("end", track))
        return changes

    def _candidates(self, detections: list[Detection]) -> list[tuple[float, int, int]]:
        """(how well, track id, detection index) for each pair of the same label that may be one object."""
        pairs = []
        for tid, track in self.tracks.items():
            for j, det in enumerate(detections):
                if det.label != track.label or det.text != track.text:
                    continue
                overlap = iou(track.box, det.box)
                if overlap >= self.iou_threshold:
                    pairs.append((overlap, tid, j))
                elif _near(track.box, det.box):
                    pairs.append((overlap / 2, tid, j))  # below every real overlap match
        return pairs

    def _seen(self, track: Track, det: Detection, now: float, zone: str | None) -> list[tuple[str, Track]]:
        track.box, track.score, track.last_seen = det.box, det.score, now
        track.hits += 1
        better = det.score >= track.best_score + SCORE_STEP
        moved = zone != track.zone
        named = det.userid is not None and det.userid != track.userid
        if named:
            track.userid = det.userid
        track.best_score = max(track.best_score, det.score)
        track.zone = zone
        if not track.started:
            if track.hits >= self.min_frames:
                track.started = True
                return [("start", track)]
            return []
        return [("update", track)] if better or moved or named else []

    def end_all(self, now: float) -> list[tuple[str, Track]]:
        """Every started track ends (the stream stops)."""
        out = []
        for track in self.tracks.values():
            if track.started:
                track.ended_at = track.last_seen
                out.append(("end", track))
        self.tracks.clear()
        return out

    def counts(self) -> dict[str, int]:
        """Objects now in view per label (started tracks seen within ``end_after_s``)."""
        out: dict[str, int] = {}
        for t in self.tracks.values():
            if t.started:
                out[t.label] = out.get(t.label, 0) + 1
        return out


def inside(point: tuple[float, float], polygon: list[tuple[float, float]]) -> bool:
    """Ray casting: True when ``point`` is inside ``polygon`` (px)."""
    x, y = point
    result = False
    j = len(polygon) - 1
    for i in range(len(polygon)):
        xi, yi = polygon[i]
        xj, yj = polygon[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            result = not result
        j = i
    return result
