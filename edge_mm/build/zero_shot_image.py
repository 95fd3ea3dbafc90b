"""Build zero-shot image classification: ConSE (default, offline) or a CLIP checkpoint.

ConSE (Norouzi et al., 2014): an image's embedding is the convex combination of the
text embeddings of its classifier's top-T class names, weighted by their
probabilities. The build embeds the classifier's class names with the text model
named by ``source`` (the same checkpoint the served text model comes from);
the runtime combines them with the served classifier and embeds candidate labels
with the served text model.

CLIP: text and image towers are traced separately, each returning L2-normalised
projected embeddings; ``logit_scale`` and the image processor go in the manifest.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_mm.build import artifact_backend, onnx_backend
from edge_mm.build.errors import BuildError
from edge_mm.build.image_classifier import TRACE_TOLERANCE, hf_preprocess
from edge_mm.build.imagenet import load_imagenet_labels
from edge_mm.build.manifest_entry import built_entry, file_ref, max_abs, sample_images, save_variant, write_reference
from edge_mm.build.progress import Progress, bar
from edge_mm.build.text_checkpoint import load_text_checkpoint, sample_sentences, save_tokenizer
from edge_mm.config import ModelSpec
from edge_mm.errors import ConfigError
from edge_mm.manifest import NO_CUDA_KEY, ORT_VARIANT, FileRef, ModelEntry, Variant
from edge_mm.media.image_preprocess import input_size, preprocess_to_dict
from edge_mm.runtime.probes import image_from_base64, png_base64, probe_pixels
from edge_mm.runtime.text_tokenizer import TextTokenizer

CONSE_DEFAULTS = {"top_t": 10, "class_template": "{}", "temperature": 0.05}


def build_zero_shot_image(spec: ModelSpec, source: Path, out: Path, progress: Progress) -> ModelEntry:
    config = source / "config.json" if source.is_dir() else None
    if config is not None and config.is_file() and json.loads(config.read_text()).get("model_type") == "clip":
        return build_clip(spec, source, out, progress)
    if "classifier" not in spec.options or "text_model" not in spec.options:
        raise ConfigError(
            f"model {spec.name}: zero-shot-image needs a CLIP checkpoint as source, or ConSE options "
            "{ classifier = '<image-classification model>', text_model = '<embeddings model>' } with the "
            "text model's checkpoint as source"
        )
    return build_conse(spec, source, out, progress)


def build_conse(spec: ModelSpec, source: Path, out: Path, progress: Progress) -> ModelEntry:
    t0 = time.perf_counter()
    options = {**CONSE_DEFAULTS, **spec.options, "method": "conse"}
    labels = [str(x) for x in spec.options.get("class_names", load_imagenet_labels())]
    encoder, _, extra = load_text_checkpoint(dataclasses.replace(spec, task="embeddings", options={}), source)
    tok_path, pad_id = save_tokenizer(source, out)
    tok = TextTokenizer(tok_path, max_length=spec.max_length, pad_id=pad_id)
    template = str(options["class_template"])
    vectors = []
    with torch.inference_mode():
        for i in bar(range(0, len(labels), 64), "ConSE: class names", unit="batch"):
            enc = tok.encode([template.format(x) for x in labels[i : i + 64]])
            vectors.append(encoder(enc.input_ids, enc.attention_mask))
    table = torch.cat(vectors).float().numpy()
    tok_path.unlink()  # the served text model carries its own tokenizer
    np.save(out / "class_embeddings.npy", table)
    progress(f"embedded {len(labels)} class names ({time.perf_counter() - t0:.1f} s)")
    rows = sorted({min(i, len(labels) - 1) for i in (0, 281, 967)})  # ImageNet: tench, tabby, espresso
    reference = write_reference(out / "reference.json", rows, [table[i].tolist() for i in rows])
    figures = {
        "class_names": len(labels),
        "dim": int(table.shape[1]),
        "norm_min": round(float(np.linalg.norm(table, axis=1).min()), 5),
        NO_CUDA_KEY: "ConSE has no network of its own (a numpy table); its classifier and text model pick their own devices",
    }
    variants, backends = conse_variants(spec, file_ref(out / "class_embeddings.npy", out))
    return built_entry(
        spec,
        t0,
        figures,
        variants=variants,
        backends=backends,
        inputs=[{"name": "class_probabilities", "from": options["classifier"]}],
        outputs=[{"name": "scores", "dtype": "float32", "shape": ["labels"]}],
        labels=labels,
        preprocessing={"pooling": extra["pooling"], "class_template": template, "dim": int(table.shape[1])},
        files={"reference": reference},
        options=options,
    )


def conse_variants(spec: ModelSpec, table: FileRef) -> tuple[dict[str, Variant], dict[str, Any]]:
    """ConSE's variants and ``backends`` record: the same numpy table under both CPU keys.

    ConSE has no network: its arithmetic is numpy on either backend (runtime/conse.py), so
    nothing is timed. ``auto`` and ``onnxruntime`` serve the ``cpu-onnxruntime`` key, which
    tells the runtime that this model needs no torch; ``torchscript`` records TorchScript only.
    """
    notes = ["ConSE: no network of its own; uses the served classifier and text model", "numpy table and arithmetic"]
    variants = {"cpu": Variant(files={"class_embeddings": table}, dtype="float32", notes=notes)}
    if spec.artifact_backend == "torchscript":
        return variants, {}
    variants[ORT_VARIANT] = Variant(  # its own FileRef: the pipeline prefixes each reference's path once
        files={"class_embeddings": dataclasses.replace(table)},
        dtype="float32",
        notes=[*notes, "torch-free"],
        backend="onnxruntime",
    )
    why = "ConSE is numpy on both backends; the torch-free key serves (its partners choose their own backends)"
    candidates = {
        "torchscript": onnx_backend.Candidate("cpu", True),
        "onnxruntime": onnx_backend.Candidate(ORT_VARIANT, True),
    }
    origin = "auto" if spec.artifact_backend == "auto" else "artifact_backend = onnxruntime in settings"
    record = {
        "setting": spec.artifact_backend,
        "serves": "onnxruntime",
        "reason": f"{origin}: {why}",
        "criterion": "none: no network to time",
        "candidates": {name: dataclasses.asdict(c) for name, c in candidates.items()},
    }
    return variants, record


class TextTower(nn.Module):
    """(ids, mask) (N, seq) int64 -> (N, dim) L2-normalised projected text embeddings."""

    def __init__(self, clip: Any) -> None:  # a transformers CLIPModel
        super().__init__()
        self.text_model = clip.text_model
        self.projection = clip.text_projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.text_model(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[1]
        return nn.functional.normalize(self.projection(pooled), dim=-1)


class ImageTower(nn.Module):
    """(N, 3, H, W) float32 -> (N, dim) L2-normalised projected image embeddings."""

    def __init__(self, clip: Any) -> None:  # a transformers CLIPModel
        super().__init__()
        self.vision_model = clip.vision_model
        self.projection = clip.visual_projection

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.vision_model(pixel_values=pixel_values, return_dict=False)[1]
        return nn.functional.normalize(self.projection(pooled), dim=-1)


def build_clip(spec: ModelSpec, source: Path, out: Path, progress: Progress) -> ModelEntry:
    import transformers

    t0 = time.perf_counter()
    transformers.logging.set_verbosity_error()
    clip = transformers.CLIPModel.from_pretrained(source, attn_implementation="eager").eval()
    max_length = min(spec.max_length, int(clip.config.text_config.max_position_embeddings))
    tok_path, pad_id = save_tokenizer(source, out)
    tok = TextTokenizer(tok_path, max_length=max_length, pad_id=pad_id)
    pre = hf_preprocess(source)
    sentences = sample_sentences()
    text_traced, image_traced, figures = _trace_clip_towers(spec, clip, tok, pre, sentences, progress)
    text_v = save_variant(text_traced, out / "text.pt", "float32", [])
    image_v = save_variant(image_traced, out / "image.pt", "float32", [])
    files = {"text": text_v.files["model"], "image": image_v.files["model"]}
    reference = _clip_reference(text_traced, image_traced, tok, pre, sentences[2], out)
    h, w = input_size(pre)
    return built_entry(
        spec,
        t0,
        figures,
        variants={"cpu": Variant(files=files, dtype="float32", notes=["text and image towers traced + frozen, fp32"])},
        inputs=[
            {"name": "input_ids", "dtype": "int64", "shape": ["batch", "seq"]},
            {"name": "attention_mask", "dtype": "int64", "shape": ["batch", "seq"]},
            {"name": "pixel_values", "dtype": "float32", "shape": ["batch", 3, h, w]},
        ],
        outputs=[
            {"name": "text_embeds", "shape": ["batch", "dim"]},
            {"name": "image_embeds", "shape": ["batch", "dim"]},
        ],
        preprocessing={
            **preprocess_to_dict(pre),
            "max_length": max_length,
            "pad_id": pad_id,
            "logit_scale": float(clip.logit_scale.detach().exp()),
        },
        files={"tokenizer": file_ref(tok_path, out), "reference": reference},
        options={"method": "clip", "hypothesis_template": "a photo of {}.", **spec.options},
    )


def _trace_clip_towers(
    spec: ModelSpec, clip: nn.Module, tok: TextTokenizer, pre: Any, sentences: list[str], progress: Progress
) -> tuple[torch.jit.ScriptModule, torch.jit.ScriptModule, dict[str, Any]]:
    """Both towers traced and frozen; each must match eager, and the text tower must answer a batch as it answers
    each text alone. Returns (text trace, image trace, the build's figures)."""
    text, image = TextTower(clip).eval(), ImageTower(clip).eval()
    enc = tok.encode([sentences[0], "a photo of a cat", sentences[1][:40], "x"])
    pixels = pre(sample_images())
    text_traced = artifact_backend.trace_and_freeze(text, (enc.input_ids, enc.attention_mask))
    image_traced = artifact_backend.trace_and_freeze(image, (pixels,))
    with torch.inference_mode():
        t_eager, t_traced = text(enc.input_ids, enc.attention_mask), text_traced(enc.input_ids, enc.attention_mask)
        i_eager, i_traced = image(pixels), image_traced(pixels)
        singles = [
            text_traced(enc.input_ids[i : i + 1, :n], enc.attention_mask[i : i + 1, :n])
            for i, n in enumerate(enc.lengths)
        ]
    figures: dict[str, Any] = {
        "text_traced_vs_eager_max_abs": max_abs(t_traced, t_eager),
        "image_traced_vs_eager_max_abs": max_abs(i_traced, i_eager),
        "text_batch_vs_single_max_abs": max(max_abs(s, t_traced[i : i + 1]) for i, s in enumerate(singles)),
        "tolerance": TRACE_TOLERANCE,
        NO_CUDA_KEY: "CLIP builds an fp32 CPU variant only",
    }
    worst = max(v for k, v in figures.items() if k.endswith("max_abs"))
    if worst > TRACE_TOLERANCE:
        raise BuildError(f"model {spec.name}: CLIP traced towers differ from eager by {worst:.2e}")
    progress(f"CLIP towers traced (max abs diff {worst:.1e})")
    return text_traced, image_traced, figures


def _clip_reference(
    text_traced: torch.jit.ScriptModule,
    image_traced: torch.jit.ScriptModule,
    tok: TextTokenizer,
    pre: Any,
    sentence: str,
    out: Path,
) -> FileRef:
    """`edge-mm check`'s reference: two texts and a probe image through the traced towers."""
    ref_inputs: list[Any] = [
        {"text": "a photo of a cat"},
        {"text": sentence},
        {"image": png_base64(probe_pixels(80, 100, 3))},
    ]
    with torch.inference_mode():
        e = tok.encode([ref_inputs[0]["text"], ref_inputs[1]["text"]])
        tv = text_traced(e.input_ids, e.attention_mask)
        iv = image_traced(pre([image_from_base64(ref_inputs[2]["image"])]))
    return write_reference(out / "reference.json", ref_inputs, [tv[0].tolist(), tv[1].tolist(), iv[0].tolist()])
