"""A loaded CLIP artifact: text and image towers, each -> L2-normalised embeddings."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from edge_mm.manifest import ModelEntry
from edge_mm.media.image_preprocess import Preprocess
from edge_mm.runtime.artifacts import load_module
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.image_classifier import entry_preprocess
from edge_mm.runtime.probes import image_from_base64, probe_pixels
from edge_mm.runtime.text_tokenizer import TextTokenizer
from edge_mm.runtime.vector_cache import VectorCache


@dataclass
class ClipModel:
    name: str
    entry: ModelEntry
    text: torch.jit.ScriptModule
    image: torch.jit.ScriptModule
    tokenizer: TextTokenizer
    preprocess: Preprocess
    device: str
    max_batch: int
    cache: VectorCache = field(default_factory=VectorCache)

    @classmethod
    def load(cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> ClipModel:
        files = entry.variants[variant].files
        pre = entry.preprocessing
        tok = TextTokenizer.shared(  # a hot-swapped version with the same tokenizer reuses it
            entry.files["tokenizer"].resolve(root), max_length=int(pre["max_length"]), pad_id=int(pre["pad_id"])
        )
        text = load_module(files["text"].resolve(root), device)
        image = load_module(files["image"].resolve(root), device)
        return cls(name, entry, text, image, tok, entry_preprocess(entry), device, max_batch)

    @property
    def logit_scale(self) -> float:
        return float(self.entry.preprocessing.get("logit_scale", 100.0))

    def _text_forward(self, texts: list[str]) -> torch.Tensor:
        enc = self.tokenizer.encode(texts)
        with torch.inference_mode():
            return self.text(enc.input_ids.to(self.device), enc.attention_mask.to(self.device)).float().cpu()

    def embed_texts(self, texts: list[str], deadline: Deadline | None = None) -> torch.Tensor:
        """(len(texts), dim) float32; label texts are cached (bounded in bytes)."""
        missing = self.cache.missing(texts)
        for start in range(0, len(missing), self.max_batch):
            if deadline is not None:
                deadline.check("text embedding")
            chunk = missing[start : start + self.max_batch]
            for t, v in zip(chunk, self._text_forward(chunk), strict=True):
                self.cache.put(t, v)
        found = self.cache.get_all(texts)
        if found is None:  # evicted meanwhile: embed directly
            return self._text_forward(texts)
        return torch.stack(found)

    def embed_images(self, images: Sequence[Image.Image], deadline: Deadline | None = None) -> torch.Tensor:
        outs = []
        for start in range(0, len(images), self.max_batch):
            if deadline is not None:
                deadline.check("image embedding")
            x = self.preprocess(images[start : start + self.max_batch]).to(self.device)
            with torch.inference_mode():
                outs.append(self.image(x).float().cpu())
        return torch.cat(outs)

    def check_outputs(self, inputs: list[dict[str, str]]) -> list[torch.Tensor]:
        return [
            self._text_forward([item["text"]])[0]
            if "text" in item
            else self.embed_images([image_from_base64(item["image"])])[0]
            for item in inputs
        ]

    def warm(self) -> float:
        t0 = time.perf_counter()
        self.embed_images([Image.fromarray(probe_pixels(120, 160))])
        self._text_forward(["warm up", "a photo of a cat"])
        return (time.perf_counter() - t0) * 1000
