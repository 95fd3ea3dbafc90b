"""Model versions on disk, and which of them a model's ``version_policy`` serves.

A version is a folder ``<artifacts>/<model>/<n>/`` holding its own ``manifest.json`` (and ``manifest.sig``,
checked with ``runtime.verify_key`` as the flat one), with the model's files at the paths that manifest
names, relative to that folder: an update bundle unpacked as it was signed (runtime/update_bundle.py).
The flat ``<artifacts>/manifest.json`` that ``edge-mm build`` writes is version 1 of every model it holds,
unless ``<model>/1/`` exists. ``<model>/rolled_back.json`` lists the versions ``rollback`` turned away from:
``latest`` skips them.

Policies (as Triton's ``version_policy``): ``latest`` (the highest version not rolled back), ``all``, or
specific versions ``"3"`` / ``"2,3"``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from edge_mm.errors import ConfigError
from edge_mm.manifest import MANIFEST_NAME, Manifest, read_manifest

LEGACY_VERSION = 1  # the flat layout's models
ROLLED_BACK_NAME = "rolled_back.json"
POLICIES = ("latest", "all")


@dataclass(frozen=True)
class Version:
    """One version of one model: its manifest, and the folder that manifest's file paths are relative to."""

    model: str
    number: int
    root: Path
    manifest: Manifest


def parse_policy(text: str) -> tuple[str, tuple[int, ...]]:
    """``("latest", ())``, ``("all", ())`` or ``("specific", (2, 3))``; ValueError for anything else."""
    if text in POLICIES:
        return text, ()
    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise ValueError(f"{text!r} is not a version policy; use latest, all, or version numbers such as '3' or '2,3'")
    return "specific", tuple(sorted({int(p) for p in parts}))


def split_name(name: str) -> tuple[str, int | None]:
    """``"minilm@3"`` -> ``("minilm", 3)``; ``"minilm"`` -> ``("minilm", None)``; ValueError for a bad version."""
    model, at, version = name.partition("@")
    if not at:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise ValueError(f"{name!r}: the version after '@' must be a positive whole number")
    return model, int(version)


class Catalog:
    """What ``<artifacts>`` holds, read on demand; the flat manifest is read (and verified) at most once."""

    def __init__(self, root: Path, verify_key: Path | None) -> None:
        self.root = root
        self.verify_key = verify_key
        self._flat: Manifest | None = None

    def flat(self) -> Manifest:
        """The flat manifest; ConfigError as read_manifest when it is missing or bad."""
        if self._flat is None:
            self._flat = read_manifest(self.root, verify_key=self.verify_key)
        return self._flat

    def folder(self, model: str) -> Path:
        return self.root / model

    def numbers(self, model: str) -> list[int]:
        """Every version of ``model`` on disk, ascending (rolled-back ones too)."""
        found = set(folder_numbers(self.folder(model)))
        if LEGACY_VERSION not in found and (self.root / MANIFEST_NAME).is_file():
            try:
                if model in self.flat().models:
                    found.add(LEGACY_VERSION)
            except ConfigError:
                if not found:
                    raise  # the flat manifest is the only place the model could be: say what is wrong with it
        return sorted(found)

    def version(self, model: str, number: int) -> Version:
        """The version's verified manifest; ConfigError when it is missing, unsigned or lacks the model."""
        folder = self.folder(model) / str(number)
        if (folder / MANIFEST_NAME).is_file():
            manifest = read_manifest(folder, verify_key=self.verify_key)
            if model not in manifest.models:
                raise ConfigError(f"{folder}/{MANIFEST_NAME} does not hold model {model!r}")
            return Version(model, number, folder, manifest)
        if number != LEGACY_VERSION:
            raise ConfigError(f"model {model!r} has no version {number} in {self.root}")
        return Version(model, number, self.root, self.flat())

    def rolled_back(self, model: str) -> set[int]:
        path = self.folder(model) / ROLLED_BACK_NAME
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path} is unreadable ({exc}); remove it to forget rollbacks") from None
        if not isinstance(raw, list) or not all(isinstance(n, int) for n in raw):
            raise ConfigError(f"{path} must be a JSON list of version numbers; remove it to forget rollbacks")
        return set(raw)

    def set_rolled_back(self, model: str, numbers: set[int]) -> None:
        folder = self.folder(model)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / ROLLED_BACK_NAME
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(sorted(numbers)), encoding="utf-8")
        os.replace(tmp, path)

    def selected(self, model: str, policy: str) -> list[int]:
        """The versions ``policy`` serves, ascending (the last is the default one); [] when none is on disk
        (ConfigError when a specific version is missing)."""
        kind, wanted = parse_policy(policy)
        numbers = self.numbers(model)
        if kind == "all":
            return numbers
        if kind == "specific":
            missing = [n for n in wanted if n not in numbers]
            if missing:
                raise ConfigError(
                    f"model {model!r}: version_policy names version(s) {missing} that are not in {self.root} "
                    f"(on disk: {numbers or 'none'})"
                )
            return list(wanted)
        live = [n for n in numbers if n not in self.rolled_back(model)]
        return live[-1:]


def folder_numbers(folder: Path) -> list[int]:
    """The numbered version folders (with a manifest) under a model's folder, ascending."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(n) for n in names if n.isdigit() and int(n) >= 1 and (folder / n / MANIFEST_NAME).is_file())
