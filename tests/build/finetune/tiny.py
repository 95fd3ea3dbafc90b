"""Tiny data and a tiny random BERT for the fine-tuning tests.

The tokenizer is made with ``vocab=`` (transformers 5 ignores ``vocab_file=`` on
BertTokenizerFast and leaves only the 5 special tokens, so every word would be [UNK])."""

from __future__ import annotations

import string
from pathlib import Path

# NER sentences: (text, [(start, end, type)]) with whitespace tokens; the tags follow from the spans.
NER = [
    ("john smith works at acme in paris .", [(0, 10, "PER"), (20, 24, "ORG"), (28, 33, "LOC")]),
    ("the man is in berlin", [(14, 20, "LOC")]),
    ("smith plays the guitar", [(0, 5, "PER")]),
    ("a man works at acme", [(15, 19, "ORG")]),
    ("john is in paris", [(0, 4, "PER"), (11, 16, "LOC")]),
    ("acme is in berlin .", [(0, 4, "ORG"), (11, 17, "LOC")]),
]
SENTIMENT = [
    ("the guitar is great", "positive"),
    ("a great man", "positive"),
    ("the man is bad", "negative"),
    ("bad guitar", "negative"),
    ("great works in paris", "positive"),
    ("bad works in berlin", "negative"),
]
WORDS = sorted({w for text, _ in NER + SENTIMENT for w in text.split()})


def tagged(text: str, spans: list[tuple[int, int, str]]) -> tuple[list[str], list[str]]:
    """Whitespace tokens and their BIO tags from character spans."""
    tokens, tags, pos = [], [], 0
    for word in text.split():
        start = text.index(word, pos)
        pos = start + len(word)
        kind = next(((s, k) for s, e, k in spans if s <= start < e), None)
        tokens.append(word)
        tags.append("O" if kind is None else ("B-" if kind[0] == start else "I-") + kind[1])
    return tokens, tags


def conll_text(rows: list[tuple[str, list[tuple[int, int, str]]]] = NER) -> str:
    blocks = []
    for text, spans in rows:
        tokens, tags = tagged(text, spans)
        blocks.append("\n".join(f"{t} {g}" for t, g in zip(tokens, tags, strict=True)))
    return "-DOCSTART- -X- O O\n\n" + "\n\n".join(blocks) + "\n"


def csv_text(rows: list[tuple[str, str]] = SENTIMENT) -> str:
    return "text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows)


def make_base(folder: Path, seed: int = 0) -> Path:
    """A BertModel checkpoint (hidden 32, 2 layers) whose vocab holds the test words."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(string.ascii_lowercase + string.digits + ".,!?'-&")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *chars, *("##" + c for c in chars)]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tok = tf.BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)
    assert tok.vocab_size > len(WORDS), "tokenizer lost its vocabulary"
    tok.save_pretrained(folder)
    config = tf.BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    tf.BertModel(config).save_pretrained(folder)
    return folder


def example_data_module():  # type: ignore[no-untyped-def]
    """examples/ner_data.py (a script, not a package), loaded from its file."""
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "examples" / "ner_data.py"
    spec = importlib.util.spec_from_file_location("ner_data", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
