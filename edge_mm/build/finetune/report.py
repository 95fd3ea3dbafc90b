"""Evaluation figures and report.md / report.json.

Token classification: a per-tag table at word level (each word's first sub-token) and
entity-level precision / recall / F1 per type in the CoNLL-eval convention (an entity is
right only when its span and type both match; an I-X after O or another type opens a new
entity, as conlleval and seqeval's default mode do). Text classification: accuracy,
per-class precision / recall / F1 and a confusion matrix (rows true, columns predicted).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Row = dict[str, float | int]
AVERAGES = ("micro avg", "macro avg", "weighted avg")


def entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """BIO tags -> (type, first, last) word spans, conlleval's chunking."""
    spans: list[tuple[str, int, int]] = []
    start, kind = -1, ""
    for i, tag in enumerate([*tags, "O"]):
        prefix, typ = (tag[0], tag[2:]) if tag != "O" else ("O", "")
        if kind and (prefix in ("B", "O") or typ != kind):
            spans.append((kind, start, i - 1))
            kind = ""
        if prefix == "B" or (prefix == "I" and not kind):
            start, kind = i, typ
    return spans


def _prf(tp: int, n_pred: int, n_true: int) -> Row:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "support": n_true}


def _table(
    tp: Counter[str], pred: Counter[str], true: Counter[str], names: Sequence[str], averaged: Sequence[str]
) -> dict[str, Row]:
    """Per-name rows plus micro / macro / weighted averages over ``averaged``."""
    rows = {n: _prf(tp[n], pred[n], true[n]) for n in names}
    support = sum(true[n] for n in averaged)
    rows["micro avg"] = _prf(sum(tp[n] for n in averaged), sum(pred[n] for n in averaged), support)
    per = [rows[n] for n in averaged]
    for avg, weights in (("macro avg", [1.0] * len(per)), ("weighted avg", [float(r["support"]) for r in per])):
        total = sum(weights)
        rows[avg] = {
            k: (sum(w * float(r[k]) for w, r in zip(weights, per, strict=True)) / total if total else 0.0)
            for k in ("precision", "recall", "f1")
        } | {"support": support}
    return rows


def entity_table(true: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, Row]:
    """Entity-level P/R/F1 per type, with micro / macro / weighted averages (support = true entities)."""
    tp: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_true: Counter[str] = Counter()
    for t, p in zip(true, pred, strict=True):
        ts, ps = set(entities(t)), set(entities(p))
        n_true.update(e[0] for e in ts)
        n_pred.update(e[0] for e in ps)
        tp.update(e[0] for e in ts & ps)
    types = sorted(set(n_true) | set(n_pred))
    return _table(tp, n_pred, n_true, types, types)


def tag_table(true: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], labels: Sequence[str]) -> dict[str, Row]:
    """Word-level P/R/F1 per tag; the averages cover the tags that occur (true or predicted) except O,
    which would swamp them."""
    flat_t = [x for s in true for x in s]
    flat_p = [x for s in pred for x in s]
    present = set(flat_t) | set(flat_p)
    return _class_rows(flat_t, flat_p, labels, [lab for lab in labels if lab != "O" and lab in present])


def _class_rows(
    true: Sequence[str], pred: Sequence[str], labels: Sequence[str], averaged: Sequence[str]
) -> dict[str, Row]:
    tp = Counter(t for t, p in zip(true, pred, strict=True) if t == p)
    return _table(tp, Counter(pred), Counter(true), labels, averaged)


def classification_figures(true: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class rows (+ averages) and the confusion matrix (rows true, columns predicted)."""
    index = {lab: i for i, lab in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for t, p in zip(true, pred, strict=True):
        matrix[index[t]][index[p]] += 1
    correct = sum(t == p for t, p in zip(true, pred, strict=True))
    return {
        "examples": len(true),
        "accuracy": correct / len(true) if true else 0.0,
        "classes": _class_rows(true, pred, labels, labels),
        "confusion": {"labels": list(labels), "matrix": matrix},
    }


def token_figures(
    true: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], labels: Sequence[str]
) -> dict[str, Any]:
    ent = entity_table(true, pred)
    return {
        "examples": len(true),
        "entity_f1": ent["micro avg"]["f1"],
        "tags": tag_table(true, pred, labels),
        "entities": ent,
    }


def _md_rows(rows: dict[str, Row], first: str) -> list[str]:
    out = [f"| {first} | precision | recall | f1 | support |", "|---|---:|---:|---:|---:|"]
    for name, r in rows.items():
        label = f"**{name}**" if name in AVERAGES else name
        out.append(f"| {label} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['support']} |")
    return out


def split_markdown(name: str, figures: dict[str, Any]) -> list[str]:
    lines = [f"## {name} ({figures['examples']} examples)", ""]
    if "entities" in figures:
        lines += ["### Per tag (word level: each word's first sub-token; averages leave out O)", ""]
        lines += _md_rows(figures["tags"], "tag")
        lines += ["", "### Entities (CoNLL-eval: exact span and type)", ""]
        lines += _md_rows(figures["entities"], "type")
    else:
        lines += [f"accuracy: **{figures['accuracy']:.4f}**", "", "### Per class", ""]
        lines += _md_rows(figures["classes"], "class")
        conf = figures["confusion"]
        lines += ["", "### Confusion matrix (rows: true, columns: predicted)", ""]
        lines.append("| true \\ predicted | " + " | ".join(conf["labels"]) + " |")
        lines.append("|---|" + "---:|" * len(conf["labels"]))
        lines += [
            f"| {lab} | " + " | ".join(map(str, row)) + " |"
            for lab, row in zip(conf["labels"], conf["matrix"], strict=True)
        ]
    return [*lines, ""]


def write_reports(out: Path, summary: dict[str, Any], splits: dict[str, dict[str, Any]]) -> str:
    """Write report.json and report.md into ``out``; returns the markdown."""
    (out / "report.json").write_text(json.dumps({**summary, "splits": splits}, indent=2) + "\n")
    head = [
        "# Fine-tuning report",
        "",
        f"- task: {summary['task']}; base: `{summary['base']}`; labels: {', '.join(summary['labels'])}",
        f"- epochs run: {summary['epochs_run']} of {summary['epochs']}; best epoch: {summary['best_epoch']} "
        f"(dev {summary['dev_metric']} {summary['best_dev_score']:.4f}); stopped: {summary['stopped']}",
        f"- training: {summary['train_examples']} examples, {summary['examples_per_s']:.1f} examples/s on "
        f"{summary['device']} ({summary['seconds']:.0f} s)",
        "",
    ]
    md = "\n".join(head + [line for name, figs in splits.items() for line in split_markdown(name, figs)])
    (out / "report.md").write_text(md)
    return md
