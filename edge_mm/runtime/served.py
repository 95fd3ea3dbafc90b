"""A model as the API sees it: its loaded runner, admission gate, version, and the hot-swap hand-over."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edge_mm.errors import NotFound
from edge_mm.manifest import ModelEntry
from edge_mm.runtime.admission import Admission
from edge_mm.runtime.deadline import Deadline

T = TypeVar("T")


@dataclass
class Served:
    """One model as the API sees it: the loaded runner plus its admission gate."""

    name: str
    kind: str  # the model's task in settings, e.g. "embeddings"
    runner: Any  # the kind's runner, e.g. TextModel; task modules know its type
    admission: Admission
    device: str
    variant: str
    entry: ModelEntry
    warm_ms: float = 0.0
    version: int = 1  # runtime/versions.py; the flat artifacts layout is version 1
    root: Path | None = None  # the folder its manifest's file paths are relative to (None: runtime.artifacts_dir)
    # hot swap (runtime/swap.py): requests using it now, and where new ones go once it is retired
    _users: int = field(default=0, init=False, repr=False, compare=False)
    _retired: bool = field(default=False, init=False, repr=False, compare=False)
    _successor: Served | None = field(default=None, init=False, repr=False, compare=False)
    _state: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False, compare=False)

    @property
    def options(self) -> Mapping[str, Any]:
        """The model's options: the serve-time ones from settings at start-up (with their defaults), the
        build-time ones as the manifest records them (runtime/options.py)."""
        return self.entry.options

    def run(self, deadline: Deadline, work: Callable[[Any], T], *, pinned: bool = False) -> tuple[T, float]:
        """``work(runner)`` inside the admission slot, waiting at most until ``deadline``; with its ms in the slot.
        ``pinned``: the request named this version (``name@N``), so no other version may answer it.

        A pool's ingress (edge_mm/ray_serve) overrides this to run ``work`` where the model's replicas are.
        """
        target = self.enter(pinned)  # this version, or the one that replaced it if it was retired meanwhile
        try:
            with target.admission.slot(deadline):
                t0 = time.perf_counter()
                result = work(target.runner)
                return result, (time.perf_counter() - t0) * 1000
        finally:
            target.leave()

    def enter(self, pinned: bool = False) -> Served:
        """Count a request on this version; once retired, on its successor (NotFound when it was unloaded, or
        when the request was ``pinned`` to this version)."""
        with self._state:
            if not self._retired:
                self._users += 1
                return self
            successor = self._successor
        if successor is None:
            raise NotFound(f"model {self.name!r} was unloaded; GET /v1/models lists the models served")
        if pinned:
            raise NotFound(
                f"model {self.name!r} version {self.version} is no longer served (replaced by version "
                f"{successor.version}); GET /v1/models lists the versions served"
            )
        return successor.enter()

    def leave(self) -> None:
        with self._state:
            self._users -= 1
            self._state.notify_all()

    def retire(self, successor: Served | None, timeout_s: float) -> bool:
        """New requests go to ``successor`` (or fail with 404 when None); waits until those already
        here finish, at most ``timeout_s``, then stops the runner's batcher. True when it went idle."""
        with self._state:
            self._retired, self._successor = True, successor
            idle = self._state.wait_for(lambda: self._users == 0, timeout=timeout_s)
        batcher = getattr(self.runner, "batcher", None)
        if idle and batcher is not None and hasattr(batcher, "close"):
            batcher.close()
        return idle

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "task": self.kind,
            "device": self.device,
            "dtype": self.entry.variants[self.variant].dtype,
            "labels": len(self.entry.labels or []),
            "warm_ms": round(self.warm_ms, 1),
        }
