"""A loaded image classifier artifact: ``(N, 3, H, W) -> (logits, features)`` with batched forward.

TorchScript items and outputs are torch tensors; an ONNX Runtime session's are numpy arrays,
and that path never imports torch (the lite bundle has none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from PIL import Image

from edge_mm.manifest import ModelEntry
from edge_mm.media.image_preprocess import ImagePreprocess, Preprocess, SquashPreprocess, preprocess_from_dict
from edge_mm.runtime.artifacts import load_artifact
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.onnx_session import OnnxSession
from edge_mm.runtime.probes import image_from_base64, probe_pixels
from edge_mm.runtime.runner import BatchedRunner

Output = tuple[Any, Any]  # logits (C,), features (D,): torch tensors, or numpy arrays from ONNX Runtime


def entry_preprocess(entry: ModelEntry) -> ImagePreprocess | SquashPreprocess:
    """The image preprocessing the build recorded for ``entry``."""
    return preprocess_from_dict(entry.preprocessing)


@dataclass
class ImageClassifier(BatchedRunner):
    """Items are preprocessed (3, H, W) tensors; outputs (logits (C,), features (D,)) float32 CPU."""

    module: Any  # ``module(x) -> (logits, features)``: a TorchScript module or an OnnxSession
    preprocess: Preprocess
    half: bool = False
    channels_last: bool = True  # TorchScript conv nets run fastest channels-last; ONNX Runtime takes NCHW

    @classmethod
    def load(
        cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int
    ) -> ImageClassifier:
        chosen = entry.variants[variant]
        module = load_artifact(chosen, root, device, solo=True)
        half = chosen.dtype == "float16"
        return cls(
            name, entry, device, max_batch, module, entry_preprocess(entry), half, chosen.backend == "torchscript"
        )

    @property
    def numpy(self) -> bool:
        """True when the model is an ONNX Runtime session: numpy in and out, no torch."""
        return isinstance(self.module, OnnxSession)

    def prepare(self, images: Sequence[Image.Image]) -> list[Any]:
        """PIL images -> one (3, H, W) float32 tensor (numpy array for ONNX Runtime) each, in the request thread."""
        if self.numpy:
            return list(cast(ImagePreprocess | SquashPreprocess, self.preprocess).array(images))
        return list(self.preprocess(images).unbind(0))

    def forward_now(self, items: list[Any]) -> list[Output]:
        out: list[Output] = []
        for start in range(0, len(items), self.max_batch):
            logits, features = self._run_batch(items[start : start + self.max_batch])
            out += [(logits[i], features[i]) for i in range(len(logits))]
        return out

    def _run_batch(self, items: list[Any]) -> tuple[Any, Any]:
        """Stacked items through the artifact: CPU float32 (logits, features), numpy (ONNX Runtime) or tensors."""
        if self.numpy:
            stacked = np.stack(items)
            logits, features = self.module(stacked.astype(np.float16) if self.half else stacked)
            return np.asarray(logits, np.float32), np.asarray(features, np.float32)
        import torch

        x = torch.stack(items).to(self.device)
        x = x.half() if self.half else x
        x = x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()
        with torch.inference_mode():
            logits, features = self.module(x)
        return torch.as_tensor(logits).float().cpu(), torch.as_tensor(features).float().cpu()

    def classify(self, images: Sequence[Image.Image], deadline: Deadline | None = None) -> list[Output]:
        return self.forward(self.prepare(images), deadline)

    def check_outputs(self, inputs: list[str]) -> list[Any]:
        outs = self.forward_now(self.prepare([image_from_base64(s) for s in inputs]))
        if self.numpy:
            return [np.concatenate([lg, ft]) for lg, ft in outs]
        import torch

        return [torch.cat([lg, ft]) for lg, ft in outs]

    def warm_up(self) -> None:
        image = Image.fromarray(probe_pixels(200, 300))
        for n in (1, 2, min(4, self.max_batch)):
            self.forward(self.prepare([image] * n))
