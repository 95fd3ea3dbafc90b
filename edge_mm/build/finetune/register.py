"""`--register NAME`: append the fine-tuned model's [[models]] entry to settings.toml.

The file is edited as text (comments and layout stay), checked by loading it, and replaced
atomically; a name already in use is refused.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

from edge_mm.config import load_settings
from edge_mm.errors import ConfigError


def check_name(settings_path: Path, name: str) -> None:
    """Fail early (before training) when ``name`` cannot be registered in ``settings_path``."""
    if not settings_path.is_file():
        raise ConfigError(f"--register: {settings_path} does not exist; pass --config or run from the project folder")
    if not name or not set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"):
        raise ConfigError(f"--register {name!r}: use letters, digits, '-' and '_'")
    raw = tomllib.loads(settings_path.read_text(encoding="utf-8"))
    if any(m.get("name") == name for m in raw.get("models", [])):
        raise ConfigError(f"--register {name!r}: {settings_path} already has a model with that name")


def register(settings_path: Path, name: str, task: str, checkpoint: Path, max_length: int) -> str:
    """Append the entry; ``source`` is relative to the settings file's folder when the checkpoint is inside it."""
    check_name(settings_path, name)
    checkpoint = checkpoint.resolve()
    base = settings_path.resolve().parent
    source = checkpoint.relative_to(base).as_posix() if checkpoint.is_relative_to(base) else checkpoint.as_posix()
    old = settings_path.read_text(encoding="utf-8")
    block = (
        f"\n# Fine-tuned by `edge-mm finetune` (report: {source}/report.md).\n"
        "[[models]]\n"
        f"name = {json.dumps(name)}\n"
        f"task = {json.dumps(task)}\n"
        f"source = {json.dumps(source)}\n"
        f"max_length = {max(8, int(max_length))}\n"
    )
    new = old + ("" if old.endswith("\n") or not old else "\n") + block
    tmp = settings_path.with_name(f".{settings_path.name}.{os.getpid()}.tmp")
    tmp.write_text(new, encoding="utf-8")
    try:
        load_settings(tmp, env={}).model(name)  # the edited file must still load
        os.replace(tmp, settings_path)
    finally:
        tmp.unlink(missing_ok=True)
    return block
