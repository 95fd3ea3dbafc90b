"""The build: content-hash reuse, manifest contents, fidelity guard failures, sources."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from edge_mm.build.all_models import build_all
from edge_mm.build.errors import BuildError
from edge_mm.build.sources import resolve_source
from edge_mm.config import load_settings
from edge_mm.errors import ConfigError
from edge_mm.manifest import read_manifest, sha256_file
from tests.conftest import tiny_settings_toml


def test_manifest_records_the_contract(tiny_settings):
    root = tiny_settings.path("runtime.artifacts_dir")
    manifest = read_manifest(root)
    assert manifest.flavour in ("cpu", "cuda")
    assert manifest.torch_version
    entry = manifest.models["tiny-sentiment"]
    assert entry.task == "text-classification"
    assert entry.labels == ["negative", "neutral", "positive"]
    assert [i["name"] for i in entry.inputs] == ["input_ids", "attention_mask"]
    assert entry.preprocessing["max_length"] == 32
    cpu = entry.variants["cpu"]
    assert cpu.dtype == "int8-dynamic"
    assert sha256_file(root / cpu.files["model"].path) == cpu.files["model"].sha256
    v = entry.verification
    assert v["traced_vs_eager_fp32_max_abs"] <= 1e-4
    assert v["batch_vs_single_fp32_max_abs"] <= 1e-4
    assert v["batch_sizes"] == [1, 3, 8]
    assert v["seq_lengths"][-1] == 32  # varied lengths up to max length
    assert set(v["int8_vs_fp32"]) == {"top1_agreement", "max_prob_diff"}
    emb = manifest.models["tiny-embed"].verification["int8_vs_fp32"]
    assert set(emb) == {"mean_cosine", "min_cosine"}
    assert emb["mean_cosine"] >= 0.99


def test_unchanged_model_is_not_rebuilt(tiny_settings):
    out = io.StringIO()
    build_all(tiny_settings, out=out)
    log = out.getvalue()
    assert log.count("unchanged, not rebuilt") == 5, log


def test_changed_or_corrupt_artifact_is_rebuilt(tiny_checkpoints, tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text(tiny_settings_toml(tiny_checkpoints, tmp_path / "artifacts"))
    settings = load_settings(path, env={})
    build_all(settings, only=["tiny-embed"], out=io.StringIO())
    model_file = tmp_path / "artifacts" / "tiny-embed" / "cpu.pt"
    model_file.write_bytes(model_file.read_bytes() + b"x")
    out = io.StringIO()
    build_all(settings, only=["tiny-embed"], out=out)
    assert "building embeddings" in out.getvalue()
    manifest = read_manifest(tmp_path / "artifacts")
    assert set(manifest.models) == {"tiny-embed"}  # only what was built is listed


def test_missed_fidelity_target_fails_naming_model_and_figure(tiny_checkpoints, tmp_path):
    path = tmp_path / "settings.toml"
    text = tiny_settings_toml(tiny_checkpoints, tmp_path / "artifacts")
    text = text.replace('name = "tiny-embed"', 'name = "tiny-embed"\nmin_min_cosine = 1.01\nauto_keep_fp32 = false')
    path.write_text(text)
    with pytest.raises(
        BuildError, match=r"model tiny-embed: int8 misses its fidelity target: min_cosine .* \(needs >= 1.01\)"
    ):
        build_all(load_settings(path, env={}), only=["tiny-embed"], out=io.StringIO())


def test_keep_fp32_layers(tiny_checkpoints, tmp_path):
    path = tmp_path / "settings.toml"
    text = tiny_settings_toml(tiny_checkpoints, tmp_path / "artifacts")
    text = text.replace(
        'name = "tiny-sentiment"',
        'name = "tiny-sentiment"\nkeep_fp32 = ["model.classifier", "model.bert.encoder.layer.1"]',
    )
    path.write_text(text)
    build_all(load_settings(path, env={}), only=["tiny-sentiment"], out=io.StringIO())
    v = read_manifest(tmp_path / "artifacts").models["tiny-sentiment"].verification
    assert v["kept_fp32"][:2] == ["model.classifier", "model.bert.encoder.layer.1"]


def test_sources(tmp_path):
    (tmp_path / "pkgs" / "somepkg" / "model").mkdir(parents=True)
    assert (
        resolve_source("package:somepkg/model", packages_dir=tmp_path / "pkgs", base_dir=tmp_path)
        == (tmp_path / "pkgs" / "somepkg" / "model").resolve()
    )
    with pytest.raises(ConfigError, match="run 'make models'"):
        resolve_source("package:missingpkg/model", packages_dir=tmp_path / "pkgs", base_dir=tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_source("no/such/dir", packages_dir=tmp_path, base_dir=tmp_path)


def test_hf_source_offline_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache.*--allow-download"):
        resolve_source("hf:someone/not-cached-model", packages_dir=tmp_path, base_dir=tmp_path)


def test_hf_source_from_local_cache(tiny_checkpoints, tmp_path, monkeypatch):
    """A model laid out like the HF cache resolves without any network."""
    cache = tmp_path / "hf"
    snap = cache / "models--org--tiny" / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_checkpoints / "bert-seq", snap)
    (cache / "models--org--tiny" / "refs").mkdir()
    (cache / "models--org--tiny" / "refs" / "main").write_text("0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import importlib

    import huggingface_hub.constants

    importlib.reload(huggingface_hub.constants)
    try:
        import huggingface_hub._snapshot_download as sd

        importlib.reload(sd)
        path = resolve_source("hf:org/tiny", packages_dir=tmp_path, base_dir=tmp_path)
        assert json.loads((Path(path) / "config.json").read_text())["id2label"]["0"] == "negative"
    finally:
        monkeypatch.undo()
        importlib.reload(huggingface_hub.constants)


def test_a_file_two_variants_share_is_prefixed_once():
    from edge_mm.build.all_models import _prefix_paths
    from edge_mm.manifest import FileRef, ModelEntry, Variant

    shared = FileRef("pnet.pt", "0")
    own = FileRef("cpu.onnx", "1")
    entry = ModelEntry(
        "face-detection",
        "x",
        "h",
        {"cpu": Variant({"pnet": shared}, "float32"), "cuda": Variant({"pnet": shared, "model": own}, "float32")},
        [],
        [],
    )
    _prefix_paths(entry, "mtcnn")
    assert [r.path for r in entry.all_files()] == ["mtcnn/pnet.pt", "mtcnn/pnet.pt", "mtcnn/cpu.onnx"]
