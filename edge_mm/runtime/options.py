"""A model's ``options``: serve-time ones come from settings at start-up, build-time ones from the build.

Each model kind declares (in the task table, which injects them here as ``OPTIONS``) a pydantic
model of its serve-time options and the build-time option keys its builder reads, with the value
the builder takes when one is not set. Serve-time options are validated from settings every time
the server starts; build-time ones shaped the artifacts, so settings that disagree with what the
manifest records refuse to start until the model is built again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from edge_mm.config import ModelSpec
from edge_mm.errors import ConfigError
from edge_mm.manifest import ModelEntry


@dataclass(frozen=True)
class KindOptions:
    """The options of one model kind: ``serve`` validates the serve-time ones (defaults included);
    ``build`` maps each build-time key to the value its builder uses when settings leave it out."""

    serve: type[BaseModel]
    build: Mapping[str, Any] = field(default_factory=dict)

    @property
    def serve_keys(self) -> frozenset[str]:
        return frozenset(self.serve.model_fields)


def serve_time(name: str, task: str, options: Mapping[str, Any], kind: KindOptions) -> dict[str, Any]:
    """The serve-time options of model ``name`` from settings, validated, with the kind's defaults.

    ConfigError naming the model and the field for an unknown key or a bad value.
    """
    unknown = sorted(set(options) - kind.serve_keys - set(kind.build))
    if unknown:
        raise ConfigError(
            f"model {name!r}: options.{unknown[0]} is not an option of {task} models; "
            f"serve-time: {', '.join(sorted(kind.serve_keys)) or 'none'}; "
            f"build-time: {', '.join(sorted(kind.build)) or 'none'}"
        )
    given = {k: v for k, v in options.items() if k in kind.serve_keys}
    try:
        return kind.serve.model_validate(given).model_dump()
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"model {name!r}: options.{where}: {err['msg']} (got {err.get('input')!r}); fix it in settings"
        ) from None


def served_options(
    name: str, task: str, settings_options: Mapping[str, Any], built: Mapping[str, Any], kind: KindOptions
) -> dict[str, Any]:
    """The options model ``name`` serves with: what the build recorded (build-time options and what the
    builder derived, e.g. ConSE's ``method``) under the serve-time options from settings.

    ConfigError when settings' build-time options differ from those the artifacts were built with.
    """
    serve = serve_time(name, task, settings_options, kind)
    for key, default in kind.build.items():
        wanted, had = settings_options.get(key, default), built.get(key, default)
        if wanted != had:
            raise ConfigError(
                f"model {name!r}: options.{key} = {_shown(wanted)} in settings, but the artifacts were built "
                f"with {_shown(had)}; it is a build-time option: run 'edge-mm build' again"
            )
    kept = {k: v for k, v in built.items() if k not in kind.serve_keys}
    return {**kept, **serve}


def served_entry(spec: ModelSpec, entry: ModelEntry, kind: KindOptions) -> ModelEntry:
    """``entry`` as the model serves it: its ``options`` are :func:`served_options` (loaders and tasks read them)."""
    return dataclasses.replace(entry, options=served_options(spec.name, spec.task, spec.options, entry.options, kind))


def _shown(value: Any) -> str:
    return "(unset)" if value is None else repr(value)
