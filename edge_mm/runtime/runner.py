"""How a model kind's runner is loaded, and the batched base most runners share.

A runner is built by its kind's ``load(name, entry, root, device, variant, max_batch)``;
the registry warms it (``warm() -> ms``), `edge-mm check` replays the build's reference
sample through ``check_outputs``, and tasks call its own methods inside the model's
admission slot.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edge_mm.manifest import ModelEntry
from edge_mm.runtime.batcher import Batcher
from edge_mm.runtime.deadline import Deadline


class Loader(Protocol):
    def __call__(self, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> Any: ...


@dataclass
class BatchedRunner(ABC):
    """A model whose items (encodings, image tensors) run in chunks of ``max_batch``.

    :meth:`forward` goes through a micro-batcher shared by concurrent requests once
    :meth:`enable_batching` is called, else straight to :meth:`forward_now`.
    """

    name: str
    entry: ModelEntry
    device: str
    max_batch: int
    batcher: Batcher | None = field(default=None, kw_only=True)

    @property
    def labels(self) -> list[str]:
        return self.entry.labels or []

    def enable_batching(self, max_wait_ms: float, workers: int) -> None:
        self.batcher = Batcher(
            self.forward_now, max_batch=self.max_batch, max_wait_ms=max_wait_ms, workers=workers, name=self.name
        )

    def forward(self, items: Sequence[Any], deadline: Deadline | None = None) -> list[Any]:
        """One output per item, in order; batched with other requests when batching is on."""
        if self.batcher is None:
            if deadline is not None:
                deadline.check("inference")
            return self.forward_now(list(items))
        return self.batcher.submit(items, deadline)

    @abstractmethod
    def forward_now(self, items: list[Any]) -> list[Any]:
        """Run ``items`` now, in chunks of ``max_batch``; one CPU output per item."""

    def warm(self) -> float:
        t0 = time.perf_counter()
        self.warm_up()
        return (time.perf_counter() - t0) * 1000

    @abstractmethod
    def warm_up(self) -> None:
        """Run a few representative shapes (batch sizes) through :meth:`forward`."""
