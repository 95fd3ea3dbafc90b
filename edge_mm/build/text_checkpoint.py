"""A Hugging Face text checkpoint as a traceable (ids, mask) module, its tokenizer, and the build's sample sentences.

Shared by the text builder (edge_mm/build/text.py) and the zero-shot image builders (ConSE's and
CLIP's text towers, edge_mm/build/zero_shot_image.py).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_mm.config import ModelSpec
from edge_mm.errors import ConfigError


class SentenceEmbedding(nn.Module):
    """(ids, mask) (batch, seq) int64 -> (batch, dim) L2-normalised pooled embeddings."""

    def __init__(self, encoder: nn.Module, pooling: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[0]
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "max":
            pooled = hidden.masked_fill(attention_mask.unsqueeze(-1) == 0, -1e4).max(dim=1).values
        else:
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)


class Logits(nn.Module):
    """(ids, mask) -> logits: (batch, classes) or (batch, seq, classes) for token classification."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[0]


def sample_sentences() -> list[str]:
    text = resources.files("edge_mm.build").joinpath("data/sentences.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _pooling(source: Path, options: dict[str, Any]) -> str:
    if "pooling" in options:
        return str(options["pooling"])
    cfg = source / "1_Pooling" / "config.json"
    if cfg.is_file():
        raw = json.loads(cfg.read_text())
        if raw.get("pooling_mode_cls_token"):
            return "cls"
        if raw.get("pooling_mode_max_tokens"):
            return "max"
    return "mean"


def load_text_checkpoint(spec: ModelSpec, source: Path) -> tuple[nn.Module, list[str] | None, dict[str, Any]]:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    if not source.is_dir():
        raise ConfigError(f"model {spec.name}: {source} is not a checkpoint folder")
    kwargs: dict[str, Any] = {"attn_implementation": "eager"}
    if spec.task == "embeddings":
        pooling = _pooling(source, dict(spec.options))
        encoder = transformers.AutoModel.from_pretrained(source, **kwargs)
        return SentenceEmbedding(encoder, pooling).eval(), None, {"pooling": pooling}
    cls = {
        "text-classification": transformers.AutoModelForSequenceClassification,
        "token-classification": transformers.AutoModelForTokenClassification,
    }[spec.task]
    model = cls.from_pretrained(source, **kwargs)
    id2label = model.config.id2label
    labels = [str(id2label[i]) for i in range(len(id2label))]
    extra = {"multi_label": getattr(model.config, "problem_type", None) == "multi_label_classification"}
    return Logits(model).eval(), labels, extra


def save_tokenizer(source: Path, out: Path) -> tuple[Path, int]:
    """Write tokenizer.json (converting a slow tokenizer if needed); returns (path, pad id)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source)
    if not getattr(tok, "is_fast", False):
        raise ConfigError(f"{source}: no fast tokenizer (tokenizer.json) can be made for this checkpoint")
    path = out / "tokenizer.json"
    tok.backend_tokenizer.save(str(path))
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    return path, int(pad_id)
