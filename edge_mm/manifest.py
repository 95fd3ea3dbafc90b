"""The artifact contract between `edge-mm build` and the runtime.

``manifest.json`` lives in the artifacts folder::

    {"format": 1, "edge_mm_version": ..., "torch_version": ..., "flavour": "cpu"|"cuda",
     "models": {name: ModelEntry-as-dict}}

A model entry records its task, source, content hash, files per device variant
(path relative to the artifacts folder + sha256), input/output spec, labels,
preprocessing constants, tokenizer file and the verification figures.

Variants are keyed by device; a key may name a backend after the device
(``cpu-onnxruntime``): :func:`variant_device` gives the device. ``backends`` records
what the build measured for each CPU backend and which one serves, and why.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_mm.errors import ConfigError
from edge_mm.signing import verify_manifest

FORMAT = 1
MANIFEST_NAME = "manifest.json"
BACKENDS = ("torchscript", "onnxruntime")
ORT_VARIANT = "cpu-onnxruntime"  # the ONNX Runtime CPU variant's key
# ONNX Runtime int8 with 7-bit weights: what x86 CPUs without VNNI serve (runtime/cpu_features.py)
ORT_7BIT_VARIANT = "cpu-onnxruntime-7bit"
# ONNX Runtime with fp32 compute: what serves when a CPU's int8 kernels miss the gates at start-up
ORT_FP32_VARIANT = "cpu-onnxruntime-fp32"
# verification[NO_CUDA_KEY]: why the build wrote no ``cuda`` variant (no GPU there, a CPU-only kind, fp16 refused)
NO_CUDA_KEY = "no_cuda_variant"


def variant_device(key: str) -> str:
    """The device a variant key is for: ``cpu`` for ``cpu`` and ``cpu-onnxruntime``."""
    return key.partition("-")[0]


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
    """One loadable form of a model for one device: ``cpu`` (int8 or fp32) or ``cuda`` (fp16).

    ``backend``: what loads ``files["model"]``: ``torchscript`` or ``onnxruntime``.
    """

    files: dict[str, FileRef]
    dtype: str
    notes: list[str] = field(default_factory=list)
    backend: str = "torchscript"


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
    # {"setting", "serves", "reason", "criterion", "threads", "candidates": {backend: figures}}; {} = TorchScript only
    backends: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_backend(self) -> str:
        """The backend the build chose to serve on CPU: ONNX Runtime when it chose it (and its variant is
        there), else what loads the ``cpu`` variant (TorchScript, or a library of its own such as dlib)."""
        if self.backends.get("serves") == "onnxruntime" and ORT_VARIANT in self.variants:
            return "onnxruntime"
        cpu = self.variants.get("cpu")
        return cpu.backend if cpu is not None else "torchscript"

    def all_files(self, variants: Collection[str] | None = None) -> list[FileRef]:
        """The shared files, then those of ``variants`` (default: every variant)."""
        kept = [v for k, v in self.variants.items() if variants is None or k in variants]
        return [*self.files.values(), *(ref for v in kept for ref in v.files.values())]


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


# The manifest's shape, checked on load so damage reads as a ConfigError naming the key, not a
# traceback. A type checks isinstance; [x] is a list of x; {str: x} a mapping of names to x;
# any other dict an object whose keys are required unless they end in "?" (then None is allowed too).
_FILE_REF = {"path": str, "sha256": str}
_FILES = {str: _FILE_REF}
_VARIANT = {"files": _FILES, "dtype": str, "notes?": [str], "backend?": str}
_ENTRY = {
    "task": str,
    "source": str,
    "content_hash": str,
    "variants": {str: _VARIANT},
    "inputs": [dict],
    "outputs": [dict],
    "labels?": [str],
    "preprocessing?": dict,
    "files?": _FILES,
    "verification?": dict,
    "options?": dict,
    "backends?": dict,
}
_MANIFEST = {"format": int, "edge_mm_version": str, "torch_version": str, "flavour": str, "models": {str: _ENTRY}}


def _describe(schema: Any) -> str:
    if isinstance(schema, type):
        return {dict: "an object", list: "a list", str: "a string", int: "an integer"}.get(schema, schema.__name__)
    if isinstance(schema, list):
        return "a list"
    return "an object"


def _shape_problem(value: Any, schema: Any, where: str) -> str | None:
    """The first place ``value`` does not fit ``schema``, as ``"models.x.files.model.sha256 is missing"``."""
    if isinstance(schema, type):
        ok = isinstance(value, schema) and not (schema is int and isinstance(value, bool))
        return None if ok else _wrong(value, schema, where)
    if isinstance(schema, list):
        if not isinstance(value, list):
            return _wrong(value, schema, where)
        items = [(item, schema[0], f"{where}[{i}]") for i, item in enumerate(value)]
    elif not isinstance(value, dict):
        return _wrong(value, schema, where)
    elif str in schema:
        items = [(item, schema[str], _join(where, key)) for key, item in value.items()]
    else:
        missing = [k for k in schema if not k.endswith("?") and k not in value]
        if missing:
            return f"{_join(where, missing[0])} is missing"
        present = [(k, k.removesuffix("?")) for k in schema if k.removesuffix("?") in value]
        items = [
            (value[name], schema[k], _join(where, name))
            for k, name in present
            if not (k.endswith("?") and value[name] is None)
        ]
    return next((p for item, sub, path in items if (p := _shape_problem(item, sub, path))), None)


def _wrong(value: Any, schema: Any, where: str) -> str:
    return f"{where or 'the manifest'} must be {_describe(schema)}, not {json.dumps(value)[:60]}"


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _file_refs(raw: dict[str, Any]) -> dict[str, FileRef]:
    return {k: FileRef(path=v["path"], sha256=v["sha256"]) for k, v in raw.items()}


def read_manifest(root: Path, verify_key: Path | None = None) -> Manifest:
    """Parse ``root/manifest.json``; a missing, foreign or damaged file is a ConfigError that says what to do.

    ``verify_key``: an Ed25519 public key file; then ``root/manifest.sig`` must be a valid signature
    of the manifest (see edge_mm/signing.py), checked on the bytes that are parsed.
    """
    path = root / MANIFEST_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no {MANIFEST_NAME} in {root}; run 'edge-mm build' first") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror or exc})") from None
    if verify_key is not None:
        verify_manifest(data, root, verify_key)
    try:
        raw = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); rebuild with 'edge-mm build --force'") from None
    if isinstance(raw, dict) and raw.get("format") != FORMAT:
        raise ConfigError(f"{path} has format {raw.get('format')!r}, this edge-mm reads {FORMAT}; rebuild")
    problem = _shape_problem(raw, _MANIFEST, "")
    if problem:
        raise ConfigError(f"{path} is damaged: {problem}; rebuild with 'edge-mm build --force'")
    models = {}
    for name, m in raw["models"].items():
        variants = {
            dev: Variant(
                files=_file_refs(v["files"]),
                dtype=v["dtype"],
                notes=v.get("notes") or [],
                backend=v.get("backend") or "torchscript",
            )
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
            preprocessing=m.get("preprocessing") or {},
            files=_file_refs(m.get("files") or {}),
            verification=m.get("verification") or {},
            options=m.get("options") or {},
            backends=m.get("backends") or {},
        )
    return Manifest(
        edge_mm_version=raw["edge_mm_version"],
        torch_version=raw["torch_version"],
        flavour=raw["flavour"],
        models=models,
        format=raw["format"],
    )
