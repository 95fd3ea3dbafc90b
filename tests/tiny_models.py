"""Tiny randomly initialised checkpoints the tests make (saved with save_pretrained)."""

from __future__ import annotations

import string
from pathlib import Path

WORDS = [
    "the",
    "a",
    "man",
    "guitar",
    "plays",
    "is",
    "in",
    "paris",
    "berlin",
    "john",
    "smith",
    "works",
    "at",
    "acme",
    "café",
    "東京",
]


def write_vocab(path: Path) -> Path:
    chars = list(string.ascii_lowercase + string.digits + ".,!?'-")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *chars, *("##" + c for c in chars)]
    path.write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    return path


def make_tokenizer(folder: Path):  # type: ignore[no-untyped-def]
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = write_vocab(folder / "vocab.txt")
    tok = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)  # transformers 5 ignores vocab_file=
    tok.save_pretrained(folder)
    return tok


def make_checkpoint(folder: Path, kind: str, seed: int = 0) -> Path:
    """kind: 'bert-embeddings', 'bert-seq', 'distilbert-seq', 'bert-token', 'distilbert-token'."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    tok = make_tokenizer(folder)
    labels = {
        "seq": ["negative", "neutral", "positive"],
        "token": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"],
    }
    family, _, head = kind.partition("-")
    names = labels.get(head)
    extra = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}} if names else {}
    if family == "bert":
        config = tf.BertConfig(
            vocab_size=tok.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            **extra,
        )
    else:
        config = tf.DistilBertConfig(
            vocab_size=tok.vocab_size,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=128,
            **extra,
        )
    cls = {
        "embeddings": tf.AutoModel,
        "seq": tf.AutoModelForSequenceClassification,
        "token": tf.AutoModelForTokenClassification,
    }[head]
    model = cls.from_config(config)
    model.save_pretrained(folder)
    return folder
