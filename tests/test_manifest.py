"""manifest.json read back: a damaged manifest is a ConfigError naming the bad key (exit 2), not a traceback."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_mm.cli import main
from edge_mm.errors import ConfigError
from edge_mm.manifest import FileRef, Manifest, ModelEntry, Variant, read_manifest, sha256_file


def write_artifacts(root: Path) -> Manifest:
    """A one-model artifacts folder with real files and hashes (no torch needed to read it)."""
    (root / "m").mkdir(parents=True)
    (root / "m" / "cpu.pt").write_bytes(b"model bytes")
    (root / "m" / "tokenizer.json").write_text("{}")
    manifest = Manifest(
        edge_mm_version="0",
        torch_version="2.13.0",
        flavour="cpu",
        models={
            "m": ModelEntry(
                task="embeddings",
                source="somewhere",
                content_hash="abc",
                variants={
                    "cpu": Variant(
                        files={"model": FileRef("m/cpu.pt", sha256_file(root / "m" / "cpu.pt"))}, dtype="int8-dynamic"
                    )
                },
                inputs=[{"name": "input_ids", "dtype": "int64", "shape": ["batch", "seq"]}],
                outputs=[{"name": "embeddings", "dtype": "float32", "shape": ["batch", "dim"]}],
                files={"tokenizer": FileRef("m/tokenizer.json", sha256_file(root / "m" / "tokenizer.json"))},
            )
        },
    )
    manifest.write(root)
    return manifest


def settings_file(folder: Path, extra: str = "") -> Path:
    path = folder / "settings.toml"
    path.write_text(textwrap.dedent(f'[runtime]\nartifacts_dir = "{folder / "artifacts"}"\n{extra}'))
    return path


Edit = Callable[[dict[str, Any]], Any]


def _edit(path: str, change: Callable[[dict[str, Any], str], None]) -> Edit:
    """An edit of the raw manifest at a dotted key path; returns the edited manifest."""

    def edit(raw: dict[str, Any]) -> Any:
        *parents, last = path.split(".")
        node = raw
        for p in parents:
            node = node[p]
        change(node, last)
        return raw

    return edit


def _del(path: str) -> Edit:
    return _edit(path, lambda node, key: node.pop(key))


def _set(path: str, value: Any) -> Edit:
    return _edit(path, lambda node, key: node.__setitem__(key, value))


DAMAGE = [
    ("a list", lambda raw: [], "the manifest must be an object"),
    ("no models", _del("models"), "models is missing"),
    ("file without sha256", _del("models.m.variants.cpu.files.model.sha256"), "models.m.variants.cpu.files.model.sha256 is missing"),
    ("shared file without path", _del("models.m.files.tokenizer.path"), "models.m.files.tokenizer.path is missing"),
    ("models a list", _set("models", []), "models must be an object"),
    ("model a string", _set("models.m", "x"), "models.m must be an object"),
    ("sha256 a number", _set("models.m.variants.cpu.files.model.sha256", 5), "models.m.variants.cpu.files.model.sha256 must be a string"),
    ("variants a list", _set("models.m.variants", ["cpu"]), "models.m.variants must be an object"),
    ("labels a string", _set("models.m.labels", "cat"), "models.m.labels must be a list"),
    ("an input a number", _set("models.m.inputs", [1]), "models.m.inputs[0] must be an object"),
    ("no task", _del("models.m.task"), "models.m.task is missing"),
    ("flavour a number", _set("flavour", 3), "flavour must be a string"),
    ("format a string", _set("format", "1"), "has format '1'"),
]  # fmt: skip


def _damage(root: Path, edit: Edit) -> None:
    raw = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps(edit(raw)))


@pytest.mark.parametrize(("edit", "message"), [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE])
def test_damaged_manifest_is_a_config_error_naming_the_key(tmp_path, edit, message):
    root = tmp_path / "artifacts"
    write_artifacts(root)
    _damage(root, edit)
    with pytest.raises(ConfigError, match="manifest") as exc:
        read_manifest(root)
    assert message in str(exc.value)


@pytest.mark.parametrize(("edit", "message"), [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE])
def test_cli_info_exits_2_with_the_message(tmp_path, capsys, edit, message):
    write_artifacts(tmp_path / "artifacts")
    _damage(tmp_path / "artifacts", edit)
    assert main(["--config", str(settings_file(tmp_path)), "info"]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_cli_check_exits_2_for_a_damaged_manifest(tmp_path, capsys):
    write_artifacts(tmp_path / "artifacts")
    _damage(tmp_path / "artifacts", _del("models.m.variants.cpu.files.model.sha256"))
    assert main(["--config", str(settings_file(tmp_path)), "check"]) == 2
    assert "models.m.variants.cpu.files.model.sha256 is missing" in capsys.readouterr().err


def test_a_sound_manifest_reads_back_as_written(tmp_path):
    written = write_artifacts(tmp_path)
    assert read_manifest(tmp_path) == written
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["models"]["m"]["labels"] = None  # optional keys may be null
    raw["models"]["m"]["files"]["tokenizer"]["extra"] = "ignored"
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    assert read_manifest(tmp_path).models["m"].labels is None


def test_non_utf8_manifest_is_a_config_error(tmp_path):
    (tmp_path / "manifest.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_manifest(tmp_path)
