"""Per-stream counters (``/v1/streams`` and ``/metrics`` read them)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields


@dataclass
class StreamStats:
    state: str = "stopped"  # stopped | waiting | connecting | streaming | reconnecting | failed
    last_error: str | None = None
    frames_read: int = 0
    frames_analysed: int = 0
    frames_skipped: int = 0  # analysis ticks with no free model slot, or missed because analysis ran late
    inference_ms_sum: float = 0.0
    last_inference_ms: float = 0.0
    events: int = 0
    reconnects: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: float) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def set(self, **values: object) -> None:
        with self._lock:
            for k, v in values.items():
                setattr(self, k, v)

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            out = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        out["inference_ms_sum"] = round(float(out["inference_ms_sum"]), 1)
        out["last_inference_ms"] = round(float(out["last_inference_ms"]), 1)
        return out
