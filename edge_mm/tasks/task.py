"""What a task module declares: its routes, the model kinds it accepts, ``parse`` and ``run``.

``parse(payload, limits, models) -> request`` validates everything it can before any
model work (it picks the model, so a wrong name is a 404 before a 422) and collects
media without decoding them. ``run(models, request, deadline) -> dict`` does the work,
calling every model through ``models.call`` (the model's own admission) under the
request's one deadline, and returns the JSON body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.model_calls import Models
from edge_mm.runtime.registry import Served
from edge_mm.tasks.payload import Limits, Payload

Parse = Callable[[Payload, Limits, Models], Any]
In = TypeVar("In")
Opt = TypeVar("Opt")


@dataclass(frozen=True)
class ModelRequest(Generic[In, Opt]):
    """What most tasks' ``parse`` returns: the chosen model, the inputs, the parsed options."""

    model: Served
    inputs: In  # texts, encoded images (Images) or a file's bytes
    options: Opt


Run = Callable[[Models, Any, Deadline], dict[str, Any]]
Work = Callable[[Any, Any, Any, Deadline], dict[str, Any]]  # (runner, inputs, options, deadline) -> body


def one_model_run(work: Work, *, decode: bool = False) -> Run:
    """``run`` for a task that calls one model with a :class:`ModelRequest`: ``work(runner, inputs, options,
    deadline)`` inside that model's admission slot; with ``decode`` the inputs (encoded media) are decoded
    there first, so decoded memory is bounded by admission too."""

    def run(models: Models, request: ModelRequest[Any, Any], deadline: Deadline) -> dict[str, Any]:
        def call(runner: Any) -> dict[str, Any]:
            inputs = request.inputs.decode() if decode else request.inputs
            return work(runner, inputs, request.options, deadline)

        return models.call(request.model, deadline, call)

    return run


@dataclass(frozen=True)
class Task:
    name: str
    routes: tuple[str, ...]  # URL paths, POST
    model_kinds: tuple[str, ...]  # the models' ``task`` values it can use
    parse: Parse
    run: Run
    summary: str
    media: tuple[str, ...] = ()  # upload fields it reads ("image", "audio", "video"); () = JSON only
    dialect: str = "edge-mm"  # "deepstack": DeepStack's body and error shapes
    body: type[BaseModel] | None = None  # the request model ``parse`` validates the fields with
    answer: type[BaseModel] | None = None  # the 200 body's shape, for /openapi.json


@dataclass(frozen=True)
class ModelKind:
    """A kind of model (a ``task`` in settings): how the runtime loads it, which build function makes it,
    and its ``options``.

    ``builder`` is ``"module:function"`` under ``edge_mm.build``: a string, because only the
    build side may import that code (it needs transformers and torchvision).
    ``options`` declares the serve-time options (read from settings at every start, defaults
    included); ``build_options`` maps each build-time option the builder reads to the value it
    takes when settings leave it out (changing one means building again).
    """

    load: Any  # runtime.runner.Loader
    builder: str
    help: str
    options: type[BaseModel] = field(kw_only=True)
    build_options: Mapping[str, Any] = field(kw_only=True, default_factory=dict)
