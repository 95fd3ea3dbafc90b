"""Both CPU backends on the shipped models: MiniLM int8 and EfficientNet-Lite0 (static int8 on ONNX Runtime), as the default settings build them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edge_mm.build import onnx_backend
from edge_mm.build.text_checkpoint import sample_sentences
from edge_mm.manifest import ORT_7BIT_VARIANT, ORT_VARIANT, read_manifest
from edge_mm.runtime import cpu_features
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
    """What holds on every CPU path: each candidate meets the gates, the choice and its form are recorded.

    Which recipe the ONNX Runtime candidate ends on is a figure of the build, not asserted: the
    row-wise int8 kernels are exact on VNNI, AVX2 and Arm alike (build/onnx_rowwise.py), so it is
    the same on every machine, but the test must not assume the build machine's CPU.
    """
    spec = vision_settings.model("minilm")
    root = vision_settings.path("runtime.artifacts_dir")
    entry = read_manifest(root).models["minilm"]
    _check_choice(entry.backends)
    for name, c in entry.backends["candidates"].items():
        assert c["passes"], (name, c)
        assert c["fidelity"]["mean_cosine"] >= spec.min_mean_cosine, name
        assert c["fidelity"]["min_cosine"] >= spec.min_min_cosine, name
    v = entry.verification["onnxruntime"]
    assert v["exported_vs_eager_fp32_max_abs"] <= 1e-4
    assert v["batch_vs_single_fp32_max_abs"] <= 1e-4
    assert v["recipe"] in ("attention-shared smoothing, every Linear int8", "the TorchScript int8 recipe")
    assert len(v["tried"]) == (v["recipe"] == "the TorchScript int8 recipe")  # a fallback recipe says why
    assert v["int8_matmuls"] == 36 - len(v["fp32_matmuls_kept"])  # 6 layers x 6 Linear
    forms = v["int8_forms"]  # 8-bit weights for VNNI, AMX and Arm; 7-bit for x86 without VNNI
    assert {k: f["weight_bits"] for k, f in forms.items()} == {ORT_VARIANT: 8, ORT_7BIT_VARIANT: 7}
    assert forms[ORT_7BIT_VARIANT]["misses"] == []  # exact on every x86 kernel: it holds wherever it serves
    served_here = ORT_7BIT_VARIANT if entry.verification["build_cpu"]["saturating_u8s8"] else ORT_VARIANT
    assert v["served_on_build_cpu"] == served_here
    assert v["vs_fp32"] == forms[served_here]["vs_fp32"]
    assert ORT_7BIT_VARIANT in entry.variants
    path = root / entry.variants[ORT_VARIANT].files["model"].path
    assert onnx_backend.count_ops(path, "MatMulIntegerToFloat") == v["int8_matmuls"]
    assert onnx_backend.count_ops(path, "DynamicQuantizeLinear") == 0  # no scale shared across a batch
    assert entry.variants[ORT_VARIANT].dtype == "int8-rowwise"
    assert v["fallback"]["misses"] == []
    # fp32 compute (the start-up gate's last resort): no int8 kernel, closer to fp32 than the int8 graph
    assert v["fallback"]["vs_fp32"]["min_cosine"] >= v["vs_fp32"]["min_cosine"]
    assert entry.verification["build_cpu"]["path"] in cpu_features.PATHS


def test_minilm_answers_do_not_depend_on_batch_mates(vision_settings):
    """Mixed-length sentences embedded alone and batched as the server batches them: min cosine >= 0.99999."""
    root = vision_settings.path("runtime.artifacts_dir")
    entry = read_manifest(root).models["minilm"]
    runner = TextModel.load("minilm", entry, root, "cpu", ORT_VARIANT, 16)
    sentences = sample_sentences()
    texts = [sentences[0], sentences[1][:12], " ".join(sentences[2:30]), "ok", *sentences[3:15]]
    encodings = runner.tokenizer.encode(texts).encodings
    assert len({len(e.ids) for e in encodings}) > 5  # padding differs between the two runs
    batched = np.stack(runner.forward_now(encodings))
    alone = np.stack([runner.forward_now([e])[0] for e in encodings])
    cos = (alone * batched).sum(1) / (np.linalg.norm(alone, axis=1) * np.linalg.norm(batched, axis=1))
    assert float(cos.min()) >= 0.99999
    assert float(np.abs(alone - batched).max()) < 1e-4


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
    """settings.toml: int8 (static, QDQ) on ONNX Runtime within its gates: the 8-bit form where the build's
    CPU accumulates in 32 bits (VNNI, AMX, Arm), the 7-bit one on x86 without VNNI (the build records
    which it measured). The form this CPU serves agrees with TorchScript, which stays fp32."""
    from PIL import Image

    from tests.conftest import served_cpu_variant

    root = vision_settings.path("runtime.artifacts_dir")
    entry = read_manifest(root).models["efficientnet"]
    _check_choice(entry.backends)
    v = entry.verification["onnxruntime"]
    assert v["exported_vs_eager_fp32_max_abs"] <= entry.verification["tolerance"]  # the fp32 export, before int8
    assert entry.backends["int8_static"]["applied"] is True
    assert entry.variants[ORT_VARIANT].dtype == entry.variants[ORT_7BIT_VARIANT].dtype == "int8-static"
    record = v["int8_static"]
    measured = record if record["served_on_build_cpu"] == ORT_VARIANT else record["seven_bit"]
    assert measured["heldout_vs_fp32"]["top1_agreement"] >= 0.95
    assert measured["heldout_vs_fp32"]["max_prob_diff"] <= 0.2
    served = served_cpu_variant(vision_settings, "efficientnet")
    images = [Image.open(photos / n).convert("RGB") for n in ("chelsea.png", "coffee.png", "camera.png")]
    ts = ImageClassifier.load("efficientnet", entry, root, "cpu", "cpu", 8).classify(images)
    ort = ImageClassifier.load("efficientnet", entry, root, "cpu", served, 8).classify(images)
    for (lt, ft), (lo, fo) in zip(ts, ort, strict=True):  # TorchScript: tensors; ONNX Runtime: numpy
        lt, ft, lo, fo = (np.asarray(x, dtype=np.float32) for x in (lt, ft, lo, fo))
        assert int(lt.argmax()) == int(lo.argmax())
        cosine = float(ft @ fo / (np.linalg.norm(ft) * np.linalg.norm(fo)))
        assert cosine > 0.95
