"""The artifact contract between `edge-mm build` and the runtime.

``manifest.json`` lives in the artifacts folder::

    {"format": 1, "edge_mm_version": ..., "torch_version": ..., "flavour": "cpu"|"cuda",
     "models": {name: ModelEntry-as-dict}}

A model entry records its task, source, content hash, files per device variant
(path relative to the artifacts folder + sha256), input/output spec, labels,
preprocessing constants, tokenizer file and the verification figures.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_mm.errors import ConfigError

FORMAT = 1
MANIFEST_NAME = "manifest.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class FileRef:
    """A file inside the artifacts folder and its sha256."""

    path: str
    sha256: str

    def resolve(self, root: Path) -> Path:
        """The absolute path, after checking the hash; a mismatch stops start-up."""
        full = root / self.path
        if not full.is_file():
            raise ConfigError(f"artifact {full} is missing; run 'edge-mm build' again")
        actual = sha256_file(full)
        if actual != self.sha256:
            raise ConfigError(
                f"artifact {full} has sha256 {actual[:12]}..., the manifest says {self.sha256[:12]}...; "
                "the file was changed or corrupted: rebuild with 'edge-mm build --force'"
            )
        return full


@dataclass
class Variant:
    """One loadable form of a model for one device: ``cpu`` (int8 or fp32) or ``cuda`` (fp16)."""

    files: dict[str, FileRef]
    dtype: str
    notes: list[str] = field(default_factory=list)


@dataclass
class ModelEntry:
    task: str
    source: str
    content_hash: str
    variants: dict[str, Variant]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    labels: list[str] | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    files: dict[str, FileRef] = field(default_factory=dict)  # shared by all variants: tokenizer, samples
    verification: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    edge_mm_version: str
    torch_version: str
    flavour: str
    models: dict[str, ModelEntry]
    format: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def write(self, root: Path) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        path = root / MANIFEST_NAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)
        return path


def _file_refs(raw: dict[str, Any]) -> dict[str, FileRef]:
    return {k: FileRef(**v) for k, v in raw.items()}


def read_manifest(root: Path) -> Manifest:
    """Parse ``root/manifest.json``; a missing or foreign file is a ConfigError that says what to do."""
    path = root / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no {MANIFEST_NAME} in {root}; run 'edge-mm build' first") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); rebuild with 'edge-mm build --force'") from None
    if raw.get("format") != FORMAT:
        raise ConfigError(f"{path} has format {raw.get('format')!r}, this edge-mm reads {FORMAT}; rebuild")
    models = {}
    for name, m in raw["models"].items():
        variants = {
            dev: Variant(files=_file_refs(v["files"]), dtype=v["dtype"], notes=v.get("notes", []))
            for dev, v in m["variants"].items()
        }
        models[name] = ModelEntry(
            task=m["task"],
            source=m["source"],
            content_hash=m["content_hash"],
            variants=variants,
            inputs=m["inputs"],
            outputs=m["outputs"],
            labels=m.get("labels"),
            preprocessing=m.get("preprocessing", {}),
            files=_file_refs(m.get("files", {})),
            verification=m.get("verification", {}),
            options=m.get("options", {}),
        )
    return Manifest(
        edge_mm_version=raw["edge_mm_version"],
        torch_version=raw["torch_version"],
        flavour=raw["flavour"],
        models=models,
        format=raw["format"],
    )
