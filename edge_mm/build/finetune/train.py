"""`edge-mm finetune`: labelled data + a base encoder -> a checkpoint `edge-mm build` accepts.

Order of work, so that bad input costs nothing: read and check every file, the labels,
the output folder and the base checkpoint; only then train. Training writes into a
staging folder beside ``--out`` (``.<out>.partial``: the best checkpoint so far and the
last finished epoch's state for ``--resume``); the finished folder is renamed into place,
so ``--out`` is never half-written. Ctrl-C finalises the best checkpoint so far.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edge_mm.build.finetune import labels as lab
from edge_mm.build.finetune import report
from edge_mm.build.finetune.data import DataError, Example, TextExample, TokenExample, read_examples
from edge_mm.build.finetune.options import FinetuneOptions
from edge_mm.build.sources import resolve_source
from edge_mm.errors import ConfigError

STATE = "state.pt"


@dataclass
class Encoded:
    """One example ready for the model: ids, per-token labels, and (tokens) each word's first piece."""

    input_ids: list[int]
    labels: list[int] | int
    firsts: dict[int, int] | None = None


@dataclass
class Data:
    train: list[Example]
    dev: list[Example]
    test: list[Example] | None
    labels: list[str]
    repaired: int


def load_data(o: FinetuneOptions) -> Data:
    """Parse and check train / dev / test; a seeded split of train when there is no dev file."""
    for name in ("train", "dev", "test"):
        path = getattr(o, name)
        if path is not None and not Path(path).is_file():
            raise DataError(f"--{name} {path}: no such file")
    train = read_examples(o.train, o.task, o.format)
    dev = read_examples(o.dev, o.task, o.format) if o.dev else None
    test = read_examples(o.test, o.task, o.format) if o.test else None
    repaired = 0
    if o.task == "token-classification":
        for part in (train, dev, test):
            if part is not None:
                repaired += lab.check_bio([e for e in part if isinstance(e, TokenExample)], repair=o.repair_bio)
    labels = lab.label_list(o.task, train)
    for part in (dev, test):
        if part is not None:
            lab.check_known(labels, part)
    if dev is None:
        if not 0 < o.dev_fraction < 1:
            raise DataError(f"--dev-fraction {o.dev_fraction}: use a value between 0 and 1, or pass --dev")
        if len(train) < 2:
            raise DataError(f"{o.train}: {len(train)} example(s): too few to hold some out as dev; pass --dev")
        order = list(range(len(train)))
        random.Random(o.seed).shuffle(order)
        n_dev = max(1, round(len(train) * o.dev_fraction))
        dev = [train[i] for i in sorted(order[:n_dev])]
        train = [train[i] for i in sorted(order[n_dev:])]
        labels = lab.label_list(o.task, train)  # what is left must still have something to learn
        lab.check_known(labels, dev)
    return Data(train, dev, test, labels, repaired)


def check_options(o: FinetuneOptions) -> None:
    positive = {"epochs": o.epochs, "batch_size": o.batch_size, "grad_accum": o.grad_accum, "max_length": o.max_length}
    for name, value in positive.items():
        if value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {value}: must be 1 or more")
    if o.learning_rate <= 0 or not 0 <= o.warmup_ratio < 1 or o.patience < 0 or o.weight_decay < 0:
        raise ConfigError("--learning-rate must be > 0, --warmup-ratio in [0, 1), --patience and --weight-decay >= 0")
    if o.out.exists() and not (o.overwrite or o.resume):
        raise ConfigError(f"--out {o.out}: already exists; pass --overwrite to replace it (or --resume to continue)")
    if o.resume and not (staging_dir(o.out) / STATE).is_file():
        raise ConfigError(f"--resume: no interrupted run to continue ({staging_dir(o.out) / STATE} is missing)")


def staging_dir(out: Path) -> Path:
    return out.resolve().parent / f".{out.name}.partial"


def load_base(o: FinetuneOptions, labels: list[str], *, packages_dir: Path, base_dir: Path) -> tuple[Any, Any, Path]:
    """(tokenizer, model with a fresh head for ``labels``, source folder); ConfigError when unusable."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # save_pretrained's "Writing model shards" bar
    source = resolve_source(o.base, packages_dir=packages_dir, base_dir=base_dir)
    if not source.is_dir() or not (source / "config.json").is_file():
        raise ConfigError(f"--base {o.base}: {source} is not a checkpoint folder (no config.json)")
    try:
        tok = transformers.AutoTokenizer.from_pretrained(source)
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; the message matters
        raise ConfigError(f"--base {o.base}: cannot load its tokenizer: {exc}") from None
    if not getattr(tok, "is_fast", False):
        raise ConfigError(f"--base {o.base}: needs a fast tokenizer (tokenizer.json) for word alignment")
    room = o.max_length - tok.num_special_tokens_to_add()
    if room < 1:
        raise ConfigError(
            f"--max-length {o.max_length}: too short for any token (the base adds "
            f"{tok.num_special_tokens_to_add()} special tokens); use 8 or more"
        )
    cls = {
        "token-classification": transformers.AutoModelForTokenClassification,
        "text-classification": transformers.AutoModelForSequenceClassification,
    }[o.task]
    try:
        model = cls.from_pretrained(
            source,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            ignore_mismatched_sizes=True,  # a base with another head gets a fresh one
            attn_implementation="eager",
        )
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"--base {o.base}: cannot load it for {o.task}: {exc}") from None
    return tok, model, source


def encode(tok: Any, examples: Sequence[Example], labels: list[str], max_length: int) -> list[Encoded]:
    index = {name: i for i, name in enumerate(labels)}
    out: list[Encoded] = []
    for ex in examples:
        if isinstance(ex, TokenExample):
            enc = tok(ex.tokens, is_split_into_words=True, truncation=True, max_length=max_length)
            word_ids = enc.word_ids()
            aligned = lab.align(word_ids, [index[t] for t in ex.tags])
            out.append(Encoded(enc["input_ids"], aligned, lab.first_pieces(word_ids)))
        else:
            enc = tok(ex.text, truncation=True, max_length=max_length)
            out.append(Encoded(enc["input_ids"], index[ex.label]))
    return out


def batches(
    items: Sequence[Encoded], order: Sequence[int], size: int, pad_id: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Right-padded batches: input_ids / attention_mask (batch, seq) int64, labels (batch, seq) or (batch,)."""
    for i in range(0, len(order), size):
        chunk = [items[j] for j in order[i : i + size]]
        width = max(len(e.input_ids) for e in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, e in enumerate(chunk):
            ids[r, : len(e.input_ids)] = torch.tensor(e.input_ids)
            mask[r, : len(e.input_ids)] = 1
        if isinstance(chunk[0].labels, list):
            y = torch.full((len(chunk), width), lab.IGNORE, dtype=torch.long)
            for r, e in enumerate(chunk):
                y[r, : len(e.labels)] = torch.tensor(e.labels)  # type: ignore[arg-type]
        else:
            y = torch.tensor([e.labels for e in chunk], dtype=torch.long)
        yield {"input_ids": ids, "attention_mask": mask, "labels": y}


class Device:
    """CUDA with mixed precision when present (and asked for), else CPU with every core."""

    def __init__(self, name: str, threads: int = 0) -> None:
        if name == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda: CUDA is not available on this machine; use --device cpu or auto")
        self.cuda = name in ("auto", "cuda") and torch.cuda.is_available()
        self.device = torch.device("cuda" if self.cuda else "cpu")
        self.amp_dtype: torch.dtype | None = None
        if self.cuda:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            self.name = f"cuda ({torch.cuda.get_device_name(0)}, {str(self.amp_dtype).removeprefix('torch.')} autocast)"
        else:
            torch.set_num_threads(threads or os.cpu_count() or 1)
            n = torch.get_num_threads()
            self.name = f"cpu ({n} thread{'s' if n > 1 else ''})"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)

    def autocast(self) -> Any:
        if self.amp_dtype is None:
            return torch.autocast("cpu", enabled=False)
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def to(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}


def optimizer(model: torch.nn.Module, o: FinetuneOptions, total_steps: int) -> tuple[Any, Any]:
    from transformers import get_linear_schedule_with_warmup

    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "norm" in name.lower() else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=o.learning_rate,
    )
    sched = get_linear_schedule_with_warmup(opt, round(total_steps * o.warmup_ratio), total_steps)
    return opt, sched


@torch.inference_mode()
def predict(
    model: Any,
    items: list[Encoded],
    examples: Sequence[Example],
    labels: list[str],
    dev: Device,
    pad_id: int,
    size: int,
) -> tuple[list[Any], float]:
    """Per example: the predicted tags per word (words cut by max_length get 'O') or the label; and mean loss."""
    model.eval()
    preds: list[Any] = []
    loss_sum, n = 0.0, 0
    order = list(range(len(items)))
    for start, batch in zip(range(0, len(items), size), batches(items, order, size, pad_id), strict=True):
        with dev.autocast():
            out = model(**dev.to(batch))
        loss_sum += float(out.loss) * batch["input_ids"].shape[0]
        n += batch["input_ids"].shape[0]
        best = out.logits.float().argmax(-1).cpu()
        for r in range(best.shape[0]):
            item, ex = items[start + r], examples[start + r]
            if isinstance(ex, TokenExample):
                firsts = item.firsts or {}
                preds.append([labels[int(best[r, firsts[w]])] if w in firsts else "O" for w in range(len(ex.tokens))])
            else:
                preds.append(labels[int(best[r])])
    return preds, (loss_sum / n if n else math.nan)


def evaluate(task: str, examples: Sequence[Example], preds: list[Any], labels: list[str]) -> dict[str, Any]:
    if task == "token-classification":
        truth = [e.tags for e in examples if isinstance(e, TokenExample)]
        return report.token_figures(truth, preds, labels)
    truth_labels = [e.label for e in examples if isinstance(e, TextExample)]
    return report.classification_figures(truth_labels, preds, labels)


def dev_score(task: str, figures: dict[str, Any]) -> float:
    return float(figures["entity_f1"] if task == "token-classification" else figures["accuracy"])


def metric_name(task: str) -> str:
    return "entity F1" if task == "token-classification" else "accuracy"
