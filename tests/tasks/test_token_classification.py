"""NER post-processing with exact answers: tag splitting, window choice, entity merging."""

from __future__ import annotations

from edge_mm.tasks.token_classification import TokenPrediction, _split, merge_entities


def tok(start, end, word, label, score=0.9, edge=5):
    return TokenPrediction(start, end, word, label, score, edge)


def test_split_tags():
    assert _split("B-PER") == ("B", "PER")
    assert _split("I_LOC") == ("I", "LOC")
    assert _split("O") == ("O", "")
    assert _split("PER") == ("I", "PER")
    assert _split("S-ORG") == ("S", "ORG")


def test_merge_bio_into_spans_with_exact_offsets():
    text = "John  Smith went to New York"
    tokens = [
        tok(0, 4, 0, "B-PER"),
        tok(6, 11, 1, "I-PER", 0.7),
        tok(12, 16, 2, "O"),
        tok(17, 19, 3, "O"),
        tok(20, 23, 4, "B-LOC"),
        tok(24, 28, 5, "I-LOC"),
    ]
    ents = merge_entities(text, tokens)
    assert ents == [
        {"label": "PER", "start": 0, "end": 11, "score": 0.8, "text": "John  Smith"},
        {"label": "LOC", "start": 20, "end": 28, "score": 0.9, "text": "New York"},
    ]


def test_b_tag_starts_a_new_entity_and_type_change_splits():
    text = "Ann Bob Acme"
    tokens = [tok(0, 3, 0, "B-PER"), tok(4, 7, 1, "B-PER"), tok(8, 12, 2, "I-ORG")]
    assert [e["text"] for e in merge_entities(text, tokens)] == ["Ann", "Bob", "Acme"]


def test_subwords_take_the_first_tag_of_their_word():
    text = "Washington"
    tokens = [tok(0, 4, 0, "B-LOC"), tok(4, 8, 0, "O"), tok(8, 10, 0, "I-PER")]
    assert merge_entities(text, tokens) == [{"label": "LOC", "start": 0, "end": 10, "score": 0.9, "text": "Washington"}]


def test_unicode_offsets():
    text = "Zoë visited 東京"
    tokens = [tok(0, 3, 0, "B-PER"), tok(4, 11, 1, "O"), tok(12, 13, 2, "B-LOC"), tok(13, 14, 2, "I-LOC")]
    ents = merge_entities(text, tokens)
    assert [(e["text"], e["label"]) for e in ents] == [("Zoë", "PER"), ("東京", "LOC")]


def test_long_text_every_token_gets_a_prediction(tiny_registry):
    """Windows overlap and together cover the whole text: nothing is cut."""
    from tokenizers import Tokenizer

    from edge_mm.tasks.token_classification import token_predictions

    model = tiny_registry.models["tiny-ner"].runner
    text = " ".join(f"john{i % 10} works at acme in paris" for i in range(30))
    windows = model.tokenizer.encode_windows(text)
    assert len(windows) > 5
    preds = token_predictions(windows, model.forward(windows), model.labels)
    # reference: the same tokenizer without truncation
    ref = Tokenizer.from_str(model.tokenizer._plain.to_str())  # noqa: SLF001
    ref.no_truncation()
    enc = ref.encode(text)
    whole = {o for o, special in zip(enc.offsets, enc.special_tokens_mask, strict=True) if not special}
    assert {(p.start, p.end) for p in preds} == whole
    # away from the text's ends, each token's prediction comes from a window where it is not at an edge
    assert min(p.edge_distance for p in preds[5:-5]) >= 1
