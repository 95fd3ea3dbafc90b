"""Loaded image artifacts: classifier (logits + features), CLIP towers, DETR/YOLOS detector."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from edge_mm.manifest import ModelEntry
from edge_mm.media.preprocess_spec import Preprocess, input_size, preprocess_from_dict
from edge_mm.runtime.artifacts import load_module
from edge_mm.runtime.batcher import Batcher
from edge_mm.runtime.probes import image_from_base64, probe_pixels
from edge_mm.runtime.text_tokenizer import TextTokenizer

CL = torch.channels_last


def _preprocess(entry: ModelEntry) -> Preprocess:
    pre = {
        k: v
        for k, v in entry.preprocessing.items()
        if k in ("mode", "resize_short", "crop", "mean", "std", "interpolation", "height", "width")
    }
    return preprocess_from_dict(pre)


def _half(entry: ModelEntry, variant: str) -> bool:
    return entry.variants[variant].dtype == "float16"


@dataclass
class ImageClassifier:
    """``(N, 3, H, W) -> (logits, features)`` TorchScript plus its preprocessing and labels."""

    name: str
    entry: ModelEntry
    module: torch.jit.ScriptModule
    preprocess: Preprocess
    device: str
    max_batch: int
    half: bool = False
    batcher: Batcher | None = None
    timeout_s: float = 30.0

    @classmethod
    def load(
        cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int
    ) -> ImageClassifier:
        module = load_module(entry.variants[variant].files["model"].resolve(root), device)
        return cls(name, entry, module, _preprocess(entry), device, max_batch, _half(entry, variant))

    @property
    def labels(self) -> list[str]:
        return self.entry.labels or []

    def enable_batching(self, max_wait_ms: float, workers: int) -> None:
        """Concurrent requests share forward passes (items are preprocessed (3, H, W) tensors)."""
        self.batcher = Batcher(
            self.forward_now, max_batch=self.max_batch, max_wait_ms=max_wait_ms, workers=workers, name=self.name
        )

    def prepare(self, images: Sequence[Image.Image]) -> list[torch.Tensor]:
        """PIL images -> one (3, H, W) float32 tensor each (runs in the request thread)."""
        return list(self.preprocess(images).unbind(0))

    def forward(
        self, tensors: list[torch.Tensor], timeout_s: float | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(logits (C,), features (D,)) float32 CPU per tensor; batched with other requests when on."""
        if self.batcher is None:
            return self.forward_now(tensors)
        return self.batcher.submit(tensors, timeout_s or self.timeout_s)

    def forward_now(self, tensors: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out: list[tuple[torch.Tensor, torch.Tensor]] = []
        for start in range(0, len(tensors), self.max_batch):
            x = torch.stack(tensors[start : start + self.max_batch]).to(self.device)
            x = (x.half() if self.half else x).contiguous(memory_format=CL)
            with torch.inference_mode():
                logits, features = self.module(x)
            logits, features = logits.float().cpu(), features.float().cpu()
            out += [(logits[i], features[i]) for i in range(len(logits))]
        return out

    def classify(self, images: Sequence[Image.Image]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return self.forward(self.prepare(images))

    def check_outputs(self, inputs: list[str]) -> list[torch.Tensor]:
        outs = self.forward_now(self.prepare([image_from_base64(s) for s in inputs]))
        return [torch.cat([lg, ft]) for lg, ft in outs]

    def warm(self) -> float:
        t0 = time.perf_counter()
        image = Image.fromarray(probe_pixels(200, 300))
        for n in (1, 2, min(4, self.max_batch)):
            self.forward(self.prepare([image] * n))
        return (time.perf_counter() - t0) * 1000


@dataclass
class ClipModel:
    """CLIP text and image towers, each -> L2-normalised embeddings; text embeddings are cached."""

    name: str
    entry: ModelEntry
    text: torch.jit.ScriptModule
    image: torch.jit.ScriptModule
    tokenizer: TextTokenizer
    preprocess: Preprocess
    device: str
    max_batch: int
    cache: OrderedDict[str, torch.Tensor] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> ClipModel:
        files = entry.variants[variant].files
        pre = entry.preprocessing
        tok = TextTokenizer(
            entry.files["tokenizer"].resolve(root), max_length=int(pre["max_length"]), pad_id=int(pre["pad_id"])
        )
        return cls(
            name,
            entry,
            load_module(files["text"].resolve(root), device),
            load_module(files["image"].resolve(root), device),
            tok,
            _preprocess(entry),
            device,
            max_batch,
        )

    @property
    def logit_scale(self) -> float:
        return float(self.entry.preprocessing.get("logit_scale", 100.0))

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """(len(texts), dim) float32; remembers up to 4096 texts (labels repeat across requests)."""
        with self.lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        for start in range(0, len(missing), self.max_batch):
            chunk = missing[start : start + self.max_batch]
            enc = self.tokenizer.encode(chunk)
            with torch.inference_mode():
                vecs = self.text(enc.input_ids.to(self.device), enc.attention_mask.to(self.device)).float().cpu()
            with self.lock:
                for t, v in zip(chunk, vecs, strict=True):
                    self.cache[t] = v
                while len(self.cache) > 4096:
                    self.cache.popitem(last=False)
        with self.lock:
            found = [self.cache.get(t) for t in texts]
        if any(v is None for v in found):  # evicted meanwhile: embed directly
            enc = self.tokenizer.encode(texts)
            with torch.inference_mode():
                return self.text(enc.input_ids.to(self.device), enc.attention_mask.to(self.device)).float().cpu()
        return torch.stack([v for v in found if v is not None])

    def embed_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        outs = []
        for start in range(0, len(images), self.max_batch):
            x = self.preprocess(images[start : start + self.max_batch]).to(self.device)
            with torch.inference_mode():
                outs.append(self.image(x).float().cpu())
        return torch.cat(outs)

    def check_outputs(self, inputs: list[dict[str, str]]) -> list[torch.Tensor]:
        out = []
        for item in inputs:
            if "text" in item:
                enc = self.tokenizer.encode([item["text"]])
                with torch.inference_mode():
                    out.append(
                        self.text(enc.input_ids.to(self.device), enc.attention_mask.to(self.device))[0].float().cpu()
                    )
            else:
                out.append(self.embed_images([image_from_base64(item["image"])])[0])
        return out

    def warm(self) -> float:
        t0 = time.perf_counter()
        self.embed_images([Image.fromarray(probe_pixels(120, 160))])
        enc = self.tokenizer.encode(["warm up", "a photo of a cat"])
        with torch.inference_mode():
            self.text(enc.input_ids.to(self.device), enc.attention_mask.to(self.device))
        return (time.perf_counter() - t0) * 1000


@dataclass
class ObjectDetector:
    """DETR/YOLOS-style: fixed-size input -> (logits (Q, C+1), boxes (Q, 4) normalised cx, cy, w, h)."""

    name: str
    entry: ModelEntry
    module: torch.jit.ScriptModule
    preprocess: Preprocess
    device: str
    max_batch: int

    @classmethod
    def load(
        cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int
    ) -> ObjectDetector:
        module = load_module(entry.variants[variant].files["model"].resolve(root), device)
        return cls(name, entry, module, _preprocess(entry), device, max_batch)

    @property
    def labels(self) -> list[str]:
        return self.entry.labels or []

    def detect(self, images: Sequence[Image.Image]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out: list[tuple[torch.Tensor, torch.Tensor]] = []
        for start in range(0, len(images), self.max_batch):
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
        h, w = input_size(
            preprocess_from_dict(
                {
                    k: v
                    for k, v in self.entry.preprocessing.items()
                    if k in ("mode", "height", "width", "mean", "std", "interpolation")
                }
            )
        )
        self.detect([Image.fromarray(probe_pixels(h, w))])
        return (time.perf_counter() - t0) * 1000
