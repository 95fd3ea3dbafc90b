"""A loaded DETR/YOLOS-style detector: fixed-size input -> per-query class logits and boxes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from edge_mm.manifest import ModelEntry
from edge_mm.media.image_preprocess import ImagePreprocess, SquashPreprocess, input_size
from edge_mm.runtime.artifacts import load_module
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.image_classifier import entry_preprocess
from edge_mm.runtime.probes import image_from_base64, probe_pixels

Detections = tuple[torch.Tensor, torch.Tensor]  # logits (Q, C+1), boxes (Q, 4) normalised cx, cy, w, h


@dataclass
class ObjectDetector:
    name: str
    entry: ModelEntry
    module: torch.jit.ScriptModule
    preprocess: ImagePreprocess | SquashPreprocess
    device: str
    max_batch: int

    @classmethod
    def load(
        cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int
    ) -> ObjectDetector:
        module = load_module(entry.variants[variant].files["model"].resolve(root), device)
        return cls(name, entry, module, entry_preprocess(entry), device, max_batch)

    @property
    def labels(self) -> list[str]:
        return self.entry.labels or []

    def detect(self, images: Sequence[Image.Image], deadline: Deadline | None = None) -> list[Detections]:
        out: list[Detections] = []
        for start in range(0, len(images), self.max_batch):
            if deadline is not None:
                deadline.check("object detection")
            x = self.preprocess(images[start : start + self.max_batch]).contiguous().to(self.device)
            with torch.inference_mode():
                logits, boxes = self.module(x)
            out += [(logits[i].float().cpu(), boxes[i].float().cpu()) for i in range(len(logits))]
        return out

    def check_outputs(self, inputs: list[str]) -> list[torch.Tensor]:
        return [
            torch.cat([lg.flatten(), bx.flatten()]) for lg, bx in self.detect([image_from_base64(s) for s in inputs])
        ]

    def warm(self) -> float:
        t0 = time.perf_counter()
        h, w = input_size(self.preprocess)
        self.detect([Image.fromarray(probe_pixels(h, w))])
        return (time.perf_counter() - t0) * 1000
