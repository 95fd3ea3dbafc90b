"""ConSE's artifact: the class-name embedding table, and the check that its partner models fit it.

The classifier and the text model ConSE composes are served models of their own,
named in the entry's options; the task calls each through its own admission. The registry
checks them with :meth:`ConseTable.check_partners` once every model is loaded, against the
manifest it read (and verified: runtime.verify_key); ConSE never reads manifest.json itself. The
table is numpy (class_embeddings.npy) and so is ConSE's arithmetic
(tasks/zero_shot_image.py), so ConSE never imports torch: served beside ONNX Runtime
partners, the process has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_mm.errors import ConfigError
from edge_mm.manifest import ModelEntry


@dataclass
class ConseTable:
    """``class_embeddings``: (C, dim) float32, one row per classifier class."""

    name: str
    entry: ModelEntry
    class_embeddings: np.ndarray
    device: str = "cpu"

    @classmethod
    def load(cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> ConseTable:
        table = np.load(entry.variants[variant].files["class_embeddings"].resolve(root)).astype(np.float32, copy=False)
        return cls(name, entry, table)

    def check_partners(self, models: Mapping[str, ModelEntry]) -> None:
        """The classifier and text model ConSE relies on are built (in ``models``, the registry's verified
        manifest entries), the classifier with one class per table row; ConfigError otherwise."""
        _check_partners(self.name, self.entry, models, int(self.class_embeddings.shape[0]))

    @property
    def classifier(self) -> str:
        return str(self.entry.options["classifier"])

    @property
    def text_model(self) -> str:
        return str(self.entry.options["text_model"])

    def check_outputs(self, inputs: list[int]) -> list[np.ndarray]:
        return [self.class_embeddings[i] for i in inputs]

    def warm(self) -> float:
        return 0.0


def _check_partners(name: str, entry: ModelEntry, models: Mapping[str, ModelEntry], classes: int) -> None:
    """The classifier and text model ConSE relies on must be built, with matching class count."""
    clf, txt = entry.options.get("classifier"), entry.options.get("text_model")
    c = models.get(str(clf))
    if c is None or c.task != "image-classification":
        raise ConfigError(
            f"model {name!r}: options.classifier {clf!r} is not an image-classification model in settings"
        )
    if len(c.labels or []) != classes:
        raise ConfigError(
            f"model {name!r}: classifier {clf!r} has {len(c.labels or [])} classes, the ConSE table {classes}; rebuild"
        )
    t = models.get(str(txt))
    if t is None or t.task != "embeddings":
        raise ConfigError(f"model {name!r}: options.text_model {txt!r} is not an embeddings model in settings")
    if t.source != entry.source:
        raise ConfigError(f"model {name!r}: source {entry.source!r} must be the text model's source {t.source!r}")
