"""A loaded text artifact: TorchScript module or ONNX Runtime session + tokenizer + labels, with batched forward.

Outputs are CPU float32 torch tensors from TorchScript and numpy arrays from ONNX Runtime:
the ONNX Runtime path never imports torch (the lite bundle has none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Encoding

from edge_mm.errors import ConfigError
from edge_mm.manifest import ModelEntry
from edge_mm.runtime.artifacts import load_artifact
from edge_mm.runtime.onnx_session import OnnxSession
from edge_mm.runtime.runner import BatchedRunner
from edge_mm.runtime.text_tokenizer import EncodedBatch, StrideTooLarge, TextTokenizer

# Text tasks whose lone passes take every core (runtime/solo.py). The second session is a copy of the
# weights: about 25 MB for MiniLM, but a fine-tuned classifier's graph may keep fp32 embedding tables
# and layers (the example NER's is 66 MB; its second session cost about 70 MB), so classifiers keep one.
SOLO_TASKS = frozenset({"embeddings"})


@dataclass
class TextModel(BatchedRunner):
    """``(ids, mask) -> outputs`` for embeddings, sequence and token classification."""

    module: Any  # ``module(ids, mask) -> output``: a TorchScript module or an OnnxSession
    tokenizer: TextTokenizer
    cache: dict[Any, Any] = field(default_factory=dict)  # task-owned caches, e.g. label embeddings

    @classmethod
    def load(cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> TextModel:
        module = load_artifact(entry.variants[variant], root, device, solo=entry.task in SOLO_TASKS)
        pre = entry.preprocessing
        try:
            tokenizer = TextTokenizer.shared(
                entry.files["tokenizer"].resolve(root),
                max_length=int(pre["max_length"]),
                pad_id=int(pre["pad_id"]),
                stride=int(entry.options.get("stride", 0)),  # token classification's windows (a serve-time option)
            )
        except StrideTooLarge as exc:
            raise ConfigError(f"model {name!r}: options.stride: {exc}") from None
        return cls(name, entry, device, max_batch, module, tokenizer)

    @property
    def numpy(self) -> bool:
        """True when the model is an ONNX Runtime session: numpy in and out, no torch."""
        return isinstance(self.module, OnnxSession)

    def forward_now(self, items: list[Encoding]) -> list[Any]:
        """Run encodings in length-sorted chunks of ``max_batch``; one CPU float32 output per encoding.

        Sorting by length keeps padding small when a request mixes short and long texts.
        """
        order = sorted(range(len(items)), key=lambda i: len(items[i].ids))
        outputs: list[Any] = [None] * len(items)
        for start in range(0, len(order), self.max_batch):
            chunk = order[start : start + self.max_batch]
            batch = self.tokenizer.pad([items[i] for i in chunk])
            out = self._run_batch(batch)
            for row, i in enumerate(chunk):
                outputs[i] = out[row, : batch.lengths[row]] if out.ndim == 3 else out[row]
        return outputs

    def _run_batch(self, batch: EncodedBatch) -> Any:
        """One padded batch through the artifact: a CPU float32 numpy array (ONNX Runtime) or tensor (TorchScript)."""
        if self.numpy:
            return np.asarray(self.module(batch.ids, batch.mask), dtype=np.float32)
        import torch

        with torch.inference_mode():
            out = self.module(batch.input_ids.to(self.device), batch.attention_mask.to(self.device))
        return torch.as_tensor(out).float().cpu()

    def check_outputs(self, inputs: list[str]) -> list[Any]:
        return self.forward_now(self.tokenizer.encode(inputs).encodings)

    def warm_up(self) -> None:
        texts = ["warm up", "a somewhat longer sentence to warm up the model with more tokens in it"]
        for n in (1, 2, min(8, self.max_batch)):
            self.forward(self.tokenizer.encode((texts * 8)[:n]).encodings)
