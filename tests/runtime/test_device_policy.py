"""The device policy at serve time, without a GPU: ``cuda_available`` forced True, and loaders that
load a CUDA-shaped variant on the CPU (the build's bf16 stand-in, build/accelerator.py)."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest

from edge_mm.build.text import build_text_model
from edge_mm.config import Settings, load_settings
from edge_mm.errors import ConfigError
from edge_mm.manifest import NO_CUDA_KEY, ORT_VARIANT, FileRef, Manifest, ModelEntry, Variant
from edge_mm.runtime.registry import load_registry
from edge_mm.runtime.self_check import run_check
from edge_mm.tasks import table

ROOT = Path(__file__).resolve().parents[2]
# Which default models (settings.toml) a CUDA machine's build gives a CUDA variant, and what the
# others' builders record instead (build/voice_activity.py, build/zero_shot_image.py).
CUDA_FORMS = {
    "minilm": True,
    "efficientnet": True,
    "mtcnn": True,
    "faces": False,
    "ppocr": False,
    "coco-ssd": False,
    "silero-vad": False,
    "conse": False,
}
NO_CUDA = {
    "faces": "dlib-bin is a CPU build",
    "ppocr": "OCR serves the shipped graphs on ONNX Runtime's CPU provider in this version",
    "coco-ssd": "SSD graphs serve on ONNX Runtime's CPU provider in this version",
    "silero-vad": "silero VAD serves on CPU only: stateful 32 ms windows, one clip at a time",
    "conse": "ConSE has no network of its own (a numpy table); its classifier and text model pick their own devices",
}


def _load(settings: Settings, loaders: Any, **kwargs: Any) -> Any:
    return load_registry(settings, loaders, options=table.OPTIONS, **kwargs)


@dataclasses.dataclass
class _Stub:
    """What the registry needs of a runner: enough to load and report, nothing run."""

    name: str
    device: str

    def warm(self) -> float:
        return 0.0


def _stub_loader(name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> _Stub:
    return _Stub(name, device)


def _fake_entry(task: str, options: dict[str, Any], cuda: bool, why: str | None) -> ModelEntry:
    ref = FileRef("unused", "0" * 64)  # the stub loaders never resolve files
    variants = {
        "cpu": Variant({"model": ref}, "int8-dynamic"),
        ORT_VARIANT: Variant({"model": FileRef("m/model.onnx", "0" * 64)}, "int8", backend="onnxruntime"),
    }
    if cuda:
        variants["cuda"] = Variant({"model": ref}, "float16")
    return ModelEntry(
        task=task,
        source="fake",
        content_hash="",
        variants=variants,
        inputs=[],
        outputs=[],
        labels=[f"class {i}" for i in range(10)],
        verification={NO_CUDA_KEY: why} if why else {},
        options=options,
        backends={"setting": "auto", "serves": "onnxruntime", "reason": "fake: ONNX Runtime serves on CPU"},
    )


@pytest.fixture
def default_set(tmp_path: Path) -> Settings:
    """settings.toml's models over a fake manifest with the same names and tasks; fidelity gate off (no samples)."""
    settings = load_settings(ROOT / "settings.toml", env={})
    assert {m.name for m in settings.models} == set(CUDA_FORMS), "settings.toml's models changed: update CUDA_FORMS"
    models = {
        m.name: _fake_entry(m.task, dict(m.options), CUDA_FORMS[m.name], NO_CUDA.get(m.name)) for m in settings.models
    }
    Manifest("test", "test", "cuda", models).write(tmp_path)
    return settings.replace(runtime__artifacts_dir=str(tmp_path), runtime__fidelity_check=False)


def _stubs() -> dict[str, Any]:
    return dict.fromkeys(table.LOADERS, _stub_loader)


def _devices(registry: Any) -> dict[str, tuple[str, str]]:
    return {name: (m["device"], m["reason"]) for name, m in registry.info["models"].items()}


def test_runtime_cuda_over_the_default_models_serves_cuda_forms_on_cuda_and_says_why_the_rest_stay(default_set):
    registry = _load(default_set.replace(runtime__device="cuda"), _stubs(), cuda_available=True)
    print(json.dumps(_devices(registry), indent=1))  # the report's table: pytest -s
    assert registry.info["device"] == "cuda"
    for name, has_cuda in CUDA_FORMS.items():
        model = registry.info["models"][name]
        assert model["device"] == ("cuda" if has_cuda else "cpu"), name
        assert registry.models[name].device == model["device"]
    assert registry.info["models"]["minilm"]["reason"] == (
        "runtime.device = cuda: CUDA is available and a CUDA variant was built"
    )
    for name, why in NO_CUDA.items():
        assert registry.info["models"][name]["reason"] == f"runtime.device = cuda, but {why}: serving CPU"
        assert registry.info["models"][name]["variant"] == ORT_VARIANT
    assert registry.info["models"]["silero-vad"]["provider"] == "CPUExecutionProvider"
    assert "provider" not in registry.info["models"]["minilm"]  # TorchScript on CUDA


def test_auto_over_the_default_models_is_the_same_split(default_set):
    registry = _load(default_set, _stubs(), cuda_available=True)
    assert {n: m["device"] for n, m in registry.info["models"].items()} == {
        n: "cuda" if c else "cpu" for n, c in CUDA_FORMS.items()
    }


def test_runtime_cuda_without_any_cuda_device_refuses(default_set):
    with pytest.raises(ConfigError, match="runtime.device = cuda but torch sees no CUDA device"):
        _load(default_set.replace(runtime__device="cuda"), _stubs(), cuda_available=False)


def _with_model_device(settings: Settings, **devices: str) -> Settings:
    models = tuple(dataclasses.replace(m, device=devices.get(m.name, m.device)) for m in settings.models)
    return dataclasses.replace(settings, models=models)


def test_a_models_own_device_overrides_the_runtime_one(default_set):
    settings = _with_model_device(default_set.replace(runtime__device="cuda"), minilm="cpu")
    registry = _load(settings, _stubs(), cuda_available=True)
    assert registry.info["models"]["minilm"]["device"] == "cpu"
    assert registry.info["models"]["minilm"]["reason"] == "device = cpu"
    assert registry.info["models"]["efficientnet"]["device"] == "cuda"


def test_a_models_own_cuda_refuses_where_it_has_no_cuda_variant(default_set):
    settings = _with_model_device(default_set, **{"silero-vad": "cuda"})
    with pytest.raises(ConfigError, match="model 'silero-vad': device = cuda for this model, but silero VAD serves"):
        _load(settings, _stubs(), cuda_available=True)


# The serve side of a real CUDA-shaped variant: a tiny embedding model built with the CPU standing in for
# the accelerator (a bf16 "cuda" variant with its own reference), served through the registry with
# CUDA forced available and the loaders told "cpu" where the policy says "cuda".


def _on_cpu(loader: Any) -> Any:
    def load(name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> Any:
        return loader(name, entry, root, "cpu", variant, max_batch)

    return load


@pytest.fixture(scope="module")
def stand_in(tiny_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("stand-in")
    spec = load_settings(env={}).models  # no models: the spec below is the one
    assert spec == ()
    toml = root / "settings.toml"
    toml.write_text(
        f'[runtime]\nartifacts_dir = "{root / "artifacts"}"\nfidelity_check = false\n'
        f'[[models]]\nname = "emb"\ntask = "embeddings"\nsource = "{tiny_checkpoints / "bert-embeddings"}"\n'
        'quantization = "none"\nmax_length = 16\nartifact_backend = "torchscript"\n'
    )
    settings = load_settings(toml, env={})
    out = root / "artifacts" / "emb"
    out.mkdir(parents=True)
    entry = build_text_model(
        settings.models[0], tiny_checkpoints / "bert-embeddings", out, lambda _m: None, accelerator="cpu"
    )
    for ref in {id(r): r for r in entry.all_files()}.values():
        ref.path = f"emb/{ref.path}"
    Manifest("test", "test", "cuda", {"emb": entry}).write(root / "artifacts")
    return settings


def test_a_cuda_variant_serves_through_the_registry_and_checks_against_its_own_reference(stand_in):
    loaders = {kind: _on_cpu(load) for kind, load in table.LOADERS.items()}
    registry = _load(stand_in, loaders, cuda_available=True)
    served = registry.models["emb"]
    assert (served.device, served.variant, served.entry.variants["cuda"].dtype) == ("cuda", "cuda", "bfloat16")
    assert registry.info["device"] == "cuda"
    registry.warm_all()
    assert registry.ready
    vectors = served.runner.check_outputs(["a cat sits on the mat"])
    assert len(vectors) == 1
    kwargs = {"options": table.OPTIONS} if hasattr(table, "OPTIONS") else {}
    out = io.StringIO()
    assert run_check(stand_in, loaders, out, cuda_available=True, **kwargs) == 0, out.getvalue()
    assert "emb: ok on cuda cuda (max abs diff" in out.getvalue()
    assert "tolerance 1e-01" in out.getvalue()  # the bf16 form's own, recorded with its reference


def test_check_skips_a_cuda_variant_that_has_only_the_cpu_reference(stand_in, tmp_path):
    """Artifacts from before per-variant references: the fp16 form is not compared with the CPU one's outputs."""
    import shutil

    root = tmp_path / "artifacts"
    shutil.copytree(stand_in.path("runtime.artifacts_dir"), root)
    raw = json.loads((root / "manifest.json").read_text())
    del raw["models"]["emb"]["variants"]["cuda"]["files"]["reference"]
    (root / "manifest.json").write_text(json.dumps(raw))
    ref = root / "emb" / "reference.json"
    shared = json.loads(ref.read_text())
    del shared["variant"]
    ref.write_text(json.dumps(shared))
    raw["models"]["emb"]["files"]["reference"]["sha256"] = __import__("hashlib").sha256(ref.read_bytes()).hexdigest()
    (root / "manifest.json").write_text(json.dumps(raw))
    loaders = {kind: _on_cpu(load) for kind, load in table.LOADERS.items()}
    kwargs = {"options": table.OPTIONS} if hasattr(table, "OPTIONS") else {}
    out = io.StringIO()
    settings = stand_in.replace(runtime__artifacts_dir=str(root))
    assert run_check(settings, loaders, out, cuda_available=True, **kwargs) == 0
    assert "emb: reference made by cpu; cuda serves on cuda (rebuild to record one); skipped" in out.getvalue()
