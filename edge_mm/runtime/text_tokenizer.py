"""Tokenization at run time with the `tokenizers` library and the tokenizer.json the build saved.

Batches are numpy (``ids``, ``mask``: what ONNX Runtime takes); ``input_ids`` and
``attention_mask`` view them as torch tensors (no copy) for TorchScript.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import Encoding, Tokenizer

if TYPE_CHECKING:
    import torch


@dataclass
class EncodedBatch:
    ids: np.ndarray  # (batch, seq) int64, right-padded
    mask: np.ndarray  # (batch, seq) int64
    lengths: list[int]  # real tokens per item, special tokens included
    truncated: list[bool]  # the item had more tokens than max_length
    encodings: list[Encoding]

    @property
    def input_ids(self) -> torch.Tensor:
        """``ids`` as a torch tensor sharing its memory."""
        import torch

        return torch.from_numpy(self.ids)

    @property
    def attention_mask(self) -> torch.Tensor:
        """``mask`` as a torch tensor sharing its memory."""
        import torch

        return torch.from_numpy(self.mask)


class StrideTooLarge(ValueError):
    """The windows' ``stride`` leaves no room for new tokens in a window."""


class TextTokenizer:
    """Encodes texts to padded id/mask tensors; never changes its settings after construction."""

    # live tokenizers by (tokenizer.json's sha256, max_length, pad_id, stride): versions share one (`shared`)
    _live: weakref.WeakValueDictionary[tuple[str, int, int, int], TextTokenizer] = weakref.WeakValueDictionary()
    _live_lock = threading.Lock()

    @classmethod
    def shared(cls, path: Path, *, max_length: int, pad_id: int, stride: int = 0) -> TextTokenizer:
        """The tokenizer a loaded model already uses for the same file and settings, else a new one.

        A hot swap loads a new version while the old one serves; most versions keep their tokenizer. Its
        vocabulary is tens of thousands of small blocks; made again under load, they interleave with the
        requests' blocks, and freed with the old version they leave holes smaller than a page that stay
        resident (MiniLM, 20 swaps under wrk: RSS +12 MB made anew, +4 to +7 MB shared; bench/results/hot_swap.md).
        Safe to share: encoding never changes a tokenizer.
        """
        key = (hashlib.sha256(path.read_bytes()).hexdigest(), max_length, pad_id, stride)
        with cls._live_lock:
            tokenizer = cls._live.get(key)
            if tokenizer is None:
                tokenizer = cls(path, max_length=max_length, pad_id=pad_id, stride=stride)
                cls._live[key] = tokenizer
            return tokenizer

    def __init__(self, path: Path, *, max_length: int, pad_id: int, stride: int = 0) -> None:
        self.max_length = max_length
        self.pad_id = pad_id
        self._plain = Tokenizer.from_file(str(path))
        self._plain.no_padding()
        self._plain.enable_truncation(max_length)
        # Windows for long texts: consecutive pieces share `stride` tokens of context.
        self.stride = stride or max(0, min(max_length // 4, 64))
        self._windows = Tokenizer.from_file(str(path))
        self._windows.no_padding()
        if self.stride > self.max_stride:
            raise StrideTooLarge(
                f"{self.stride} leaves no new tokens in a window of {max_length} (special tokens included); "
                f"use at most {self.max_stride}, or 0 to derive it from max_length"
            )
        self._windows.enable_truncation(max_length, stride=self.stride)

    @property
    def max_stride(self) -> int:
        """The most tokens consecutive windows can share: ``max_length`` less the special tokens, less one."""
        post = self._windows.post_processor
        return self.max_length - (post.num_special_tokens_to_add(False) if post is not None else 0) - 1

    def encode(self, texts: list[str]) -> EncodedBatch:
        """Encode, truncating each text to ``max_length`` tokens (``truncated`` says where)."""
        encodings = self._plain.encode_batch(texts)
        return self.pad(encodings, [bool(e.overflowing) for e in encodings])

    def encode_windows(self, text: str) -> list[Encoding]:
        """All windows of ``text``: one when it fits, overlapping pieces when it does not."""
        first = self._windows.encode(text)
        return [first, *first.overflowing]

    def pad(self, encodings: list[Encoding], truncated: list[bool] | None = None) -> EncodedBatch:
        lengths = [len(e.ids) for e in encodings]
        width = max(lengths)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for i, e in enumerate(encodings):
            ids[i, : lengths[i]] = e.ids
            mask[i, : lengths[i]] = 1
        return EncodedBatch(ids, mask, lengths, truncated or [False] * len(encodings), encodings)
