"""A task's model call, run on the model's Ray Serve replica instead of in the ingress.

The ingress serves the same Flask app as ``edge-mm serve``; only its models differ. Each is a
:class:`RemoteServed`, whose :meth:`~RemoteServed.run` ships the task's ``work(runner)`` closure
to one of the model's replicas (cloudpickle), where it runs inside that replica's admission slot
exactly as it runs in-process. In the shipped closure a ``Served`` becomes the replica's own
(its runner is there) and a ``Deadline`` travels as the seconds it has left (monotonic clocks
differ between machines). Errors with an HTTP status come back as values and are raised again
in the ingress; a replica or node lost mid-call is a 503 the client may retry.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import ray.exceptions
from ray import cloudpickle
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from edge_mm.errors import DeadlineExceeded, EdgeError, Overloaded
from edge_mm.manifest import ModelEntry
from edge_mm.runtime.admission import Admission
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.registry import Registry, Served

T = TypeVar("T")

GRACE_S = 2.0  # the ingress waits this long past the deadline for the replica's own 504
CALLS_ON_LOSS = 3  # tries of one model call whose replica dies under it (a node lost), within the deadline
# What a call sees when the replica serving it dies with its node, or none is left yet.
LOST = (
    ray.exceptions.RayActorError,
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.ObjectLostError,
    ray.exceptions.OwnerDiedError,
    DeploymentUnavailableError,
)

_replica: dict[str, Served] = {}  # in a replica process: its model, by name


def set_replica_model(served: Served) -> None:
    """Called once in a model replica: closures that name this model get this ``Served``."""
    _replica[served.name] = served


def _served_here(name: str, kind: str, device: str, variant: str, entry: ModelEntry) -> Served:
    """A shipped ``Served``: the replica's own model, or (another model a request also names) a stand-in
    with its settings and no runner."""
    here = _replica.get(name)
    if here is not None:
        return here
    return Served(name, kind, None, Admission(1, 0, 1.0), device, variant, entry)


def _deadline_here(remaining_s: float, budget_s: float) -> Deadline:
    return Deadline(time.monotonic() + remaining_s, budget_s)


class _WorkPickler(cloudpickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Served):
            return _served_here, (obj.name, obj.kind, obj.device, obj.variant, obj.entry)
        if isinstance(obj, Deadline):
            return _deadline_here, (obj.remaining(), obj.budget_s)
        return super().reducer_override(obj)


def dumps_work(work: Callable[[Any], Any]) -> bytes:
    buf = io.BytesIO()
    _WorkPickler(buf).dump(work)
    return buf.getvalue()


@dataclass(frozen=True)
class Outcome:
    """What a replica sends back: the work's result or its EdgeError, the ms inside the slot, the device."""

    value: Any
    error: EdgeError | None
    ms: float
    device: str


def run_shipped(served: Served, work_bytes: bytes, remaining_s: float, budget_s: float) -> Outcome:
    """In the replica: unpickle ``work`` and run it in ``served``'s slot within the request's time left;
    an EdgeError is returned, not raised."""
    work = cloudpickle.loads(work_bytes)
    try:
        value, ms = served.run(_deadline_here(remaining_s, budget_s), work)
    except EdgeError as exc:
        return Outcome(None, exc, 0.0, served.device)
    return Outcome(value, None, ms, served.device)


PLAIN = (str, int, float, bool, type(None), list, tuple, dict)


def plain_attribute(runner: Any, name: str) -> tuple[bool, Any]:
    """In the replica: (True, value) for a data attribute of the runner (text, numbers, containers, tensors,
    arrays) or ``__class__``; (False, None) for anything else (methods, batchers, modules)."""
    if name == "__class__":
        return True, type(runner)
    value = getattr(runner, name, None)
    if value is None or callable(value) and not hasattr(value, "shape"):
        return False, None
    if isinstance(value, PLAIN) or hasattr(value, "shape") and hasattr(value, "dtype"):
        return True, value
    return False, None


class RemoteRunner:
    """Stands in the ingress for a model's runner on its replicas.

    Tasks read a few plain attributes outside their model call (an image classifier's ``labels``, a
    ConSE table's class embeddings, ``isinstance(runner, ClipModel)``): those are fetched once from a
    replica. Anything else (methods, batchers) is not there: model work goes through ``models.call``.
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _fetch(self, name: str) -> Any:
        with self._lock:
            if name not in self._cache:
                self._cache[name] = self._handle.attribute.remote(name).result(timeout_s=60)
            return self._cache[name]

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # noqa: F811
        return self._fetch("__class__")[1]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        found, value = self._fetch(name)
        if not found:
            raise AttributeError(f"{name!r} is not a plain attribute of the model's runner")
        return value


@dataclass
class RemoteServed(Served):
    """A model as the ingress sees it: settings and manifest entry here, runner on Ray Serve replicas."""

    handle: Any = None  # the model deployment's DeploymentHandle

    def run(self, deadline: Deadline, work: Callable[[Any], T], *, pinned: bool = False) -> tuple[T, float]:
        data = dumps_work(work)  # the pool serves one version (no hot swap there): ``pinned`` changes nothing
        for attempt in range(1, CALLS_ON_LOSS + 1):
            try:
                outcome = self._call(data, deadline)
                break
            except LOST as exc:  # inference has no side effects: the router picks another replica
                if attempt == CALLS_ON_LOSS or deadline.remaining() < GRACE_S:
                    raise Overloaded(
                        f"model {self.name!r}: its replica was lost ({type(exc).__name__}); retry shortly",
                        headers={"Retry-After": "1"},
                    ) from None
        self.device = outcome.device
        if outcome.error is not None:
            raise outcome.error
        return outcome.value, outcome.ms

    def _call(self, data: bytes, deadline: Deadline) -> Outcome:
        try:
            response = self.handle.run.remote(data, deadline.remaining(), deadline.budget_s)
            return response.result(timeout_s=deadline.remaining() + GRACE_S)
        except TimeoutError:
            raise DeadlineExceeded(
                f"model {self.name!r} did not answer within the {deadline.budget_s:g} s request deadline"
            ) from None
        except BackPressureError:
            raise Overloaded(
                f"model {self.name!r}: every replica is busy and its queue is full; retry shortly",
                headers={"Retry-After": "1"},
            ) from None


def remote_registry(models: dict[str, RemoteServed], info: dict[str, Any]) -> Registry:
    """The ingress's registry: ready at once (Serve routes to the ingress after the models are up)."""
    registry = Registry(models=dict(models), info=info)
    registry.mark_ready()
    return registry
