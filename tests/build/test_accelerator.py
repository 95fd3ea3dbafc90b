"""The accelerator (``cuda``) variant: the same build code runs with the CPU standing in (bf16),
so it is exercised without a GPU; on a CUDA machine the real fp16 build runs too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edge_mm.build.accelerator import resolve_accelerator
from edge_mm.build.text import build_text_model
from edge_mm.config import ModelSpec
from edge_mm.manifest import sha256_file
from edge_mm.runtime.text_tokenizer import TextTokenizer

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _build(ckpts: Path, out: Path, kind: str, task: str, accelerator: str | None):  # type: ignore[no-untyped-def]
    spec = ModelSpec(name="m", task=task, source=str(ckpts / kind), quantization="none", max_length=16)
    out.mkdir()
    return build_text_model(spec, ckpts / kind, out, lambda _msg: None, accelerator=accelerator)


def _check_variant(entry, out: Path, device: str, dtype: torch.dtype, key: str) -> None:  # type: ignore[no-untyped-def]
    """The accelerator variant is recorded, its file hashes match, and it runs near the fp32 reference."""
    variant = entry.variants["cuda"]
    assert variant.dtype == str(dtype).removeprefix("torch.")
    ref = variant.files["model"]
    assert sha256_file(out / ref.path) == ref.sha256
    reference = entry.files["reference"]
    assert sha256_file(out / reference.path) == reference.sha256
    figures = entry.verification[key]
    tok = TextTokenizer(out / "tokenizer.json", max_length=16, pad_id=entry.preprocessing["pad_id"])
    sample = json.loads((out / reference.path).read_text())
    enc = tok.encode(sample["inputs"])
    module = torch.jit.load(str(out / ref.path), map_location=device)
    with torch.inference_mode():
        got = module(enc.input_ids.to(device), enc.attention_mask.to(device))
    assert got.dtype == dtype
    if entry.task == "embeddings":
        assert figures["mean_cosine"] > 0.99
        want = torch.tensor(sample["outputs"])
        assert torch.nn.functional.cosine_similarity(got.float().cpu(), want).min() > 0.99
    else:
        assert figures["top1_agreement"] >= 0.9


@pytest.mark.parametrize(
    ("kind", "task"),
    [("bert-embeddings", "embeddings"), ("distilbert-token", "token-classification")],
)
def test_text_build_runs_the_accelerator_path_with_the_cpu_standing_in(tiny_checkpoints, tmp_path, kind, task):
    entry = _build(tiny_checkpoints, tmp_path / "out", kind, task, accelerator="cpu")
    _check_variant(entry, tmp_path / "out", "cpu", torch.bfloat16, "cpu_bf16_vs_fp32")
    assert "standing in" in " ".join(entry.variants["cuda"].notes)


def test_text_build_without_accelerator_writes_the_cpu_variant_only(tiny_checkpoints, tmp_path):
    entry = _build(tiny_checkpoints, tmp_path / "out", "bert-seq", "text-classification", accelerator=None)
    assert "cpu" in entry.variants
    assert set(entry.variants) <= {"cpu", "cpu-onnxruntime"}
    assert not (tmp_path / "out" / "cuda.pt").exists()


def test_resolve_accelerator():
    assert resolve_accelerator(None) is None
    cpu = resolve_accelerator("cpu")
    assert cpu is not None
    assert (cpu.device.type, cpu.dtype, cpu.figure_key) == ("cpu", torch.bfloat16, "cpu_bf16_vs_fp32")
    assert (resolve_accelerator("cuda") is None) == (not torch.cuda.is_available())
    with pytest.raises(ValueError, match="accelerator 'tpu'"):
        resolve_accelerator("tpu")


def test_image_classifier_runs_the_accelerator_path_with_the_cpu_standing_in(tmp_path):
    from edge_mm.build.image_classifier import build_image_classifier
    from tests.vision_fixtures import make_vit_classifier

    vit = make_vit_classifier(tmp_path / "vit")
    spec = ModelSpec(name="vit", task="image-classification", source=str(vit), quantization="none")
    out = tmp_path / "out"
    out.mkdir()
    entry = build_image_classifier(spec, vit, out, lambda _msg: None, accelerator="cpu")
    variant = entry.variants["cuda"]
    assert variant.dtype == "bfloat16"
    assert "bf16" in variant.notes
    assert sha256_file(out / variant.files["model"].path) == variant.files["model"].sha256
    assert entry.verification["cpu_bf16_vs_fp32"]["top1_agreement"] >= 0.75


@needs_cuda
def test_text_build_on_cuda_writes_an_fp16_variant(tiny_checkpoints, tmp_path):
    entry = _build(tiny_checkpoints, tmp_path / "out", "bert-embeddings", "embeddings", accelerator="cuda")
    _check_variant(entry, tmp_path / "out", "cuda", torch.float16, "cuda_fp16_vs_fp32")
    assert entry.variants["cuda"].notes[0] == "traced on CUDA"


@needs_cuda
def test_image_classifier_on_cuda_writes_an_fp16_variant(tmp_path):
    from edge_mm.build.image_classifier import build_image_classifier
    from tests.vision_fixtures import make_vit_classifier

    vit = make_vit_classifier(tmp_path / "vit")
    spec = ModelSpec(name="vit", task="image-classification", source=str(vit), quantization="none")
    out = tmp_path / "out"
    out.mkdir()
    entry = build_image_classifier(spec, vit, out, lambda _msg: None)
    assert entry.variants["cuda"].dtype == "float16"
    assert "cuda_fp16_vs_fp32" in entry.verification


def test_the_accelerator_form_carries_its_own_reference(tiny_checkpoints, tmp_path):
    entry = _build(tiny_checkpoints, tmp_path / "out", "bert-embeddings", "embeddings", accelerator="cpu")
    own = entry.variants["cuda"].files["reference"]
    assert own.path == "reference-cuda.json"
    sample = json.loads((tmp_path / "out" / own.path).read_text())
    assert (sample["variant"], sample["tolerance"]) == ("cuda", 0.1)  # bf16's; fp16 records 5e-2
    assert json.loads((tmp_path / "out" / "reference.json").read_text())["variant"] != "cuda"


def test_an_accelerator_form_that_misses_the_fidelity_targets_is_refused(tiny_checkpoints, tmp_path):
    """The gate int8 has: an embedding form below min_min_cosine is not written; the model stays CPU-only."""
    spec = ModelSpec(
        name="m",
        task="embeddings",
        source=str(tiny_checkpoints / "bert-embeddings"),
        quantization="none",
        max_length=16,
        min_min_cosine=1.01,  # no form can reach it
    )
    out = tmp_path / "out"
    out.mkdir()
    entry = build_text_model(spec, tiny_checkpoints / "bert-embeddings", out, lambda _m: None, accelerator="cpu")
    assert "cuda" not in entry.variants
    assert not (out / "cuda.pt").exists()
    assert not (out / "reference-cuda.json").exists()
    why = entry.verification["no_cuda_variant"]
    assert why.startswith("the bf16 form traced on cpu misses its fidelity targets: min_cosine")
    assert "cpu_bf16_vs_fp32" in entry.verification  # the figures that missed are kept


def test_an_image_classifier_accelerator_form_that_misses_is_refused(tmp_path):
    from edge_mm.build.image_classifier import build_image_classifier
    from tests.vision_fixtures import make_vit_classifier

    vit = make_vit_classifier(tmp_path / "vit")
    spec = ModelSpec(name="vit", task="image-classification", source=str(vit), quantization="none", max_prob_diff=-1.0)
    out = tmp_path / "out"
    out.mkdir()
    entry = build_image_classifier(spec, vit, out, lambda _msg: None, accelerator="cpu")
    assert "cuda" not in entry.variants
    assert "misses top-1 >=" in entry.verification["no_cuda_variant"]


def test_a_build_without_an_accelerator_says_so(tiny_checkpoints, tmp_path):
    entry = _build(tiny_checkpoints, tmp_path / "out", "bert-seq", "text-classification", accelerator=None)
    assert "without CUDA" in entry.verification["no_cuda_variant"]
