"""A loaded text artifact: TorchScript module + tokenizer + labels, with batched forward."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tokenizers import Encoding

from edge_mm.manifest import ModelEntry
from edge_mm.runtime.artifacts import load_module
from edge_mm.runtime.batcher import Batcher
from edge_mm.runtime.text_tokenizer import TextTokenizer


@dataclass
class TextModel:
    name: str
    entry: ModelEntry
    module: torch.jit.ScriptModule
    tokenizer: TextTokenizer
    device: str
    max_batch: int
    cache: dict[Any, Any] = field(default_factory=dict)  # task-owned caches, e.g. label embeddings
    batcher: Batcher | None = None
    timeout_s: float = 30.0  # how long a request waits for the batcher before 504

    @classmethod
    def load(cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> TextModel:
        module = load_module(entry.variants[variant].files["model"].resolve(root), device)
        pre = entry.preprocessing
        tokenizer = TextTokenizer(
            entry.files["tokenizer"].resolve(root),
            max_length=int(pre["max_length"]),
            pad_id=int(pre["pad_id"]),
            stride=int(entry.options.get("stride", 0)),
        )
        return cls(name, entry, module, tokenizer, device, max_batch)

    @property
    def labels(self) -> list[str]:
        return self.entry.labels or []

    def enable_batching(self, max_wait_ms: float, workers: int) -> None:
        """Route :meth:`forward` through a micro-batcher shared by concurrent requests."""
        self.batcher = Batcher(
            self.forward_now, max_batch=self.max_batch, max_wait_ms=max_wait_ms, workers=workers, name=self.name
        )

    def forward(self, encodings: list[Encoding], timeout_s: float | None = None) -> list[torch.Tensor]:
        """One CPU float32 output per encoding, batched with other requests when batching is on."""
        if self.batcher is None:
            return self.forward_now(encodings)
        return self.batcher.submit(encodings, timeout_s or self.timeout_s)

    def forward_now(self, encodings: list[Encoding]) -> list[torch.Tensor]:
        """Run encodings in length-sorted chunks of ``max_batch``; one CPU float32 output per encoding.

        Sorting by length keeps padding small when a request mixes short and long texts.
        """
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        outputs: list[torch.Tensor] = [torch.empty(0)] * len(encodings)
        for start in range(0, len(order), self.max_batch):
            chunk = order[start : start + self.max_batch]
            batch = self.tokenizer.pad([encodings[i] for i in chunk])
            with torch.inference_mode():
                out = self.module(batch.input_ids.to(self.device), batch.attention_mask.to(self.device))
            out = out.float().cpu()
            for row, i in enumerate(chunk):
                outputs[i] = out[row, : batch.lengths[row]] if out.dim() == 3 else out[row]
        return outputs

    def check_outputs(self, texts: list[str]) -> list[torch.Tensor]:
        """Raw model outputs for ``texts`` (for `edge-mm check`)."""
        return self.forward_now(self.tokenizer.encode(texts).encodings)

    def warm(self) -> float:
        """Run a few shapes through the model; returns the time taken (ms)."""
        t0 = time.perf_counter()
        texts = ["warm up", "a somewhat longer sentence to warm up the model with more tokens in it"]
        for n in (1, 2, min(8, self.max_batch)):
            self.forward(self.tokenizer.encode((texts * 8)[:n]).encodings)
        return (time.perf_counter() - t0) * 1000
