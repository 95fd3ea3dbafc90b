"""The latest-frame slot: one frame, replaced by each newer one. No queue grows, whatever the source
rate or the model speed: a stream holds at most one undecoded frame here (plus the one analysed)."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class Frame:
    """``data``: a PyAV ``VideoFrame`` or encoded JPEG bytes (decoded only when analysed);
    ``read_at``: ``time.time()`` when the reader got it."""

    seq: int
    data: Any
    read_at: float

    def image(self) -> Image.Image:
        """The frame as RGB (decoding happens here, for the frames analysed only)."""
        if isinstance(self.data, (bytes, bytearray)):
            with Image.open(io.BytesIO(self.data)) as im:
                return im.convert("RGB")
        return self.data.to_image().convert("RGB")


class LatestFrame:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._seq = 0

    def put(self, data: Any) -> None:
        with self._cond:
            self._seq += 1
            self._frame = Frame(self._seq, data, time.time())
            self._cond.notify_all()

    def newer(self, seq: int, timeout: float = 0.0) -> Frame | None:
        """The newest frame if it is newer than ``seq``, waiting up to ``timeout`` s for one; else None."""
        with self._cond:
            if self._seq <= seq and timeout > 0:
                self._cond.wait_for(lambda: self._seq > seq, timeout)
            frame = self._frame
            return frame if frame is not None and frame.seq > seq else None

    def clear(self) -> None:
        with self._cond:
            self._frame = None
