"""Token classification (NER): BIO/IOB tags merged into entity spans with exact character offsets.

Texts longer than the model's max length run as overlapping windows; a token seen
by several windows takes the prediction of the window where it sits furthest from
an edge, so no text is cut and every token gets full context on at least one side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from tokenizers import Encoding

from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.model_calls import Models
from edge_mm.runtime.text_model import TextModel
from edge_mm.tasks.payload import Limits, Payload
from edge_mm.tasks.schemas import ModelOptions, Options, Texts, check_texts, validate
from edge_mm.tasks.task import ModelRequest, Task

ROUTE = "/v1/token-classification"
KINDS = ("token-classification",)


@dataclass
class TokenPrediction:
    start: int  # character offset in the original text
    end: int
    word: int  # word index from the tokenizer's pre-tokenizer
    label: str
    score: float
    edge_distance: int  # tokens to the nearer window edge: larger is better context


class ServeOptions(ModelOptions):
    """A token-classification model's serve-time options (settings), read when the model loads."""

    stride: int = Field(
        0,
        ge=0,
        le=8192,
        description="tokens shared by consecutive windows of a long text; 0: max_length // 4, "
        "at most 64 (must stay below max_length less the special tokens)",
    )


class Body(Options):
    inputs: Texts


class Entity(BaseModel):
    label: str
    start: int  # character offsets in the text
    end: int
    score: float
    text: str


class Result(BaseModel):
    entities: list[Entity]
    windows: int


class Answer(BaseModel):
    model: str
    results: list[Result]


Request = ModelRequest[list[str], None]


def parse(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.get(KINDS, ROUTE, payload.model_name())
    texts = validate(Body, payload.fields).inputs
    return Request(served, check_texts(texts, "inputs", limits.max_items, limits.max_text_chars), None)


def _split(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', ''); a bare 'PER' -> ('I', 'PER')."""
    if tag == "O" or not tag:
        return "O", ""
    if len(tag) > 2 and tag[1] in "-_" and tag[0] in "BIES":
        return tag[0], tag[2:]
    return "I", tag


def token_predictions(windows: list[Encoding], logits: list[Any], labels: list[str]) -> list[TokenPrediction]:
    """One prediction per distinct token of the text, best window first, sorted by offset.

    ``logits``: torch tensors, or numpy from ONNX Runtime (viewed as tensors)."""
    import torch

    best: dict[tuple[int, int], TokenPrediction] = {}
    for enc, out in zip(windows, logits, strict=True):
        probs = torch.as_tensor(out).softmax(-1)
        n = len(enc.ids)
        for t in range(n):
            if enc.special_tokens_mask[t] or enc.word_ids[t] is None:
                continue
            start, end = enc.offsets[t]
            if end <= start:
                continue
            score, idx = probs[t].max(-1)
            word = enc.word_ids[t]
            assert word is not None  # checked above
            pred = TokenPrediction(start, end, word, labels[int(idx)], float(score), min(t, n - 1 - t))
            old = best.get((start, end))
            if old is None or pred.edge_distance > old.edge_distance:
                best[(start, end)] = pred
    return sorted(best.values(), key=lambda p: (p.start, p.end))


def merge_entities(text: str, tokens: list[TokenPrediction]) -> list[dict[str, Any]]:
    """Words take their first sub-token's tag; B- starts an entity, I- continues one of the same type."""
    words: list[list[TokenPrediction]] = []
    for tok in tokens:
        if words and words[-1][0].word == tok.word and tok.start <= words[-1][-1].end + 1:
            words[-1].append(tok)
        else:
            words.append([tok])
    entities: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for word in words:
        prefix, kind = _split(word[0].label)
        start, end = word[0].start, word[-1].end
        score = sum(t.score for t in word) / len(word)
        if prefix == "O":
            current = None
            continue
        if current is not None and kind == current["label"] and prefix in ("I", "E"):
            current["end"] = end
            current["_scores"].append(score)
        else:
            current = {"label": kind, "start": start, "end": end, "_scores": [score]}
            entities.append(current)
        if prefix in ("E", "S"):
            current = None
    for e in entities:
        scores = e.pop("_scores")
        e["score"] = round(sum(scores) / len(scores), 6)
        e["text"] = text[e["start"] : e["end"]]
    return entities


def entities(model: TextModel, texts: list[str], deadline: Deadline | None = None) -> dict[str, Any]:
    windows = [model.tokenizer.encode_windows(t) for t in texts]
    flat = [w for ws in windows for w in ws]
    logits = model.forward(flat, deadline)
    results, i = [], 0
    for text, ws in zip(texts, windows, strict=True):
        tokens = token_predictions(ws, logits[i : i + len(ws)], model.labels)
        i += len(ws)
        results.append({"entities": merge_entities(text, tokens), "windows": len(ws)})
    return {"model": model.name, "results": results}


def run(models: Models, request: Request, deadline: Deadline) -> dict[str, Any]:
    return models.call(request.model, deadline, lambda m: entities(m, request.inputs, deadline))


TASK = Task(
    "token-classification",
    (ROUTE,),
    KINDS,
    parse,
    run,
    "Named entities with character offsets.",
    body=Body,
    answer=Answer,
)
