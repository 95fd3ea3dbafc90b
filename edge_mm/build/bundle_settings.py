"""The bundle's settings.toml: a ``Settings`` written back as TOML (non-default values, every model)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from edge_mm.config import MODEL_SETTINGS, SETTINGS, Settings
from edge_mm.errors import ConfigError


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"cannot write {value!r} to settings.toml")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) to settings.toml")


def settings_toml(settings: Settings, artifacts_dir: str) -> str:
    """``settings`` as a TOML file: non-default scalars, ``artifacts_dir`` as given, every model.

    ``[build]`` is left out: the bundle builds nothing.
    """
    lines = ["# Written by `edge-mm package`. Paths are relative to this file; EDGE_MM_* variables override.", ""]
    sections: dict[str, list[str]] = {}
    for s in SETTINGS:
        section, name = s.key.split(".")
        if section == "build":
            continue
        value = artifacts_dir if s.key == "runtime.artifacts_dir" else settings[s.key]
        if s.key == "runtime.artifacts_dir" or value != s.default:
            sections.setdefault(section, []).append(f"{name} = {_toml_value(value)}")
    for section, body in sections.items():
        lines += [f"[{section}]", *body, ""]
    for model in settings.models:
        lines.append("[[models]]")
        for m in MODEL_SETTINGS:
            value = getattr(model, m.key)
            if m.default is None or value != (tuple(m.default) if isinstance(m.default, list) else m.default):
                lines.append(f"{m.key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)
