"""What the settings say is what serves: serve-time options come from settings at every start, without
a rebuild; a bad one stops start-up; build-time ones are fingerprinted and refuse start-up until rebuilt."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path

import pytest

from edge_mm.build.all_models import build_all, content_hash, serve_options
from edge_mm.config import ModelSpec, Settings, load_settings
from edge_mm.errors import ConfigError
from edge_mm.runtime.registry import Registry, load_registry
from edge_mm.tasks.table import LOADERS, OPTIONS, check_models
from tests.conftest import test_client, tiny_settings_toml

LONG_TEXT = " ".join(["word"] * 60)


def start(settings: Settings) -> Registry:
    """What `edge-mm serve` does before it binds."""
    registry = load_registry(settings, LOADERS, options=OPTIONS)
    registry.warm_all()
    return registry


def edited(tiny_settings: Settings, ckpts: Path, tmp_path: Path, options: dict[str, str]) -> Settings:
    """The tiny settings with ``options`` (model -> the inside of its options table), served from a
    copy of the tiny artifacts (as built from the unedited settings)."""
    artifacts = tmp_path / "artifacts"
    if not artifacts.exists():
        shutil.copytree(tiny_settings.path("runtime.artifacts_dir"), artifacts)
    text = tiny_settings_toml(ckpts, artifacts).replace("options = { stride = 4 }\n", "")
    for name, table in {"tiny-ner": "stride = 4", **options}.items():
        text = text.replace(f'name = "{name}"\n', f'name = "{name}"\noptions = {{ {table} }}\n')
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return load_settings(path, env={})


def files_and_hashes(root: Path) -> dict[str, object]:
    """Every artifact file's size and mtime, and each model's content hash in the manifest."""
    files: dict[str, object] = {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    manifest = json.loads((root / "manifest.json").read_text())
    return {**files, **{f"hash:{n}": m["content_hash"] for n, m in manifest["models"].items()}}


def test_serve_time_options_edited_in_settings_serve_after_a_restart_without_a_rebuild(
    tiny_settings, tiny_checkpoints, client, tmp_path
):
    settings = edited(
        tiny_settings,
        tiny_checkpoints,
        tmp_path,
        {
            "tiny-embed": 'hypothesis_template = "It is about {}."',
            "tiny-sentiment": "top_k = 1",
            "tiny-ner": "stride = 2",
        },
    )
    root = settings.path("runtime.artifacts_dir")
    before = files_and_hashes(root)
    out = io.StringIO()
    build_all(settings, out=out)  # what an operator might run after the edit: nothing to do
    assert out.getvalue().count("unchanged, not rebuilt") == len(settings.models), out.getvalue()
    assert files_and_hashes(root) == before

    restarted = test_client(settings, start(settings))
    zero_shot = {"inputs": ["the match went to extra time"], "labels": ["sport", "cooking"]}
    new = restarted.post("/v1/zero-shot-classification", json=zero_shot).get_json()["results"]
    old = client.post("/v1/zero-shot-classification", json=zero_shot).get_json()["results"]
    asked = client.post(
        "/v1/zero-shot-classification", json={**zero_shot, "hypothesis_template": "It is about {}."}
    ).get_json()["results"]
    assert new == asked != old

    sentiment = {"model": "tiny-sentiment", "inputs": ["fine"]}
    assert len(restarted.post("/v1/text-classification", json=sentiment).get_json()["results"][0]["labels"]) == 1
    assert len(client.post("/v1/text-classification", json=sentiment).get_json()["results"][0]["labels"]) > 1

    ner = {"model": "tiny-ner", "inputs": [LONG_TEXT]}
    new_windows = restarted.post("/v1/token-classification", json=ner).get_json()["results"][0]["windows"]
    old_windows = client.post("/v1/token-classification", json=ner).get_json()["results"][0]["windows"]
    assert new_windows < old_windows  # stride 2 instead of 4: windows share fewer tokens, fewer are needed


@pytest.mark.parametrize(
    ("model", "table", "field"),
    [
        ("tiny-sentiment", "top_k = 0", "top_k"),  # out of range
        ("tiny-embed", "hypothesis_template = 3", "hypothesis_template"),  # wrong type
        ("tiny-embed", 'hypothesis_template = "no placeholder"', "hypothesis_template"),
        ("tiny-ner", "stride = -1", "stride"),
        ("tiny-ner", "stride = 15", "stride"),  # no new tokens left in a window of 16
        ("tiny-sentiment", "topk = 2", "topk"),  # unknown key
    ],
)
def test_a_bad_option_stops_start_up_naming_the_model_and_the_field(
    tiny_settings, tiny_checkpoints, tmp_path, model, table, field
):
    settings = edited(tiny_settings, tiny_checkpoints, tmp_path, {model: table})
    with pytest.raises(ConfigError, match=rf"model '{model}': options\.{field}"):
        start(settings)


def test_a_bad_serve_time_option_also_stops_a_build(tiny_settings, tiny_checkpoints, tmp_path):
    settings = edited(tiny_settings, tiny_checkpoints, tmp_path, {"tiny-sentiment": "top_k = 0"})
    with pytest.raises(ConfigError, match=r"model 'tiny-sentiment': options\.top_k"):
        check_models(settings)  # the CLI runs it before build and serve


def test_the_build_fingerprint_ignores_serve_time_options_and_includes_build_time_ones(tiny_checkpoints):
    source = tiny_checkpoints / "bert-embeddings"
    spec = ModelSpec("m", "embeddings", str(source), options={"hypothesis_template": "{}"})
    serve_edit = dataclasses.replace(spec, options={"hypothesis_template": "It is about {}."})
    build_edit = dataclasses.replace(spec, options={"hypothesis_template": "{}", "pooling": "cls"})
    assert content_hash(serve_edit, source) == content_hash(spec, source)
    assert content_hash(build_edit, source) != content_hash(spec, source)

    clf = ModelSpec("c", "image-classification", "x", options={"top_k": 3, "arch": "resnet18", "crop": 200})
    assert clf.build_fingerprint(serve_options(clf.task))["options"] == {"arch": "resnet18", "crop": 200}
    conse = ModelSpec("z", "zero-shot-image", "x", options={"classifier": "c", "text_model": "t", "top_t": 5})
    assert conse.build_fingerprint(serve_options(conse.task))["options"] == {"classifier": "c", "text_model": "t"}


def test_a_build_time_option_changed_without_a_rebuild_refuses_start_up(tiny_settings, tiny_checkpoints, tmp_path):
    settings = edited(tiny_settings, tiny_checkpoints, tmp_path, {"tiny-embed": 'pooling = "cls"'})
    with pytest.raises(
        ConfigError,
        match=r"model 'tiny-embed': options\.pooling = 'cls' in settings, but the artifacts were built with "
        r"\(unset\); it is a build-time option: run 'edge-mm build' again",
    ):
        start(settings)
