"""Build HF DETR/YOLOS-style object detectors: pixels -> (class logits, normalised cx, cy, w, h boxes).

The image is resized to a fixed square (``options.image_size``, default 512) so one
trace serves every request; boxes are relative to the image, so they scale back to
the original pixels whatever its aspect.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_mm.build import artifact_backend
from edge_mm.build.errors import BuildError
from edge_mm.build.image_classifier import IMAGENET_MEAN, IMAGENET_STD, TRACE_TOLERANCE
from edge_mm.build.manifest_entry import built_entry, max_abs, sample_images, save_variant, write_reference
from edge_mm.build.progress import Progress
from edge_mm.config import ModelSpec
from edge_mm.errors import ConfigError
from edge_mm.manifest import ModelEntry
from edge_mm.media.image_preprocess import SquashPreprocess, preprocess_to_dict
from edge_mm.runtime.probes import image_from_base64, png_base64, probe_pixels


class LogitsAndBoxes(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(pixel_values=pixel_values, return_dict=True)
        return out.logits, out.pred_boxes


def build_object_detector(spec: ModelSpec, source: Path, out: Path, progress: Progress) -> ModelEntry:
    import json

    import transformers

    t0 = time.perf_counter()
    if not (source.is_dir() and (source / "config.json").is_file()):
        raise ConfigError(f"model {spec.name}: object detection needs an HF DETR/YOLOS checkpoint folder, got {source}")
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForObjectDetection.from_pretrained(source, attn_implementation="eager").eval()
    id2label = model.config.id2label
    labels = [str(id2label[i]) for i in range(len(id2label))]
    cfg_path = source / "preprocessor_config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    size = int(spec.options.get("image_size", 512))
    pre = SquashPreprocess(
        size, size, tuple(cfg.get("image_mean", IMAGENET_MEAN)), tuple(cfg.get("image_std", IMAGENET_STD))
    )
    wrapped = LogitsAndBoxes(model).eval()
    x = pre(sample_images()[:2]).contiguous()
    traced = artifact_backend.trace_and_freeze(wrapped, (x,))
    with torch.inference_mode():
        eager, got = wrapped(x), traced(x)
        single = traced(x[1:2])
    figures: dict[str, Any] = {
        "traced_vs_eager_fp32_max_abs": max_abs(got, eager),
        "batch_vs_single_fp32_max_abs": max_abs(single, tuple(t[1:2] for t in got)),
        "tolerance": TRACE_TOLERANCE,
    }
    worst = max(figures["traced_vs_eager_fp32_max_abs"], figures["batch_vs_single_fp32_max_abs"])
    if worst > TRACE_TOLERANCE:
        raise BuildError(f"model {spec.name}: traced detector differs by {worst:.2e}")
    progress(f"detector traced at {size}x{size} (max abs diff {worst:.1e})")
    variant = save_variant(traced, out / "cpu.pt", "float32", ["traced", "frozen", f"fixed input {size}x{size}"])
    inputs = [png_base64(probe_pixels(80, 110, 4))]
    with torch.inference_mode():
        logits, boxes = traced(pre([image_from_base64(inputs[0])]).contiguous())
    reference = write_reference(
        out / "reference.json", inputs, [torch.cat([logits[0].flatten(), boxes[0].flatten()]).tolist()]
    )
    return built_entry(
        spec,
        t0,
        figures,
        variants={"cpu": variant},
        inputs=[{"name": "pixel_values", "dtype": "float32", "shape": ["batch", 3, size, size]}],
        outputs=[
            {"name": "logits", "shape": ["batch", "queries", len(labels) + 1]},
            {"name": "pred_boxes", "shape": ["batch", "queries", 4]},
        ],
        labels=labels,
        preprocessing={**preprocess_to_dict(pre), "box_format": "cxcywh normalised", "no_object_class": "last"},
        files={"reference": reference},
        options=dict(spec.options),
    )
