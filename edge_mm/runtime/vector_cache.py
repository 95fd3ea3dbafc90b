"""A thread-safe LRU cache of text -> vector, bounded in bytes (keys and vectors), not only in entries.

Vectors are torch tensors or numpy arrays (the ONNX Runtime path): anything with ``nbytes``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

DEFAULT_MAX_BYTES = 32 * 1024 * 1024
Vector = Any  # a 1-D torch.Tensor or numpy array


def _cost(key: str, value: Vector) -> int:
    return len(key.encode("utf-8", "surrogatepass")) + int(value.nbytes) + 64


class VectorCache:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[str, Vector] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def missing(self, keys: list[str]) -> list[str]:
        """The distinct ``keys`` not cached, in order."""
        with self._lock:
            return [k for k in dict.fromkeys(keys) if k not in self._items]

    def put(self, key: str, value: Vector) -> None:
        cost = _cost(key, value)
        if cost > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= _cost(key, old)
            self._items[key] = value
            self.bytes += cost
            while self.bytes > self.max_bytes:
                k, v = self._items.popitem(last=False)
                self.bytes -= _cost(k, v)

    def get_all(self, keys: list[str]) -> list[Vector] | None:
        """The vectors for ``keys`` (marked recently used), or None if any was evicted meanwhile."""
        with self._lock:
            found = []
            for k in keys:
                v = self._items.get(k)
                if v is None:
                    return None
                self._items.move_to_end(k)
                found.append(v)
            return found
