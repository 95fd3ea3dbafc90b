"""A loaded face-recognition artifact: dlib's 5-point shape predictor and its ResNet face descriptor.

Faces are found by a face-detection (MTCNN) model served beside it, named in the entry's options
(``detector``), as ConSE names its partners; the task calls that model through its own admission.
dlib aligns each MTCNN box with the 5-point predictor and computes the 128-d descriptor
(``compute_face_descriptor(rgb, shape, 1)``: one jitter, dlib's default). The registered
descriptors live in a :class:`~edge_mm.runtime.face_store.FaceStore`, opened by the registry
with the ``runtime.faces_db`` setting (:meth:`FaceRecognizer.open_store`). No torch here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_mm.errors import ConfigError
from edge_mm.manifest import ModelEntry
from edge_mm.runtime.face_store import FaceStore
from edge_mm.runtime.probes import probe_pixels

Box = tuple[float, float, float, float]


@dataclass
class FaceRecognizer:
    name: str
    entry: ModelEntry
    predictor: Any  # dlib.shape_predictor
    encoder: Any  # dlib.face_recognition_model_v1
    device: str = "cpu"
    store: FaceStore | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(
        cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int
    ) -> FaceRecognizer:
        import dlib  # type: ignore[import-untyped]

        files = entry.variants[variant].files
        predictor = dlib.shape_predictor(str(files["shape_predictor"].resolve(root)))
        encoder = dlib.face_recognition_model_v1(str(files["model"].resolve(root)))
        return cls(name, entry, predictor, encoder)

    @property
    def detector(self) -> str:
        return str(self.entry.options["detector"])

    def open_store(self, path: Path) -> None:
        self.store = FaceStore(path)

    def check_partners(self, models: Mapping[str, ModelEntry]) -> None:
        d = models.get(self.detector)
        if d is None or d.task != "face-detection":
            raise ConfigError(
                f"model {self.name!r}: options.detector {self.detector!r} is not a face-detection model in settings"
            )

    def shape(self, rgb: np.ndarray, box: Box) -> Any:
        import dlib

        x1, y1, x2, y2 = (round(v) for v in box)
        return self.predictor(rgb, dlib.rectangle(x1, y1, x2, y2))

    def descriptors(self, rgb: np.ndarray, boxes: list[Box]) -> list[np.ndarray]:
        """One 128-d float32 descriptor per box of ``rgb`` (H, W, 3 uint8)."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        out = []
        with self._lock:  # dlib's network object is not documented as thread-safe
            for box in boxes:
                d = self.encoder.compute_face_descriptor(rgb, self.shape(rgb, box), 1)
                out.append(np.asarray(d, np.float32))
        return out

    def check_outputs(self, inputs: list[Any]) -> list[np.ndarray]:
        return [self.descriptors(probe_pixels(160, 160), [(30.0, 30.0, 130.0, 130.0)])[0] for _ in inputs]

    def warm(self) -> float:
        t0 = time.perf_counter()
        self.descriptors(probe_pixels(160, 160), [(30.0, 30.0, 130.0, 130.0)])
        return (time.perf_counter() - t0) * 1000
