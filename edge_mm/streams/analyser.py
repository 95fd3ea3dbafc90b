"""The analyser: at the stream's ``fps`` it takes the newest frame from the slot, runs the models
(skipping the frame when no slot is free), filters and tracks the detections, and hands events out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from edge_mm.runtime.registry import Registry, Served
from edge_mm.streams.detect import Detection, StreamGate, detect
from edge_mm.streams.events import event_id, make_event
from edge_mm.streams.slot import LatestFrame
from edge_mm.streams.snapshots import SnapshotStore, annotate
from edge_mm.streams.spec import StreamSpec
from edge_mm.streams.stats import StreamStats
from edge_mm.streams.tracker import Track, Tracker, inside
from edge_mm.streams.worker import Worker

log = logging.getLogger("edge_mm.streams")

# (event, snapshot JPEG or None) -> None; never blocks
Publish = Callable[[dict[str, Any], "bytes | None"], None]


class Analyser(Worker):
    def __init__(
        self,
        spec: StreamSpec,
        registry: Registry,
        models: list[Served],
        gate: StreamGate,
        slot: LatestFrame,
        stats: StreamStats,
        snapshots: SnapshotStore,
        publish: Publish,
        publish_counts: Callable[[str, dict[str, int]], None],
        budget_s: float,
    ) -> None:
        self.spec = spec
        self.registry = registry
        self.models = models
        self.gate = gate
        self.slot = slot
        self.stats = stats
        self.snapshots = snapshots
        self.publish = publish
        self.publish_counts = publish_counts
        self.budget_s = budget_s
        self.tracker = Tracker(spec.min_frames, spec.end_after_s)
        self.latest_jpeg: bytes | None = None  # the last analysed frame, annotated
        super().__init__(f"stream-analyser-{spec.id}")
        self._counts: dict[str, int] = {}

    def zone_of(self, det: Detection) -> str | None:
        if det.whole_frame:  # an image classification is about the whole frame, in no zone
            return None
        point = det.bottom_centre
        for zone in self.spec.zones:
            if inside(point, zone.points):
                return zone.name
        return None

    def wanted(self, det: Detection) -> bool:
        spec = self.spec
        if spec.labels and det.label not in spec.labels:
            return False
        if det.score < spec.min_confidence or det.area < spec.min_area:
            return False
        return not spec.zones or det.whole_frame or self.zone_of(det) is not None

    def _run(self) -> None:
        while not self.registry.ready and not self.stop_event.wait(0.2):
            pass
        interval = 1.0 / self.spec.fps
        next_at = time.monotonic()
        seq = 0
        while not self.stop_event.is_set():
            if self.stop_event.wait(max(0.0, next_at - time.monotonic())):
                break
            now_m = time.monotonic()
            late = int((now_m - next_at) / interval)
            if late > 0:  # analysis ran longer than the interval: those ticks are lost
                self.stats.add(frames_skipped=late)
            next_at = max(next_at + interval, now_m - interval) + late * interval
            frame = self.slot.newer(seq)
            if frame is None:
                self._expire(time.time(), None)
                continue
            seq = frame.seq
            try:
                self._analyse(frame.image(), frame.read_at)
            except Exception as exc:
                log.exception("stream %s: analysis failed: %s", self.spec.id, type(exc).__name__)
                self.stats.set(last_error=f"analysis failed: {type(exc).__name__}")
        for kind, track in self.tracker.end_all(time.time()):
            self._emit(kind, track, time.time(), None)
        self._counts_changed()

    def _analyse(self, image: Any, read_at: float) -> None:
        wait_s = 0.5 / self.spec.fps  # another stream's turn: half a frame interval at most
        result = detect(self.models, self.gate, image, self.spec.min_confidence, self.budget_s, wait_s)
        if result is None:
            self.stats.add(frames_skipped=1)
            return
        detections, ms = result
        self.stats.add(frames_analysed=1, inference_ms_sum=ms)
        self.stats.set(last_inference_ms=ms)
        kept = [d for d in detections if self.wanted(d)]
        now = time.time()
        changes = self.tracker.update(kept, now, self.zone_of)
        jpeg = annotate(image, [t for t in self.tracker.tracks.values() if t.last_seen == now])  # seen in this frame
        self.latest_jpeg = jpeg
        for kind, track in changes:
            self._emit(kind, track, read_at, jpeg)
        self._counts_changed()

    def _expire(self, now: float, jpeg: bytes | None) -> None:
        """No new frame: tracks still end on time (a source that stalls ends its events)."""
        for kind, track in self.tracker.update([], now, self.zone_of):
            self._emit(kind, track, now, jpeg)
        self._counts_changed()

    def _emit(self, kind: str, track: Track, frame_time: float, jpeg: bytes | None) -> None:
        name = None
        if jpeg is not None and kind != "end":
            name = self.snapshots.save(self.spec.id, f"{event_id(self.spec.id, track)}-{kind}", jpeg)
        event = make_event(kind, self.spec.id, track, frame_time, name)
        self.stats.add(events=1)
        self.publish(event, jpeg if kind != "end" else None)

    def _counts_changed(self) -> None:
        counts = self.tracker.counts()
        changed = {
            label: counts.get(label, 0)
            for label in {*counts, *self._counts}
            if counts.get(label, 0) != self._counts.get(label, 0)
        }
        if changed:
            self._counts = counts
            self.publish_counts(self.spec.id, changed)
