"""Labelled data for fine-tuning: CoNLL, JSONL and CSV/TSV files -> examples.

Every problem is a :class:`DataError` that names the file and, where there is one, the
line, so `edge-mm finetune` can stop with exit code 2 before it writes anything.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_mm.errors import ConfigError

TASKS = ("token-classification", "text-classification")
FORMATS = ("conll", "jsonl", "csv", "tsv")
EXTENSIONS = {
    ".conll": "conll",
    ".conll03": "conll",
    ".iob": "conll",
    ".iob2": "conll",
    ".bio": "conll",
    ".txt": "conll",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
}
_TAG = re.compile(r"^(O|[BI]-\S+)$")


class DataError(ConfigError):
    """Unusable training data; the message starts with ``file:line`` where there is one."""


@dataclass
class TokenExample:
    """One sentence: words and their BIO tags; ``lines`` holds each word's line in ``path``."""

    tokens: list[str]
    tags: list[str]
    path: str
    lines: list[int] = field(default_factory=list)

    def where(self, i: int = 0) -> str:
        return f"{self.path}:{self.lines[i] if self.lines else '?'}"


@dataclass
class TextExample:
    text: str
    label: str
    path: str
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}"


Example = TokenExample | TextExample


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise DataError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
        return fmt
    found = EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise DataError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; pass --format {'|'.join(FORMATS)}"
        )
    return found


def read_examples(path: Path, task: str, fmt: str | None = None) -> list[Example]:
    """Parse ``path`` for ``task``; raises DataError for a missing, empty or malformed file."""
    if task not in TASKS:
        raise DataError(f"--task {task!r}: use one of {', '.join(TASKS)}")
    fmt = detect_format(path, fmt)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    if fmt == "conll":
        if task != "token-classification":
            raise DataError(f"{path}: CoNLL files hold token tags; use --task token-classification or a JSONL/CSV file")
        examples: list[Example] = list(_conll(text, str(path)))
    elif fmt == "jsonl":
        examples = _jsonl(text, str(path), task)
    else:
        if task != "text-classification":
            raise DataError(f"{path}: CSV/TSV files hold 'text,label' rows; for tags use CoNLL or JSONL")
        examples = list(_delimited(text, str(path), "\t" if fmt == "tsv" else ","))
    if not examples:
        raise DataError(f"{path}: no examples found")
    return examples


def _conll(text: str, path: str) -> list[TokenExample]:
    out: list[TokenExample] = []
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []

    def flush() -> None:
        if tokens:
            out.append(TokenExample(tokens.copy(), tags.copy(), path, lines.copy()))
        tokens.clear()
        tags.clear()
        lines.clear()

    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            flush()
            continue
        if line.startswith("-DOCSTART-"):
            flush()
            continue
        if line.startswith(("{", "[")) and line.endswith(("}", "]")):
            raise DataError(f"{path}:{n}: this line looks like JSON in a CoNLL file (mixed formats); use one format")
        cols = line.split()
        if not _TAG.match(cols[-1]) and len(line.split(",")) == 2:
            raise DataError(f"{path}:{n}: {line!r} looks like a CSV row in a CoNLL file (mixed formats)")
        if len(cols) < 2:
            raise DataError(f"{path}:{n}: expected 'token ... tag' columns, got {line!r} (no tag)")
        tag = cols[-1]
        if not _TAG.match(tag):
            raise DataError(f"{path}:{n}: tag {tag!r} is not BIO/IOB2; use O, B-TYPE or I-TYPE")
        tokens.append(cols[0])
        tags.append(tag)
        lines.append(n)
    flush()
    return out


def _jsonl(text: str, path: str, task: str) -> list[Example]:
    keys = ("tokens", "tags") if task == "token-classification" else ("text", "label")
    other = ("text", "label") if task == "token-classification" else ("tokens", "tags")
    out: list[Example] = []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not a JSON object ({exc.msg}, column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{n}: expected a JSON object with {keys[0]!r} and {keys[1]!r}")
        if keys[0] not in obj and other[0] in obj:
            raise DataError(
                f"{path}:{n}: has {other[0]!r}/{other[1]!r} (the other task's shape) where {task} needs "
                f"{keys[0]!r}/{keys[1]!r}; mixed formats or the wrong --task"
            )
        for k in keys:
            if k not in obj or obj[k] is None or obj[k] == "":
                raise DataError(f"{path}:{n}: missing {k!r} (expected {{{keys[0]!r}: ..., {keys[1]!r}: ...}})")
        out.append(_token_obj(obj, path, n) if task == "token-classification" else _text_obj(obj, path, n))
    return out


def _token_obj(obj: dict[str, Any], path: str, n: int) -> TokenExample:
    tokens, tags = obj["tokens"], obj["tags"]
    if not isinstance(tokens, list) or not all(isinstance(t, str) and t.strip() for t in tokens):
        raise DataError(f"{path}:{n}: 'tokens' must be a list of non-empty strings")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise DataError(f"{path}:{n}: 'tags' must be a list of strings")
    if len(tokens) != len(tags):
        raise DataError(f"{path}:{n}: {len(tokens)} tokens but {len(tags)} tags")
    if not tokens:
        raise DataError(f"{path}:{n}: 'tokens' is empty")
    for t in tags:
        if not _TAG.match(t):
            raise DataError(f"{path}:{n}: tag {t!r} is not BIO/IOB2; use O, B-TYPE or I-TYPE")
    return TokenExample(tokens, tags, path, [n] * len(tokens))


def _text_obj(obj: dict[str, Any], path: str, n: int) -> TextExample:
    text, label = obj["text"], obj["label"]
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{path}:{n}: 'text' must be a non-empty string")
    if isinstance(label, bool) or not isinstance(label, str | int):
        raise DataError(f"{path}:{n}: 'label' must be a string or an integer")
    return TextExample(text, str(label), path, n)


def _delimited(text: str, path: str, delimiter: str) -> list[TextExample]:
    rows = list(csv.reader(text.splitlines(), delimiter=delimiter))
    text_col, label_col, first = 0, 1, 0
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if "text" in header and "label" in header:
        text_col, label_col, first = header.index("text"), header.index("label"), 1
    out: list[TextExample] = []
    for n, row in enumerate(rows[first:], first + 1):  # csv rows == lines: quoted newlines are not supported
        if not row or not "".join(row).strip():
            continue
        if len(row) == 1:
            other = "," if delimiter == "\t" else "\t"
            hint = " (mixed formats: it splits on " + repr(other) + ")" if other in row[0] else ""
            if row[0].lstrip().startswith("{"):
                hint = " (mixed formats: it looks like JSON)"
            raise DataError(f"{path}:{n}: expected 'text{delimiter}label', got one column (no label){hint}")
        if first == 0 and len(row) != 2:
            raise DataError(
                f"{path}:{n}: expected 2 columns 'text{delimiter}label', got {len(row)}; quote texts that "
                f"contain {delimiter!r} or add a 'text{delimiter}label' header"
            )
        if max(text_col, label_col) >= len(row):
            raise DataError(f"{path}:{n}: {len(row)} columns, but the header names {len(header)}")
        body, label = row[text_col].strip(), row[label_col].strip()
        if not body:
            raise DataError(f"{path}:{n}: empty text")
        if not label:
            raise DataError(f"{path}:{n}: empty label")
        out.append(TextExample(body, label, path, n))
    return out
