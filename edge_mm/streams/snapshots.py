"""Annotated frames: JPEGs with boxes drawn (Pillow), and the event snapshots kept on disk within a
size budget (the oldest files go first)."""

from __future__ import annotations

import io
import os
import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageDraw

from edge_mm.streams.tracker import Track

COLOURS = ((255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 200, 0), (200, 64, 255))
QUALITY = 80


def annotate(image: Image.Image, tracks: Iterable[Track]) -> bytes:
    """JPEG of ``image`` with each track's box and ``label #id score`` drawn."""
    canvas = image.copy()
    draw = ImageDraw.Draw(canvas)
    for t in tracks:
        colour = COLOURS[t.id % len(COLOURS)]
        x1, y1, x2, y2 = t.box
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=2)
        draw.text((x1 + 3, max(0.0, y1 - 12)), f"{t.text or t.label} #{t.id} {t.score:.2f}", fill=colour)
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=QUALITY)
    return buf.getvalue()


class SnapshotStore:
    """``<root>/<stream>/<event id>.jpg``; the total stays under ``budget_bytes`` (0: no snapshots)."""

    def __init__(self, root: Path, budget_bytes: int) -> None:
        self.root = root
        self.budget = budget_bytes
        self._lock = threading.Lock()
        self._files: deque[tuple[Path, int]] = deque()
        self.total = 0
        if root.is_dir():  # what an earlier run left counts against the budget
            found = sorted((p.stat().st_mtime, p) for p in root.glob("*/*.jpg"))
            for _, p in found:
                size = p.stat().st_size
                self._files.append((p, size))
                self.total += size
            self._prune()

    def save(self, stream: str, event_id: str, jpeg: bytes) -> str | None:
        """The snapshot's name relative to ``root`` (``stream/event.jpg``), or None when the budget is 0."""
        if self.budget <= 0 or len(jpeg) > self.budget:
            return None
        path = self.root / stream / f"{event_id}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(jpeg)
        os.replace(tmp, path)
        with self._lock:
            self._files.append((path, len(jpeg)))
            self.total += len(jpeg)
            self._prune()
        return f"{stream}/{event_id}.jpg"

    def _prune(self) -> None:
        while self.total > self.budget and self._files:
            path, size = self._files.popleft()
            path.unlink(missing_ok=True)
            self.total -= size
