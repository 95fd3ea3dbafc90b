"""The registry refuses bad artifacts, picks devices per policy, and never imports build-only packages."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_mm.errors import ConfigError, NotFound, NotReady
from edge_mm.manifest import read_manifest
from edge_mm.runtime.registry import Registry, load_registry
from edge_mm.tasks.table import LOADERS, OPTIONS
from tests.conftest import served_cpu_variant

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def artifact_copy(tiny_settings, tmp_path):
    """A private copy of the tiny artifacts, to damage."""
    src = tiny_settings.path("runtime.artifacts_dir")
    dst = tmp_path / "artifacts"
    shutil.copytree(src, dst)
    return tiny_settings.replace(runtime__artifacts_dir=str(dst)), dst


@pytest.mark.parametrize("model", ["tiny-sentiment", "tiny-ner"])  # TorchScript, ONNX Runtime
def test_tampered_artifact_refuses_to_load(artifact_copy, model):
    settings, root = artifact_copy
    entry = read_manifest(root).models[model]
    # cpu.pt, or the ONNX form this CPU serves (cpu.onnx, or cpu.7bit.onnx on x86 without VNNI)
    served = entry.variants[served_cpu_variant(settings, model)].files["model"].path
    assert served.endswith(".pt" if model == "tiny-sentiment" else ".onnx")
    f = root / served
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=rf"{re.escape(served)} has sha256 .* the manifest says"):
        load_registry(settings, LOADERS, options=OPTIONS)


def test_missing_manifest_says_build(artifact_copy):
    settings, root = artifact_copy
    (root / "manifest.json").unlink()
    with pytest.raises(ConfigError, match="run 'edge-mm build' first"):
        load_registry(settings, LOADERS, options=OPTIONS)


def test_model_not_built_says_build(artifact_copy):
    settings, root = artifact_copy
    raw = json.loads((root / "manifest.json").read_text())
    del raw["models"]["tiny-embed"]
    (root / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="'tiny-embed' is in settings but not in"):
        load_registry(settings, LOADERS, options=OPTIONS)


def test_cuda_requested_without_cuda_refuses(tiny_settings):
    with pytest.raises(ConfigError, match="runtime.device = cuda but torch sees no CUDA device"):
        load_registry(tiny_settings.replace(runtime__device="cuda"), LOADERS, options=OPTIONS, cuda_available=False)


def test_auto_on_cpu_machine_serves_cpu_and_says_why(tiny_settings):
    reg = load_registry(tiny_settings, LOADERS, options=OPTIONS, cuda_available=False)
    assert {m.device for m in reg.models.values()} == {"cpu"}
    assert "no CUDA device" in reg.info["models"]["tiny-embed"]["reason"]


def test_not_ready_until_warm(tiny_settings):
    reg = load_registry(tiny_settings, LOADERS, options=OPTIONS)
    with pytest.raises(NotReady):
        reg.get(None, ("embeddings",), "/v1/embeddings")
    reg.warm_all()
    assert reg.get(None, ("embeddings",), "/v1/embeddings").name == "tiny-embed"
    with pytest.raises(NotFound, match="is a embeddings model and does not serve /v1/token-classification"):
        reg.get("tiny-embed", ("token-classification",), "/v1/token-classification")


def test_empty_registry_routes_are_404():
    reg = Registry()
    reg.mark_ready()
    with pytest.raises(NotFound, match="no model serving /v1/embeddings"):
        reg.get(None, ("embeddings",), "/v1/embeddings")


def test_runtime_never_imports_build_only_packages(tiny_config):
    """Load, warm and serve requests in a fresh process; transformers/torchvision/onnx stay out of sys.modules."""
    code = f"""
import sys
from edge_mm.config import load_settings
from edge_mm.runtime.registry import load_registry
from edge_mm.tasks.table import LOADERS, OPTIONS
from edge_mm.api import create_app
import edge_mm.server, edge_mm.cli
s = load_settings({str(tiny_config)!r}, env={{}})
reg = load_registry(s, LOADERS, options=OPTIONS); reg.warm_all()
c = create_app(s, reg).test_client()
assert c.post('/v1/embeddings', json={{'inputs': 'hi'}}).status_code == 200
assert c.post('/v1/token-classification', json={{'inputs': 'john smith'}}).status_code == 200
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'torchvision', 'huggingface_hub', 'onnx') or m.startswith(('edge_mm.build', 'onnxruntime.quantization')))
assert 'onnxruntime' in sys.modules  # tiny-embed and tiny-ner serve ONNX Runtime artifacts
print('BAD', bad)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "BAD []" in out.stdout
