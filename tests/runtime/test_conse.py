"""ConSE's partner check reads the entries the registry verified, never manifest.json a second time."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edge_mm.build.signing import keygen, sign_manifest
from edge_mm.config import load_settings
from edge_mm.errors import ConfigError
from edge_mm.manifest import MANIFEST_NAME, FileRef, Manifest, ModelEntry, Variant, sha256_file
from edge_mm.runtime.registry import load_registry
from edge_mm.tasks.table import LOADERS, OPTIONS


def _entry(root: Path, name: str, task: str, source: str, key: str, data: bytes, **extra) -> ModelEntry:  # type: ignore[no-untyped-def]
    path = root / name / key
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    files = {key.split(".")[0]: FileRef(f"{name}/{key}", sha256_file(path))}
    return ModelEntry(task, source, "h", {"cpu": Variant(files, "fp32")}, [], [], **extra)


@pytest.fixture
def signed_conse(tmp_path: Path) -> tuple[Path, Path]:
    """(settings.toml, artifacts): a classifier with 4 labels, a text model, and ConSE over them
    whose table has 3 rows (a mismatch the partner check must refuse), signed with a build key."""
    root = tmp_path / "artifacts"
    table = np.zeros((3, 4), np.float32)
    buf = root / "table.npy"
    root.mkdir()
    np.save(buf, table)
    models = {
        "clf": _entry(root, "clf", "image-classification", "clf-src", "model.pt", b"x", labels=list("abcd")),
        "txt": _entry(root, "txt", "embeddings", "txt-src", "model.pt", b"y"),
        "conse": _entry(
            root,
            "conse",
            "zero-shot-image",
            "txt-src",
            "class_embeddings.npy",
            buf.read_bytes(),
            options={"method": "conse", "classifier": "clf", "text_model": "txt"},
        ),
    }
    Manifest("0", "2.13.0", "cpu", models).write(root)
    private, public = keygen(tmp_path / "keys" / "build.key")
    sign_manifest(root, private)
    settings = tmp_path / "settings.toml"
    settings.write_text(
        textwrap.dedent(
            f"""
            [runtime]
            artifacts_dir = "{root}"
            verify_key = "{public}"
            device = "cpu"
            fidelity_check = false
            micro_batching = false
            [[models]]
            name = "clf"
            task = "image-classification"
            source = "clf-src"
            [[models]]
            name = "txt"
            task = "embeddings"
            source = "txt-src"
            [[models]]
            name = "conse"
            task = "zero-shot-image"
            source = "txt-src"
            options = {{ classifier = "clf", text_model = "txt" }}
            """
        )
    )
    return settings, root


def test_conse_checks_its_partners_in_the_verified_manifest_not_a_second_read(signed_conse):
    """Issue 18: ConSE re-read manifest.json without the signature check. Here the file is replaced
    (the classifier's labels "fixed" to match the table) after the registry verified it: the
    partner check must still see the signed entries and refuse."""
    settings_path, root = signed_conse

    def tampering_classifier_loader(*_args):  # type: ignore[no-untyped-def]
        raw = json.loads((root / MANIFEST_NAME).read_text())
        raw["models"]["clf"]["labels"] = ["a", "b", "c"]
        (root / MANIFEST_NAME).write_text(json.dumps(raw))
        return object()

    loaders = {
        **LOADERS,
        "image-classification": tampering_classifier_loader,
        "embeddings": lambda *_args: object(),
    }
    settings = load_settings(settings_path, env={})
    with pytest.raises(ConfigError, match="classifier 'clf' has 4 classes, the ConSE table 3"):
        load_registry(settings, loaders, options=OPTIONS, cuda_available=False)
