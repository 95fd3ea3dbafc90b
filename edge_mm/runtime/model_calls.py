"""The models one request may use: found by name and kind, called through each model's own admission.

A task's ``run(models, request, deadline)`` calls ``models.call(served, deadline, work)``
for every model it uses (ConSE and video use several), so each model's concurrency and
queue limits hold, and each wait is bounded by the request's one deadline. What ran
and for how long is kept for the response headers.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from edge_mm.errors import NotFound
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.registry import Registry, Served

T = TypeVar("T")


class Use(NamedTuple):
    """One model call: which model and version, on which device, for how long (ms, inside its slot)."""

    model: str
    device: str
    ms: float
    version: int = 1


@dataclass
class Models:
    registry: Registry
    used: list[Use] = field(default_factory=list)
    pinned: set[tuple[str, int]] = field(default_factory=set)  # (model, version) this request named: name@N

    def get(self, kinds: Collection[str], route: str, name: str | None = None) -> Served:
        """The model named (404 when it does not serve ``route``), else the first of ``kinds``."""
        served = self.registry.get(name, kinds, route)
        if name is not None and "@" in name:
            self.pinned.add((served.name, served.version))  # only version N may answer (Served.enter)
        return served

    def find(self, kinds: Collection[str], route: str, name: str | None = None) -> Served | None:
        """Like :meth:`get`, but None when no model is named and none of ``kinds`` is served."""
        if name is not None:
            return self.get(kinds, route, name)
        try:
            return self.get(kinds, route)
        except NotFound:
            return None

    def call(self, served: Served, deadline: Deadline, work: Callable[[Any], T]) -> T:
        """``work(runner)`` inside ``served``'s admission slot, waiting at most until ``deadline``."""
        result, ms = served.run(deadline, work, pinned=(served.name, served.version) in self.pinned)
        self.used.append(Use(served.name, served.device, ms, served.version))
        return result
