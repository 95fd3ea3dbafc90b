"""Label sets, BIO/IOB2 validation and repair, and word -> sub-token label alignment."""

from __future__ import annotations

from collections.abc import Sequence

from edge_mm.build.finetune.data import DataError, Example, TextExample, TokenExample

IGNORE = -100  # torch's cross-entropy ignore_index: special tokens and non-first sub-tokens
_SHOWN = 5


def check_bio(examples: Sequence[TokenExample], *, repair: bool) -> int:
    """An I-X must follow B-X or I-X. Repair turns such an I-X into B-X (IOB1 -> IOB2); returns how many.

    Without ``repair`` the first few violations are reported with file and line."""
    bad: list[str] = []
    for ex in examples:
        prev = "O"
        for i, tag in enumerate(ex.tags):
            if tag.startswith("I-") and prev[2:] != tag[2:]:
                bad.append(f"{ex.where(i)}: {tag!r} after {prev!r} (token {ex.tokens[i]!r})")
                if repair:
                    ex.tags[i] = "B-" + tag[2:]
            prev = ex.tags[i]
    if bad and not repair:
        more = f" (and {len(bad) - _SHOWN} more)" if len(bad) > _SHOWN else ""
        raise DataError(
            "I- tag with no opening B- tag (not BIO/IOB2):\n  "
            + "\n  ".join(bad[:_SHOWN])
            + more
            + "\npass --repair-bio to turn each such I-X into B-X"
        )
    return len(bad)


def entity_types(examples: Sequence[TokenExample]) -> list[str]:
    return sorted({t[2:] for ex in examples for t in ex.tags if t != "O"})


def label_list(task: str, train: Sequence[Example]) -> list[str]:
    """Token tasks: O, then B-/I- per entity type (sorted); text tasks: the classes, sorted.

    Raises DataError when there is nothing to learn (no entities, or a single class)."""
    path = train[0].path
    if task == "token-classification":
        types = entity_types([e for e in train if isinstance(e, TokenExample)])
        if not types:
            raise DataError(f"{path}: every tag is 'O': there are no entities to learn (one label only)")
        return ["O", *(f"{p}-{t}" for t in types for p in "BI")]
    classes = sorted({e.label for e in train if isinstance(e, TextExample)})
    if len(classes) < 2:
        raise DataError(f"{path}: every example has the label {classes[0]!r}: a classifier needs two or more")
    return classes


def check_known(labels: list[str], examples: Sequence[Example]) -> None:
    """Dev/test labels must all occur in training; the first unknown one is named with its file and line."""
    known = set(labels)
    for ex in examples:
        if isinstance(ex, TokenExample):
            for i, tag in enumerate(ex.tags):
                if tag not in known:
                    raise DataError(
                        f"{ex.where(i)}: tag {tag!r} does not occur in the training data "
                        f"(known: {', '.join(labels)}); add examples of it to --train or drop it"
                    )
        elif ex.label not in known:
            raise DataError(
                f"{ex.where()}: label {ex.label!r} does not occur in the training data (known: {', '.join(labels)})"
            )


def align(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Per sub-token label ids: the first piece of each word gets its word's label, the rest IGNORE.

    ``word_ids``: the fast tokenizer's word index per token (None for special tokens)."""
    out: list[int] = []
    prev: int | None = None
    for w in word_ids:
        out.append(IGNORE if w is None or w == prev else word_labels[w])
        prev = w if w is not None else prev
    return out


def first_pieces(word_ids: Sequence[int | None]) -> dict[int, int]:
    """word index -> position of its first sub-token (words cut by truncation are absent)."""
    firsts: dict[int, int] = {}
    for pos, w in enumerate(word_ids):
        if w is not None and w not in firsts:
            firsts[w] = pos
    return firsts
