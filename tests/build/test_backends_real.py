"""Both CPU backends on the shipped models: MiniLM int8 and EfficientNet-Lite0 (static int8 on ONNX Runtime), as the default settings build them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edge_mm.build import onnx_backend
from edge_mm.build.text import sample_sentences
from edge_mm.manifest import ORT_VARIANT, read_manifest
from edge_mm.runtime.image_classifier import ImageClassifier
from edge_mm.runtime.text_model import TextModel
from tests.vision_fixtures import *  # noqa: F403

pytestmark = pytest.mark.real_models


def _geomean(latency: dict[str, float]) -> float:
    return math.sqrt(latency["batch_1"] * latency["batch_8"])


def _check_choice(backends: dict) -> None:
    assert backends["setting"] == "auto"
    candidates = backends["candidates"]
    assert set(candidates) == {"torchscript", "onnxruntime"}
    passing = {n: c for n, c in candidates.items() if c["passes"]}
    fastest = min(passing, key=lambda n: (_geomean(passing[n]["latency_ms"]), n != "torchscript"))
    assert backends["serves"] == fastest, backends


def test_minilm_both_backends_meet_the_fidelity_gates(vision_settings):
    spec = vision_settings.model("minilm")
    entry = read_manifest(vision_settings.path("runtime.artifacts_dir")).models["minilm"]
    _check_choice(entry.backends)
    for name, c in entry.backends["candidates"].items():
        assert c["passes"], (name, c)
        assert c["fidelity"]["mean_cosine"] >= spec.min_mean_cosine, name
        assert c["fidelity"]["min_cosine"] >= spec.min_min_cosine, name
    v = entry.verification["onnxruntime"]
    assert v["exported_vs_eager_fp32_max_abs"] <= 1e-4
    assert v["batch_vs_single_fp32_max_abs"] <= 1e-4
    # TorchScript keeps one layer in fp32; ONNX Runtime's first recipe (every layer int8, shared
    # attention smoothing) passes on its own, so its graph keeps none and has fewer multiplies
    assert len(spec.keep_fp32) == 1
    assert v["fp32_matmuls_kept"] == []
    assert v["recipe"] == "attention-shared smoothing, every Linear int8"
    assert v["tried"] == []
    assert v["int8_matmuls"] == 36  # 6 layers x 6 Linear
    path = vision_settings.path("runtime.artifacts_dir") / entry.variants[ORT_VARIANT].files["model"].path
    assert onnx_backend.count_ops(path, "DynamicQuantizeLinear") == 24  # query/key/value share one per layer
    assert entry.variants[ORT_VARIANT].dtype == "int8-dynamic"


def test_minilm_served_by_either_backend_agrees(vision_settings):
    root = vision_settings.path("runtime.artifacts_dir")
    entry = read_manifest(root).models["minilm"]
    texts = sample_sentences()[:64]
    ts = torch.stack(TextModel.load("minilm", entry, root, "cpu", "cpu", 16).check_outputs(texts))
    ort_outputs = TextModel.load("minilm", entry, root, "cpu", ORT_VARIANT, 16).check_outputs(texts)
    ort = torch.from_numpy(np.stack(ort_outputs))  # ONNX Runtime answers numpy (no torch on its path)
    cos = torch.nn.functional.cosine_similarity(ts, ort)
    assert float(cos.mean()) > 0.99
    assert float(cos.min()) > 0.98


def test_efficientnet_onnx_is_static_int8_and_agrees_with_torchscript(vision_settings, photos):
    """settings.toml: int8 (static, QDQ) on ONNX Runtime, within its gates; TorchScript stays fp32."""
    from PIL import Image

    root = vision_settings.path("runtime.artifacts_dir")
    entry = read_manifest(root).models["efficientnet"]
    _check_choice(entry.backends)
    assert entry.variants[ORT_VARIANT].dtype == "int8-static"
    v = entry.verification["onnxruntime"]
    assert v["exported_vs_eager_fp32_max_abs"] <= entry.verification["tolerance"]  # the fp32 export, before int8
    held_out = entry.backends["int8_static"]["heldout_vs_fp32"]
    assert entry.backends["int8_static"]["applied"] is True
    assert held_out["top1_agreement"] >= 0.95
    assert held_out["max_prob_diff"] <= 0.2
    images = [Image.open(photos / n).convert("RGB") for n in ("chelsea.png", "coffee.png", "camera.png")]
    ts = ImageClassifier.load("efficientnet", entry, root, "cpu", "cpu", 8).classify(images)
    ort = ImageClassifier.load("efficientnet", entry, root, "cpu", ORT_VARIANT, 8).classify(images)
    for (lt, ft), (lo, fo) in zip(ts, ort, strict=True):  # TorchScript: tensors; ONNX Runtime: numpy
        lt, ft, lo, fo = (np.asarray(x, dtype=np.float32) for x in (lt, ft, lo, fo))
        assert int(lt.argmax()) == int(lo.argmax())
        cosine = float(ft @ fo / (np.linalg.norm(ft) * np.linalg.norm(fo)))
        assert cosine > 0.95
