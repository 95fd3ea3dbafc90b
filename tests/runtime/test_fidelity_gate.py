"""The start-up fidelity gate (runtime/fidelity_gate.py): int8 re-measured on the CPU that serves, with fallback."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edge_mm.config import load_settings
from edge_mm.errors import ConfigError
from edge_mm.manifest import ORT_7BIT_VARIANT, ORT_FP32_VARIANT, ORT_VARIANT, read_manifest, sha256_file
from edge_mm.runtime import cpu_features, fidelity_gate
from edge_mm.runtime.registry import load_registry
from edge_mm.runtime.self_check import run_check
from edge_mm.tasks.table import LOADERS, OPTIONS
from tests.conftest import tiny_settings_toml


def test_cosine_figures_and_misses():
    s = fidelity_gate.Samples(
        ["a", "b"], [[1.0, 0.0], [0.0, 1.0]], "cosine", {"min_mean_cosine": 0.9, "min_min_cosine": 0.8}
    )
    figs = fidelity_gate.figures(s, [np.array([1.0, 0.0]), np.array([1.0, 1.0])])
    assert figs == {
        "mean_cosine": pytest.approx((1 + 2**-0.5) / 2, abs=1e-6),
        "min_cosine": pytest.approx(2**-0.5, abs=1e-6),
    }
    assert fidelity_gate.misses(s, figs) == [
        "mean_cosine 0.853553 (needs >= 0.9)",
        "min_cosine 0.707107 (needs >= 0.8)",
    ]


def test_classifier_figures_read_logits_before_features_and_per_token_rows():
    gates = {"min_top1_agreement": 0.9, "max_prob_diff": 0.1}
    images = fidelity_gate.Samples(["x"], [[2.0, 0.0]], "classifier", gates, labels=2)
    same = fidelity_gate.figures(images, [np.array([2.0, 0.0, 99.0, -5.0])])  # logits, then features
    assert same == {"top1_agreement": 1.0, "max_prob_diff": 0.0}
    tokens = fidelity_gate.Samples(["t"], [[[3.0, 0.0], [0.0, 3.0]]], "classifier", gates)
    flipped = fidelity_gate.figures(tokens, [np.array([[3.0, 0.0], [3.0, 0.0]])])
    assert flipped["top1_agreement"] == 0.5
    assert fidelity_gate.misses(tokens, flipped)[0] == "top1_agreement 0.5 (needs >= 0.9)"


def test_fallback_chain_stays_on_the_backend_then_goes_down_and_skips_torch_when_onnxruntime_is_pinned(tiny_settings):
    entry = read_manifest(tiny_settings.path("runtime.artifacts_dir")).models["tiny-embed"]
    ort = [ORT_7BIT_VARIANT, ORT_FP32_VARIANT]
    assert fidelity_gate.fallback_chain(entry, ORT_VARIANT, "auto") == [ORT_VARIANT, *ort, "cpu"]
    assert fidelity_gate.fallback_chain(entry, ORT_VARIANT, "onnxruntime") == [ORT_VARIANT, *ort]
    assert fidelity_gate.fallback_chain(entry, ORT_7BIT_VARIANT, "onnxruntime") == [
        ORT_7BIT_VARIANT,
        ORT_VARIANT,
        ORT_FP32_VARIANT,
    ]
    assert fidelity_gate.fallback_chain(entry, "cpu", "auto") == ["cpu", ORT_VARIANT, *ort]


@pytest.mark.parametrize(
    ("path", "serves"),
    [
        ("avx2", ORT_7BIT_VARIANT),
        ("avx512", ORT_7BIT_VARIANT),
        ("avx512-vnni", ORT_VARIANT),
        ("amx", ORT_VARIANT),
        ("neon-dot", ORT_VARIANT),
    ],
)
def test_each_cpu_path_serves_the_int8_form_made_for_its_kernels(tiny_settings, monkeypatch, path, serves):
    monkeypatch.setenv(cpu_features.ENV_OVERRIDE, path)
    cpu_features.detect.cache_clear()
    try:
        registry = load_registry(tiny_settings, LOADERS, options=OPTIONS)
    finally:
        monkeypatch.undo()  # the environment as it was (a whole run may set the override too)
        cpu_features.detect.cache_clear()
    assert registry.info["cpu"]["path"] == path
    assert registry.info["cpu"]["source"] == "override"
    assert registry.models["tiny-embed"].variant == serves
    gate = registry.info["models"]["tiny-embed"]["fidelity_check"]
    assert (gate["variant"], gate["cpu_path"]) == (serves, path)


def test_the_picked_variant_is_verified_on_this_cpu_and_info_says_so(tiny_registry):
    info = tiny_registry.info
    cpu = cpu_features.detect()
    assert info["cpu"]["path"] == cpu.path
    assert info["cpu"]["model"]
    gate = info["models"]["tiny-embed"]["fidelity_check"]
    expected = ORT_7BIT_VARIANT if cpu.saturating else ORT_VARIANT
    assert gate["variant"] == info["models"]["tiny-embed"]["variant"] == expected
    assert gate["cpu_path"] == cpu.path
    assert gate["reason"] == f"meets its gates on this CPU ({cpu.path})"
    assert [t["variant"] for t in gate["tried"]] == [gate["variant"]]
    assert gate["figures"]["min_cosine"] >= gate["gates"]["min_min_cosine"]
    assert gate["samples"] > 0


def _copy_artifacts(tiny_settings, tiny_checkpoints, tmp_path, *, gates=None, damage_int8=False, env=None):
    """The tiny artifacts copied, then changed as a CPU or a test would change them, hashes updated:
    ``gates`` replace tiny-embed's fidelity gates; ``damage_int8`` makes its int8 graph compute something
    else (its token embedding table reversed), as an int8 kernel that saturates on this CPU would."""
    src = tiny_settings.path("runtime.artifacts_dir")
    dst = tmp_path / "artifacts"
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    model = manifest["models"]["tiny-embed"]
    if gates is not None:
        path = dst / model["files"]["fidelity"]["path"]
        raw = json.loads(path.read_text())
        raw["gates"] = gates
        path.write_text(json.dumps(raw))
        model["files"]["fidelity"]["sha256"] = sha256_file(path)
    for key in (ORT_VARIANT, ORT_7BIT_VARIANT) if damage_int8 else ():
        ref = model["variants"][key]["files"]["model"]
        graph = onnx.load(str(dst / ref["path"]))
        for init in graph.graph.initializer:
            if "word_embeddings" in init.name and init.name.endswith("_quantized"):
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init)[::-1].copy(), init.name))
        onnx.save(graph, str(dst / ref["path"]))
        ref["sha256"] = sha256_file(dst / ref["path"])
    (dst / "manifest.json").write_text(json.dumps(manifest))
    config = tmp_path / "settings.toml"
    config.write_text(tiny_settings_toml(tiny_checkpoints, dst))
    return load_settings(config, env=env or {})


def test_a_miss_on_this_cpu_falls_back_to_the_next_variant(tiny_settings, tiny_checkpoints, tmp_path):
    settings = _copy_artifacts(tiny_settings, tiny_checkpoints, tmp_path, damage_int8=True)
    registry = load_registry(settings, LOADERS, options=OPTIONS)
    served = registry.models["tiny-embed"]
    assert served.variant == ORT_FP32_VARIANT  # the next of its backend: torch stays out of memory
    gate = registry.info["models"]["tiny-embed"]["fidelity_check"]
    assert gate["variant"] == ORT_FP32_VARIANT
    first = fidelity_gate.path_variant(
        read_manifest(settings.path("runtime.artifacts_dir")).models["tiny-embed"], ORT_VARIANT, cpu_features.detect()
    )
    second = ORT_VARIANT if first == ORT_7BIT_VARIANT else ORT_7BIT_VARIANT
    tried = [(t["variant"], t["passes"]) for t in gate["tried"]]
    assert tried == [(first, False), (second, False), (ORT_FP32_VARIANT, True)]
    assert gate["reason"].startswith(f"{first} missed its gates on this CPU")
    assert "needs >= " in gate["reason"]
    assert registry.info["models"]["tiny-embed"]["variant"] == ORT_FP32_VARIANT
    registry.warm_all()
    assert registry.ready
    assert len(served.runner.check_outputs(["still answers"])) == 1

    out = io.StringIO()
    run_check(settings, LOADERS, out, options=OPTIONS)
    table = out.getvalue()
    assert f"int8 path {cpu_features.detect().path}" in table
    lines = [line for line in table.splitlines() if line.startswith("tiny-embed")]
    assert first in lines[0]
    assert "needs >=" in lines[0]
    assert ORT_FP32_VARIANT in lines[2]
    assert lines[2].endswith("serves")


def test_no_variant_meeting_the_gates_refuses_to_serve(tiny_settings, tiny_checkpoints, tmp_path):
    impossible = {"min_mean_cosine": 1.5, "min_min_cosine": 1.5}
    settings = _copy_artifacts(tiny_settings, tiny_checkpoints, tmp_path, gates=impossible)
    with pytest.raises(ConfigError, match=r"no variant meets its fidelity gates on this CPU \("):
        load_registry(settings, LOADERS, options=OPTIONS)


def test_the_check_can_be_turned_off(tiny_settings, tiny_checkpoints, tmp_path):
    impossible = {"min_mean_cosine": 1.5, "min_min_cosine": 1.5}
    env = {"EDGE_MM_RUNTIME_FIDELITY_CHECK": "false"}
    registry = load_registry(
        _copy_artifacts(tiny_settings, tiny_checkpoints, tmp_path, gates=impossible, env=env), LOADERS, options=OPTIONS
    )
    assert registry.models["tiny-embed"].variant in (ORT_VARIANT, ORT_7BIT_VARIANT)  # by the CPU's kernels
    assert "fidelity_check" not in registry.info["models"]["tiny-embed"]
